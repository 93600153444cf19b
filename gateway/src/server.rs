//! Serving the role services over mTLS (with our own TLS acceptor, [`tls`], so a failed
//! handshake is logged with its reason), and connecting to them as a client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server};
use tonic_health::ServingStatus;
use unseen_proto::v1 as pb;

use crate::GatewayError;
use crate::domain::Domain;
use crate::service::Services;
use crate::telemetry::RequestLogLayer;

mod tls;
pub use tls::{TlsFailure, tls_failure};

/// Largest gRPC message either side accepts (dataset registrations carry Parquet files).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// PEM material for one end of an mTLS connection.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The domain CA certificate both sides trust.
    pub ca_pem: String,
    /// This end's certificate.
    pub cert_pem: String,
    /// This end's private key.
    pub key_pem: String,
    /// A server's revocation list (PEM "X509 CRL", signed by the domain CA): client
    /// certificates it names are refused at the handshake. Read once, when the server starts.
    pub crl_pem: Option<String>,
}

/// A running server; dropping the handle does not stop it, [`ServerHandle::shutdown`] does.
pub struct ServerHandle {
    /// The address it listens on.
    pub address: SocketAddr,
    health: tonic_health::server::HealthReporter,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").field("address", &self.address).finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Stops admitting: health turns NOT_SERVING, the listener closes, and each connection is
    /// told to go away once its requests in flight are answered. Returns at once.
    pub async fn stop_admitting(&mut self) {
        self.health.set_service_status("", ServingStatus::NotServing).await;
        for service in SERVICE_NAMES {
            self.health.set_service_status(service, ServingStatus::NotServing).await;
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops accepting requests and waits for the server to finish.
    pub async fn shutdown(mut self) -> Result<(), GatewayError> {
        self.stop_admitting().await;
        self.task
            .await
            .map_err(|error| GatewayError::internal("stopping the server", error))?
            .map_err(|error| GatewayError::internal("serving", error))
    }

    /// [`ServerHandle::shutdown`], waiting at most `bound` for requests in flight (a client
    /// waiting for a job, a health watch) before the connections are dropped; false when
    /// some were.
    pub async fn shutdown_within(mut self, bound: Duration) -> Result<bool, GatewayError> {
        self.stop_admitting().await;
        match tokio::time::timeout(bound, &mut self.task).await {
            Ok(finished) => {
                finished
                    .map_err(|error| GatewayError::internal("stopping the server", error))?
                    .map_err(|error| GatewayError::internal("serving", error))?;
                Ok(true)
            }
            Err(_) => {
                self.task.abort();
                Ok(false)
            }
        }
    }
}

/// The role services by their gRPC names, as the health service reports them.
const SERVICE_NAMES: [&str; 4] =
    ["unseen.v1.Provider", "unseen.v1.Developer", "unseen.v1.Operator", "unseen.v1.Regulator"];

/// Serves every role service of `domain` on `address` (port 0 picks one) with mTLS: clients
/// must present a certificate issued by the domain CA. `grpc.health.v1.Health` is served
/// beside them (SERVING until [`ServerHandle::stop_admitting`]), to any client the domain CA
/// issued, whatever its role; every request is logged and counted ([`crate::telemetry`]).
pub async fn serve(domain: Arc<Domain>, address: SocketAddr, tls: &TlsMaterial) -> Result<ServerHandle, GatewayError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| GatewayError::internal("binding the gateway address", error))?;
    let address = listener.local_addr().map_err(|error| GatewayError::internal("reading the bound address", error))?;
    let tls_config = tls::server_config(tls)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    for service in SERVICE_NAMES {
        health.set_service_status(service, ServingStatus::Serving).await;
    }
    let services = Services::new(Arc::clone(&domain));
    let router = Server::builder()
        .layer(RequestLogLayer::new(domain))
        .add_service(health_service)
        .add_service(
            pb::provider_server::ProviderServer::new(services.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::developer_server::DeveloperServer::new(services.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::operator_server::OperatorServer::new(services.clone()).max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(pb::regulator_server::RegulatorServer::new(services).max_encoding_message_size(MAX_MESSAGE_BYTES));
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let incoming = tls::accept(listener, tls_config);
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = signal.await;
    }));
    Ok(ServerHandle { address, health, shutdown: Some(shutdown), task })
}

/// Connects to a gateway at `address` (`host:port`) with a client identity. The server's
/// certificate must name the host dialled (a DNS name or an IP address).
pub async fn connect(address: &str, tls: &TlsMaterial) -> Result<Channel, GatewayError> {
    let tls_config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.ca_pem))
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .domain_name(host_of(address)?);
    Channel::from_shared(format!("https://{address}"))
        .map_err(|error| GatewayError::InvalidInput(format!("gateway address \"{address}\": {error}")))?
        .tls_config(tls_config)
        .map_err(|error| GatewayError::internal("configuring TLS", error))?
        .connect()
        .await
        .map_err(|error| match tls_failure(&error) {
            Some(TlsFailure::GatewayCertificate(why)) => GatewayError::Unauthenticated(format!(
                "the gateway's certificate is not one the domain CA you trust issued for {address}: {why}"
            )),
            Some(TlsFailure::CertificateRefused(alert)) => {
                GatewayError::Unauthenticated(format!("the gateway refused your certificate (TLS alert {alert})"))
            }
            None => GatewayError::internal(&format!("connecting to the gateway at {address}"), error_chain(&error)),
        })
}

/// An error with its causes, `outer: inner: innermost`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text += &format!(": {cause_text}");
        }
        next = cause.source();
    }
    text
}

/// The host part of `host:port`, `[v6]:port` or a bare host.
fn host_of(address: &str) -> Result<&str, GatewayError> {
    let host = if let Some(rest) = address.strip_prefix('[') {
        rest.split_once(']').map(|(host, _)| host)
    } else {
        Some(address.rsplit_once(':').map_or(address, |(host, _)| host))
    };
    match host {
        Some(host) if !host.is_empty() => Ok(host),
        _ => Err(GatewayError::InvalidInput(format!(
            "gateway address \"{address}\" names no host; write host:port, e.g. 127.0.0.1:7443"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_dialled_is_the_name_the_server_certificate_must_hold() {
        assert_eq!(host_of("127.0.0.1:7443").expect("v4"), "127.0.0.1");
        assert_eq!(host_of("gateway.huzhou.example:443").expect("dns"), "gateway.huzhou.example");
        assert_eq!(host_of("[::1]:7443").expect("v6"), "::1");
        assert_eq!(host_of("localhost").expect("bare"), "localhost");
        assert!(host_of(":7443").is_err());
        assert!(host_of("[::1").is_err());
    }
}
