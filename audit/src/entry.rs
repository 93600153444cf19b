//! What one audit entry records, and the canonical bytes that are hashed into the log
//! (docs/audit-format.md §1).

use serde::{Deserialize, Serialize};

use crate::AuditError;

/// One thing that happened: who did what to which object under which policy, the decision
/// and the reason, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Milliseconds since the Unix epoch.
    pub time_unix_ms: i64,
    /// The acting organisation.
    pub organisation: String,
    /// The acting principal.
    pub principal: String,
    /// The principal's role.
    pub role: String,
    /// What was done, `noun.verb` (`scenario.approve`).
    pub action: String,
    /// Kind of the object acted on.
    pub object_kind: String,
    /// Its id.
    pub object_id: String,
    /// Its content hash, when it has one.
    pub object_hash: Option<String>,
    /// The grant the action ran under.
    pub grant: Option<String>,
    /// The decision (`approved`, `refused`, `blocked`, …).
    pub decision: String,
    /// Why, in words; never data values.
    pub reason: String,
}

impl Entry {
    /// The canonical encoding that is hashed: compact JSON with the fields in declaration
    /// order (as above) and no whitespace, UTF-8. Documented in `docs/audit-format.md`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes canonical bytes.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        serde_json::from_slice(bytes)
            .map_err(|error| AuditError::Corrupt(format!("entry is not canonical JSON: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    use super::*;
    use crate::merkle;

    /// The worked example of `docs/audit-format.md`, entry `i`.
    fn documented_entry(i: i64) -> Entry {
        Entry {
            time_unix_ms: 1_790_000_000_000 + i,
            organisation: "huzhou-data-group".into(),
            principal: "reviewer".into(),
            role: "operator".into(),
            action: "egress.release".into(),
            object_kind: "release".into(),
            object_id: format!("r-{i}"),
            object_hash: (i == 1).then(|| "ab".repeat(32)),
            grant: Some("g-1".into()),
            decision: "released".into(),
            reason: "k=10; 7 cells suppressed\tby \"threshold\" — 阈值".into(),
        }
    }

    #[test]
    fn the_documented_worked_example_is_what_the_code_computes() {
        let doc = include_str!("../../docs/audit-format.md");
        let entries: Vec<Entry> = (0..3).map(documented_entry).collect();
        let mut tree = merkle::Tree::new();
        for entry in &entries {
            let bytes = entry.canonical_bytes();
            assert!(doc.contains(std::str::from_utf8(&bytes).unwrap()), "canonical bytes of {}", entry.object_id);
            let leaf = merkle::leaf_hash(&bytes);
            assert!(doc.contains(&hex::encode(leaf)), "leaf hash of {}", entry.object_id);
            tree.push(leaf);
        }
        assert!(doc.contains(&hex::encode(tree.root(3))), "the root");
        assert!(doc.contains(&BASE64.encode(tree.root(3))), "the root in base64");
    }
}
