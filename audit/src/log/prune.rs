//! Pruning: the bodies of the oldest entries go, their leaf hashes stay in a header at the
//! start of the file, so every root, proof and checkpoint is unchanged (docs/audit-format.md
//! §5). Which prefix may go is the gateway's decision (`domain::retention`), not the log's.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use super::{AuditLog, io, refuse_if_failed};
use crate::AuditError;
use crate::merkle;

/// The length field that opens a pruned log's header instead of a record:
/// `[0xFFFFFFFF][u64 BE count][count × 32-byte leaf hash]`.
pub(super) const PRUNED_MARKER: u32 = u32::MAX;

impl AuditLog {
    /// Drops the bodies of entries `[0, upto)`, keeping their leaf hashes: every root, proof
    /// and checkpoint stays as it was, and those entries can no longer be read or exported.
    /// The log file is rewritten beside itself, synced and renamed over the old one, so a
    /// crash leaves either log whole. Appends wait meanwhile. Returns how many entries have
    /// no body now.
    pub fn prune(&self, upto: u64) -> Result<u64, AuditError> {
        let mut state = self.lock()?;
        while state.syncing {
            state = self.synced.wait(state).map_err(|_| AuditError::Corrupt("audit log lock poisoned".into()))?;
        }
        refuse_if_failed(&state)?;
        if upto > state.durable {
            return Err(AuditError::InvalidInput(format!("cannot prune {upto} entries of {}", state.durable)));
        }
        if upto <= state.pruned {
            return Ok(state.pruned);
        }
        let kept_from = state.offsets.get((upto - state.pruned) as usize).copied().unwrap_or(state.end);
        let mut kept = vec![0u8; (state.end - kept_from) as usize];
        state.file.seek(SeekFrom::Start(kept_from)).map_err(io("seeking the audit log"))?;
        state.file.read_exact(&mut kept).map_err(io("reading the audit log"))?;
        let mut header = Vec::with_capacity(pruned_header_len(upto));
        header.extend_from_slice(&PRUNED_MARKER.to_be_bytes());
        header.extend_from_slice(&upto.to_be_bytes());
        for leaf in &state.tree.leaves()[..upto as usize] {
            header.extend_from_slice(leaf);
        }
        let partial = self.path.with_extension("log.partial");
        let mut file = File::create(&partial).map_err(io(format!("creating {}", partial.display())))?;
        file.write_all(&header).and_then(|()| file.write_all(&kept)).map_err(io("writing the pruned log"))?;
        file.sync_all().map_err(io("syncing the pruned log"))?;
        std::fs::rename(&partial, &self.path).map_err(io("replacing the audit log with its pruned copy"))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|dir| dir.sync_all()).map_err(io("syncing the audit directory"))?;
        }
        let file = OpenOptions::new().read(true).write(true).open(&self.path).map_err(io("reopening the audit log"))?;
        state.sync_handle = std::sync::Arc::new(file.try_clone().map_err(io("reopening the audit log"))?);
        state.file = file;
        let dropped = (upto - state.pruned) as usize;
        let shift = header.len() as u64;
        state.offsets = state.offsets[dropped..].iter().map(|offset| offset - kept_from + shift).collect();
        state.end = state.end - kept_from + shift;
        state.pruned = upto;
        // Everything written was in the synced copy.
        state.durable = state.tree.len();
        self.synced.notify_all();
        // The object index is locked only after the log (lookups take them in that order).
        drop(state);
        if let Ok(mut objects) = self.objects.lock() {
            objects.entries.retain(|_, indexes| {
                indexes.retain(|&index| index >= upto);
                !indexes.is_empty()
            });
        }
        Ok(upto)
    }
}

pub(super) fn pruned_header_len(pruned: u64) -> usize {
    if pruned == 0 { 0 } else { 12 + 32 * pruned as usize }
}

/// Reads a pruned log's header into `tree`; returns how many entries it holds (0: none).
pub(super) fn read_pruned_header(bytes: &[u8], tree: &mut merkle::Tree) -> Result<u64, AuditError> {
    if bytes.get(..4) != Some(&PRUNED_MARKER.to_be_bytes()[..]) {
        return Ok(0);
    }
    let count = bytes.get(4..12).and_then(|count| count.try_into().ok()).map(u64::from_be_bytes);
    let leaves = count.and_then(|count| bytes.get(12..12 + 32 * usize::try_from(count).ok()?));
    let (Some(count), Some(leaves)) = (count, leaves) else {
        return Err(AuditError::Corrupt("the pruned log's header is cut short".into()));
    };
    for leaf in leaves.chunks_exact(32) {
        tree.push(leaf.try_into().map_err(|_| AuditError::Corrupt("a pruned leaf hash is not 32 bytes".into()))?);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{entry, new_signer};
    use crate::verify_export;

    #[test]
    fn pruning_drops_old_bodies_and_keeps_every_root_proof_and_later_entry() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        for i in 0..10 {
            log.append(&entry(i)).unwrap();
        }
        let (root, proof) = (log.root(), log.inclusion_proof(2, 10).unwrap());
        let consistency = log.consistency_proof(3, 10).unwrap();
        assert_eq!(log.prune(6).unwrap(), 6);
        assert_eq!((log.len(), log.pruned(), log.root()), (10, 6, root));
        assert_eq!(log.inclusion_proof(2, 10).unwrap(), proof, "a pruned entry's inclusion is still provable");
        assert_eq!(log.consistency_proof(3, 10).unwrap(), consistency);
        assert!(matches!(log.entry(5), Err(AuditError::Pruned { index: 5, pruned: 6 })), "{:?}", log.entry(5));
        assert_eq!(log.entry(6).unwrap(), entry(6));
        assert_eq!(log.raw_entries(0, 10).unwrap().first().map(|raw| raw.index), Some(6));
        assert!(log.contains(&entry(1)).unwrap(), "leaf hashes still recognise old entries");
        assert_eq!(log.prune(3).unwrap(), 6, "pruning never goes back");
        assert!(log.prune(11).is_err());

        // Appends go on after a prune, and everything survives a reopen.
        log.append(&entry(10)).unwrap();
        let signer = new_signer();
        let export = log.export(&signer).unwrap();
        assert_eq!((export.first, export.entries.len()), (6, 5));
        assert_eq!(verify_export(&export, &signer.public_key()).unwrap().size, 11);
        let root = log.root();
        drop(log);
        let reopened = AuditLog::open(dir.path(), "test.domain").unwrap();
        assert_eq!((reopened.len(), reopened.pruned(), reopened.root()), (11, 6, root));
        assert_eq!(reopened.entry(10).unwrap(), entry(10));
        reopened.append(&entry(11)).unwrap();
        assert_eq!(AuditLog::open(dir.path(), "test.domain").unwrap().entry(11).unwrap(), entry(11));
        assert!(!dir.path().join("entries.log.partial").exists());
        // A prune cut short leaves its copy beside the log: the log opens whole and the copy goes.
        std::fs::write(dir.path().join("entries.log.partial"), b"half a copy").unwrap();
        let after_crash = AuditLog::open(dir.path(), "test.domain").unwrap();
        assert_eq!((after_crash.len(), after_crash.pruned()), (12, 6));
        assert!(!dir.path().join("entries.log.partial").exists());
    }
}
