//! The gateway's own TLS acceptor. tonic's built-in one drops a failed handshake without a
//! word; this one runs the same rustls (ring provider, the domain CA as the only client root)
//! and logs every failed handshake with its reason — an expired or not yet valid client
//! certificate, one from another CA, none at all — before tonic sees the connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::TlsMaterial;
use crate::GatewayError;
use crate::identity::utc_text;

/// Longest a client may take to finish its handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for tonic to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// The server's rustls configuration: its certificate, and client certificates required and
/// verified against the domain CA; HTTP/2 only, as gRPC needs.
pub(super) fn server_config(tls: &TlsMaterial) -> Result<Arc<ServerConfig>, GatewayError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
        let certificate = certificate.map_err(|error| GatewayError::internal("reading the domain CA", error))?;
        roots.add(certificate).map_err(|error| GatewayError::internal("trusting the domain CA", error))?;
    }
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    if let Some(crl_pem) = &tls.crl_pem {
        let crls = CertificateRevocationListDer::pem_slice_iter(crl_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| GatewayError::internal("reading the revocation list", error))?;
        // The CA is the trust anchor: only the client's own certificate can be revoked.
        verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier =
        verifier.build().map_err(|error| GatewayError::internal("configuring client certificate checks", error))?;
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| GatewayError::internal("reading the server certificate", error))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|error| GatewayError::internal("reading the server key", error))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| GatewayError::internal("configuring TLS", error))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| GatewayError::internal("configuring the server certificate", error))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections on `listener` and hands tonic those whose handshake succeeded; a failed
/// one is logged with its reason. Accepting stops when tonic drops the stream (shutdown).
pub(super) fn accept(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(target: "unseen::tls", "accepting a connection failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = sender.closed() => return,
            };
            // Replies go out at once: with Nagle's algorithm a small response waits for the
            // client's delayed ACK, about 40 ms per request.
            let _ = stream.set_nodelay(true);
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => log_failed_handshake(peer, &handshake_failure(&error)),
                    Err(_) => log_failed_handshake(
                        peer,
                        &format!("the client did not finish its handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
                    ),
                }
            });
        }
    });
    futures::stream::poll_fn(move |context| receiver.poll_recv(context))
}

fn log_failed_handshake(peer: SocketAddr, reason: &str) {
    tracing::warn!(target: "unseen::tls", peer = %peer, reason, "TLS handshake failed");
}

/// Why a handshake failed, in the words an operator acts on.
fn handshake_failure(error: &io::Error) -> String {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(error) => describe(error),
        None if error.kind() == io::ErrorKind::UnexpectedEof => {
            "the client closed the connection during the handshake".into()
        }
        None => error.to_string(),
    }
}

fn describe(error: &rustls::Error) -> String {
    let certificate = match error {
        rustls::Error::NoCertificatesPresented => {
            return "the client presented no certificate: every caller needs an identity issued by the domain CA"
                .into();
        }
        rustls::Error::AlertReceived(alert) => {
            return format!(
                "the client ended the handshake with the alert {alert:?}: it does not trust the server's \
                 certificate (a client configured with another domain's CA?)"
            );
        }
        rustls::Error::InvalidCertificate(certificate) => certificate,
        other => return format!("{other}"),
    };
    let at = |time: &UnixTime| utc_text(i64::try_from(time.as_secs()).unwrap_or(i64::MAX));
    match certificate {
        CertificateError::Expired => "the client certificate has expired".into(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("the client certificate expired on {}", at(not_after))
        }
        CertificateError::NotValidYet => "the client certificate is not valid yet".into(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("the client certificate is not valid until {}", at(not_before))
        }
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            "the client certificate was not issued by this domain's CA".into()
        }
        CertificateError::Revoked => {
            "the client certificate was revoked (`unseen identity revoke`): it is on the domain's revocation list"
                .into()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the client certificate is not for client authentication".into()
        }
        other => format!("the client certificate is not accepted: {other}"),
    }
}

/// Why a client's TLS handshake with the gateway failed, as the client can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The client did not accept the gateway's certificate; why.
    GatewayCertificate(String),
    /// The gateway refused the client's certificate; the alert it sent (`UnknownCA`,
    /// `CertificateExpired`, `CertificateRevoked`, `CertificateRequired`…).
    CertificateRefused(String),
}

/// The TLS failure somewhere in `error`'s chain of causes (a connection's or a call's), if
/// there is one.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut next = Some(error);
    while let Some(error) = next {
        // tokio-rustls wraps rustls's error in an io::Error, whose source() skips it.
        let inner = error.downcast_ref::<io::Error>().and_then(|error| error.get_ref()).map(|inner| inner as _);
        for candidate in [Some(error), inner].into_iter().flatten() {
            match candidate.downcast_ref::<rustls::Error>() {
                Some(rustls::Error::InvalidCertificate(why)) => {
                    return Some(TlsFailure::GatewayCertificate(format!("{why}")));
                }
                Some(rustls::Error::AlertReceived(alert)) => {
                    return Some(TlsFailure::CertificateRefused(format!("{alert:?}")));
                }
                _ => {}
            }
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::AlertDescription;

    #[test]
    fn a_failed_handshake_says_what_was_wrong_with_the_client_certificate() {
        let invalid = |error| rustls::Error::InvalidCertificate(error);
        let expired = invalid(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_767_225_600)),
        });
        assert_eq!(describe(&expired), "the client certificate expired on 2026-01-01 00:00:00 UTC");
        let early = invalid(CertificateError::NotValidYetContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            not_before: UnixTime::since_unix_epoch(Duration::from_secs(1_767_225_600)),
        });
        assert_eq!(describe(&early), "the client certificate is not valid until 2026-01-01 00:00:00 UTC");
        assert!(describe(&invalid(CertificateError::UnknownIssuer)).contains("not issued by this domain's CA"));
        assert!(describe(&rustls::Error::NoCertificatesPresented).contains("presented no certificate"));
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, invalid(CertificateError::UnknownIssuer));
        assert!(handshake_failure(&wrapped).contains("not issued by this domain's CA"));
        let refused =
            io::Error::new(io::ErrorKind::InvalidData, rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(tls_failure(&refused), Some(TlsFailure::CertificateRefused("UnknownCA".into())));
        let closed = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(tls_failure(&closed), None);
        assert_eq!(handshake_failure(&closed), "the client closed the connection during the handshake");
    }
}
