//! A grant's life after approval: an operator suspends it (its work stops), resumes it, and
//! terminates it (its jobs stop, its held outputs are deleted, nothing more leaves), and a
//! developer cancels a job that is already running.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::principal;
use unseen_gateway::domain::GrantAction;
use unseen_gateway::identity::{Principal, Role};
use unseen_gateway::{Domain, GatewayError};
use unseen_runtime::Mode;

const OUTPUT: &str = "kwh_by_industry_district";

/// Waits until `job` leaves `state`; its new state.
async fn wait_while(domain: &Domain, who: &Principal, job: &str, state: &str) -> String {
    let started = Instant::now();
    loop {
        let view = domain.job(who, job, Duration::ZERO).await.expect("job");
        if view.state != state {
            return view.state.to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{job} still {state} after a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_stops_work_resuming_restores_it_and_terminating_deletes_what_was_held() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "grants.domain").await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 300, 5).await;
    let developer = principal("green-tech", Role::Developer);
    let operator = principal("operator", Role::Operator);
    let regulator = principal("regulator", Role::Regulator);
    let mut application = unseen_samples::scenarios::green_energy();
    // Only a cancel stops the spinning jobs below before this minute is up.
    application.limits.wall_clock_ms = 60_000;
    let grant = common::granted(&domain, &developer, application).await;

    // An output held in the domain, with an egress request awaiting the operator.
    let held_job = common::green_energy_job(&domain, &developer, &grant.id).await;
    let egress = domain.request_egress(&developer, &held_job, OUTPUT).await.expect("egress");
    assert_eq!(egress.state, "awaiting_operator");
    let held_file = dir.path().join("outputs").join(&held_job).join(format!("{OUTPUT}.parquet"));
    assert!(held_file.exists());

    let spinner =
        domain.upload_module(&developer, &grant.id, unseen_samples::modules::RED_TEAM.to_vec()).await.expect("upload");
    let spin = || domain.run_job(&developer, &grant.id, &spinner.hash, Mode::Production, "attack=loop");

    // The developer cancels a job that is already running.
    let running = spin().await.expect("run");
    assert_eq!(wait_while(&domain, &developer, &running, "queued").await, "running");
    let cancelled = domain.cancel_job(&developer, &running).await.expect("cancel a running job");
    assert_eq!(cancelled.state, "cancelled", "{}", cancelled.error);
    assert!(cancelled.error.contains("cancelled by the developer"), "{}", cancelled.error);

    // Suspension stops the running job and refuses new work and releases.
    let suspended_job = spin().await.expect("run");
    assert_eq!(wait_while(&domain, &developer, &suspended_job, "queued").await, "running");
    let not_yours = domain.change_grant(&developer, &grant.id, GrantAction::Suspend, "mine").await;
    assert!(matches!(not_yours, Err(GatewayError::Denied(_))), "{not_yours:?}");
    let no_reason = domain.change_grant(&operator, &grant.id, GrantAction::Suspend, " ").await;
    assert!(matches!(no_reason, Err(GatewayError::InvalidInput(_))), "{no_reason:?}");
    let view = domain
        .change_grant(&operator, &grant.id, GrantAction::Suspend, "inspection of the developer")
        .await
        .expect("suspend");
    assert_eq!(view.state, "suspended");
    assert_eq!(wait_while(&domain, &developer, &suspended_job, "running").await, "cancelled");
    let stopped = domain.job(&developer, &suspended_job, Duration::ZERO).await.expect("job");
    assert!(stopped.error.contains("suspended by the operator"), "{}", stopped.error);
    let refused = spin().await;
    assert!(matches!(&refused, Err(GatewayError::Denied(message)) if message.contains("suspended")), "{refused:?}");
    let release = domain.decide_egress(&operator, &egress.id, true, "looks fine").await;
    assert!(
        matches!(&release, Err(GatewayError::FailedPrecondition(message)) if message.contains("suspended")),
        "{release:?}"
    );

    // Resumed, work runs again.
    let view =
        domain.change_grant(&operator, &grant.id, GrantAction::Resume, "inspection passed").await.expect("resume");
    assert_eq!(view.state, "active");
    common::green_energy_job(&domain, &developer, &grant.id).await;

    // Terminated: held outputs deleted, the pending request rejected, nothing more runs or leaves.
    let view = domain.change_grant(&operator, &grant.id, GrantAction::Terminate, "contract ended").await.expect("end");
    assert_eq!(view.state, "terminated");
    assert!(!held_file.exists(), "a terminated grant's held outputs are deleted");
    let rejected = domain.egress(&developer, &egress.id).await.expect("egress");
    assert_eq!(rejected.state, "rejected");
    assert!(rejected.reason.contains("terminated"), "{}", rejected.reason);
    let again = domain.request_egress(&developer, &held_job, OUTPUT).await;
    assert!(again.is_err(), "{again:?}");
    let revived = domain.change_grant(&operator, &grant.id, GrantAction::Resume, "please").await;
    assert!(matches!(revived, Err(GatewayError::FailedPrecondition(_))), "{revived:?}");
    let listed = domain.list_grants(&operator, "terminated").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason, "contract ended");

    // Every step is in the log, which termination never shortens.
    let (entries, _) = domain.audit_entries(&regulator, 0, 0, &grant.id).expect("entries");
    let actions: Vec<String> = entries
        .iter()
        .map(|entry| unseen_audit::Entry::from_canonical_bytes(&entry.bytes).expect("an entry").action)
        .collect();
    for action in ["grant.suspend", "grant.resume", "grant.terminate"] {
        assert!(actions.iter().any(|logged| logged == action), "{action} missing from {actions:?}");
    }
    let (about_job, _) = domain.audit_entries(&regulator, 0, 0, &held_job).expect("entries");
    assert!(!about_job.is_empty(), "the deleted output's job keeps its entries");
}
