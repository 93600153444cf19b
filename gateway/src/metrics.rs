//! What an operator's Prometheus scrapes: requests by RPC and status, their latency, the job
//! queue and wall time, the egress reviewer's time, audit appends and their fsyncs, and ε spent
//! per grant. One registry per domain; the domain and the request layer record into it, and
//! [`serve_metrics`] answers `GET /metrics` on a plain-HTTP port of its own (off unless the
//! operator asks for it: the figures name grants and RPCs, not data, but they are the domain's).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use unseen_runtime::{JobReport, RuntimeError};

use crate::GatewayError;

type Labels<const N: usize> = [(&'static str, String); N];
type HistogramFamily<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// The domain's metrics; cheap to record into from any thread.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels<2>, Counter>,
    request_seconds: HistogramFamily<1>,
    jobs_queued: Gauge,
    job_seconds: HistogramFamily<1>,
    review_seconds: Histogram,
    audit_entries: Counter,
    audit_sync_seconds: Histogram,
    epsilon_spent: Family<Labels<1>, Gauge<f64, AtomicU64>>,
    refusals_not_logged: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn request_buckets() -> Histogram {
    // 1 ms … 33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn job_buckets() -> Histogram {
    // 50 ms … 14 min
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("unseen");
        let requests = Family::<Labels<2>, Counter>::default();
        registry.register("requests", "gRPC requests answered, by RPC and status code", requests.clone());
        let request_seconds: HistogramFamily<1> = Family::new_with_constructor(request_buckets);
        registry.register("request_seconds", "Time to answer a gRPC request, by RPC", request_seconds.clone());
        let jobs_queued = Gauge::default();
        registry.register("jobs_queued", "Jobs accepted and waiting for a worker", jobs_queued.clone());
        let job_seconds: HistogramFamily<1> = Family::new_with_constructor(job_buckets);
        registry.register("job_seconds", "Wall time of a job's run, by how it ended", job_seconds.clone());
        let review_seconds = request_buckets();
        registry.register("review_seconds", "Time the egress reviewer took for one request", review_seconds.clone());
        let audit_entries = Counter::default();
        registry.register("audit_entries", "Entries appended to the audit log", audit_entries.clone());
        // 0.1 ms … 3 s
        let audit_sync_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "audit_fsync_seconds",
            "Time of one fsync of the audit log (a group of appends shares one)",
            audit_sync_seconds.clone(),
        );
        let epsilon_spent = Family::<Labels<1>, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "privacy_epsilon_spent",
            "Differential-privacy budget (ε) a grant has spent, as of its last charge",
            epsilon_spent.clone(),
        );
        let refusals_not_logged = Counter::default();
        registry.register(
            "refusals_not_logged",
            "Refused requests not written to the audit log: over an organisation's bound",
            refusals_not_logged.clone(),
        );
        Self {
            refusals_not_logged,
            registry,
            requests,
            request_seconds,
            jobs_queued,
            job_seconds,
            review_seconds,
            audit_entries,
            audit_sync_seconds,
            epsilon_spent,
        }
    }
}

/// Holds one job in the queue gauge until it is dropped (the job got a worker, or gave up).
#[derive(Debug)]
pub struct QueuedJob(Gauge);

impl Drop for QueuedJob {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// A refused request over its organisation's bound, counted instead of logged.
    pub fn refusal_not_logged(&self) {
        self.refusals_not_logged.inc();
    }

    /// A request to `rpc` (its path, `/unseen.v1.Developer/RunJob`) answered with `code`.
    pub fn request(&self, rpc: &str, code: tonic::Code, latency: Duration) {
        let code = format!("{code:?}");
        self.requests.get_or_create(&[("rpc", rpc.to_string()), ("code", code)]).inc();
        self.request_seconds.get_or_create(&[("rpc", rpc.to_string())]).observe(latency.as_secs_f64());
    }

    /// A job waits for a worker until the guard is dropped.
    pub fn job_queued(&self) -> QueuedJob {
        self.jobs_queued.inc();
        QueuedJob(self.jobs_queued.clone())
    }

    /// A job's run ended as `report` says.
    pub fn job_ran(&self, report: &JobReport) {
        let outcome = match report.failure {
            None => "succeeded",
            Some(RuntimeError::Cancelled(_)) => "cancelled",
            Some(_) => "failed",
        };
        let seconds = Duration::from_millis(report.metering.wall_ms).as_secs_f64();
        self.job_seconds.get_or_create(&[("outcome", outcome.to_string())]).observe(seconds);
    }

    /// The egress reviewer took `time` for one request.
    pub fn reviewed(&self, time: Duration) {
        self.review_seconds.observe(time.as_secs_f64());
    }

    /// `entries` were appended to the audit log.
    pub fn audit_appended(&self, entries: usize) {
        self.audit_entries.inc_by(entries as u64);
    }

    /// One fsync of the audit log took `time`.
    pub fn audit_synced(&self, time: Duration) {
        self.audit_sync_seconds.observe(time.as_secs_f64());
    }

    /// `grant` has spent `epsilon` of its privacy budget in all.
    pub fn epsilon_spent(&self, grant: &str, epsilon: f64) {
        self.epsilon_spent.get_or_create(&[("grant", grant.to_string())]).set(epsilon);
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// The metrics endpoint, running; dropping the handle does not stop it, [`MetricsHandle::shutdown`] does.
#[derive(Debug)]
pub struct MetricsHandle {
    /// The address it listens on.
    pub address: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl MetricsHandle {
    /// Stops answering and waits for the endpoint to close.
    pub async fn shutdown(self) -> Result<(), GatewayError> {
        let _ = self.shutdown.send(());
        self.task
            .await
            .map_err(|error| GatewayError::internal("stopping the metrics endpoint", error))?
            .map_err(|error| GatewayError::internal("serving metrics", error))
    }
}

/// Serves `GET /metrics` (Prometheus text format) on `address`, plain HTTP: bind it to
/// loopback or a monitoring network, never where clients reach the gateway.
pub async fn serve_metrics(metrics: Arc<Metrics>, address: SocketAddr) -> Result<MetricsHandle, GatewayError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| GatewayError::internal(&format!("binding the metrics address {address}"), error))?;
    let address = listener.local_addr().map_err(|error| GatewayError::internal("reading the bound address", error))?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move { ([(http::header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], metrics.encode()) }
        }),
    );
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = signal.await;
            })
            .await
    });
    Ok(MetricsHandle { address, shutdown, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_rpc_and_code_in_the_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.request("/unseen.v1.Developer/RunJob", tonic::Code::Ok, Duration::from_millis(3));
        metrics.request("/unseen.v1.Developer/RunJob", tonic::Code::Ok, Duration::from_millis(5));
        metrics.request("/unseen.v1.Developer/RunJob", tonic::Code::PermissionDenied, Duration::from_millis(1));
        metrics.epsilon_spent("g-1", 0.5);
        let queued = metrics.job_queued();
        let text = metrics.encode();
        assert!(text.contains("unseen_requests_total{rpc=\"/unseen.v1.Developer/RunJob\",code=\"Ok\"} 2"), "{text}");
        assert!(text.contains("code=\"PermissionDenied\"} 1"), "{text}");
        assert!(text.contains("unseen_request_seconds_count{rpc=\"/unseen.v1.Developer/RunJob\"} 3"), "{text}");
        assert!(text.contains("unseen_privacy_epsilon_spent{grant=\"g-1\"} 0.5"), "{text}");
        assert!(text.contains("unseen_jobs_queued 1"), "{text}");
        drop(queued);
        assert!(metrics.encode().contains("unseen_jobs_queued 0"));
    }
}
