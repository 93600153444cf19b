//! Durability with real processes: a domain killed with SIGKILL while a job runs comes back
//! with that job marked `interrupted` (and logged), and serves the next jobs. While the child
//! lives, no other process may open its domain.
//!
//! The test binary runs itself as the child: with `UNSEEN_TEST_CHILD_DOMAIN` set, the test
//! opens that domain, starts a job that spins and prints its id once it is running; the
//! parent kills the child there and reopens the domain.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::principal;
use unseen_gateway::Domain;
use unseen_gateway::identity::Role;
use unseen_runtime::Mode;

const CHILD: &str = "UNSEEN_TEST_CHILD_DOMAIN";
/// What the child prints, with the grant and job ids, once its job runs.
const MARKER: &str = "unseen-child-job-running ";
const TEST: &str = "restart::a_job_running_when_the_domain_is_killed_is_marked_interrupted_and_the_domain_serves_on";

/// The child: a domain with a grant, and a production job that spins until it is killed.
async fn child(dir: &std::path::Path) -> ! {
    let domain = Arc::new(Domain::open(dir, "restart.domain").await.expect("the domain opens"));
    common::register_energy_data(&domain, dir, 300, 9).await;
    let developer = principal("green-tech", Role::Developer);
    let grant = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    let module =
        domain.upload_module(&developer, &grant.id, unseen_samples::modules::RED_TEAM.to_vec()).await.expect("upload");
    let job = domain.run_job(&developer, &grant.id, &module.hash, Mode::Production, "attack=loop").await.expect("run");
    loop {
        let view = domain.job(&developer, &job, Duration::ZERO).await.expect("job");
        if view.state == "running" {
            println!("{MARKER}{} {}", grant.id, job);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_running_when_the_domain_is_killed_is_marked_interrupted_and_the_domain_serves_on() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(std::path::Path::new(&dir)).await;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut process, receiver) = common::spawn_child(TEST, CHILD, dir.path(), MARKER);
    let started = Instant::now();
    let running = receiver.recv_timeout(Duration::from_secs(300)).expect("the child's job starts running");
    let (grant_id, job_id) = running.split_once(' ').expect("grant and job");
    // A second process on the same directory would append to the same log and run the same
    // jobs: refused, naming the holder.
    let refused = Domain::open(dir.path(), "restart.domain").await.expect_err("the domain is in use");
    let expected = format!("in use by process {}", process.0.id());
    assert!(matches!(refused, unseen_gateway::GatewayError::Unavailable(_)), "{refused}");
    assert!(refused.to_string().contains(&expected), "{refused}");
    process.0.kill().expect("SIGKILL the child");
    process.0.wait().expect("reap the child");
    eprintln!("child killed {:.1} s after start, with {job_id} running", started.elapsed().as_secs_f64());

    let domain = Arc::new(Domain::open(dir.path(), "restart.domain").await.expect("the domain reopens"));
    let developer = principal("green-tech", Role::Developer);
    let view = domain.job(&developer, job_id, Duration::ZERO).await.expect("the job is still there");
    assert_eq!(view.state, "interrupted");
    assert!(view.error.contains("run it again"), "{}", view.error);
    let regulator = principal("regulator", Role::Regulator);
    let (_, size) = domain.checkpoint(&regulator).expect("checkpoint");
    let (entries, _) = domain.audit_entries(&regulator, 0, size, job_id).expect("entries of the job");
    let actions: Vec<String> = entries
        .iter()
        .map(|raw| unseen_audit::Entry::from_canonical_bytes(&raw.bytes).expect("a valid entry").action)
        .collect();
    assert!(actions.contains(&"job.interrupt".to_string()), "{actions:?}");

    // The domain serves the next job under the same grant, to completion.
    common::green_energy_job(&domain, &developer, grant_id).await;
    // Reopening again finds nothing more to mark.
    drop(domain);
    let again = Domain::open(dir.path(), "restart.domain").await.expect("reopens");
    let (_, size_after) = again.checkpoint(&regulator).expect("checkpoint");
    let (entries, _) = again.audit_entries(&regulator, 0, size_after, job_id).expect("entries");
    assert_eq!(entries.len(), actions.len(), "an interrupted job is marked once");
}
