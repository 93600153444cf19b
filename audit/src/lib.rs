//! The tamper-evident audit log regulators verify offline (行为留痕、责任可究).
//!
//! An append-only file of entries, hashed into an RFC 9162 Merkle tree ([`merkle`]), with
//! checkpoints in the C2SP signed-note format signed by the domain's Ed25519 key. An
//! [`Export`] carries entries and a checkpoint; [`verify_export`] needs nothing but the export
//! and the domain's public key.
//!
//! One file per concern, in the order of `docs/audit-format.md`: `entry.rs` (an [`Entry`] and
//! its canonical bytes, §1), `merkle.rs` (the tree and its proofs, §2), `checkpoint.rs` (the
//! [`DomainSigner`] and signed checkpoints, §3), `export.rs` (the [`Export`] and the offline
//! verifier, §4: the file a regulator reads), and `log.rs` (the [`AuditLog`] on disk, its
//! appends, reads, proofs and exports, with pruning in `log/prune.rs`, §5).

mod checkpoint;
mod entry;
mod export;
#[cfg(test)]
mod fixtures;
mod log;
pub mod merkle;

pub use checkpoint::{Checkpoint, DomainSigner, key_id, sign_checkpoint, verify_checkpoint};
pub use entry::Entry;
pub use export::{Export, VerifiedExport, verify_export};
pub use log::{AuditLog, RawEntry};

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
