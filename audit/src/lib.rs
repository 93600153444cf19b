//! The tamper-evident audit log regulators verify offline (行为留痕、责任可究).
//!
//! An append-only file of entries, hashed into an RFC 9162 Merkle tree ([`merkle`]), with
//! checkpoints in the C2SP signed-note format signed by the domain's Ed25519 key. An
//! [`Export`] carries entries and a checkpoint; [`verify_export`] needs nothing but the export
//! and the domain's public key.

pub mod merkle;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log's storage failed; the context says doing what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The stored log or an export is inconsistent; the message says where.
    #[error("audit log corrupt: {0}")]
    Corrupt(String),
    /// A signature does not verify under the given key.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// An argument or document is malformed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The entry's body was pruned under the retention period; its leaf hash is kept.
    #[error("entry {index} was pruned: entries before {pruned} are kept as leaf hashes only")]
    Pruned {
        /// The entry asked for.
        index: u64,
        /// Entries before this one have no body any more.
        pruned: u64,
    },
}

/// The length field that opens a pruned log's header instead of a record:
/// `[0xFFFFFFFF][u64 BE count][count × 32-byte leaf hash]`.
const PRUNED_MARKER: u32 = u32::MAX;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AuditError {
    let context = context.into();
    move |source| AuditError::Io { context, source }
}

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

/// The domain's signing key, named as checkpoints name it.
pub struct DomainSigner {
    name: String,
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for DomainSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl DomainSigner {
    /// A signer from a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, AuditError> {
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('+') {
            return Err(AuditError::InvalidInput(format!(
                "key name \"{name}\" must be non-empty, without spaces or '+'"
            )));
        }
        let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| AuditError::InvalidInput("not a PKCS#8 Ed25519 key".into()))?;
        Ok(Self { name: name.to_string(), key_pair })
    }

    /// A fresh PKCS#8 Ed25519 key.
    pub fn generate_pkcs8() -> Result<Vec<u8>, AuditError> {
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map(|document| document.as_ref().to_vec())
            .map_err(|_| AuditError::InvalidInput("could not generate a key".into()))
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.key_pair.public_key().as_ref());
        key
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The signed-note key id: the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(name.as_bytes());
    context.update(b"\n\x01");
    context.update(public_key);
    let digest = context.finish();
    [digest.as_ref()[0], digest.as_ref()[1], digest.as_ref()[2], digest.as_ref()[3]]
}

/// A verified checkpoint: the log's origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Entries in the tree.
    pub size: u64,
    /// The tree's root hash.
    pub root: Hash,
}

/// Signs a checkpoint body as a C2SP signed note.
pub fn sign_checkpoint(origin: &str, size: u64, root: &Hash, signer: &DomainSigner) -> String {
    let body = format!("{origin}\n{size}\n{}\n", BASE64.encode(root));
    let signature = signer.key_pair.sign(body.as_bytes());
    let mut blob = key_id(&signer.name, &signer.public_key()).to_vec();
    blob.extend_from_slice(signature.as_ref());
    format!("{body}\n\u{2014} {} {}\n", signer.name, BASE64.encode(blob))
}

/// Verifies a signed checkpoint note against the key `key_name` / `public_key`.
pub fn verify_checkpoint(note: &str, key_name: &str, public_key: &[u8; 32]) -> Result<Checkpoint, AuditError> {
    let (body, signatures) =
        note.split_once("\n\n").ok_or_else(|| AuditError::InvalidInput("checkpoint has no signature block".into()))?;
    let body = format!("{body}\n");
    let wanted_id = key_id(key_name, public_key);
    let mut verified = false;
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else { continue };
        let Some((name, blob)) = rest.split_once(' ') else { continue };
        if name != key_name {
            continue;
        }
        let blob = BASE64.decode(blob).map_err(|_| AuditError::InvalidSignature("signature is not base64".into()))?;
        if blob.len() != 68 || blob[..4] != wanted_id {
            continue;
        }
        UnparsedPublicKey::new(&ED25519, public_key).verify(body.as_bytes(), &blob[4..]).map_err(|_| {
            AuditError::InvalidSignature(format!("checkpoint signature by \"{key_name}\" does not verify"))
        })?;
        verified = true;
    }
    if !verified {
        return Err(AuditError::InvalidSignature(format!("no signature by \"{key_name}\" with the given key")));
    }
    let mut lines = body.lines();
    let origin = lines.next().unwrap_or_default().to_string();
    let size = lines
        .next()
        .and_then(|size| size.parse().ok())
        .ok_or_else(|| AuditError::InvalidInput("checkpoint size is not a number".into()))?;
    let root = lines
        .next()
        .and_then(|root| BASE64.decode(root).ok())
        .and_then(|root| <[u8; 32]>::try_from(root).ok())
        .ok_or_else(|| AuditError::InvalidInput("checkpoint root is not 32 base64 bytes".into()))?;
    Ok(Checkpoint { origin, size, root })
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
            let result = handle.sync_data();
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
            key_name: signer.name.clone(),
            public_key_hex: hex::encode(signer.public_key()),
            first,
            entries,
            leaf_hashes: leaves.iter().map(hex::encode).collect(),
            checkpoint: sign_checkpoint(&self.origin, leaves.len() as u64, &merkle::root(&leaves), signer),
        })
    }

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

fn pruned_header_len(pruned: u64) -> usize {
    if pruned == 0 { 0 } else { 12 + 32 * pruned as usize }
}

/// Reads a pruned log's header into `tree`; returns how many entries it holds (0: none).
fn read_pruned_header(bytes: &[u8], tree: &mut merkle::Tree) -> Result<u64, AuditError> {
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
pub fn verify_export(export: &Export, trusted_public_key: &[u8; 32]) -> Result<VerifiedExport, AuditError> {
    let checkpoint = verify_checkpoint(&export.checkpoint, &export.key_name, trusted_public_key)?;
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

    fn entry(i: i64) -> Entry {
        Entry {
            time_unix_ms: i,
            organisation: "org".into(),
            principal: "p".into(),
            role: "operator".into(),
            action: "scenario.approve".into(),
            object_kind: "grant".into(),
            object_id: format!("g-{i}"),
            object_hash: None,
            grant: Some(format!("g-{i}")),
            decision: "approved".into(),
            reason: "ok".into(),
        }
    }

    fn new_signer() -> DomainSigner {
        DomainSigner::from_pkcs8("test.domain", &DomainSigner::generate_pkcs8().unwrap()).unwrap()
    }

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
