//! Durability with real processes, mid-workflow: a child domain uploads, runs, requests egress
//! and approves releases in a loop, saying each step once it is acknowledged; the parent kills
//! it with SIGKILL at a different point each round, reopens the domain and checks that nothing
//! acknowledged is lost, that every release it shows is complete and verifies, that no request
//! is left half-decided, and that the audit log still verifies.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::principal;
use unseen_gateway::identity::Role;
use unseen_gateway::{Domain, verify_release};
use unseen_runtime::Mode;

const CHILD: &str = "UNSEEN_TEST_CRASH_DOMAIN";
const NAME: &str = "crash.domain";
const ACK: &str = "unseen-ack ";
const TEST: &str = "crash::a_domain_killed_anywhere_in_the_workflow_keeps_what_it_acknowledged_and_nothing_half_done";
const OUTPUT: &str = "kwh_by_industry_district";

/// The child: set up once, then upload → run → request egress → approve, forever.
async fn child(dir: &std::path::Path) -> ! {
    let domain = Arc::new(Domain::open(dir, NAME).await.expect("the domain opens"));
    let developer = principal("green-tech", Role::Developer);
    let operator = principal("operator", Role::Operator);
    let grant = match domain.list_grants(&operator, "active").await.expect("grants").first() {
        Some(grant) => grant.id.clone(),
        None => {
            common::register_energy_data(&domain, dir, 300, 3).await;
            common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await.id
        }
    };
    loop {
        let module = domain
            .upload_module(&developer, &grant, unseen_samples::modules::GREEN_ENERGY.to_vec())
            .await
            .expect("upload");
        println!("{ACK}module {}", module.hash);
        let job = domain.run_job(&developer, &grant, &module.hash, Mode::Production, "").await.expect("run");
        let view = domain.job(&developer, &job, Duration::from_secs(120)).await.expect("job");
        assert_eq!(view.state, "succeeded", "{}", view.error);
        println!("{ACK}job {job}");
        let egress = domain.request_egress(&developer, &job, OUTPUT).await.expect("egress");
        println!("{ACK}egress {} {}", egress.id, egress.state);
        let decided = domain.decide_egress(&operator, &egress.id, true, "aggregates only").await.expect("approve");
        println!("{ACK}release {} {}", decided.release_id, decided.id);
    }
}

