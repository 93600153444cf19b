//! Retention of the audit log: entries outlive the data they describe by the retention period
//! (at least six months), then their bodies may be pruned — the oldest first, never past an
//! entry about a grant still live — while every leaf hash, checkpoint and proof stays valid
//! and the prune is itself an entry.

use std::sync::Arc;

use unseen_audit::merkle;
use unseen_gateway::domain::{DomainOptions, GrantAction};
use unseen_gateway::identity::Role;
use unseen_gateway::{Domain, GatewayError};

use crate::common;

use common::principal;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn key(domain: &Domain) -> [u8; 32] {
    domain.public_key().try_into().expect("a 32-byte Ed25519 key")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock after 1970").as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_older_than_the_retention_are_pruned_up_to_the_first_live_grant_and_every_proof_still_holds() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "test.domain").await.expect("the domain opens"));
    let (developer, operator) = (principal("green-tech", Role::Developer), principal("operator", Role::Operator));
    let regulator = principal("regulator", Role::Regulator);
    common::register_energy_data(&domain, dir.path(), 300, 5).await;
    let ended = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    let job = common::green_energy_job(&domain, &developer, &ended.id).await;
    domain.change_grant(&operator, &ended.id, GrantAction::Terminate, "contract ended").await.expect("terminate");
    let live = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    let (old_note, old_size) = domain.checkpoint(&regulator).expect("a checkpoint");

    // Today, everything is within the retention period: nothing goes, and asking for it is refused.
    let nothing = domain.prune_audit(&operator, None, "monthly", now_ms()).await.expect("prune");
    assert_eq!((nothing.pruned, nothing.newly_pruned, nothing.retention_days), (0, 0, 183));
    let refused = domain.prune_audit(&operator, Some(now_ms()), "monthly", now_ms()).await.unwrap_err();
    assert!(
        matches!(&refused, GatewayError::FailedPrecondition(message) if message.contains("retention period of 183 days")),
        "{refused}"
    );
    assert!(matches!(domain.prune_audit(&developer, None, "x", now_ms()).await, Err(GatewayError::Denied(_))));

    // Two hundred days on: the registrations, the ended grant's whole story, not the live grant's.
    let later = now_ms() + 200 * DAY_MS;
    let outcome = domain.prune_audit(&operator, None, "monthly", later).await.expect("prune");
    assert!(outcome.newly_pruned > 5 && outcome.pruned == outcome.newly_pruned, "{outcome:?}");
    assert!(outcome.stopped_at.contains(&format!("about grant {}", live.id)), "{outcome:?}");
    let (_, size) = domain.checkpoint(&regulator).expect("a checkpoint");
    assert_eq!(size, old_size + 1, "one audit.prune entry more, nothing less");
    let (tail, _) = domain.audit_entries(&regulator, size - 1, size, "").expect("the newest entry");
    let prune = unseen_audit::Entry::from_canonical_bytes(&tail[0].bytes).expect("an entry");
    assert_eq!((prune.action.as_str(), prune.role.as_str()), ("audit.prune", "operator"));
    assert!(prune.reason.contains(&format!("entries 0..{}", outcome.pruned)), "{}", prune.reason);

    // Pruned bodies are gone from lookups; the log still proves it only grew, and exports verify.
    let (about_job, _) = domain.audit_entries(&regulator, 0, 0, &job).expect("lookup");
    assert!(about_job.is_empty(), "the ended grant's job entries were pruned");
    let (listed, _) = domain.audit_entries(&regulator, 0, 10, "").expect("entries");
    assert!(listed.iter().all(|raw| raw.index >= outcome.pruned));
    let old = unseen_audit::verify_checkpoint(&old_note, "test.domain", &key(&domain)).expect("old");
    let (new_note, _) = domain.checkpoint(&regulator).expect("a checkpoint");
    let new = unseen_audit::verify_checkpoint(&new_note, "test.domain", &key(&domain)).expect("new");
    let proof = domain.audit_consistency_proof(&regulator, old.size, new.size).expect("a proof");
    assert!(merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof));
    let export = domain.export_audit(&regulator).expect("export");
    let verified = unseen_audit::verify_export(&export, &key(&domain)).expect("verifies");
    assert_eq!((verified.first, verified.size), (outcome.pruned, size));

    // Pruning again changes nothing, and the domain reopens on the pruned log.
    let again = domain.prune_audit(&operator, None, "monthly", later).await.expect("prune");
    assert_eq!(again.newly_pruned, 0);

    // A grant also ends when it expires (365 days): six months after that, its entries go too,
    // though nobody terminated it.
    let before_expiry = live.expires_at_unix_ms + 100 * DAY_MS;
    let kept = domain.prune_audit(&operator, None, "monthly", before_expiry).await.expect("prune");
    assert_eq!(kept.newly_pruned, 0, "{kept:?}");
    assert!(kept.stopped_at.contains("ended (terminated or expired) less than 183 days ago"), "{kept:?}");
    let after_expiry = live.expires_at_unix_ms + 184 * DAY_MS;
    let expired = domain.prune_audit(&operator, None, "monthly", after_expiry).await.expect("prune");
    assert!(expired.newly_pruned > 0 && !expired.stopped_at.contains("grant"), "{expired:?}");
    let size = domain.checkpoint(&regulator).expect("a checkpoint").1;
    drop(domain);
    let reopened = Domain::open(dir.path(), "test.domain").await.expect("reopens");
    assert_eq!(reopened.checkpoint(&regulator).expect("checkpoint").1, size);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retention_shorter_than_six_months_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = DomainOptions { audit_retention_days: 90, ..DomainOptions::default() };
    let error = Domain::open_with(dir.path(), "test.domain", &options).await.unwrap_err().to_string();
    assert!(error.contains("90 days is shorter than six months (183 days)"), "{error}");
}
