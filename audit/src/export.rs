//! The export a regulator receives and the verifier that checks it offline
//! (docs/audit-format.md §4).
//!
//! This file is the verifier. [`verify_export`] takes nothing but an export and a public key
//! obtained independently; besides this file it calls only [`verify_checkpoint`] (the signed
//! note, `checkpoint.rs`, §3), [`merkle::root`] and [`merkle::leaf_hash`] (the tree,
//! `merkle.rs`, §2) and [`Entry::canonical_bytes`] (the encoding, `entry.rs`, §1.1). The log
//! that writes exports is `log.rs`; nothing here trusts it.

use serde::{Deserialize, Serialize};

use crate::merkle::{self, Hash};
use crate::{AuditError, Entry, verify_checkpoint};

/// Entries and a signed checkpoint over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// The log's origin.
    pub origin: String,
    /// The signing key's name.
    pub key_name: String,
    /// The signing key, hex (informational: verify against a key obtained independently).
    pub public_key_hex: String,
    /// The index of the first entry included (0 when absent): a range, or a log whose earlier
    /// entries were pruned.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first: u64,
    /// Entries `first …`, in order.
    pub entries: Vec<Entry>,
    /// The leaf hash of every entry of the log, hex, in order, whether or not the entry is
    /// included: they prove the included entries' positions, and name a changed entry.
    pub leaf_hashes: Vec<String>,
    /// The signed checkpoint covering every leaf hash.
    pub checkpoint: String,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedExport {
    /// Entries the checkpoint covers.
    pub size: u64,
    /// The root, hex.
    pub root_hex: String,
    /// The first entry included.
    pub first: u64,
    /// Entries included (`size` for a whole log that was never pruned).
    pub entries: u64,
}

/// Verifies an export offline: the checkpoint's signature under `trusted_public_key`, and that
/// the entries, re-hashed from their canonical bytes, produce the checkpoint's size and root.
/// The steps are those of docs/audit-format.md §4.1, in order.
pub fn verify_export(export: &Export, trusted_public_key: &[u8; 32]) -> Result<VerifiedExport, AuditError> {
    // Step 1: the checkpoint is signed by the trusted key.
    let checkpoint = verify_checkpoint(&export.checkpoint, &export.key_name, trusted_public_key)?;
    // Step 2: same origin, one leaf hash per entry the checkpoint covers, entries within them.
    if checkpoint.origin != export.origin {
        return Err(AuditError::Corrupt(format!(
            "checkpoint origin \"{}\" differs from the export's \"{}\"",
            checkpoint.origin, export.origin
        )));
    }
    if checkpoint.size != export.leaf_hashes.len() as u64 {
        return Err(AuditError::Corrupt(format!(
            "checkpoint covers {} entries, the export has {} leaf hashes",
            checkpoint.size,
            export.leaf_hashes.len()
        )));
    }
    let end = export.first.checked_add(export.entries.len() as u64);
    if end.is_none_or(|end| end > checkpoint.size) {
        return Err(AuditError::Corrupt(format!(
            "entries {}..{} do not fit in the checkpoint's {} entries",
            export.first,
            export.first.saturating_add(export.entries.len() as u64),
            checkpoint.size
        )));
    }
    // Step 3: the leaf hashes hash to the signed root.
    let mut listed = Vec::with_capacity(export.leaf_hashes.len());
    for (index, leaf) in export.leaf_hashes.iter().enumerate() {
        let leaf: Hash = hex::decode(leaf)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| AuditError::Corrupt(format!("leaf hash {index} is not 32 hex bytes")))?;
        listed.push(leaf);
    }
    let root = merkle::root(&listed);
    if root != checkpoint.root {
        return Err(AuditError::Corrupt(
            "the leaf hashes do not hash to the checkpoint's root (entries altered, inserted, removed or reordered)"
                .into(),
        ));
    }
    // Step 4: each included entry hashes to the leaf hash at its position.
    for (offset, entry) in export.entries.iter().enumerate() {
        let index = export.first + offset as u64;
        if merkle::leaf_hash(&entry.canonical_bytes()) != listed[index as usize] {
            return Err(AuditError::Corrupt(format!("entry {index} is not the entry the checkpoint signed")));
        }
    }
    Ok(VerifiedExport {
        size: checkpoint.size,
        root_hex: hex::encode(root),
        first: export.first,
        entries: export.entries.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditLog;
    use crate::fixtures::{entry, new_signer};

    #[test]
    fn a_range_export_proves_its_entries_positions_in_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        for i in 0..10 {
            log.append(&entry(i)).unwrap();
        }
        let signer = new_signer();
        let export = log.export_range(&signer, 4, 7).unwrap();
        assert_eq!((export.first, export.entries.len(), export.leaf_hashes.len()), (4, 3, 10));
        let verified = verify_export(&export, &signer.public_key()).unwrap();
        assert_eq!((verified.size, verified.first, verified.entries), (10, 4, 3));
        assert_eq!(export.entries[0], entry(4));

        // Claiming the entries sit elsewhere, or swapping one for another, names the entry.
        let mut shifted = export.clone();
        shifted.first = 3;
        assert!(verify_export(&shifted, &signer.public_key()).unwrap_err().to_string().contains("entry 3"));
        let mut swapped = export.clone();
        swapped.entries[1] = entry(8);
        assert!(verify_export(&swapped, &signer.public_key()).unwrap_err().to_string().contains("entry 5"));
        let mut overhanging = export.clone();
        overhanging.first = 8;
        let error = verify_export(&overhanging, &signer.public_key()).unwrap_err().to_string();
        assert!(error.contains("entries 8..11 do not fit in the checkpoint's 10 entries"), "{error}");
        assert!(log.export_range(&signer, 10, 20).is_err(), "an empty range is refused");
    }

    #[test]
    fn exports_verify_and_tampering_names_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        for i in 0..10 {
            log.append(&entry(i)).unwrap();
        }
        let signer = new_signer();
        let export = log.export(&signer).unwrap();
        assert_eq!(verify_export(&export, &signer.public_key()).unwrap().size, 10);

        let mut altered = export.clone();
        altered.entries[6].decision = "rejected".into();
        let error = verify_export(&altered, &signer.public_key()).unwrap_err().to_string();
        assert!(error.contains("entry 6"), "{error}");

        let mut reordered = export.clone();
        reordered.entries.swap(2, 3);
        assert!(verify_export(&reordered, &signer.public_key()).is_err());

        let mut truncated = export.clone();
        truncated.entries.pop();
        truncated.leaf_hashes.pop();
        assert!(verify_export(&truncated, &signer.public_key()).unwrap_err().to_string().contains("covers 10"));

        assert!(matches!(verify_export(&export, &new_signer().public_key()), Err(AuditError::InvalidSignature(_))));
        let forged = export.checkpoint.replacen("\n10\n", "\n9\n", 1);
        assert!(verify_checkpoint(&forged, "test.domain", &signer.public_key()).is_err());
    }
}
