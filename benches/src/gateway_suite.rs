//! Suite `gateway`: job submissions (`Developer.RunJob`) over mTLS gRPC from 64 concurrent
//! clients, each on its own connection, with the metadata in SQLite and in PostgreSQL.
//!
//! A submission does the whole acknowledged path: the role check, the grant, import, module
//! and dataset lookups, the job row, its durable audit entry (group commit) and the queueing.
//! The domain holds its jobs (`DomainOptions::hold_jobs`): none starts, so the figure is the
//! gateway's, not the runtime's, and no guest takes a core from it (until stop 16 a spinning
//! job held the organisation's slot and one of the two cores); afterwards the grant is
//! suspended, which cancels them all. Beside it: the same clients reading a job (`GetJob`), a
//! round trip with no write, and the first release's goals (≥ 1,000 submissions/s, p99 < 20 ms).
//!
//! Two loads, because a latency figure means nothing without the load it was taken at:
//! - **saturated** (closed loop): every client sends its next request as soon as the last one
//!   is answered. This gives the capacity (`submit_*`, submissions/s); its latencies are queueing
//!   behind 63 other clients (Little's law: 64 in flight at 3,000/s is 21 ms each on average),
//!   reported as `submit_p99_saturated_*`.
//! - **at the goal rate** (open loop): the 64 clients together send 1,000 submissions/s on a
//!   fixed schedule, each request's latency counted from when it was *due*, so a slow answer
//!   that delays the next send is charged to it too (no coordinated omission). This is the
//!   latency the goal is about (`submit_p99_*`, `submit_p50_*`), with the rate achieved beside.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::Connection;
use unseen_gateway::domain::{DatasetRegistration, GrantAction};
use unseen_gateway::identity::{CertificateAuthority, Principal, Role};
use unseen_gateway::{Domain, DomainOptions, TlsMaterial};
use unseen_proto::v1 as pb;
use unseen_proto::v1::developer_client::DeveloperClient;
use unseen_runtime::Mode;

use crate::{Args, Measurement};

const SUITE: &str = "gateway";
/// Concurrent clients, each with its own mTLS connection.
const CLIENTS: usize = 64;
/// Requests sent before the timed ones, to open connections and warm caches.
const WARM_UP_PER_CLIENT: usize = 4;
/// The first release's goals for job submissions.
const GOAL_SUBMISSIONS_PER_SECOND: f64 = 1_000.0;
const GOAL_P99_MS: f64 = 20.0;

/// Rates and latencies of one store.
struct Figures {
    submit_per_second: f64,
    submit_saturated_p99_ms: f64,
    paced_per_second: f64,
    submit_p50_ms: f64,
    submit_p99_ms: f64,
    read_per_second: f64,
    read_p99_ms: f64,
}

pub(crate) fn run(args: &Args) -> Result<Vec<Measurement>> {
    // A runtime of its own: whatever the domain leaves behind is dropped with it.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut measurements = Vec::new();
    let sqlite = runtime.block_on(measure(None, args.gateway_submissions))?;
    push(&mut measurements, "sqlite", &sqlite);
    let postgres_url =
        std::env::var("UNSEEN_BENCH_POSTGRES_URL").or_else(|_| std::env::var("UNSEEN_TEST_POSTGRES_URL")).ok();
    match postgres_url {
        Some(admin_url) => {
            let database = runtime.block_on(ScratchDatabase::create(&admin_url))?;
            let figures = runtime.block_on(measure(Some(database.url.clone()), args.gateway_submissions));
            runtime.block_on(database.drop_it())?;
            push(&mut measurements, "postgres", &figures?);
        }
        None => eprintln!(
            "gateway: PostgreSQL skipped; set UNSEEN_BENCH_POSTGRES_URL to a role that may create databases \
             (e.g. postgres://unseen:unseen-test@127.0.0.1:5432/postgres)"
        ),
    }
    runtime.shutdown_background();
    Ok(measurements)
}

