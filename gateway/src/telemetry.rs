//! One log line and one metric per request, from a tower layer around every service, so no RPC
//! handler logs for itself: the RPC (its path), who called (role, organisation and name read
//! from the client certificate as the services read it), the gRPC status and the latency.
//! Each request runs in a `request` span carrying the same fields, so what the request logs on
//! its way (a refusal, an internal error, with its cause: [`crate::error`]) names it too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};
use tracing::Instrument;

use crate::domain::Domain;
use crate::identity::Principal;
use crate::service::principal_of_peer;

/// Health probes come often and say nothing new: their requests are logged at debug level.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The layer: logs and counts every request of the services it wraps, and writes the refused
/// ones a regulator looks for into the domain's audit log (`domain::refusals`).
#[derive(Debug, Clone)]
pub struct RequestLogLayer {
    domain: Arc<Domain>,
}

impl RequestLogLayer {
    /// Records into `domain`'s metrics and audit log.
    pub fn new(domain: Arc<Domain>) -> Self {
        Self { domain }
    }
}

impl<S> tower::Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog { inner, domain: Arc::clone(&self.domain) }
    }
}

/// The service [`RequestLogLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
    domain: Arc<Domain>,
}

impl<S> tower::Service<http::Request<Body>> for RequestLog<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let record = Record::start(&request, Arc::clone(&self.domain));
        let span = tracing::info_span!(
            "request",
            rpc = %record.rpc,
            role = %record.role,
            organisation = %record.organisation,
            principal = %record.name,
        );
        // The clone that was made ready is the one called (tower's rule for `call`).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).instrument(span).await?;
            // An error is a trailers-only response: its status is in the headers. Otherwise
            // it comes in the trailers at the end of the body.
            if let Some(status) = grpc_status(response.headers()) {
                record.finish(&status);
                return Ok(response);
            }
            if response.body().is_end_stream() {
                record.finish(&Status::unknown("the response ended without a status"));
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(LoggedBody { inner: body, record: Some(record) })))
        })
    }
}

/// The statuses of a refusal a regulator looks for: a role calling another's service, a probe
/// of what is not the caller's, a request the domain refused, a decision already taken.
/// Internal errors are the domain's own failures (logged where they happen); health checks
/// and successful calls are not refusals.
fn is_audited_refusal(code: Code) -> bool {
    matches!(code, Code::PermissionDenied | Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition)
}

/// What is known of a request from its start: logged with its status when it ends.
struct Record {
    rpc: String,
    role: String,
    organisation: String,
    name: String,
    peer: String,
    started: Instant,
    principal: Option<Principal>,
    domain: Arc<Domain>,
}

impl Record {
    fn start(request: &http::Request<Body>, domain: Arc<Domain>) -> Self {
        let connection = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let certificates = connection.and_then(TlsConnectInfo::peer_certs);
        let principal = principal_of_peer(certificates.as_deref().map(Vec::as_slice)).ok();
        let (role, organisation, name) = match &principal {
            Some(principal) => {
                (principal.role.as_str().to_string(), principal.organisation.clone(), principal.name.clone())
            }
            // The service refuses it and says why; the log line shows who it could not name.
            None => ("-".into(), "-".into(), "-".into()),
        };
        let peer = connection
            .and_then(|connection| connection.get_ref().remote_addr())
            .map_or_else(|| "-".to_string(), |address| address.to_string());
        let rpc = request.uri().path().to_string();
        Self { rpc, role, organisation, name, peer, started: Instant::now(), principal, domain }
    }

    /// Writes a refused request into the audit log in the background, within the caller's
    /// organisation's bound.
    fn audit_refusal(&self, status: &Status) {
        let Some(principal) = &self.principal else { return };
        if !is_audited_refusal(status.code()) || self.rpc.starts_with(HEALTH_PREFIX) {
            return;
        }
        let (domain, principal, rpc) = (Arc::clone(&self.domain), principal.clone(), self.rpc.clone());
        let (code, message) = (format!("{:?}", status.code()), status.message().to_string());
        tokio::spawn(async move { domain.log_refused_request(&principal, &rpc, &code, &message).await });
    }

    /// Logs and counts the request as answered with `status`; an error's message is logged as
    /// its reason (refusals the services make themselves, at the edge, are logged only here).
    fn finish(self, status: &Status) {
        let (code, latency) = (status.code(), self.started.elapsed());
        self.domain.metrics().request(&self.rpc, code, latency);
        self.audit_refusal(status);
        let latency_ms = (latency.as_secs_f64() * 10_000.0).round() / 10.0;
        macro_rules! request_line {
            ($level:expr $(, $reason:ident = $value:expr)?) => {
                tracing::event!(
                    target: "unseen::request",
                    $level,
                    rpc = %self.rpc,
                    role = %self.role,
                    organisation = %self.organisation,
                    principal = %self.name,
                    peer = %self.peer,
                    status = ?code,
                    latency_ms,
                    $($reason = %$value,)?
                    "request"
                )
            };
        }
        match (self.rpc.starts_with(HEALTH_PREFIX), code) {
            (true, Code::Ok) => request_line!(tracing::Level::DEBUG),
            (false, Code::Ok) => request_line!(tracing::Level::INFO),
            (true, _) => request_line!(tracing::Level::DEBUG, reason = status.message()),
            (false, _) => request_line!(tracing::Level::INFO, reason = status.message()),
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Status> {
    Status::from_header_map(headers)
}

/// A response body that logs its request when the trailers (with the status) go out, or when
/// the client goes away first.
struct LoggedBody {
    inner: Body,
    record: Option<Record>,
}

impl LoggedBody {
    fn finish(&mut self, status: &Status) {
        if let Some(record) = self.record.take() {
            record.finish(status);
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(grpc_status) {
                    self.finish(&status);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let status = status.clone();
                self.finish(&status);
            }
            Poll::Ready(None) => self.finish(&Status::unknown("the response ended without a status")),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // The response was abandoned before its status went out: the client went away.
        self.finish(&Status::cancelled("the client went away before the answer was complete"));
    }
}