/// Runs the child until it has acknowledged `acks` steps, waits `delay` more, kills it; the
/// steps it acknowledged.
fn run_child_and_kill(dir: &std::path::Path, acks: usize, delay: Duration) -> Vec<String> {
    let (mut process, receiver) = common::spawn_child(TEST, CHILD, dir, ACK);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < acks {
        acknowledged.push(receiver.recv_timeout(Duration::from_secs(300)).expect("the child acknowledges a step"));
    }
    std::thread::sleep(delay);
    process.0.kill().expect("SIGKILL the child");
    process.0.wait().expect("reap the child");
    // Whatever it printed before it died was acknowledged too.
    acknowledged.extend(receiver.try_iter());
    acknowledged
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_killed_anywhere_in_the_workflow_keeps_what_it_acknowledged_and_nothing_half_done() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(std::path::Path::new(&dir)).await;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let developer = principal("green-tech", Role::Developer);
    let operator = principal("operator", Role::Operator);
    let regulator = principal("regulator", Role::Regulator);
    let mut jobs = BTreeSet::new();
    let mut releases = Vec::new();
    // Each round stops at another step of the loop, some of them mid-step.
    for (round, (acks, delay_ms)) in [(3, 0), (5, 15), (6, 60), (4, 150), (7, 5)].into_iter().enumerate() {
        let acknowledged = run_child_and_kill(dir.path(), acks, Duration::from_millis(delay_ms));
        for step in &acknowledged {
            let mut words = step.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some("job"), Some(job), _) => {
                    jobs.insert(job.to_string());
                }
                (Some("release"), Some(release), Some(egress)) => {
                    releases.push((release.to_string(), egress.to_string()))
                }
                _ => {}
            }
        }

        let domain = Domain::open(dir.path(), NAME).await.expect("the domain reopens after SIGKILL");
        let key = domain.public_key();
        for job in &jobs {
            let view = domain.job(&developer, job, Duration::ZERO).await.expect("an acknowledged job is there");
            assert_eq!(view.state, "succeeded", "round {round}: job {job}");
        }
        for (release, egress) in &releases {
            let view = domain.egress(&developer, egress).await.expect("an acknowledged request is there");
            assert_eq!(
                (view.state.as_str(), view.release_id.as_str()),
                ("approved", release.as_str()),
                "round {round}"
            );
        }
        // Every request is settled: none approved without its release, every release complete.
        for view in domain.list_egress(&operator, "").await.expect("requests") {
            match view.state.as_str() {
                "approved" | "auto_released" => {
                    assert!(!view.release_id.is_empty(), "round {round}: {} decided but not released", view.id);
                    let bundle = domain.release_bundle(&developer, &view.release_id).await.expect("the bundle");
                    verify_release(&bundle.manifest, &bundle.signature, &bundle.data, &key).unwrap_or_else(|error| {
                        panic!("round {round}: release {} does not verify: {error}", bundle.id)
                    });
                }
                "awaiting_operator" => assert!(view.release_id.is_empty(), "round {round}"),
                other => panic!("round {round}: request {} is {other}", view.id),
            }
        }
        // The log is whole: its export verifies, holds no entry twice, and every state the
        // store shows has the entry that records how it got there.
        let export = domain.export_audit(&regulator).expect("export");
        let key: [u8; 32] = key.as_slice().try_into().expect("32 bytes");
        unseen_audit::verify_export(&export, &key).unwrap_or_else(|error| panic!("round {round}: {error}"));
        let logged: BTreeSet<(String, String)> =
            export.entries.iter().map(|entry| (entry.object_id.clone(), entry.action.clone())).collect();
        let distinct: BTreeSet<_> = export.leaf_hashes.iter().collect();
        assert_eq!(distinct.len(), export.leaf_hashes.len(), "round {round}: an entry was appended twice");
        for (release, _) in &releases {
            assert!(logged.contains(&(release.clone(), "release.sign".into())), "round {round}: {release} unlogged");
        }
        for job in &jobs {
            for action in ["job.submit", "job.finish"] {
                assert!(logged.contains(&(job.clone(), action.into())), "round {round}: {job} has no {action}");
            }
        }
        for view in domain.list_egress(&operator, "").await.expect("requests") {
            assert!(logged.contains(&(view.id.clone(), "egress.review".into())), "round {round}: {} unlogged", view.id);
            if view.state == "approved" {
                assert!(logged.contains(&(view.id.clone(), "egress.approve".into())), "round {round}: {}", view.id);
            }
        }
        eprintln!(
            "round {round}: killed after {} acknowledged steps; {} releases so far",
            acknowledged.len(),
            releases.len()
        );
    }
    assert!(releases.len() >= 2, "the rounds got as far as releases: {releases:?}");
}

/// The window the kills above rarely hit, made certain: a change committed with its entry, and
/// the domain gone before it appended the entry. The next open appends it, once.
#[tokio::test(flavor = "multi_thread")]
async fn an_entry_committed_with_its_change_reaches_the_log_when_the_domain_reopens() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let regulator = principal("regulator", Role::Regulator);
    let before = {
        let domain = Domain::open(dir.path(), NAME).await.expect("the domain opens");
        common::register_energy_data(&domain, dir.path(), 50, 1).await;
        domain.checkpoint(&regulator).expect("checkpoint").1
    };
    // What `Domain::commit` does up to the append, on the domain's own store.
    let store = unseen_gateway::store::Store::open(&dir.path().join("metadata.sqlite")).await.expect("the store");
    let mut transaction = store.begin().await.expect("begin");
    transaction
        .execute(
            "UPDATE datasets SET sample_path = sample_path WHERE id = $1",
            &[unseen_gateway::store::Param::Text("enterprise@v1")],
        )
        .await
        .expect("update");
    let entry = unseen_audit::Entry {
        time_unix_ms: 1_764_000_000_000,
        organisation: "bureau".into(),
        principal: "someone".into(),
        role: "provider".into(),
        action: "dataset.touch".into(),
        object_kind: "dataset".into(),
        object_id: "enterprise@v1".into(),
        object_hash: None,
        grant: None,
        decision: "touched".into(),
        reason: "committed, never appended".into(),
    };
    transaction.log(entry.clone());
    transaction.commit().await.expect("commit");
    store.close().await;

    for reopening in 0..2 {
        let domain = Domain::open(dir.path(), NAME).await.expect("the domain reopens");
        let (entries, size) = domain.audit_entries(&regulator, 0, 0, "enterprise@v1").expect("entries");
        let found: Vec<_> = entries
            .iter()
            .filter(|raw| unseen_audit::Entry::from_canonical_bytes(&raw.bytes).expect("entry") == entry)
            .collect();
        assert_eq!(found.len(), 1, "reopening {reopening}: the entry is in the log exactly once");
        assert_eq!(size, before + 1, "reopening {reopening}: nothing else was added");
    }
}