fn push(measurements: &mut Vec<Measurement>, store: &str, figures: &Figures) {
    let rows: [(&str, &'static str, f64, &'static str, f64); 6] = [
        ("submit", "op/s", figures.submit_per_second, "goal", GOAL_SUBMISSIONS_PER_SECOND),
        ("submit_vs_read", "op/s", figures.submit_per_second, "get_job", figures.read_per_second),
        ("submit_p99_saturated", "ms", figures.submit_saturated_p99_ms, "get_job", figures.read_p99_ms),
        ("submit_paced", "op/s", figures.paced_per_second, "goal", GOAL_SUBMISSIONS_PER_SECOND),
        ("submit_p99", "ms", figures.submit_p99_ms, "goal", GOAL_P99_MS),
        ("submit_p50", "ms", figures.submit_p50_ms, "goal", GOAL_P99_MS),
    ];
    for (what, unit, value, baseline, baseline_value) in rows {
        measurements.push(Measurement::new(SUITE, &format!("{what}_{store}"), unit, value, baseline, baseline_value));
    }
}

fn principal(organisation: &str, role: Role) -> Principal {
    Principal { organisation: organisation.into(), name: "bench".into(), role }
}

async fn measure(metadata_url: Option<String>, submissions: usize) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let options = DomainOptions { metadata_url, hold_jobs: true, ..Default::default() };
    let domain = Arc::new(Domain::open_with(dir.path(), "bench.gateway", &options).await?);
    let developer = principal("bench-analytics", Role::Developer);
    let operator = principal("bench-operator", Role::Operator);

    // Data and a grant.
    let provider = principal("bench-bureau", Role::Provider);
    let register = unseen_samples::data::enterprises(300, 1);
    let electricity = unseen_samples::data::electricity(&register, 12, 1);
    for (dataset, batch) in
        [(unseen_samples::scenarios::enterprise(), &register), (unseen_samples::scenarios::electricity(), &electricity)]
    {
        let path = dir.path().join(format!("{}.parquet", dataset.name));
        unseen_samples::data::write_parquet(batch, &path)?;
        let registration = DatasetRegistration {
            name: dataset.name.clone(),
            grade: dataset.grade,
            subject_kind: dataset.subject_kind,
            columns: dataset.columns.clone(),
        };
        domain.register_dataset(&provider, registration, std::fs::read(&path)?).await?;
    }
    let application = unseen_policy::ScenarioApplication {
        developer: developer.organisation.clone(),
        ..unseen_samples::scenarios::green_energy()
    };
    let scenario = domain.submit_scenario(&developer, application).await?;
    let grant = domain.decide_scenario(&operator, &scenario, true, "bench").await?.context("granted")?;
    let module = domain.upload_module(&developer, &grant.id, unseen_samples::modules::GREEN_ENERGY.to_vec()).await?;
    let held = domain.run_job(&developer, &grant.id, &module.hash, Mode::Production, "").await?;

    // The gateway over mTLS and 64 clients, each with its own connection.
    let authority = CertificateAuthority::generate("bench CA")?;
    let server_pem = authority.issue_server(&["localhost", "127.0.0.1"])?;
    let server_tls = TlsMaterial {
        ca_pem: authority.ca_pem(),
        cert_pem: server_pem.cert_pem,
        key_pem: server_pem.key_pem,
        crl_pem: None,
    };
    let server = unseen_gateway::serve(domain.clone(), "127.0.0.1:0".parse()?, &server_tls).await?;
    let client_pem = authority.issue_client(&developer)?;
    let client_tls = TlsMaterial {
        ca_pem: authority.ca_pem(),
        cert_pem: client_pem.cert_pem,
        key_pem: client_pem.key_pem,
        crl_pem: None,
    };
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(DeveloperClient::new(unseen_gateway::connect(&server.address.to_string(), &client_tls).await?));
    }

    let submit = pb::RunJobRequest {
        grant_id: grant.id.clone(),
        module_hash: module.hash.clone(),
        mode: "production".into(),
        params: String::new(),
    };
    let send_submission = move |mut client: DeveloperClient<tonic::transport::Channel>| {
        let submit = submit.clone();
        async move { client.run_job(submit).await.map(drop) }
    };
    let (submit_per_second, mut saturated_latencies) =
        drive(&clients, submissions, Pace::Saturated, send_submission.clone()).await?;
    let (paced_per_second, mut paced_latencies) =
        drive(&clients, submissions, Pace::Rate(GOAL_SUBMISSIONS_PER_SECOND), send_submission).await?;
    let read = pb::GetJobRequest { job_id: held.clone(), wait_ms: 0 };
    let (read_per_second, mut read_latencies) =
        drive(&clients, submissions, Pace::Saturated, move |mut client: DeveloperClient<tonic::transport::Channel>| {
            let read = read.clone();
            async move { client.get_job(read).await.map(drop) }
        })
        .await?;

    // Suspending the grant cancels the queued submissions.
    domain.change_grant(&operator, &grant.id, GrantAction::Suspend, "benchmark finished").await?;
    server.shutdown().await?;
    Ok(Figures {
        submit_per_second,
        submit_saturated_p99_ms: percentile(&mut saturated_latencies, 0.99),
        paced_per_second,
        submit_p50_ms: percentile(&mut paced_latencies, 0.50),
        submit_p99_ms: percentile(&mut paced_latencies, 0.99),
        read_per_second,
        read_p99_ms: percentile(&mut read_latencies, 0.99),
    })
}

