//! Refused requests in the audit log: a role calling another role's service, a probe of
//! another organisation's job or release, a registration or application the domain refused, a
//! decision already taken. A regulator looks for exactly these, so each is an entry
//! (`request.refused`: who, which RPC, the status and the rule's message).
//!
//! A client must not be able to flood the log: each organisation may log a burst of
//! [`BURST`] refusals, then one per [`REFILL`]; refusals over the bound are counted, and the
//! next one logged says how many were not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::identity::Principal;

use super::{AuditEvent, Domain};

/// Refusals an organisation may log at once.
pub const BURST: u32 = 60;
/// How often an organisation earns one more logged refusal.
pub const REFILL: Duration = Duration::from_secs(1);
/// Longest refusal message kept in an entry.
const MAX_REASON_CHARS: usize = 300;

/// Per-organisation token buckets and the refusals each dropped since its last entry.
#[derive(Debug, Default)]
pub(crate) struct RefusalBound {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
    dropped: u64,
}

impl RefusalBound {
    /// Whether `organisation` may log a refusal at `now`; when it may, how many were dropped
    /// before it (and the count starts again).
    fn admit(&self, organisation: &str, now: Instant) -> Option<u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket =
            buckets.entry(organisation.to_string()).or_insert(Bucket { tokens: BURST, refilled: now, dropped: 0 });
        let earned = now.saturating_duration_since(bucket.refilled).as_nanos() / REFILL.as_nanos();
        if earned > 0 {
            bucket.tokens = BURST.min(bucket.tokens.saturating_add(u32::try_from(earned).unwrap_or(u32::MAX)));
            bucket.refilled = now;
        }
        if bucket.tokens == 0 {
            bucket.dropped += 1;
            return None;
        }
        bucket.tokens -= 1;
        Some(std::mem::take(&mut bucket.dropped))
    }
}

impl Domain {
    /// Logs that `who`'s call of `rpc` was refused with `status` (a gRPC code's name) and
    /// `message`, within the organisation's bound. Returns whether an entry was written.
    pub async fn log_refused_request(&self, who: &Principal, rpc: &str, status: &str, message: &str) -> bool {
        let Some(dropped) = self.refusal_bound.admit(&who.organisation, Instant::now()) else {
            self.metrics.refusal_not_logged();
            return false;
        };
        let mut reason: String = message.chars().take(MAX_REASON_CHARS).collect();
        if dropped > 0 {
            reason.push_str(&format!(
                " ({dropped} earlier refusal{} of {} not logged: over the bound of {BURST} at once, one a second)",
                if dropped == 1 { "" } else { "s" },
                who.organisation
            ));
        }
        let entry = AuditEvent::new(who, "request.refused", "rpc", rpc).decision(status).reason(reason).entry();
        match self.append(vec![entry]).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(rpc, "logging a refused request failed: {error}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organisation_logs_a_burst_then_one_a_second_and_the_next_entry_counts_what_was_dropped() {
        let bound = RefusalBound::default();
        let start = Instant::now();
        for _ in 0..BURST {
            assert_eq!(bound.admit("flood", start), Some(0));
        }
        assert_eq!(bound.admit("flood", start), None);
        assert_eq!(bound.admit("flood", start), None);
        // Another organisation is not held up by the first.
        assert_eq!(bound.admit("quiet", start), Some(0));
        // A second later one more is logged, saying two were not.
        assert_eq!(bound.admit("flood", start + REFILL), Some(2));
        assert_eq!(bound.admit("flood", start + REFILL), None);
    }
}
