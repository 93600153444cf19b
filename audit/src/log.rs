//! The log on disk: appends with group commit, reads checked against their leaf hashes,
//! lookups by object, proofs, checkpoints and the exports a regulator verifies
//! (docs/audit-format.md §5). Pruning a prefix's bodies is in [`prune`].

mod prune;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use serde::Deserialize;

use self::prune::{PRUNED_MARKER, pruned_header_len, read_pruned_header};
use crate::merkle::{self, Hash};
use crate::{AuditError, DomainSigner, Entry, Export, sign_checkpoint};

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AuditError {
    let context = context.into();
    move |source| AuditError::Io { context, source }
}

/// One entry as stored: its index, canonical bytes and leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Position in the log, from 0.
    pub index: u64,
    /// The canonical bytes (docs/audit-format.md §1.1).
    pub bytes: Vec<u8>,
    /// SHA-256(0x00 ‖ bytes).
    pub leaf: Hash,
}

/// An append-only log on disk. Records are `[u32 BE length][entry bytes][32-byte leaf hash]`,
/// after an optional header holding the leaf hashes of a pruned prefix (docs/audit-format.md §5).
///
/// Many threads may append at once. An append returns only once its entry is on disk, and
/// appends that arrive while an fsync is running share the next one (group commit): with many
/// writers the log syncs once per batch, not once per entry. Readers (the root, proofs,
/// checkpoints, exports) see only entries already on disk, so a signed checkpoint never covers
/// an entry a crash could take back.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    origin: String,
    recovered_torn_bytes: u64,
    state: Mutex<LogState>,
    synced: Condvar,
    /// Which entries are about which object, for lookups by object; built on the first one.
    objects: Mutex<ObjectIndex>,
    /// Told how long each fsync took ([`AuditLog::observe_syncs`]).
    sync_observer: std::sync::OnceLock<SyncObserver>,
}

/// A function told each fsync's duration: the gateway's metrics, without this crate knowing them.
struct SyncObserver(Box<dyn Fn(std::time::Duration) + Send + Sync>);

impl std::fmt::Debug for SyncObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncObserver")
    }
}

/// The indexes of the entries about each object id, over the log's first `upto` entries.
/// Each lookup first indexes the entries appended since the last, so appends never pay for
/// it and a lookup reads only what is new, not the whole log.
#[derive(Debug, Default)]
struct ObjectIndex {
    upto: u64,
    entries: std::collections::HashMap<Box<str>, Vec<u64>>,
}

/// Entries read from disk per step when a range is read or indexed.
const READ_CHUNK_ENTRIES: u64 = 65_536;

#[derive(Debug)]
struct LogState {
    file: File,
    /// A second handle on the file, synced and read outside the lock while appends go on.
    sync_handle: std::sync::Arc<File>,
    /// Entries before this index have only their leaf hash (pruned); `offsets[i]` is entry
    /// `pruned + i`'s record.
    pruned: u64,
    /// Every written entry's leaf hash and subtrees; the first `durable` entries are on disk.
    tree: merkle::Tree,
    offsets: Vec<u64>,
    /// Where the next record starts.
    end: u64,
    /// Entries known to be on disk.
    durable: u64,
    /// An fsync is running (its leader released the lock to do it).
    syncing: bool,
    /// Fsyncs done, for metering group commit.
    syncs: u64,
    /// Once an fsync or a cut fails, what is on disk is unknown: the log refuses appends.
    failed: Option<String>,
}

