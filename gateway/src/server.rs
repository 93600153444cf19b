//! Serving the role services over mTLS, and connecting to them as a client.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use unseen_proto::v1 as pb;

use crate::GatewayError;
use crate::domain::Domain;
use crate::service::Services;

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
}

/// A running server; dropping the handle does not stop it, [`ServerHandle::shutdown`] does.
#[derive(Debug)]
pub struct ServerHandle {
    /// The address it listens on.
    pub address: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl ServerHandle {
    /// Stops accepting requests and waits for the server to finish.
    pub async fn shutdown(self) -> Result<(), GatewayError> {
        let _ = self.shutdown.send(());
        self.task
            .await
            .map_err(|error| GatewayError::internal("stopping the server", error))?
            .map_err(|error| GatewayError::internal("serving", error))
    }
}

/// Serves every role service of `domain` on `address` (port 0 picks one) with mTLS: clients
/// must present a certificate issued by the domain CA.
pub async fn serve(domain: Arc<Domain>, address: SocketAddr, tls: &TlsMaterial) -> Result<ServerHandle, GatewayError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| GatewayError::internal("binding the gateway address", error))?;
    let address = listener.local_addr().map_err(|error| GatewayError::internal("reading the bound address", error))?;
    let tls_config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .client_ca_root(Certificate::from_pem(&tls.ca_pem));
    let services = Services::new(domain);
    let router = Server::builder()
        .tls_config(tls_config)
        .map_err(|error| GatewayError::internal("configuring TLS", error))?
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
    // Replies go out at once: with Nagle's algorithm a small response waits for the client's
    // delayed ACK, about 40 ms per request (the gateway benchmark's p50 was that, not work).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = signal.await;
    }));
    Ok(ServerHandle { address, shutdown, task })
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
        .map_err(|error| GatewayError::internal(&format!("connecting to the gateway at {address}"), error))
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