/// How clients send: each as soon as its last answer came (saturated), or all together at a
/// fixed rate per second.
#[derive(Clone, Copy)]
enum Pace {
    Saturated,
    Rate(f64),
}

/// Sends `total` requests from all clients together (each client sends its share one after
/// another); requests per second and every request's latency. At a fixed rate client `c`'s
/// `n`-th request is due at `(n × clients + c) / rate` seconds and its latency counts from
/// then, so a slow answer that delays the next send is charged too.
async fn drive<F, Fut>(
    clients: &[DeveloperClient<tonic::transport::Channel>],
    total: usize,
    pace: Pace,
    request: F,
) -> Result<(f64, Vec<Duration>)>
where
    F: Fn(DeveloperClient<tonic::transport::Channel>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let count = clients.len() as u32;
    let round = |each: usize, started: tokio::time::Instant| {
        let tasks: Vec<_> = clients
            .iter()
            .zip(0u32..)
            .map(|(client, index)| {
                let (client, request) = (client.clone(), request.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(each);
                    for turn in 0..each as u32 {
                        let sent = match pace {
                            Pace::Saturated => tokio::time::Instant::now(),
                            Pace::Rate(rate) => {
                                let due = started + Duration::from_secs_f64(1.0 / rate) * (turn * count + index);
                                tokio::time::sleep_until(due).await;
                                due
                            }
                        };
                        request(client.clone()).await?;
                        latencies.push(sent.elapsed());
                    }
                    Ok::<_, tonic::Status>(latencies)
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.context("a client task")?.context("a request")?);
            }
            Ok::<_, anyhow::Error>(all)
        }
    };
    round(WARM_UP_PER_CLIENT, tokio::time::Instant::now()).await?;
    // A paced schedule starts a little later, so that every client is waiting for it.
    let head_room = if matches!(pace, Pace::Rate(_)) { Duration::from_millis(50) } else { Duration::ZERO };
    let started = tokio::time::Instant::now() + head_room;
    let latencies = round(total.div_ceil(clients.len()), started).await?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok((latencies.len() as f64 / elapsed, latencies))
}

fn percentile(latencies: &mut [Duration], quantile: f64) -> f64 {
    latencies.sort();
    let index = ((latencies.len() as f64 * quantile).ceil() as usize).clamp(1, latencies.len()) - 1;
    latencies[index].as_secs_f64() * 1e3
}

/// A PostgreSQL database made for one run and dropped after it.
struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(admin_url: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let name = format!("unseen_bench_{}_{nanos}", std::process::id());
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(admin_url).await.context("connecting to PostgreSQL")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
        admin.close().await?;
        let (base, _) = admin_url.rsplit_once('/').context("the PostgreSQL URL names no database")?;
        Ok(Self { admin_url: admin_url.to_string(), url: format!("{base}/{name}"), name })
    }

    async fn drop_it(self) -> Result<()> {
        let mut admin = sqlx::AnyConnection::connect(&self.admin_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(())
    }
}
