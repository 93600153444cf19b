//! What a job is and what it leaves behind: the job the gateway hands the runtime, the switch
//! that stops it, and the report it gets back (outputs, queries, guest log, metering).
//!
//! These are plain data, shared by the host that runs the job ([`crate::host`]) and the contract
//! calls that fill the report as the guest makes them (`abi`), so that `abi` never names the
//! host.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use unseen_policy::{Grant, OutputKind, OutputLineage};

use crate::RuntimeError;
use crate::governed::{DomainTable, Mode};

/// What to run: a module, under a grant (whose limits apply), over the grant's tables, in a mode.
#[derive(Debug, Clone, Copy)]
pub struct JobSpec<'a> {
    /// The module's bytes (validated at upload).
    pub module: &'a [u8],
    /// The grant it runs under.
    pub grant: &'a Grant,
    /// The domain's tables; only those the grant names are registered.
    pub tables: &'a [DomainTable],
    /// Sample or production data.
    pub mode: Mode,
    /// Parameters the developer passed with the job (the guest reads them with `params`).
    pub params: &'a str,
    /// Seed of the deterministic randomness the guest sees.
    pub seed: u64,
    /// Stops the job when set from another thread.
    pub cancel: &'a CancelFlag,
}

/// One output a module emitted.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The name it was emitted under.
    pub name: String,
    /// Table or artifact.
    pub kind: OutputKind,
    /// The governed result, for tables.
    pub table: Option<RecordBatch>,
    /// The bytes, for artifacts.
    pub artifact: Option<Vec<u8>>,
    /// Host-held lineage, for tables.
    pub lineage: OutputLineage,
}

/// One query a module ran and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryRecord {
    /// The SQL as given.
    pub sql: String,
    /// `allowed`, or the refusing rule.
    pub outcome: String,
    /// The refusal or error message, if any (data-free for refusals).
    pub message: Option<String>,
    /// Rows handed to the module.
    pub rows: u64,
    /// Groups withheld by the threshold.
    pub suppressed_groups: u64,
}

/// What a job cost, so an operator can price by use (docs/policy-basis.md, cost-based pricing).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Metering {
    /// Fuel consumed (about one unit per guest instruction).
    pub fuel: u64,
    /// Largest linear memory the guest reached, bytes.
    pub peak_memory_bytes: u64,
    /// Queries run (allowed or refused).
    pub queries: u32,
    /// Rows the queries read from the tables' files.
    pub rows_scanned: u64,
    /// Bytes the queries read from the tables' files.
    pub bytes_scanned: u64,
    /// Rows handed to the guest.
    pub rows_returned: u64,
    /// Rows of emitted table outputs.
    pub output_rows: u64,
    /// Bytes handed to the guest and emitted by it.
    pub output_bytes: u64,
    /// Guest log bytes.
    pub log_bytes: u64,
    /// Bytes of Arrow IPC written into guest memory.
    pub transfer_bytes: u64,
    /// Time spent writing them (encode, guest allocation, copy), nanoseconds.
    pub transfer_ns: u64,
    /// Time to instantiate the module, nanoseconds.
    pub instantiate_ns: u64,
    /// Time inside host calls (queries included), nanoseconds.
    pub host_ns: u64,
    /// Time running guest code outside host calls, nanoseconds.
    pub guest_ns: u64,
    /// Wall time of the whole job, milliseconds.
    pub wall_ms: u64,
}

/// Everything a finished job produced. Whether any of it reaches the developer depends on
/// the mode; the gateway decides.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Outputs emitted.
    pub outputs: Vec<JobOutput>,
    /// Guest log lines.
    pub guest_log: Vec<String>,
    /// Queries run.
    pub queries: Vec<QueryRecord>,
    /// Cost.
    pub metering: Metering,
    /// Why the job failed, if it did.
    pub failure: Option<RuntimeError>,
}

/// A switch that stops a running job from another thread: the guest traps at its next epoch
/// check (within [`crate::host::CANCEL_CHECK_TICKS`] ticks) and a query in flight is abandoned. Clones share
/// the switch.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<std::sync::Mutex<Option<String>>>);

impl CancelFlag {
    /// Stops the job; `why` says by whom (it becomes the job's error).
    pub fn cancel(&self, why: &str) {
        let mut reason = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        reason.get_or_insert_with(|| why.to_string());
    }

    /// Why the job was cancelled, if it was.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}