impl AuditLog {
    /// Opens or creates the log in `dir`. A torn final record (a crash mid-append) is cut and
    /// counted in [`AuditLog::recovered_torn_bytes`]; damage before the final record is
    /// corruption and an error.
    pub fn open(dir: &Path, origin: &str) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let path = dir.join("entries.log");
        // A prune cut short by a crash left its copy beside the log, which is whole.
        let partial = path.with_extension("log.partial");
        if partial.exists() {
            std::fs::remove_file(&partial).map_err(io(format!("removing {}", partial.display())))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(format!("reading {}", path.display())))?;
        let (mut tree, mut offsets, mut position) = (merkle::Tree::new(), Vec::new(), 0usize);
        let pruned = read_pruned_header(&bytes, &mut tree)?;
        position += pruned_header_len(pruned);
        let mut torn = 0u64;
        while position < bytes.len() {
            let record = parse_record(&bytes[position..]);
            match record {
                Some((length, leaf)) if merkle::leaf_hash(&bytes[position + 4..position + 4 + length]) == leaf => {
                    offsets.push(position as u64);
                    tree.push(leaf);
                    position += 4 + length + 32;
                }
                Some((length, _)) if position + 4 + length + 32 < bytes.len() => {
                    return Err(AuditError::Corrupt(format!(
                        "entry {} at byte {position} does not match its hash",
                        tree.len()
                    )));
                }
                _ => {
                    torn = (bytes.len() - position) as u64;
                    break;
                }
            }
        }
        if torn > 0 {
            file.set_len(position as u64).map_err(io("cutting a torn audit record"))?;
            file.sync_all().map_err(io("syncing the audit log"))?;
        }
        let sync_handle = std::sync::Arc::new(file.try_clone().map_err(io("opening the audit log for syncing"))?);
        let durable = tree.len();
        let state = LogState {
            file,
            sync_handle,
            pruned,
            tree,
            offsets,
            end: position as u64,
            durable,
            syncing: false,
            syncs: 0,
            failed: None,
        };
        Ok(Self {
            path,
            origin: origin.to_string(),
            recovered_torn_bytes: torn,
            state: Mutex::new(state),
            synced: Condvar::new(),
            objects: Mutex::new(ObjectIndex::default()),
            sync_observer: std::sync::OnceLock::new(),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, LogState>, AuditError> {
        self.state.lock().map_err(|_| AuditError::Corrupt("the audit log's lock was poisoned by a panic".into()))
    }

    /// Bytes cut from a torn final record when the log was opened.
    pub fn recovered_torn_bytes(&self) -> u64 {
        self.recovered_torn_bytes
    }

    /// Appends an entry and returns its index once it is on disk.
    pub fn append(&self, entry: &Entry) -> Result<u64, AuditError> {
        let indexes = self.append_all(std::slice::from_ref(entry))?;
        indexes.first().copied().ok_or_else(|| AuditError::Corrupt("an append returned no index".into()))
    }

    /// Appends entries in order and returns their indexes once all are on disk: one wait for
    /// one fsync (shared with concurrent appends) however many there are.
    pub fn append_all(&self, entries: &[Entry]) -> Result<Vec<u64>, AuditError> {
        let mut records = Vec::new();
        let mut lengths = Vec::with_capacity(entries.len());
        let mut leaves = Vec::with_capacity(entries.len());
        for entry in entries {
            let bytes = entry.canonical_bytes();
            let length = u32::try_from(bytes.len())
                .ok()
                .filter(|&length| length != PRUNED_MARKER)
                .ok_or_else(|| AuditError::InvalidInput("entry of 4 GiB or more".into()))?;
            let leaf = merkle::leaf_hash(&bytes);
            records.extend_from_slice(&length.to_be_bytes());
            records.extend_from_slice(&bytes);
            records.extend_from_slice(&leaf);
            lengths.push(bytes.len() as u64 + 36);
            leaves.push(leaf);
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }

        let mut state = self.lock()?;
        refuse_if_failed(&state)?;
        let offset = state.end;
        if let Err(error) = write_at_end(&mut state.file, offset, &records) {
            // Cut whatever part of the records reached the file, so the next append does not
            // land after garbage; if even that fails, stop accepting appends.
            if let Err(cut) = state.file.set_len(offset) {
                state.failed = Some(format!("a failed append could not be cut back: {cut}"));
            }
            return Err(AuditError::Io { context: format!("appending to {}", self.path.display()), source: error });
        }
        let mut indexes = Vec::with_capacity(entries.len());
        let mut at = offset;
        for (length, leaf) in lengths.into_iter().zip(leaves) {
            state.offsets.push(at);
            state.tree.push(leaf);
            indexes.push(state.tree.len() - 1);
            at += length;
        }
        state.end = at;
        let last = state.tree.len() - 1;
        loop {
            if state.durable > last {
                return Ok(indexes);
            }
            refuse_if_failed(&state)?;
            if state.syncing {
                state = self.synced.wait(state).map_err(|_| AuditError::Corrupt("audit log lock poisoned".into()))?;
                continue;
            }
            // Lead this round: sync everything written so far, with the lock released so that
            // more appends can queue up for the next round.
            state.syncing = true;
            let target = state.tree.len();
            let handle = std::sync::Arc::clone(&state.sync_handle);
            drop(state);
            let started = std::time::Instant::now();
            let result = handle.sync_data();
            if let Some(observer) = self.sync_observer.get() {
                (observer.0)(started.elapsed());
            }
            state = self.lock()?;
            state.syncing = false;
            state.syncs += 1;
            match result {
                Ok(()) => state.durable = state.durable.max(target),
                Err(error) => state.failed = Some(format!("fsync of {} failed: {error}", self.path.display())),
            }
            self.synced.notify_all();
        }
    }

    /// Has `observer` told the duration of every later fsync of the log (for metrics); the
    /// first observer set stays.
    pub fn observe_syncs(&self, observer: impl Fn(std::time::Duration) + Send + Sync + 'static) {
        let _ = self.sync_observer.set(SyncObserver(Box::new(observer)));
    }

    /// Fsyncs done since the log was opened (with group commit, fewer than appends).
    pub fn syncs(&self) -> u64 {
        self.lock().map(|state| state.syncs).unwrap_or(0)
    }

    /// Entries on disk.
    pub fn len(&self) -> u64 {
        self.lock().map(|state| state.durable).unwrap_or(0)
    }

    /// Whether the log has no entry on disk.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an entry with exactly these canonical bytes is on disk: compares leaf hashes in
    /// memory, newest first, reading nothing from disk.
    pub fn contains(&self, entry: &Entry) -> Result<bool, AuditError> {
        let leaf = merkle::leaf_hash(&entry.canonical_bytes());
        let state = self.lock()?;
        Ok(state.tree.leaves()[..state.durable as usize].iter().rev().any(|known| *known == leaf))
    }

    /// The leaf hashes of the entries on disk.
    fn durable_leaves(&self) -> Result<Vec<Hash>, AuditError> {
        let state = self.lock()?;
        Ok(state.tree.leaves()[..state.durable as usize].to_vec())
    }

    /// The current tree root (of the entries on disk).
    pub fn root(&self) -> Hash {
        self.lock().map(|state| state.tree.root(state.durable)).unwrap_or_else(|_| merkle::root(&[]))
    }

    /// Entries `[start, end)` as stored, read back from disk and checked against their hashes;
    /// pruned entries (before [`AuditLog::pruned`]) are left out.
    pub fn raw_entries(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, AuditError> {
        let end = end.min(self.len());
        let mut entries = Vec::with_capacity(end.saturating_sub(start).min(READ_CHUNK_ENTRIES) as usize);
        let mut from = start.max(self.pruned());
        while from < end {
            let to = end.min(from + READ_CHUNK_ENTRIES);
            entries.extend(self.read_span(from, to)?);
            from = to;
        }
        Ok(entries)
    }

    /// Entries before this index were pruned: only their leaf hashes are kept.
    pub fn pruned(&self) -> u64 {
        self.lock().map(|state| state.pruned).unwrap_or(0)
    }

    /// Every entry about `object_id` that was not pruned, as [`AuditLog::raw_entries`] gives
    /// them, found in the object index (which first takes in the entries appended since the
    /// last lookup).
    pub fn raw_entries_about(&self, object_id: &str) -> Result<Vec<RawEntry>, AuditError> {
        let indexes = {
            let mut objects =
                self.objects.lock().map_err(|_| AuditError::Corrupt("the object index's lock was poisoned".into()))?;
            let (pruned, durable) = {
                let state = self.lock()?;
                (state.pruned, state.durable)
            };
            let mut from = objects.upto.max(pruned);
            while from < durable {
                let to = durable.min(from + READ_CHUNK_ENTRIES);
                let span = match self.read_span(from, to) {
                    // Pruned meanwhile: what was pruned needs no index.
                    Err(AuditError::Pruned { pruned, .. }) => {
                        from = pruned;
                        continue;
                    }
                    span => span?,
                };
                // A chunk goes in whole or not at all, so a failed lookup leaves no duplicate
                // behind for the next one.
                let ids = span.iter().map(|raw| object_id_of(&raw.bytes)).collect::<Result<Vec<_>, _>>()?;
                for (raw, id) in span.iter().zip(ids) {
                    match objects.entries.get_mut(id.as_ref()) {
                        Some(indexes) => indexes.push(raw.index),
                        None => {
                            objects.entries.insert(id.into(), vec![raw.index]);
                        }
                    }
                }
                objects.upto = to;
                from = to;
            }
            objects.entries.get(object_id).cloned().unwrap_or_default()
        };
        let pruned = self.pruned();
        indexes
            .into_iter()
            .filter(|&index| index >= pruned)
            .map(|index| self.raw_entry(index).map(|(bytes, leaf)| RawEntry { index, bytes, leaf }))
            .collect()
    }

    /// Entries `[start, end)`, which must be on disk and not pruned, in one read. The offsets
    /// and the handle are taken together under the lock: a prune replaces the file and its
    /// offsets, but the handle keeps the file the offsets are into. The read runs without the
    /// lock, so appends do not wait for it.
    fn read_span(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, AuditError> {
        use std::os::unix::fs::FileExt;
        if start >= end {
            return Ok(Vec::new());
        }
        let (first_offset, end_offset, leaves, file) = {
            let state = self.lock()?;
            if end > state.durable {
                return Err(AuditError::InvalidInput(format!("no entry {}", end - 1)));
            }
            if start < state.pruned {
                return Err(AuditError::Pruned { index: start, pruned: state.pruned });
            }
            let offset = |index: u64| state.offsets.get((index - state.pruned) as usize).copied().unwrap_or(state.end);
            let leaves = state.tree.leaves()[start as usize..end as usize].to_vec();
            (offset(start), offset(end), leaves, std::sync::Arc::clone(&state.sync_handle))
        };
        let mut bytes = vec![0u8; (end_offset - first_offset) as usize];
        file.read_exact_at(&mut bytes, first_offset).map_err(io("reading the audit log"))?;
        let mut entries = Vec::with_capacity(leaves.len());
        let mut position = 0usize;
        for (index, leaf) in (start..end).zip(leaves) {
            let changed = || AuditError::Corrupt(format!("entry {index} changed on disk"));
            let (length, _) = parse_record(&bytes[position..]).ok_or_else(changed)?;
            let body = &bytes[position + 4..position + 4 + length];
            if merkle::leaf_hash(body) != leaf {
                return Err(changed());
            }
            entries.push(RawEntry { index, bytes: body.to_vec(), leaf });
            position += 4 + length + 32;
        }
        Ok(entries)
    }

    fn raw_entry(&self, index: u64) -> Result<(Vec<u8>, Hash), AuditError> {
        let raw = self
            .read_span(index, index + 1)?
            .pop()
            .ok_or_else(|| AuditError::InvalidInput(format!("no entry {index}")))?;
        Ok((raw.bytes, raw.leaf))
    }

    /// Reads entry `index` back from disk.
    pub fn entry(&self, index: u64) -> Result<Entry, AuditError> {
        let (bytes, _) = self.raw_entry(index)?;
        Entry::from_canonical_bytes(&bytes)
    }

    /// The inclusion proof of entry `index` in the tree of the first `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        let state = self.lock()?;
        if index >= size || size > state.durable {
            return Err(AuditError::InvalidInput(format!("no entry {index} in a tree of {size}")));
        }
        Ok(state.tree.inclusion_proof(index, size))
    }

    /// The consistency proof between the trees of `old` and `new` entries.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        let state = self.lock()?;
        if old == 0 || old > new || new > state.durable {
            return Err(AuditError::InvalidInput(format!("no consistency proof from {old} to {new}")));
        }
        Ok(state.tree.consistency_proof(old, new))
    }

    /// A signed checkpoint of the entries on disk, and how many it covers.
    pub fn checkpoint(&self, signer: &DomainSigner) -> Result<(String, u64), AuditError> {
        let (size, root) = {
            let state = self.lock()?;
            (state.durable, state.tree.root(state.durable))
        };
        Ok((sign_checkpoint(&self.origin, size, &root, signer), size))
    }

    /// The log's entries on disk (those not pruned) as an export a regulator can verify
    /// offline.
    pub fn export(&self, signer: &DomainSigner) -> Result<Export, AuditError> {
        self.export_entries(signer, 0, u64::MAX, true)
    }

    /// Entries `[start, end)` (clamped to what is on disk and not pruned) as an export: the
    /// entries, every leaf hash of the log and a checkpoint over all of them, so that the
    /// range is proven to be exactly those entries at exactly those positions.
    pub fn export_range(&self, signer: &DomainSigner, start: u64, end: u64) -> Result<Export, AuditError> {
        self.export_entries(signer, start, end, false)
    }

    fn export_entries(&self, signer: &DomainSigner, start: u64, end: u64, whole: bool) -> Result<Export, AuditError> {
        let leaves = self.durable_leaves()?;
        let first = start.max(self.pruned());
        let end = end.min(leaves.len() as u64).max(if whole { first } else { 0 });
        if first > end || (first == end && !whole) {
            return Err(AuditError::InvalidInput(format!(
                "no entries to export in [{start}, {end}): the log has {} entries, {} pruned",
                leaves.len(),
                self.pruned()
            )));
        }
        let entries = (first..end).map(|index| self.entry(index)).collect::<Result<Vec<_>, _>>()?;
        Ok(Export {
            origin: self.origin.clone(),
            key_name: signer.name().to_string(),
            public_key_hex: hex::encode(signer.public_key()),
            first,
            entries,
            leaf_hashes: leaves.iter().map(hex::encode).collect(),
            checkpoint: sign_checkpoint(&self.origin, leaves.len() as u64, &merkle::root(&leaves), signer),
        })
    }
}

fn refuse_if_failed(state: &LogState) -> Result<(), AuditError> {
    match &state.failed {
        Some(reason) => Err(AuditError::Corrupt(format!("the log refuses appends until restarted: {reason}"))),
        None => Ok(()),
    }
}

fn write_at_end(file: &mut File, offset: u64, record: &[u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(record)
}

/// The `object_id` of an entry's canonical bytes, without decoding the rest.
fn object_id_of(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, AuditError> {
    #[derive(Deserialize)]
    struct ObjectOnly<'a> {
        #[serde(borrow)]
        object_id: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<ObjectOnly<'_>>(bytes)
        .map(|entry| entry.object_id)
        .map_err(|error| AuditError::Corrupt(format!("entry is not canonical JSON: {error}")))
}

fn parse_record(bytes: &[u8]) -> Option<(usize, Hash)> {
    let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let leaf: Hash = bytes.get(4 + length..4 + length + 32)?.try_into().ok()?;
    Some((length, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::entry;

    #[test]
    fn contains_finds_exactly_the_appended_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        for i in 0..5 {
            log.append(&entry(i)).unwrap();
        }
        assert!(log.contains(&entry(0)).unwrap() && log.contains(&entry(4)).unwrap());
        assert!(!log.contains(&entry(5)).unwrap());
        let changed = Entry { reason: "ok.".into(), ..entry(2) };
        assert!(!log.contains(&changed).unwrap(), "one changed field is another entry");
    }

    #[test]
    fn entries_appended_together_are_in_order_on_disk_after_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        log.append(&entry(0)).unwrap();
        let syncs = log.syncs();
        let batch: Vec<Entry> = (1..=20).map(entry).collect();
        assert_eq!(log.append_all(&batch).unwrap(), (1..=20).collect::<Vec<u64>>());
        assert_eq!(log.syncs(), syncs + 1, "one fsync for the whole batch");
        assert!(log.append_all(&[]).unwrap().is_empty());
        let root = log.root();
        drop(log);
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        assert_eq!((log.len(), log.root()), (21, root));
        assert_eq!(log.entry(7).unwrap(), entry(7));
    }

    #[test]
    fn reopening_keeps_every_entry_and_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        for i in 0..100 {
            assert_eq!(log.append(&entry(i)).unwrap(), i as u64);
        }
        let root = log.root();
        drop(log);
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        assert_eq!((log.len(), log.root(), log.recovered_torn_bytes()), (100, root, 0));
        assert_eq!(log.entry(42).unwrap(), entry(42));
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "o").unwrap();
        log.append(&entry(1)).unwrap();
        drop(log);
        let mut file = OpenOptions::new().append(true).open(dir.path().join("entries.log")).unwrap();
        file.write_all(&[0, 0, 1, 0, b'{', b'"']).unwrap();
        drop(file);
        let log = AuditLog::open(dir.path(), "o").unwrap();
        assert_eq!((log.len(), log.recovered_torn_bytes()), (1, 6));
        log.append(&entry(2)).unwrap();
        assert_eq!(AuditLog::open(dir.path(), "o").unwrap().len(), 2);
    }

    #[test]
    fn lookups_by_object_take_in_new_entries_and_leave_out_pruned_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        let about = |object: &str, i: i64| Entry { object_id: object.into(), ..entry(i) };
        // An id JSON must escape is found like any other.
        let (job, odd) = ("j-1", "任务 \"7\"\\x");
        for i in 0..6 {
            log.append(&about(if i % 2 == 0 { job } else { odd }, i)).unwrap();
        }
        let indexes =
            |object: &str| log.raw_entries_about(object).unwrap().iter().map(|raw| raw.index).collect::<Vec<_>>();
        assert_eq!(indexes(job), [0, 2, 4]);
        assert_eq!(indexes(odd), [1, 3, 5]);
        assert!(indexes("j-2").is_empty());
        // Entries appended after a lookup are found by the next one.
        log.append_all(&[about(job, 6), about("j-2", 7)]).unwrap();
        assert_eq!(indexes(job), [0, 2, 4, 6]);
        assert_eq!(log.raw_entries_about("j-2").unwrap()[0].bytes, about("j-2", 7).canonical_bytes());
        // Pruned entries are left out; later ones are still found, also by a fresh index.
        log.prune(3).unwrap();
        assert_eq!(indexes(job), [4, 6]);
        drop(log);
        let reopened = AuditLog::open(dir.path(), "test.domain").unwrap();
        let found: Vec<u64> = reopened.raw_entries_about(odd).unwrap().iter().map(|raw| raw.index).collect();
        assert_eq!(found, [3, 5]);
        assert_eq!(reopened.raw_entries(0, 8).unwrap().len(), 5);
    }

    #[test]
    fn a_body_changed_on_disk_is_named_when_a_range_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "test.domain").unwrap();
        for i in 0..4 {
            log.append(&entry(i)).unwrap();
        }
        let path = dir.path().join("entries.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|window| window == b"g-2\"").unwrap();
        bytes[at + 2] = b'3';
        std::fs::write(&path, &bytes).unwrap();
        let error = log.raw_entries(0, 4).unwrap_err().to_string();
        assert!(error.contains("entry 2 changed on disk"), "{error}");
        assert!(log.raw_entries_about("g-0").unwrap_err().to_string().contains("entry 2 changed on disk"));
    }
}
