//! The audit log's durability promises, tested with real threads, a real disk and a real
//! `kill -9`: an acknowledged entry is never lost, concurrent appends share fsyncs, and every
//! checkpoint after a crash is consistent with every checkpoint before it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use unseen_audit::merkle::{self, Hash};
use unseen_audit::{AuditLog, DomainSigner, Entry, verify_checkpoint, verify_export};

const CHILD: &str = "UNSEEN_AUDIT_CRASH_CHILD";

fn entry(writer: usize, i: usize) -> Entry {
    Entry {
        time_unix_ms: i as i64,
        organisation: format!("org-{writer}"),
        principal: "writer".into(),
        role: "operator".into(),
        action: "job.finish".into(),
        object_kind: "job".into(),
        object_id: format!("j-{writer}-{i}"),
        object_hash: None,
        grant: None,
        decision: "succeeded".into(),
        reason: "x".repeat(i % 200),
    }
}

fn signer() -> DomainSigner {
    let pkcs8 = DomainSigner::generate_pkcs8().expect("a fresh key");
    DomainSigner::from_pkcs8("test.domain", &pkcs8).expect("the key loads")
}

#[test]
fn concurrent_appends_share_fsyncs_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), "test.domain").unwrap());
    let (writers, each) = (16, 50);
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let log = log.clone();
            std::thread::spawn(move || (0..each).map(|i| log.append(&entry(writer, i)).unwrap()).collect::<Vec<_>>())
        })
        .collect();
    let mut indices: Vec<u64> = threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..(writers * each) as u64).collect::<Vec<_>>(), "every append got its own index");
    assert_eq!(log.len(), (writers * each) as u64);
    let syncs = log.syncs();
    assert!(syncs < (writers * each) as u64, "{syncs} fsyncs for {} appends: group commit shares them", writers * each);
    let root = log.root();
    drop(log);
    let reopened = AuditLog::open(dir.path(), "test.domain").unwrap();
    assert_eq!((reopened.len(), reopened.root()), ((writers * each) as u64, root));
}

/// The child side of the crash test: append from 8 threads forever, printing each index as
/// soon as `append` has acknowledged it.
fn append_until_killed(dir: &str) {
    let log = Arc::new(AuditLog::open(std::path::Path::new(dir), "test.domain").expect("the log opens"));
    let threads: Vec<_> = (0..8)
        .map(|writer| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let index = log.append(&entry(writer, i)).expect("the append is durable");
                    println!("acked {index}");
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

#[test]
fn killed_mid_append_the_log_loses_no_acknowledged_entry_and_stays_consistent() {
    if let Ok(dir) = std::env::var(CHILD) {
        append_until_killed(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let signer = signer();
    let log = AuditLog::open(dir.path(), "test.domain").unwrap();
    for i in 0..10 {
        log.append(&entry(99, i)).unwrap();
    }
    let (before, before_size) = log.checkpoint(&signer).unwrap();
    drop(log);

    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_mid_append_the_log_loses_no_acknowledged_entry_and_stays_consistent",
                "--nocapture",
            ])
            .env(CHILD, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut highest_acked = None;
        let mut acked = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let Ok(line) = line else { break };
            if let Some(index) = line.strip_prefix("acked ") {
                let index: u64 = index.parse().unwrap();
                highest_acked = highest_acked.max(Some(index));
                acked += 1;
                if acked == 300 + round * 97 {
                    child.kill().unwrap(); // SIGKILL: no destructor, no flush
                    break;
                }
            }
        }
        child.wait().unwrap();
        let highest_acked = highest_acked.expect("the child acknowledged appends");

        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        assert!(
            log.len() > highest_acked,
            "round {round}: entry {highest_acked} was acknowledged, the log has {}",
            log.len()
        );
        // The earlier checkpoint is a prefix of the log after the crash.
        let earlier = verify_checkpoint(&before, "test.domain", &signer.public_key()).unwrap();
        let (after, after_size) = log.checkpoint(&signer).unwrap();
        let later = verify_checkpoint(&after, "test.domain", &signer.public_key()).unwrap();
        let proof: Vec<Hash> = log.consistency_proof(before_size, after_size).unwrap();
        assert!(
            merkle::verify_consistency(earlier.size, later.size, &earlier.root, &later.root, &proof),
            "round {round}"
        );
        assert_eq!(verify_export(&log.export(&signer).unwrap(), &signer.public_key()).unwrap().size, after_size);
        // And the log goes on.
        log.append(&entry(98, round)).unwrap();
    }
}
