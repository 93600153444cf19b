//! Retention of the audit log (docs/policy-basis.md, log retention; docs/audit-format.md §5): entries are never deleted with the data they
//! describe; they are kept at least six months after it is gone, and only then may their
//! bodies be pruned. Pruning keeps every leaf hash, so every root, proof and checkpoint the
//! domain ever signed still verifies, and it is itself an entry.

use std::collections::HashMap;
use std::sync::Arc;

use unseen_audit::Entry;

use super::{AuditEvent, Domain, decode};
use crate::GatewayError;
use crate::identity::{Principal, Role};

/// The least retention allowed: six months after the data an entry describes is gone.
pub const MIN_AUDIT_RETENTION_DAYS: u32 = 183;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The domain's retention in days from its option (0: the least allowed).
pub(super) fn retention_days(option: u32) -> Result<u32, GatewayError> {
    match option {
        0 => Ok(MIN_AUDIT_RETENTION_DAYS),
        days if days < MIN_AUDIT_RETENTION_DAYS => Err(GatewayError::InvalidInput(format!(
            "an audit retention of {days} days is shorter than six months ({MIN_AUDIT_RETENTION_DAYS} days), the least the rules allow"
        ))),
        days => Ok(days),
    }
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Entries without a body now (all of `[0, pruned)`).
    pub pruned: u64,
    /// Of those, pruned by this call.
    pub newly_pruned: u64,
    /// Entries from this time on were kept.
    pub cutoff_unix_ms: i64,
    /// The domain's retention.
    pub retention_days: u32,
    /// Why pruning stopped where it did.
    pub stopped_at: String,
}

impl Domain {
    /// Prunes the bodies of the oldest audit entries (operators): those older than
    /// `before_unix_ms` (None: as old as the retention allows), stopping at the first entry
    /// still within the retention period or about a grant that is live or ended (was
    /// terminated or expired) less than the retention period before `now_unix_ms`. Logs
    /// `audit.prune` first, so the log never lacks the record of a prune.
    pub async fn prune_audit(
        &self,
        who: &Principal,
        before_unix_ms: Option<i64>,
        reason: &str,
        now_unix_ms: i64,
    ) -> Result<PruneOutcome, GatewayError> {
        Self::require(who, Role::Operator)?;
        let retention_days = self.audit_retention_days;
        let limit = now_unix_ms - i64::from(retention_days) * DAY_MS;
        let cutoff = match before_unix_ms {
            Some(before) if before > limit => {
                return Err(GatewayError::FailedPrecondition(format!(
                    "entries newer than {limit} (unix ms) are within the retention period of {retention_days} days (至少六个月); prune before {limit} or earlier"
                )));
            }
            Some(before) => before,
            None => limit,
        };
        let (from, size) = (self.audit.pruned(), self.audit.len());
        let entries = self
            .audit
            .raw_entries(from, size)?
            .into_iter()
            .map(|raw| Entry::from_canonical_bytes(&raw.bytes).map(|entry| (raw.index, entry)))
            .collect::<Result<Vec<_>, _>>()?;
        // A grant ends when it is terminated or when it expires, whichever comes first.
        let mut ended: HashMap<String, i64> = HashMap::new();
        for row in self.store.grants().await? {
            let grant: unseen_policy::Grant = decode(&row.json, "a grant")?;
            ended.insert(row.id, grant.expires_at_unix_ms);
        }
        for (_, entry) in entries.iter().filter(|(_, entry)| entry.action == "grant.terminate") {
            let at = ended.entry(entry.object_id.clone()).or_insert(entry.time_unix_ms);
            *at = (*at).min(entry.time_unix_ms);
        }
        let mut upto = from;
        let mut stopped_at = format!("the end of the log ({size} entries)");
        for (index, entry) in &entries {
            if entry.time_unix_ms >= cutoff {
                stopped_at = format!("entry {index}, the first at or after the cutoff");
                break;
            }
            let grant = entry.grant.as_deref().or((entry.object_kind == "grant").then_some(entry.object_id.as_str()));
            if let Some(grant) = grant
                && ended.get(grant).is_none_or(|&at| at > limit)
            {
                stopped_at = format!(
                    "entry {index}, about grant {grant}, which is live or ended (terminated or expired) less than {retention_days} days ago"
                );
                break;
            }
            upto = index + 1;
        }
        let outcome = |pruned, newly_pruned, stopped_at| PruneOutcome {
            pruned,
            newly_pruned,
            cutoff_unix_ms: cutoff,
            retention_days,
            stopped_at,
        };
        if upto == from {
            return Ok(outcome(from, 0, stopped_at));
        }
        self.append(vec![AuditEvent::new(who, "audit.prune", "audit", "entries").decision("pruned").reason(format!(
                "bodies of entries {from}..{upto} (before {cutoff} unix ms; retention {retention_days} days) pruned, leaf hashes kept; stopped at {stopped_at}; {reason}"
            )).entry()])
        .await?;
        let audit = Arc::clone(&self.audit);
        let pruned = tokio::task::spawn_blocking(move || audit.prune(upto))
            .await
            .map_err(|error| GatewayError::internal("pruning the audit log", error))??;
        Ok(outcome(pruned, upto - from, stopped_at))
    }
}
