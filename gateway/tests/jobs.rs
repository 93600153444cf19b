//! The job queue: a worker pool with a per-organisation limit, and cancelling queued and
//! running jobs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::principal;
use unseen_gateway::identity::{Principal, Role};
use unseen_gateway::{Domain, DomainOptions, GatewayError};
use unseen_runtime::Mode;

/// Waits until `job` leaves `state`, or panics after `limit`.
async fn wait_while(domain: &Domain, who: &Principal, job: &str, state: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let view = domain.job(who, job, Duration::ZERO).await.expect("job");
        if view.state != state {
            return view.state;
        }
        assert!(started.elapsed() < limit, "{job} still {state} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_runs_one_job_at_a_time_others_are_not_held_up_and_jobs_cancel() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = DomainOptions { workers: 4, jobs_per_organisation: 1, ..DomainOptions::default() };
    let domain = Arc::new(Domain::open_with(dir.path(), "jobs.domain", &options).await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 300, 4).await;
    let mut grants = Vec::new();
    for organisation in ["green-tech", "blue-data"] {
        let developer = principal(organisation, Role::Developer);
        let mut application = unseen_samples::scenarios::green_energy();
        application.limits.wall_clock_ms = 1_500;
        let grant = common::granted(&domain, &developer, application).await;
        let module = domain
            .upload_module(&developer, &grant.id, unseen_samples::modules::RED_TEAM.to_vec())
            .await
            .expect("upload");
        grants.push((developer, grant.id, module.hash));
    }
    let spin = |index: usize| {
        let domain = Arc::clone(&domain);
        let (developer, grant, module) = grants[index].clone();
        async move { domain.run_job(&developer, &grant, &module, Mode::Production, "attack=loop").await.expect("run") }
    };
    let (green, blue) = (&grants[0].0, &grants[1].0);

    let first = spin(0).await;
    assert_eq!(wait_while(&domain, green, &first, "queued", Duration::from_secs(60)).await, "running");
    let second = spin(0).await;
    let other = spin(1).await;
    // The other organisation's job runs beside the first; green-tech's second waits.
    assert_eq!(wait_while(&domain, blue, &other, "queued", Duration::from_secs(60)).await, "running");
    assert_eq!(domain.job(green, &second, Duration::ZERO).await.expect("job").state, "queued");

    let cancelled = domain.cancel_job(green, &second).await.expect("cancel the queued job");
    assert_eq!(cancelled.state, "cancelled");
    let again = domain.cancel_job(green, &second).await;
    assert!(
        matches!(&again, Err(GatewayError::FailedPrecondition(message)) if message.contains("is cancelled")),
        "{again:?}"
    );
    let not_theirs = domain.cancel_job(blue, &first).await;
    assert!(matches!(not_theirs, Err(GatewayError::NotFound(_))), "{not_theirs:?}");

    // Cancelling the running job frees green-tech's slot: its next job runs; the cancelled
    // queued one never does.
    let third = spin(0).await;
    let stopped = domain.cancel_job(green, &first).await.expect("cancel the running job");
    assert_eq!(stopped.state, "cancelled", "{}", stopped.error);
    assert_ne!(wait_while(&domain, green, &third, "queued", Duration::from_secs(60)).await, "queued");
    wait_while(&domain, green, &third, "running", Duration::from_secs(60)).await;
    assert_eq!(domain.job(green, &second, Duration::ZERO).await.expect("job").state, "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_holding_its_jobs_queues_them_and_starts_none_until_reopened() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let developer = principal("green-tech", Role::Developer);
    let options = DomainOptions { hold_jobs: true, ..DomainOptions::default() };
    let domain = Arc::new(Domain::open_with(dir.path(), "jobs.domain", &options).await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 300, 4).await;
    let grant = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    let module = domain
        .upload_module(&developer, &grant.id, unseen_samples::modules::GREEN_ENERGY.to_vec())
        .await
        .expect("upload");
    let job = domain.run_job(&developer, &grant.id, &module.hash, Mode::Sample, "").await.expect("queued");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(domain.job(&developer, &job, Duration::ZERO).await.expect("job").state, "queued");
    drop(domain);

    // Opened again, as any domain that stopped with jobs queued: the job is interrupted.
    let reopened = Arc::new(Domain::open(dir.path(), "jobs.domain").await.expect("reopens"));
    let view = reopened.job(&developer, &job, Duration::ZERO).await.expect("job");
    assert_eq!(view.state, "interrupted", "{view:?}");
    let again = reopened.run_job(&developer, &grant.id, &module.hash, Mode::Sample, "").await.expect("queued");
    let finished = reopened.job(&developer, &again, Duration::from_secs(120)).await.expect("job");
    assert_eq!(finished.state, "succeeded", "{}", finished.error);
}
