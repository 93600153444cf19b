//! The workflow of one domain, independent of gRPC: register → apply → approve → upload →
//! run → request egress → review → release. Every state change appends an audit entry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use unseen_audit::{AuditLog, DomainSigner, Entry, Export};
use unseen_policy::identifiers::IdentifierSet;
use unseen_policy::review::{
    EarlierRelease, ReleasedTable, ReviewContext, SubjectSketches, release_noised_table, release_table,
    released_sketches, review_artifact, review_table, review_verification, withheld_sketches,
};
use unseen_policy::{
    ColumnSpec, DatasetVersion, Grant, Outcome, OutputKind, OutputLineage, ReviewReport, ScenarioApplication,
    sha256_hex,
};
use unseen_runtime::{CancelFlag, DomainTable, JobReport, JobSpec, Mode, Runtime, RuntimeConfig, RuntimeError};

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::store::{Param, Store, Transaction};

mod imports;
mod retention;
mod samples;
use imports::JobImport;
pub use imports::{IMPORT_STATES, ImportView, MAX_IMPORT_BYTES};
pub use retention::{MIN_AUDIT_RETENTION_DAYS, PruneOutcome};
pub use samples::{SampleDecision, SampleView};

/// The operating system's random generator as the noise source of differential privacy.
#[derive(Debug)]
pub struct SystemBits(SystemRandom);

impl Default for SystemBits {
    fn default() -> Self {
        Self(SystemRandom::new())
    }
}

impl unseen_policy::noise::RandomBits for SystemBits {
    fn next_u64(&mut self) -> Result<u64, unseen_policy::noise::RandomnessFailed> {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes).map_err(|_| unseen_policy::noise::RandomnessFailed)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

/// A registered dataset version as the store holds it.
#[derive(Debug, Clone)]
pub(crate) struct StoredDataset {
    pub dataset: DatasetVersion,
    /// The real data's file.
    pub path: String,
    /// The file of the sample developers get (or, when none is offered, the last derived).
    pub sample_path: String,
    /// The kind of sample offered to developers; empty when none is.
    pub sample_kind: String,
}

impl StoredDataset {
    fn table(&self) -> DomainTable {
        DomainTable {
            dataset: self.dataset.clone(),
            production_path: self.path.clone().into(),
            sample_path: self.sample_path.clone().into(),
        }
    }
}

/// An open domain: its directory, keys, metadata store, audit log and runtime.
pub struct Domain {
    dir: PathBuf,
    name: String,
    store: Store,
    audit: Arc<AuditLog>,
    signer: DomainSigner,
    release_key: Ed25519KeyPair,
    sample_key: [u8; 32],
    runtime: Arc<Runtime>,
    /// Dataset versions read so far, with their file paths. A version is immutable once
    /// registered (only the sample offered changes, and that forgets the entry), so a job
    /// submission reads it from here instead of the store.
    dataset_versions: std::sync::Mutex<HashMap<String, StoredDataset>>,
    /// Values of each grant's identifier columns, built on its first review.
    identifier_sets: std::sync::Mutex<HashMap<String, Arc<IdentifierSet>>>,
    /// Held while an egress request is reviewed and recorded, so that two requests never
    /// spend the same ε or miss each other's rows in the differencing rule.
    review_lock: tokio::sync::Mutex<()>,
    /// Permits to run a job anywhere in the domain.
    workers: Arc<tokio::sync::Semaphore>,
    /// Permits to run a job, per organisation (created on first use).
    organisation_slots: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// The cancel switch of every job claimed or about to be, by job id, with its grant.
    running_jobs: std::sync::Mutex<HashMap<String, (String, CancelFlag)>>,
    /// Jobs per organisation at once.
    jobs_per_organisation: usize,
    /// Queued jobs wait for a start that never comes ([`DomainOptions::hold_jobs`]).
    hold_jobs: bool,
    /// Days an audit entry is kept after what it describes is gone (at least six months).
    audit_retention_days: u32,
    /// The domain's claim on a PostgreSQL metadata database (none for SQLite, whose file is
    /// in the locked directory).
    _database_claim: Option<crate::store::DatabaseClaim>,
    /// The directory's lock (`domain.lock`), held while the domain is open: a second process
    /// on the same directory would append to the same audit log and run the same jobs. Last,
    /// so it is released after everything else of the domain is dropped.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain").field("dir", &self.dir).field("name", &self.name).finish_non_exhaustive()
    }
}

/// How a domain is opened.
#[derive(Debug, Clone, Default)]
pub struct DomainOptions {
    /// The metadata store: `postgres://…` (or `sqlite://…`); None keeps it in
    /// `metadata.sqlite` in the domain directory.
    pub metadata_url: Option<String>,
    /// Jobs running at once in the whole domain (0: the default, [`DEFAULT_WORKERS`]).
    pub workers: usize,
    /// Jobs one organisation may run at once (0: the default,
    /// [`DEFAULT_JOBS_PER_ORGANISATION`]); the rest wait in `queued`.
    pub jobs_per_organisation: usize,
    /// Days audit entries are kept after what they describe is gone (0: the least allowed,
    /// [`MIN_AUDIT_RETENTION_DAYS`]; fewer is refused).
    pub audit_retention_days: u32,
    /// Accept and queue jobs but start none: the submission path alone, as the gateway
    /// benchmark measures it. Jobs still queued when the domain stops are interrupted on the
    /// next open, like any queued job.
    pub hold_jobs: bool,
}

/// Jobs running at once by default: the runtime's instance pool has 64 slots; a 2-core
/// domain gains nothing from more than a few guests at a time.
pub const DEFAULT_WORKERS: usize = 4;
/// Jobs one organisation may run at once by default, so no developer starves the others.
pub const DEFAULT_JOBS_PER_ORGANISATION: usize = 2;
/// Most jobs running at once: the runtime's pooling allocator has 64 instance slots.
pub const MAX_WORKERS: usize = 64;

/// A dataset registration as the provider states it.
#[derive(Debug, Clone)]
pub struct DatasetRegistration {
    /// Dataset name.
    pub name: String,
    /// Grade.
    pub grade: unseen_policy::Grade,
    /// Subject kind, if a column is tagged subject.
    pub subject_kind: Option<unseen_policy::SubjectKind>,
    /// Columns and tags.
    pub columns: Vec<ColumnSpec>,
}

/// How long cancelling a running job waits for it to stop before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Most audit entries one `audit_entries` call returns.
pub const MAX_AUDIT_ENTRIES: u64 = 10_000;

/// What an operator does to a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantAction {
    /// active → suspended: work stops until it is resumed.
    Suspend,
    /// suspended → active.
    Resume,
    /// → terminated, for good: jobs stop, held outputs are deleted.
    Terminate,
}

impl GrantAction {
    fn past_tense(self) -> &'static str {
        match self {
            Self::Suspend => "suspended",
            Self::Resume => "resumed",
            Self::Terminate => "terminated",
        }
    }
}

/// A grant as an operator sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantView {
    /// Grant id.
    pub id: String,
    /// The scenario it was approved from.
    pub scenario_id: String,
    /// The developer organisation.
    pub developer: String,
    /// active, suspended, expired or terminated.
    pub state: String,
    /// Hex SHA-256 of the frozen grant.
    pub hash: String,
    /// When it stops being usable.
    pub expires_at_unix_ms: i64,
    /// Why it was last suspended, resumed or terminated.
    pub reason: String,
}

fn grant_view(row: &crate::store::Record) -> Result<GrantView, GatewayError> {
    let grant: Grant =
        serde_json::from_str(&row["json"]).map_err(|error| GatewayError::internal("decoding a grant", error))?;
    let state = if row["state"] == "active" && now_ms() >= grant.expires_at_unix_ms {
        "expired".to_string()
    } else {
        row["state"].clone()
    };
    Ok(GrantView {
        id: row["id"].clone(),
        scenario_id: row["scenario_id"].clone(),
        developer: row["developer"].clone(),
        state,
        hash: row["hash"].clone(),
        expires_at_unix_ms: grant.expires_at_unix_ms,
        reason: row["reason"].clone(),
    })
}

fn remove_if_present(path: &Path) -> Result<(), GatewayError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(GatewayError::internal(&format!("deleting {}", path.display()), error)),
    }
}

/// A job accepted and waiting for its blocking thread: everything `execute_job` needs.
struct QueuedJob {
    id: String,
    /// The approved grant with the job's imports joined ([`Grant::with_imports`]).
    grant: Grant,
    tables: Vec<DomainTable>,
    /// Approved imports, decrypted when the job is claimed.
    imports: Vec<JobImport>,
    module_path: String,
    mode: Mode,
    params: String,
}

/// A job as the developer may see it; `mode` decides how much is filled in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Grant it ran under.
    pub grant_id: String,
    /// `sample` or `production`.
    pub mode: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, or `interrupted` (the domain
    /// stopped under it).
    pub state: String,
    /// Data-free in production.
    pub error: String,
    /// Outputs; contents only in sample mode.
    pub outputs: Vec<OutputSummary>,
    /// Guest log; only in sample mode.
    pub guest_log: Vec<String>,
    /// Queries and their outcomes.
    pub queries: Vec<unseen_runtime::QueryRecord>,
    /// Metering.
    pub metering: unseen_runtime::Metering,
}

/// One output of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputSummary {
    /// Output name.
    pub name: String,
    /// `table`, `artifact` or `verification`.
    pub kind: String,
    /// Rows (tables).
    pub rows: u64,
    /// Groups withheld by the engine's threshold.
    pub suppressed_groups: u64,
    /// CSV or artifact bytes; empty unless sample mode.
    pub content: Vec<u8>,
    /// In sample mode, why the content is not shown (the contract or content rule stopped
    /// it); empty when it is.
    pub withheld: String,
}

/// An egress request and its review.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EgressView {
    /// Request id.
    pub id: String,
    /// Job.
    pub job_id: String,
    /// Output.
    pub output_name: String,
    /// `auto_released`, `awaiting_operator`, `approved`, `rejected`, `blocked`.
    pub state: String,
    /// The reviewer's report.
    pub report: ReviewReport,
    /// Release id once released.
    pub release_id: String,
    /// Operator's reason.
    pub reason: String,
}

/// The signed manifest of a release bundle (来源可溯、去向可查).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// Release id.
    pub release_id: String,
    /// The domain that signed it.
    pub domain: String,
    /// Output name.
    pub output: String,
    /// Hex SHA-256 of the released data file.
    pub data_sha256: String,
    /// Hex SHA-256 of the module that computed it.
    pub module_sha256: String,
    /// Grant id and hash.
    pub grant_id: String,
    /// Hex SHA-256 of the grant.
    pub grant_sha256: String,
    /// Dataset versions read, with content hashes.
    pub datasets: Vec<(String, String)>,
    /// The developer's own imported tables the job read (社会数据): `i-N name@vN` and content
    /// hash. Absent when there were none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<(String, String)>,
    /// Hex SHA-256 of the review report.
    pub report_sha256: String,
    /// Who approved: `auto` or the operator.
    pub approver: String,
    /// When.
    pub released_at_unix_ms: i64,
}

/// A release bundle: manifest bytes, signature and data.
#[derive(Debug, Clone)]
pub struct ReleaseBundle {
    /// Release id.
    pub id: String,
    /// Manifest JSON, exactly the signed bytes.
    pub manifest: Vec<u8>,
    /// Ed25519 signature by the domain key.
    pub signature: Vec<u8>,
    /// Released data (CSV).
    pub data: Vec<u8>,
    /// The domain's public key.
    pub public_key: Vec<u8>,
}

/// Checks a release bundle offline: signature over the manifest by `public_key`, and the
/// data's hash against the manifest.
pub fn verify_release(
    manifest: &[u8],
    signature: &[u8],
    data: &[u8],
    public_key: &[u8],
) -> Result<ReleaseManifest, GatewayError> {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(manifest, signature)
        .map_err(|_| GatewayError::Denied("release signature does not verify under the domain key".into()))?;
    let parsed: ReleaseManifest = serde_json::from_slice(manifest)
        .map_err(|error| GatewayError::InvalidInput(format!("release manifest is not valid JSON: {error}")))?;
    let actual = sha256_hex(data);
    if actual != parsed.data_sha256 {
        return Err(GatewayError::Denied(format!(
            "release data hash {actual} differs from the manifest's {}",
            parsed.data_sha256
        )));
    }
    Ok(parsed)
}

/// An audit entry: `who` did `action` to an object, with the decision and why. It is logged
/// in the transaction that makes the change it records; only a decision that changes nothing
/// stored (a refused upload) is appended on its own.
#[allow(clippy::too_many_arguments)]
fn audit_entry(
    who: &Principal,
    action: &str,
    object_kind: &str,
    object_id: &str,
    object_hash: Option<String>,
    grant: Option<String>,
    decision: &str,
    reason: impl Into<String>,
) -> Entry {
    Entry {
        time_unix_ms: now_ms(),
        organisation: who.organisation.clone(),
        principal: who.name.clone(),
        role: who.role.as_str().to_string(),
        action: action.to_string(),
        object_kind: object_kind.to_string(),
        object_id: object_id.to_string(),
        object_hash,
        grant,
        decision: decision.to_string(),
        reason: reason.into(),
    }
}

/// How many cells a review withheld, with the reviewer's own by rule, for the log: `7 cells
/// suppressed (dominance 2, secondary 3)`. The report itself, with every cell, is hashed into the entry.
fn suppression_summary(report: &ReviewReport) -> String {
    let mut by_rule: Vec<(&str, usize)> = Vec::new();
    for cell in &report.suppressed_cells {
        match by_rule.iter_mut().find(|(rule, _)| *rule == cell.rule) {
            Some((_, count)) => *count += 1,
            None => by_rule.push((&cell.rule, 1)),
        }
    }
    let mut parts: Vec<String> = by_rule.iter().map(|(rule, count)| format!("{rule} {count}")).collect();
    let engine = report.engine_suppressed_cells();
    if engine > 0 {
        parts.insert(0, format!("withheld by the engine {engine}"));
    }
    if !report.suppressed_rows.is_empty() {
        parts.push(format!("{} rows dropped", report.suppressed_rows.len()));
    }
    if parts.is_empty() {
        format!("{} cells suppressed", report.cells_suppressed)
    } else {
        format!("{} cells suppressed ({})", report.cells_suppressed, parts.join(", "))
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or(0)
}

fn io(context: &str) -> impl Fn(std::io::Error) -> GatewayError + '_ {
    move |error| GatewayError::internal(context, error)
}

/// Writes `bytes` to `path` so that a crash never leaves a half-written file visible.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GatewayError> {
    use std::io::Write;
    let temporary = path.with_extension("partial");
    let mut file = std::fs::File::create(&temporary).map_err(io("creating a file"))?;
    file.write_all(bytes).map_err(io("writing a file"))?;
    file.sync_all().map_err(io("syncing a file"))?;
    std::fs::rename(&temporary, path).map_err(io("renaming a file"))
}

/// Takes the lock of a domain directory, or says which process holds it. The lock is the
/// kernel's (flock on `domain.lock`), so it ends with its holder, even one killed with -9.
fn lock_directory(dir: &Path) -> Result<std::fs::File, GatewayError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("domain.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("opening the domain's lock file"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid}"),
            };
            return Err(GatewayError::Unavailable(format!(
                "the domain directory {} is in use by {holder}; stop it first (one process serves a domain at a time)",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(GatewayError::internal("locking the domain directory", error));
        }
    }
    file.set_len(0).map_err(io("writing the domain's lock file"))?;
    file.rewind().map_err(io("writing the domain's lock file"))?;
    writeln!(file, "{}", std::process::id()).map_err(io("writing the domain's lock file"))?;
    Ok(file)
}

fn read_key_or_create(
    path: &Path,
    create: impl FnOnce() -> Result<Vec<u8>, GatewayError>,
) -> Result<Vec<u8>, GatewayError> {
    if path.exists() {
        return std::fs::read(path).map_err(io("reading a domain key"));
    }
    let bytes = create()?;
    write_atomically(path, &bytes)?;
    Ok(bytes)
}

fn parquet_bytes(table: &RecordBatch) -> Result<Vec<u8>, GatewayError> {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, table.schema(), None)
        .map_err(|error| GatewayError::internal("encoding parquet", error))?;
    writer.write(table).map_err(|error| GatewayError::internal("encoding parquet", error))?;
    writer.close().map_err(|error| GatewayError::internal("encoding parquet", error))?;
    Ok(buffer)
}

/// What a job submission's log entry says: the mode, then the parameters and imports if any.
fn submission_detail(mode: &str, params: &str, imports: &[&str]) -> String {
    let mut detail = mode.to_string();
    if !params.is_empty() {
        detail += &format!("; params: {params}");
    }
    if !imports.is_empty() {
        detail += &format!("; imports: {}", imports.join(", "));
    }
    detail
}

/// Every tagged column is in `table` and every column of `table` is tagged.
fn check_tagged_columns(dataset: &DatasetVersion, table: &RecordBatch) -> Result<(), GatewayError> {
    for column in &dataset.columns {
        if table.schema().index_of(&column.name).is_err() {
            return Err(GatewayError::InvalidInput(format!(
                "column \"{}\" is tagged but not in the Parquet file",
                column.name
            )));
        }
    }
    for field in table.schema().fields() {
        if dataset.tag_of(field.name()).is_none() {
            return Err(GatewayError::InvalidInput(format!(
                "column \"{}\" of the Parquet file has no tag; every column needs one",
                field.name()
            )));
        }
    }
    Ok(())
}

fn read_parquet(bytes: Vec<u8>) -> Result<RecordBatch, GatewayError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|error| GatewayError::InvalidInput(format!("not a readable Parquet file: {error}")))?;
    let schema = reader.schema().clone();
    let batches: Vec<RecordBatch> = reader
        .build()
        .map_err(|error| GatewayError::InvalidInput(format!("not a readable Parquet file: {error}")))?
        .collect::<Result<_, _>>()
        .map_err(|error| GatewayError::InvalidInput(format!("corrupt Parquet data: {error}")))?;
    datafusion::arrow::compute::concat_batches(&schema, &batches)
        .map_err(|error| GatewayError::internal("reading parquet", error))
}

/// Renders a table as CSV (what sample outputs and releases carry).
pub fn csv_bytes(table: &RecordBatch) -> Result<Vec<u8>, GatewayError> {
    let mut buffer = Vec::new();
    {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut buffer);
        writer.write(table).map_err(|error| GatewayError::internal("encoding csv", error))?;
    }
    Ok(buffer)
}

impl Domain {
    /// Opens the domain at `dir`, creating its keys, store and log on first use; metadata in
    /// `dir/metadata.sqlite`.
    pub async fn open(dir: &Path, name: &str) -> Result<Self, GatewayError> {
        Self::open_with(dir, name, &DomainOptions::default()).await
    }

    /// [`Domain::open`] with options (a PostgreSQL metadata store, for production).
    pub async fn open_with(dir: &Path, name: &str, options: &DomainOptions) -> Result<Self, GatewayError> {
        std::fs::create_dir_all(dir).map_err(io("creating the domain directory"))?;
        let lock = lock_directory(dir)?;
        for sub in
            ["keys/imports", "datasets", "samples", "modules", "outputs", "egress", "releases", "audit", "imports"]
        {
            std::fs::create_dir_all(dir.join(sub)).map_err(io("creating the domain directory"))?;
        }
        let random = SystemRandom::new();
        let pkcs8 = read_key_or_create(&dir.join("keys/domain.pk8"), || {
            Ed25519KeyPair::generate_pkcs8(&random)
                .map(|document| document.as_ref().to_vec())
                .map_err(|_| GatewayError::Internal("generating the domain key".into()))
        })?;
        let sample_key = read_key_or_create(&dir.join("keys/sample.key"), || {
            let mut key = vec![0u8; 32];
            random.fill(&mut key).map_err(|_| GatewayError::Internal("drawing the sample key".into()))?;
            Ok(key)
        })?;
        let sample_key: [u8; 32] =
            sample_key.try_into().map_err(|_| GatewayError::Internal("keys/sample.key is not 32 bytes".into()))?;
        let release_key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| GatewayError::Internal("keys/domain.pk8 is not an Ed25519 key".into()))?;
        let signer = DomainSigner::from_pkcs8(name, &pkcs8)?;
        let audit = Arc::new(AuditLog::open(&dir.join("audit"), name)?);
        let store = match &options.metadata_url {
            Some(url) => Store::connect(url).await?,
            None => Store::open(&dir.join("metadata.sqlite")).await?,
        };
        let database_claim = store.claim_for_domain().await?;
        let runtime_config = RuntimeConfig { cache_dir: Some(dir.join("cache/modules")), ..RuntimeConfig::default() };
        let runtime = Arc::new(Runtime::with_config(&runtime_config)?);
        let domain = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            _database_claim: database_claim,
            name: name.to_string(),
            store,
            audit,
            signer,
            release_key,
            sample_key,
            runtime,
            identifier_sets: std::sync::Mutex::new(HashMap::new()),
            review_lock: tokio::sync::Mutex::new(()),
            workers: Arc::new(tokio::sync::Semaphore::new(match options.workers {
                0 => DEFAULT_WORKERS,
                workers => workers.min(MAX_WORKERS),
            })),
            organisation_slots: std::sync::Mutex::new(HashMap::new()),
            dataset_versions: std::sync::Mutex::new(HashMap::new()),
            running_jobs: std::sync::Mutex::new(HashMap::new()),
            jobs_per_organisation: match options.jobs_per_organisation {
                0 => DEFAULT_JOBS_PER_ORGANISATION,
                jobs => jobs.min(MAX_WORKERS),
            },
            audit_retention_days: retention::retention_days(options.audit_retention_days)?,
            hold_jobs: options.hold_jobs,
        };
        // First the log catches up with the store; the steps after it read the log.
        domain.append_pending_entries().await?;
        domain.mark_interrupted_jobs().await?;
        domain.finish_interrupted_releases().await?;
        domain.finish_interrupted_terminations().await?;
        domain.sweep_import_files().await?;
        domain.measure_unmeasured_samples().await?;
        Ok(domain)
    }

    /// Jobs that were queued or running when the domain last stopped will never finish: they
    /// are marked `interrupted` (with an audit entry each) so that their developers see it and
    /// run them again. Nothing they produced was acknowledged, so nothing is lost.
    async fn mark_interrupted_jobs(&self) -> Result<(), GatewayError> {
        let stranded = self
            .store
            .fetch("SELECT id, state, grant_id FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_ms", &[])
            .await?;
        for job in stranded {
            let message = format!("interrupted: the domain stopped while the job was {}; run it again", job["state"]);
            let mut transaction = self.store.begin().await?;
            transaction
                .execute(
                    "UPDATE jobs SET state = 'interrupted', error = $1, developer_error = $1 WHERE id = $2",
                    &[Param::Text(&message), Param::Text(&job["id"])],
                )
                .await?;
            transaction.log(Entry {
                time_unix_ms: now_ms(),
                organisation: self.name.clone(),
                principal: "domain".into(),
                role: "domain".into(),
                action: "job.interrupt".into(),
                object_kind: "job".into(),
                object_id: job["id"].clone(),
                object_hash: None,
                grant: Some(job["grant_id"].clone()),
                decision: "interrupted".into(),
                reason: message,
            });
            self.commit(transaction).await?;
        }
        Ok(())
    }

    /// Egress requests whose release was decided (approved by an operator, or passed for
    /// automatic release) but not made when the domain stopped: the decision is in the log (it
    /// committed with the decision), so the release is made now, by the principal who decided
    /// it. A release's row, its link to the request and its log entry commit together, so a
    /// release is never made twice.
    async fn finish_interrupted_releases(&self) -> Result<(), GatewayError> {
        let stranded = self
            .store
            .fetch(
                "SELECT id, state FROM egress WHERE state IN ('approved', 'auto_released') AND release_id = '' \
                 ORDER BY created_ms",
                &[],
            )
            .await?;
        for egress in stranded {
            let egress_id = egress["id"].as_str();
            let decision_action = if egress["state"] == "approved" { "egress.approve" } else { "egress.review" };
            let who = self.logged_actor(egress_id, decision_action)?;
            let approver = if egress["state"] == "approved" {
                format!("{}@{}", who.name, who.organisation)
            } else {
                "auto".into()
            };
            self.release(&who, egress_id, &approver).await?;
        }
        Ok(())
    }

    /// Grants terminated while the domain stopped before their held outputs were deleted and
    /// their imported tables destroyed: that is finished now.
    async fn finish_interrupted_terminations(&self) -> Result<(), GatewayError> {
        let unfinished = self
            .store
            .fetch(
                "SELECT id, reason FROM grants WHERE state = 'terminated' AND (\
                 id IN (SELECT jobs.grant_id FROM jobs JOIN outputs ON outputs.job_id = jobs.id) OR \
                 id IN (SELECT grant_id FROM imports WHERE state IN ('submitted', 'approved')))",
                &[],
            )
            .await?;
        for grant in unfinished {
            let who = self.logged_actor(&grant["id"], "grant.terminate")?;
            let why = format!("grant {} terminated by the operator: {}", grant["id"], grant["reason"]);
            self.close_grant_outputs(&who, &grant["id"], &why).await?;
        }
        Ok(())
    }

    /// The principal whose latest `action` on `object_id` the log records.
    fn logged_actor(&self, object_id: &str, action: &str) -> Result<Principal, GatewayError> {
        let entry = self
            .audit
            .raw_entries_about(object_id)?
            .iter()
            .rev()
            .filter_map(|raw| Entry::from_canonical_bytes(&raw.bytes).ok())
            .find(|entry| entry.action == action)
            .ok_or_else(|| GatewayError::Internal(format!("the log has no {action} entry for {object_id}")))?;
        Ok(Principal {
            organisation: entry.organisation,
            name: entry.principal,
            role: entry
                .role
                .parse()
                .map_err(|_| GatewayError::Internal(format!("the log names an unknown role \"{}\"", entry.role)))?,
        })
    }

    /// The domain's Ed25519 public key (releases and checkpoints verify under it).
    pub fn public_key(&self) -> Vec<u8> {
        self.release_key.public_key().as_ref().to_vec()
    }

    /// The domain's name (the audit log's origin and the checkpoint key name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Commits `transaction` and appends the entries it logged. The entries were committed
    /// with the changes, so if the domain stops before they are appended, the next open
    /// appends them ([`Domain::append_pending_entries`]).
    async fn commit(&self, transaction: Transaction) -> Result<(), GatewayError> {
        let (keys, entries): (Vec<String>, Vec<Entry>) = transaction.commit().await?.into_iter().unzip();
        self.append(entries).await?;
        for key in keys {
            self.store.settle(key);
        }
        Ok(())
    }

    /// Appends `entries` to the log and returns once they are on disk. The wait for the
    /// fsync is on a blocking thread, so the async workers serve other requests meanwhile and
    /// concurrent appends share one fsync (group commit) instead of taking turns.
    async fn append(&self, entries: Vec<Entry>) -> Result<(), GatewayError> {
        if entries.is_empty() {
            return Ok(());
        }
        let audit = Arc::clone(&self.audit);
        tokio::task::spawn_blocking(move || audit.append_all(&entries))
            .await
            .map_err(|error| GatewayError::internal("appending to the audit log", error))??;
        Ok(())
    }

    /// Appends the entries whose changes committed but which the domain stopped before
    /// appending (each once: an entry already in the log is not appended again).
    async fn append_pending_entries(&self) -> Result<(), GatewayError> {
        for (key, bytes) in self.store.pending_entries().await? {
            let entry = Entry::from_canonical_bytes(&bytes)?;
            if !self.audit.contains(&entry)? {
                self.audit.append(&entry)?;
            }
            self.store.settle(key);
        }
        self.store.delete_settled().await
    }

    /// Runs a decision's state change, whose `sql` names the state it leaves: if no row is
    /// in that state any more, another decision on the object came first and this one fails.
    async fn change_state(
        transaction: &mut Transaction,
        (kind, id): (&str, &str),
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<(), GatewayError> {
        if transaction.execute(sql, params).await? == 0 {
            return Err(GatewayError::FailedPrecondition(format!(
                "{kind} {id} was decided by someone else meanwhile; look at it again"
            )));
        }
        Ok(())
    }

    /// Developers see only their own organisation's objects; to anyone else they do not exist.
    fn require_owner(who: &Principal, row: &crate::store::Record, what: &str) -> Result<(), GatewayError> {
        if who.role == Role::Developer && row["developer"] != who.organisation {
            return Err(GatewayError::NotFound(format!("{what} not found")));
        }
        Ok(())
    }

    fn require(who: &Principal, role: Role) -> Result<(), GatewayError> {
        if who.role != role {
            return Err(GatewayError::Denied(format!(
                "{} \"{}\" of {} may not do this; it needs the {} role",
                who.role.as_str(),
                who.name,
                who.organisation,
                role.as_str()
            )));
        }
        Ok(())
    }

    /// Registers a new dataset version from Parquet bytes and derives its sample: the grade's
    /// default kind, measured by attack and offered only under the grade's thresholds.
    pub async fn register_dataset(
        &self,
        who: &Principal,
        registration: DatasetRegistration,
        parquet: Vec<u8>,
    ) -> Result<(DatasetVersion, u64, SampleView), GatewayError> {
        Self::require(who, Role::Provider)?;
        let content_hash = sha256_hex(&parquet);
        let latest = self
            .store
            .fetch("SELECT MAX(version) AS version FROM datasets WHERE name = $1", &[Param::Text(&registration.name)])
            .await?;
        let version =
            latest.first().and_then(|row| row.get("version")).and_then(|value| value.parse::<u32>().ok()).unwrap_or(0)
                + 1;
        let dataset = DatasetVersion {
            name: registration.name,
            version,
            provider: who.organisation.clone(),
            grade: registration.grade,
            content_hash: content_hash.clone(),
            subject_kind: registration.subject_kind,
            columns: registration.columns,
        };
        dataset.validate()?;
        check_tagged_columns(&dataset, &read_parquet(parquet.clone())?)?;
        let id = dataset.id();
        let path = self.dir.join("datasets").join(format!("{content_hash}.parquet"));
        write_atomically(&path, &parquet)?;
        let kind = unseen_policy::sample::SampleRules::of(dataset.grade).default_kind;
        let (sample_path, report, sample_hash) = self.derive_sample_file(&dataset, &path, kind).await?;
        let offered_kind = if report.offered { kind.as_str() } else { "" };
        let json =
            serde_json::to_string(&dataset).map_err(|error| GatewayError::internal("encoding a dataset", error))?;
        let mut transaction = self.store.begin().await?;
        transaction
            .execute(
                "INSERT INTO datasets (id, name, version, json, path, sample_path, sample_kind, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    Param::Text(&id),
                    Param::Text(&dataset.name),
                    Param::Int(i64::from(version)),
                    Param::Text(&json),
                    Param::Text(&path.to_string_lossy()),
                    Param::Text(&sample_path.to_string_lossy()),
                    Param::Text(offered_kind),
                    Param::Int(now_ms()),
                ],
            )
            .await?;
        let source_rows = report.source_rows;
        transaction.log(audit_entry(
            who,
            "dataset.register",
            "dataset",
            &id,
            Some(content_hash),
            None,
            "registered",
            format!("{source_rows} rows"),
        ));
        self.record_sample(&mut transaction, who, &dataset, &sample_path, &report, &sample_hash).await?;
        self.commit(transaction).await?;
        let offered = report.offered;
        let view = SampleView { dataset: id, kind, offered, report, content_hash: sample_hash };
        Ok((dataset, source_rows, view))
    }

    pub(crate) async fn dataset(&self, id: &str) -> Result<StoredDataset, GatewayError> {
        let known = self.dataset_versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned();
        if let Some(known) = known {
            return Ok(known);
        }
        let row = self
            .store
            .fetch_one(
                "SELECT json, path, sample_path, sample_kind FROM datasets WHERE id = $1",
                &[Param::Text(id)],
                &format!("dataset version \"{id}\""),
            )
            .await?;
        let dataset =
            serde_json::from_str(&row["json"]).map_err(|error| GatewayError::internal("decoding a dataset", error))?;
        let stored = StoredDataset {
            dataset,
            path: row["path"].clone(),
            sample_path: row["sample_path"].clone(),
            sample_kind: row["sample_kind"].clone(),
        };
        self.dataset_versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_string(), stored.clone());
        Ok(stored)
    }

    /// Drops a dataset version's cached row after its offered sample changed.
    fn forget_dataset(&self, id: &str) {
        self.dataset_versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    /// Files a scenario application; returns its id.
    pub async fn submit_scenario(
        &self,
        who: &Principal,
        mut application: ScenarioApplication,
    ) -> Result<String, GatewayError> {
        Self::require(who, Role::Developer)?;
        application.developer = who.organisation.clone();
        let mut datasets = Vec::new();
        for request in &application.datasets {
            datasets.push(self.dataset(&request.dataset).await?.dataset);
        }
        application.validate(|id| datasets.iter().find(|dataset| dataset.id() == id))?;
        let json = serde_json::to_string(&application)
            .map_err(|error| GatewayError::internal("encoding a scenario", error))?;
        let mut transaction = self.store.begin().await?;
        let id = transaction.next_id("s").await?;
        transaction
            .execute(
                "INSERT INTO scenarios (id, developer, state, application_json, created_ms) VALUES ($1, $2, 'submitted', $3, $4)",
                &[Param::Text(&id), Param::Text(&who.organisation), Param::Text(&json), Param::Int(now_ms())],
            )
            .await?;
        transaction.log(audit_entry(
            who,
            "scenario.submit",
            "scenario",
            &id,
            Some(sha256_hex(json.as_bytes())),
            None,
            "submitted",
            application.title.clone(),
        ));
        self.commit(transaction).await?;
        Ok(id)
    }

    /// Lists scenarios, optionally in one state: every scenario for operators, a developer's
    /// own organisation's for developers.
    pub async fn list_scenarios(
        &self,
        who: &Principal,
        state: &str,
    ) -> Result<Vec<crate::store::Record>, GatewayError> {
        let developer = match who.role {
            Role::Operator => "",
            Role::Developer => who.organisation.as_str(),
            _ => return Self::require(who, Role::Operator).map(|()| Vec::new()),
        };
        self.store
            .fetch(
                "SELECT * FROM scenarios WHERE ($1 = '' OR state = $2) AND ($3 = '' OR developer = $4) \
                 ORDER BY created_ms",
                &[Param::Text(state), Param::Text(state), Param::Text(developer), Param::Text(developer)],
            )
            .await
    }

    /// Approves (freezing a grant) or rejects a submitted scenario.
    pub async fn decide_scenario(
        &self,
        who: &Principal,
        scenario_id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<Option<Grant>, GatewayError> {
        Self::require(who, Role::Operator)?;
        let row = self
            .store
            .fetch_one(
                "SELECT * FROM scenarios WHERE id = $1",
                &[Param::Text(scenario_id)],
                &format!("scenario {scenario_id}"),
            )
            .await?;
        if row["state"] != "submitted" {
            return Err(GatewayError::FailedPrecondition(format!(
                "scenario {scenario_id} is {}, not submitted",
                row["state"]
            )));
        }
        if !approve {
            if reason.trim().is_empty() {
                return Err(GatewayError::InvalidInput("a rejection needs a reason".into()));
            }
            let mut transaction = self.store.begin().await?;
            Self::change_state(
                &mut transaction,
                ("scenario", scenario_id),
                "UPDATE scenarios SET state = 'rejected', reason = $1 WHERE id = $2 AND state = 'submitted'",
                &[Param::Text(reason), Param::Text(scenario_id)],
            )
            .await?;
            transaction.log(audit_entry(
                who,
                "scenario.reject",
                "scenario",
                scenario_id,
                None,
                None,
                "rejected",
                reason,
            ));
            self.commit(transaction).await?;
            return Ok(None);
        }
        let application: ScenarioApplication = serde_json::from_str(&row["application_json"])
            .map_err(|error| GatewayError::internal("decoding a scenario", error))?;
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).map_err(|_| GatewayError::Internal("drawing a grant key".into()))?;
        let mut transaction = self.store.begin().await?;
        let grant_id = transaction.next_id("g").await?;
        let grant =
            Grant::freeze(grant_id.clone(), scenario_id.to_string(), application, who.name.clone(), now_ms(), key);
        let hash = grant.hash();
        let json = serde_json::to_string(&grant).map_err(|error| GatewayError::internal("encoding a grant", error))?;
        transaction
            .execute(
                "INSERT INTO grants (id, scenario_id, developer, json, hash, state, created_ms) VALUES ($1, $2, $3, $4, $5, 'active', $6)",
                &[Param::Text(&grant_id), Param::Text(scenario_id), Param::Text(&row["developer"]), Param::Text(&json), Param::Text(&hash), Param::Int(now_ms())],
            )
            .await?;
        Self::change_state(
            &mut transaction,
            ("scenario", scenario_id),
            "UPDATE scenarios SET state = 'approved', reason = $1, grant_id = $2 WHERE id = $3 AND state = 'submitted'",
            &[Param::Text(reason), Param::Text(&grant_id), Param::Text(scenario_id)],
        )
        .await?;
        transaction.log(audit_entry(
            who,
            "scenario.approve",
            "grant",
            &grant_id,
            Some(hash),
            Some(grant_id.clone()),
            "approved",
            reason,
        ));
        self.commit(transaction).await?;
        Ok(Some(grant))
    }

    /// Grants, optionally in one state (operators). A grant past its validity is shown as
    /// `expired` whatever its stored state.
    pub async fn list_grants(&self, who: &Principal, state: &str) -> Result<Vec<GrantView>, GatewayError> {
        Self::require(who, Role::Operator)?;
        let rows = self.store.fetch("SELECT * FROM grants ORDER BY created_ms", &[]).await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            let view = grant_view(&row)?;
            if state.is_empty() || view.state == state {
                views.push(view);
            }
        }
        Ok(views)
    }

    /// An operator suspends, resumes or terminates a grant (each an audit entry).
    ///
    /// Suspending stops its jobs (queued ones are cancelled, running ones stopped) and refuses
    /// new work and releases until it is resumed. Terminating does the same for good, rejects
    /// its egress requests still awaiting an operator and deletes every output it left held in
    /// the domain; releases already made and every log entry stay.
    pub async fn change_grant(
        &self,
        who: &Principal,
        grant_id: &str,
        action: GrantAction,
        reason: &str,
    ) -> Result<GrantView, GatewayError> {
        Self::require(who, Role::Operator)?;
        if reason.trim().is_empty() {
            return Err(GatewayError::InvalidInput(format!(
                "say why the grant is to be {}: the reason goes into the audit log",
                action.past_tense()
            )));
        }
        let row = self
            .store
            .fetch_one("SELECT * FROM grants WHERE id = $1", &[Param::Text(grant_id)], &format!("grant {grant_id}"))
            .await?;
        let current = grant_view(&row)?.state;
        let (from, to): (&[&str], &str) = match action {
            GrantAction::Suspend => (&["active"], "suspended"),
            GrantAction::Resume => (&["suspended"], "active"),
            GrantAction::Terminate => (&["active", "suspended", "expired"], "terminated"),
        };
        if !from.contains(&current.as_str()) {
            return Err(GatewayError::FailedPrecondition(format!(
                "grant {grant_id} is {current}; only a grant that is {} can be {}",
                from.join(" or "),
                action.past_tense()
            )));
        }
        let verb = match action {
            GrantAction::Suspend => "grant.suspend",
            GrantAction::Resume => "grant.resume",
            GrantAction::Terminate => "grant.terminate",
        };
        let why = format!("grant {grant_id} {} by the operator: {reason}", action.past_tense());
        // The state changes first, so no new work starts while the old is being stopped; its
        // queued jobs are cancelled in the same commit.
        let mut transaction = self.store.begin().await?;
        Self::change_state(
            &mut transaction,
            ("grant", grant_id),
            "UPDATE grants SET state = $1, reason = $2 WHERE id = $3 AND state = $4",
            &[Param::Text(to), Param::Text(reason), Param::Text(grant_id), Param::Text(&row["state"])],
        )
        .await?;
        let mut detail = reason.to_string();
        if action != GrantAction::Resume {
            let cancelled = transaction
                .execute(
                    "UPDATE jobs SET state = 'cancelled', error = $1, developer_error = $1 WHERE grant_id = $2 AND state = 'queued'",
                    &[Param::Text(&why), Param::Text(grant_id)],
                )
                .await?;
            let running = self.running_jobs_of(grant_id).len();
            detail = format!("{reason} ({cancelled} queued jobs cancelled, {running} running jobs stopped)");
        }
        transaction.log(audit_entry(
            who,
            verb,
            "grant",
            grant_id,
            Some(row["hash"].clone()),
            Some(grant_id.to_string()),
            to,
            detail,
        ));
        self.commit(transaction).await?;
        if action != GrantAction::Resume {
            for flag in self.running_jobs_of(grant_id) {
                flag.cancel(&why);
            }
        }
        if action == GrantAction::Terminate {
            self.close_grant_outputs(who, grant_id, &why).await?;
        }
        let row = self
            .store
            .fetch_one("SELECT * FROM grants WHERE id = $1", &[Param::Text(grant_id)], &format!("grant {grant_id}"))
            .await?;
        grant_view(&row)
    }

    /// On termination: rejects the grant's egress requests awaiting an operator, deletes its
    /// held outputs and review candidates and destroys its imported tables (key and
    /// ciphertext), files first, then rows with the log entries (so a crash in between leaves
    /// rows that the next open finishes).
    async fn close_grant_outputs(&self, who: &Principal, grant_id: &str, why: &str) -> Result<(), GatewayError> {
        // Running jobs were told to stop; wait for them so none writes an output afterwards.
        let started = tokio::time::Instant::now();
        while self
            .running_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .any(|(grant, _)| grant == grant_id)
            && started.elapsed() < CANCEL_WAIT
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let outputs = self
            .store
            .fetch(
                "SELECT outputs.job_id, outputs.name, outputs.path FROM outputs JOIN jobs ON jobs.id = outputs.job_id \
                 WHERE jobs.grant_id = $1",
                &[Param::Text(grant_id)],
            )
            .await?;
        for output in &outputs {
            remove_if_present(Path::new(&output["path"]))?;
        }
        let candidates = self
            .store
            .fetch(
                "SELECT egress.id FROM egress JOIN jobs ON jobs.id = egress.job_id WHERE jobs.grant_id = $1",
                &[Param::Text(grant_id)],
            )
            .await?;
        for candidate in &candidates {
            remove_if_present(&self.dir.join("egress").join(format!("{}.parquet", candidate["id"])))?;
        }
        let destroyed = self.destroy_grant_imports(grant_id).await?;
        let mut transaction = self.store.begin().await?;
        for import_id in &destroyed {
            transaction
                .execute(
                    "UPDATE imports SET state = 'destroyed', reason = $1 WHERE id = $2",
                    &[Param::Text(why), Param::Text(import_id)],
                )
                .await?;
            transaction.log(audit_entry(
                who,
                "import.destroy",
                "import",
                import_id,
                None,
                Some(grant_id.to_string()),
                "destroyed",
                format!("key and encrypted table destroyed: {why}"),
            ));
        }
        let rejected = transaction
            .execute(
                "UPDATE egress SET state = 'rejected', reason = $1 WHERE state = 'awaiting_operator' AND job_id IN \
                 (SELECT id FROM jobs WHERE grant_id = $2)",
                &[Param::Text(why), Param::Text(grant_id)],
            )
            .await?;
        transaction
            .execute(
                "DELETE FROM outputs WHERE job_id IN (SELECT id FROM jobs WHERE grant_id = $1)",
                &[Param::Text(grant_id)],
            )
            .await?;
        transaction.log(audit_entry(
            who,
            "grant.purge",
            "grant",
            grant_id,
            None,
            Some(grant_id.to_string()),
            "deleted",
            format!(
                "{} held outputs deleted, {rejected} egress requests awaiting an operator rejected, {} imported tables destroyed",
                outputs.len(),
                destroyed.len()
            ),
        ));
        self.commit(transaction).await
    }

    async fn grant_for(&self, who: &Principal, grant_id: &str) -> Result<Grant, GatewayError> {
        let row = self
            .store
            .fetch_one("SELECT * FROM grants WHERE id = $1", &[Param::Text(grant_id)], &format!("grant {grant_id}"))
            .await?;
        Self::require_owner(who, &row, &format!("grant {grant_id}"))?;
        if row["state"] != "active" {
            return Err(GatewayError::Denied(format!(
                "grant {grant_id} is {}; no work may run under it",
                row["state"]
            )));
        }
        let grant: Grant =
            serde_json::from_str(&row["json"]).map_err(|error| GatewayError::internal("decoding a grant", error))?;
        grant.check_usable(now_ms())?;
        Ok(grant)
    }

    /// Validates and stores an uploaded module, bound to a grant.
    pub async fn upload_module(
        &self,
        who: &Principal,
        grant_id: &str,
        bytes: Vec<u8>,
    ) -> Result<unseen_runtime::ModuleInfo, GatewayError> {
        Self::require(who, Role::Developer)?;
        self.grant_for(who, grant_id).await?;
        let runtime = self.runtime.clone();
        let validation = tokio::task::spawn_blocking(move || runtime.validate(&bytes).map(|info| (info, bytes)))
            .await
            .map_err(|error| GatewayError::internal("validating a module", error))?;
        let (info, bytes) = match validation {
            Ok(ok) => ok,
            Err(error) => {
                self.append(vec![audit_entry(
                    who,
                    "module.upload",
                    "module",
                    "-",
                    None,
                    Some(grant_id.to_string()),
                    "refused",
                    error.to_string(),
                )])
                .await?;
                return Err(error.into());
            }
        };
        let path = self.dir.join("modules").join(format!("{}.wasm", info.hash));
        write_atomically(&path, &bytes)?;
        let mut transaction = self.store.begin().await?;
        transaction
            .execute(
                "INSERT INTO modules (hash, developer, grant_id, size, path, created_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(hash, grant_id) DO NOTHING",
                &[Param::Text(&info.hash), Param::Text(&who.organisation), Param::Text(grant_id), Param::Int(info.size as i64), Param::Text(&path.to_string_lossy()), Param::Int(now_ms())],
            )
            .await?;
        transaction.log(audit_entry(
            who,
            "module.upload",
            "module",
            &info.hash,
            Some(info.hash.clone()),
            Some(grant_id.to_string()),
            "accepted",
            format!("{} bytes", info.size),
        ));
        self.commit(transaction).await?;
        Ok(info)
    }

    /// Queues a job and starts it; returns the job id at once.
    pub async fn run_job(
        self: &Arc<Self>,
        who: &Principal,
        grant_id: &str,
        module_hash: &str,
        mode: Mode,
        params: &str,
    ) -> Result<String, GatewayError> {
        Self::require(who, Role::Developer)?;
        if params.len() > unseen_runtime::host::MAX_PARAMS_BYTES {
            return Err(GatewayError::InvalidInput(format!(
                "job parameters are {} bytes; at most {} are accepted",
                params.len(),
                unseen_runtime::host::MAX_PARAMS_BYTES
            )));
        }
        // Three reads at once; their answers are looked at in this order, so a developer who
        // may not use the grant learns nothing about its imports or modules.
        let module_params = [Param::Text(module_hash), Param::Text(&who.organisation), Param::Text(grant_id)];
        let module_name = format!("module {module_hash} bound to grant {grant_id}");
        let (grant, imports, module) = tokio::join!(
            self.grant_for(who, grant_id),
            self.approved_imports(grant_id),
            self.store.fetch_one(
                "SELECT * FROM modules WHERE hash = $1 AND developer = $2 AND grant_id = $3",
                &module_params,
                &module_name,
            )
        );
        let (grant, imports) = (grant?, imports?);
        let datasets: Vec<DatasetVersion> = imports.iter().map(|import| import.dataset.clone()).collect();
        let job_grant = grant.with_imports(&datasets)?;
        let import_ids: Vec<&str> = imports.iter().map(|import| import.id.as_str()).collect();
        let module = module?;
        let mut stored = Vec::new();
        for dataset_id in grant.datasets() {
            stored.push(self.dataset(dataset_id).await?);
        }
        if mode == Mode::Sample {
            Self::require_offered_samples(&stored)?;
        }
        let mode_name = match mode {
            Mode::Sample => "sample",
            Mode::Production => "production",
        };
        // The id, the row and the log entry in one commit (one fsync); a failed insert uses
        // up no id.
        let mut transaction = self.store.begin().await?;
        let job_id = transaction.next_id("j").await?;
        transaction
            .execute(
                "INSERT INTO jobs (id, developer, grant_id, module_hash, mode, params, state, imports, created_ms) VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8)",
                &[Param::Text(&job_id), Param::Text(&who.organisation), Param::Text(grant_id), Param::Text(module_hash), Param::Text(mode_name), Param::Text(params), Param::Text(&import_ids.join(",")), Param::Int(now_ms())],
            )
            .await?;
        transaction.log(audit_entry(
            who,
            "job.submit",
            "job",
            &job_id,
            Some(module_hash.to_string()),
            Some(grant_id.to_string()),
            "queued",
            submission_detail(mode_name, params, &import_ids),
        ));
        self.commit(transaction).await?;
        let tables: Vec<DomainTable> = stored.iter().map(StoredDataset::table).collect();
        if self.hold_jobs {
            return Ok(job_id);
        }
        let domain = self.clone();
        let who = who.clone();
        let job = QueuedJob {
            id: job_id.clone(),
            grant: job_grant,
            tables,
            imports,
            module_path: module["path"].clone(),
            mode,
            params: params.to_string(),
        };
        tokio::spawn(async move {
            let job_id = job.id.clone();
            // Queued until the organisation and the domain both have a free slot.
            let Ok(_organisation_slot) = domain.organisation_slot(&who.organisation).acquire_owned().await else {
                return;
            };
            let Ok(_worker) = Arc::clone(&domain.workers).acquire_owned().await else { return };
            if let Err(error) = domain.execute_job(&who, job).await {
                tracing::error!(job = %job_id, "job bookkeeping failed: {error}");
                let _ = domain
                    .store
                    .execute("UPDATE jobs SET state = 'failed', error = $1, developer_error = 'internal error in the domain' WHERE id = $2", &[Param::Text(&error.to_string()), Param::Text(&job_id)])
                    .await;
            }
        });
        Ok(job_id)
    }

    /// The semaphore that bounds how many jobs `organisation` runs at once.
    fn organisation_slot(&self, organisation: &str) -> Arc<tokio::sync::Semaphore> {
        let mut slots = self.organisation_slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            slots
                .entry(organisation.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.jobs_per_organisation))),
        )
    }

    /// Cancels a job of the caller's organisation that is still queued. A running job ends at
    /// its own limits; a finished one is history.
    pub async fn cancel_job(&self, who: &Principal, job_id: &str) -> Result<JobView, GatewayError> {
        Self::require(who, Role::Developer)?;
        let row = self
            .store
            .fetch_one("SELECT * FROM jobs WHERE id = $1", &[Param::Text(job_id)], &format!("job {job_id}"))
            .await?;
        Self::require_owner(who, &row, &format!("job {job_id}"))?;
        let why = "cancelled by the developer";
        if self.end_queued_job(who, (job_id, &row["grant_id"]), ("cancelled", "job.cancel"), why).await? {
            return self.job(who, job_id, Duration::ZERO).await;
        }
        if !self.cancel_running(job_id, why) {
            let state =
                self.store.fetch_one("SELECT state FROM jobs WHERE id = $1", &[Param::Text(job_id)], "job").await?;
            return Err(GatewayError::FailedPrecondition(format!(
                "job {job_id} is {}; only queued or running jobs can be cancelled",
                state["state"]
            )));
        }
        self.append(vec![audit_entry(
            who,
            "job.cancel",
            "job",
            job_id,
            None,
            Some(row["grant_id"].clone()),
            "cancelling",
            why,
        )])
        .await?;
        // The guest stops at its next check; the job's own record says `cancelled` then.
        self.job(who, job_id, CANCEL_WAIT).await
    }

    /// Sets the cancel switch of a claimed job; false when the job is not running here.
    fn cancel_running(&self, job_id: &str, why: &str) -> bool {
        let running = self.running_jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match running.get(job_id) {
            Some((_, flag)) => {
                flag.cancel(why);
                true
            }
            None => false,
        }
    }

    /// The cancel switches of `grant_id`'s jobs running here.
    fn running_jobs_of(&self, grant_id: &str) -> Vec<CancelFlag> {
        let running = self.running_jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        running.values().filter(|(grant, _)| grant == grant_id).map(|(_, flag)| flag.clone()).collect()
    }

    /// Where a job's imported tables are decrypted while it runs.
    fn work_dir(&self, job_id: &str) -> PathBuf {
        self.dir.join("work").join(job_id)
    }

    async fn execute_job(&self, who: &Principal, job: QueuedJob) -> Result<(), GatewayError> {
        let QueuedJob { id, grant, mut tables, imports, module_path, mode, params } = job;
        let job_id = id.as_str();
        // The switch is in place before the claim, so a job is never running without one.
        let cancel = CancelFlag::default();
        self.running_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), (grant.id.clone(), cancel.clone()));
        // Imported tables are decrypted for the job and removed when it ends, however it ends.
        let work = self.work_dir(job_id);
        let outcome = match self.open_imports(&imports, &work, mode, &grant, &tables).await {
            Ok(Ok(decrypted)) => {
                tables.extend(decrypted);
                self.claim_and_run(who, job_id, grant, tables, module_path, mode, params, cancel).await
            }
            // The import was destroyed after the job was queued: it cannot start.
            Ok(Err(gone)) => {
                self.end_queued_job(who, (job_id, &grant.id), ("failed", "job.finish"), &gone).await.map(drop)
            }
            Err(error) => Err(error),
        };
        self.running_jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(job_id);
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(io("removing a job's decrypted imports"))?;
        }
        outcome
    }

    /// Ends `job` (id and grant) while it is still `queued`, in `state` with `why`, logged as
    /// `action` in the same commit; false when it had left `queued` meanwhile.
    async fn end_queued_job(
        &self,
        who: &Principal,
        (job_id, grant_id): (&str, &str),
        (state, action): (&str, &str),
        why: &str,
    ) -> Result<bool, GatewayError> {
        let mut transaction = self.store.begin().await?;
        let ended = transaction
            .execute(
                "UPDATE jobs SET state = $1, error = $2, developer_error = $2 WHERE id = $3 AND state = 'queued'",
                &[Param::Text(state), Param::Text(why), Param::Text(job_id)],
            )
            .await?;
        if ended == 0 {
            return Ok(false);
        }
        transaction.log(audit_entry(who, action, "job", job_id, None, Some(grant_id.to_string()), state, why));
        self.commit(transaction).await?;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    async fn claim_and_run(
        &self,
        who: &Principal,
        job_id: &str,
        grant: Grant,
        tables: Vec<DomainTable>,
        module_path: String,
        mode: Mode,
        params: String,
        cancel: CancelFlag,
    ) -> Result<(), GatewayError> {
        // Claim the job; a job cancelled while it waited is not run.
        let claimed = self
            .store
            .execute("UPDATE jobs SET state = 'running' WHERE id = $1 AND state = 'queued'", &[Param::Text(job_id)])
            .await?;
        if claimed == 0 {
            return Ok(());
        }
        let bytes = std::fs::read(&module_path).map_err(io("reading a module"))?;
        let runtime = self.runtime.clone();
        let handle = tokio::runtime::Handle::current();
        let job_grant = grant.clone();
        let seed = sha256_hex(job_id.as_bytes()).bytes().fold(0u64, |seed, byte| seed.rotate_left(5) ^ u64::from(byte));
        let report: JobReport = tokio::task::spawn_blocking(move || {
            let job = JobSpec {
                module: &bytes,
                grant: &job_grant,
                tables: &tables,
                mode,
                params: &params,
                seed,
                cancel: &cancel,
            };
            runtime.run_job(&job, handle)
        })
        .await
        .map_err(|error| GatewayError::internal("running a job", error))?;
        // The decrypted imports go before the job is seen to end. A failure here must not lose
        // the job's outcome: execute_job removes the directory again afterwards and reports it.
        let work = self.work_dir(job_id);
        if work.exists()
            && let Err(error) = std::fs::remove_dir_all(&work)
        {
            tracing::warn!(job = %job_id, "removing a job's decrypted imports failed, will retry: {error}");
        }
        // The job's outcome, its outputs and every runtime decision commit together.
        let mut transaction = self.store.begin().await?;
        for query in &report.queries {
            if query.outcome != "allowed" {
                transaction.log(audit_entry(
                    who,
                    "query.refuse",
                    "job",
                    job_id,
                    None,
                    Some(grant.id.clone()),
                    "refused",
                    query.message.clone().unwrap_or_default(),
                ));
            } else if query.suppressed_groups > 0 {
                // A runtime decision in its own right: groups the module never saw.
                transaction.log(audit_entry(
                    who,
                    "query.suppress",
                    "job",
                    job_id,
                    None,
                    Some(grant.id.clone()),
                    "suppressed",
                    format!("{} groups below the grant's threshold withheld from the module", query.suppressed_groups),
                ));
            }
        }
        let out_dir = self.dir.join("outputs").join(job_id);
        std::fs::create_dir_all(&out_dir).map_err(io("creating an output directory"))?;
        let mut summaries = Vec::new();
        // A cancelled job keeps nothing it produced: its grant may be gone.
        let kept =
            if matches!(report.failure, Some(RuntimeError::Cancelled(_))) { &[][..] } else { &report.outputs[..] };
        for output in kept {
            let kind = output.kind.as_str();
            let (bytes, rows) = match output.kind {
                OutputKind::Table | OutputKind::Verification => {
                    let table = output
                        .table
                        .as_ref()
                        .ok_or_else(|| GatewayError::Internal(format!("{kind} output without a table")))?;
                    (parquet_bytes(table)?, table.num_rows() as u64)
                }
                OutputKind::Artifact => (output.artifact.clone().unwrap_or_default(), 0),
            };
            let extension = if output.kind == OutputKind::Artifact { "bin" } else { "parquet" };
            let path = out_dir.join(format!("{}.{extension}", output.name));
            write_atomically(&path, &bytes)?;
            let lineage = serde_json::to_string(&output.lineage)
                .map_err(|error| GatewayError::internal("encoding lineage", error))?;
            transaction
                .execute(
                    "INSERT INTO outputs (job_id, name, kind, path, lineage_json, rows) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, name) DO UPDATE SET kind = excluded.kind, path = excluded.path, lineage_json = excluded.lineage_json, rows = excluded.rows",
                    &[Param::Text(job_id), Param::Text(&output.name), Param::Text(kind), Param::Text(&path.to_string_lossy()), Param::Text(&lineage), Param::Int(rows as i64)],
                )
                .await?;
            let checked = match (mode, output.kind, output.table.as_ref()) {
                (Mode::Sample, OutputKind::Table, Some(table)) => {
                    Some(unseen_policy::review::review_sample_table(&grant, &output.name, table))
                }
                (Mode::Sample, OutputKind::Artifact, _) => {
                    Some(unseen_policy::review::review_sample_artifact(&grant, &output.name, &bytes))
                }
                _ => None,
            };
            let withheld = match &checked {
                Some(review) if review.outcome == unseen_policy::Outcome::Blocked => {
                    let rules: Vec<String> = review
                        .rules
                        .iter()
                        .filter(|rule| rule.outcome == unseen_policy::RuleOutcome::Blocked)
                        .map(|rule| format!("{}: {}", rule.rule, rule.figure))
                        .collect();
                    let why = format!("withheld from the sample run by {}", rules.join("; "));
                    transaction.log(audit_entry(
                        who,
                        "job.sample_withheld",
                        "job",
                        job_id,
                        None,
                        Some(grant.id.clone()),
                        "withheld",
                        format!("output \"{}\" {why}", output.name),
                    ));
                    why
                }
                _ => String::new(),
            };
            let content = match (mode, output.kind) {
                _ if !withheld.is_empty() => Vec::new(),
                (Mode::Sample, OutputKind::Table | OutputKind::Verification) => {
                    output.table.as_ref().map(csv_bytes).transpose()?.unwrap_or_default()
                }
                (Mode::Sample, OutputKind::Artifact) => bytes,
                (Mode::Production, _) => Vec::new(),
            };
            summaries.push(OutputSummary {
                name: output.name.clone(),
                kind: kind.into(),
                rows,
                suppressed_groups: output.lineage.suppressed_groups,
                content,
                withheld,
            });
        }
        let (state, error, developer_error) = match &report.failure {
            None => ("succeeded", String::new(), String::new()),
            Some(failure @ RuntimeError::Cancelled(_)) => {
                ("cancelled", failure.to_string(), failure.developer_message(mode))
            }
            Some(failure) => ("failed", failure.to_string(), failure.developer_message(mode)),
        };
        let view = JobView {
            id: job_id.to_string(),
            grant_id: grant.id.clone(),
            mode: if mode == Mode::Sample { "sample".into() } else { "production".into() },
            state: state.into(),
            error: developer_error.clone(),
            outputs: summaries,
            guest_log: report.guest_log.clone(),
            queries: report.queries.clone(),
            metering: report.metering.clone(),
        };
        let json = serde_json::to_string(&view).map_err(|error| GatewayError::internal("encoding a job", error))?;
        transaction
            .execute(
                "UPDATE jobs SET state = $1, error = $2, developer_error = $3, report_json = $4 WHERE id = $5",
                &[
                    Param::Text(state),
                    Param::Text(&error),
                    Param::Text(&developer_error),
                    Param::Text(&json),
                    Param::Text(job_id),
                ],
            )
            .await?;
        transaction.log(audit_entry(
            who,
            "job.finish",
            "job",
            job_id,
            None,
            Some(grant.id.clone()),
            state,
            if error.is_empty() { format!("{} outputs", kept.len()) } else { error },
        ));
        self.commit(transaction).await
    }

    /// The job as `who` may see it, waiting up to `wait` for it to finish.
    pub async fn job(&self, who: &Principal, job_id: &str, wait: Duration) -> Result<JobView, GatewayError> {
        Self::require(who, Role::Developer)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let row = self
                .store
                .fetch_one("SELECT * FROM jobs WHERE id = $1", &[Param::Text(job_id)], &format!("job {job_id}"))
                .await?;
            Self::require_owner(who, &row, &format!("job {job_id}"))?;
            let finished = matches!(row["state"].as_str(), "succeeded" | "failed" | "interrupted" | "cancelled");
            if finished || tokio::time::Instant::now() >= deadline {
                // A job that never reached its end (still going, interrupted, or failed inside
                // the domain before the runtime reported) has no stored view: show its row.
                if !finished || row["report_json"] == "{}" {
                    let error = if finished { row["developer_error"].clone() } else { String::new() };
                    return Ok(JobView {
                        id: job_id.into(),
                        grant_id: row["grant_id"].clone(),
                        mode: row["mode"].clone(),
                        state: row["state"].clone(),
                        error,
                        outputs: Vec::new(),
                        guest_log: Vec::new(),
                        queries: Vec::new(),
                        metering: Default::default(),
                    });
                }
                let mut view: JobView = serde_json::from_str(&row["report_json"])
                    .map_err(|error| GatewayError::internal("decoding a job", error))?;
                if view.mode == "production" && who.role == Role::Developer {
                    // Production guest logs are data: they stay in the domain.
                    view.guest_log.clear();
                }
                return Ok(view);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Asks for an output of a production job to leave; the reviewer decides at once whether
    /// it is auto-released, waits for an operator, or is blocked.
    pub async fn request_egress(
        &self,
        who: &Principal,
        job_id: &str,
        output_name: &str,
    ) -> Result<EgressView, GatewayError> {
        Self::require(who, Role::Developer)?;
        let job = self
            .store
            .fetch_one(
                "SELECT * FROM jobs WHERE id = $1 AND developer = $2",
                &[Param::Text(job_id), Param::Text(&who.organisation)],
                &format!("job {job_id}"),
            )
            .await?;
        if job["mode"] != "production" {
            return Err(GatewayError::FailedPrecondition(format!(
                "job {job_id} ran on the sample; its outputs were shown to you when it ran, and the sample holds no real record (synthetic) or only k-anonymous, perturbed rows (de-identified) — run it in production mode to request egress"
            )));
        }
        if job["state"] != "succeeded" {
            return Err(GatewayError::FailedPrecondition(format!(
                "job {job_id} is {}; only succeeded jobs have outputs to release",
                job["state"]
            )));
        }
        let grant = self.grant_for(who, &job["grant_id"]).await?;
        let outputs =
            self.store.fetch("SELECT * FROM outputs WHERE job_id = $1 ORDER BY name", &[Param::Text(job_id)]).await?;
        let Some(output) = outputs.iter().find(|output| output["name"] == output_name) else {
            let names: Vec<&str> = outputs.iter().map(|output| output["name"].as_str()).collect();
            return Err(GatewayError::NotFound(if names.is_empty() {
                format!("job {job_id} emitted no outputs, so there is no \"{output_name}\" to release")
            } else {
                format!("job {job_id} has no output \"{output_name}\"; its outputs are: {}", names.join(", "))
            }));
        };
        let bytes = std::fs::read(&output["path"]).map_err(io("reading a held output"))?;
        let identifiers = self.identifier_set(&grant).await?;
        let _reviewing = self.review_lock.lock().await;
        let (earlier, released, epsilon_spent) = self.grant_history(&grant.id).await?;
        let earlier_claims =
            if output["kind"] == "verification" { self.claims_answered_today(&grant.id).await? } else { Vec::new() };
        let context = ReviewContext {
            identifiers: Some(&identifiers),
            earlier: &earlier,
            epsilon_spent,
            earlier_claims: &earlier_claims,
            released: &released,
        };
        let id = self.store.next_id("e").await?;
        let (report, candidate, sketches, facts) = if output["kind"] == "artifact" {
            (review_artifact(&grant, output_name, &bytes, context), None, (Vec::new(), Vec::new(), Vec::new()), None)
        } else {
            let lineage: OutputLineage = serde_json::from_str(&output["lineage_json"])
                .map_err(|error| GatewayError::internal("decoding lineage", error))?;
            let table = read_parquet(bytes)?;
            let report = if output["kind"] == "verification" {
                review_verification(&grant, output_name, &table, &lineage, context)
            } else {
                review_table(&grant, output_name, &table, &lineage, context)
            };
            let candidate = if report.outcome == Outcome::Blocked {
                None
            } else {
                // Noise is drawn once, here: the operator approves exactly this table.
                let released = release_noised_table(&report, &table, &mut SystemBits::default())
                    .map_err(|error| GatewayError::internal("applying the review", error))?;
                Some(released)
            };
            let (withheld, complements) = withheld_sketches(&lineage, &report);
            let sketches = (released_sketches(&lineage, &report), withheld, complements);
            // What this output releases and withholds, for the interval audit of the grant's
            // later outputs (kept in the domain: it holds withheld values).
            let label = format!("egress {id} (\"{output_name}\")");
            let facts = ReleasedTable::from_review(&label, &table, &lineage, &report);
            (report, candidate, sketches, (!facts.measures.is_empty()).then_some(facts))
        };
        if let Some(candidate) = &candidate {
            write_atomically(&self.dir.join("egress").join(format!("{id}.parquet")), &parquet_bytes(candidate)?)?;
        }
        if let (false, Some(facts)) = (report.outcome == Outcome::Blocked, &facts) {
            let facts = serde_json::to_vec(facts)
                .map_err(|error| GatewayError::internal("encoding a released table", error))?;
            write_atomically(&self.dir.join("egress").join(format!("{id}.released.json")), &facts)?;
        }
        if report.outcome != Outcome::Blocked && !sketches.0.is_empty() {
            let kinds =
                [("sketches", &sketches.0), ("withheld-sketches", &sketches.1), ("complement-sketches", &sketches.2)];
            for (name, kept) in kinds {
                let bytes = serde_json::to_vec(kept)
                    .map_err(|error| GatewayError::internal("encoding subject sketches", error))?;
                write_atomically(&self.dir.join("egress").join(format!("{id}.{name}.json")), &bytes)?;
            }
        }
        let state = match report.outcome {
            Outcome::Released => "auto_released",
            Outcome::NeedsReview => "awaiting_operator",
            Outcome::Blocked => "blocked",
        };
        let report_json =
            serde_json::to_string(&report).map_err(|error| GatewayError::internal("encoding a report", error))?;
        let mut transaction = self.store.begin().await?;
        transaction
            .execute(
                "INSERT INTO egress (id, developer, job_id, output_name, state, report_json, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[Param::Text(&id), Param::Text(&who.organisation), Param::Text(job_id), Param::Text(output_name), Param::Text(state), Param::Text(&report_json), Param::Int(now_ms())],
            )
            .await?;
        if report.epsilon_charged > 0.0 {
            let budget = grant.application.disclosure.privacy.as_ref().map_or(0.0, |privacy| privacy.epsilon_budget);
            transaction.log(audit_entry(
                who,
                "privacy.charge",
                "egress",
                &id,
                None,
                Some(grant.id.clone()),
                "charged",
                format!(
                    "ε={} charged to grant {}; {} of {budget} spent",
                    report.epsilon_charged,
                    grant.id,
                    epsilon_spent + report.epsilon_charged
                ),
            ));
        }
        let reason = if report.outcome == Outcome::Blocked {
            format!("blocked by {}", report.blocking_rules().join(", "))
        } else {
            suppression_summary(&report)
        };
        transaction.log(audit_entry(
            who,
            "egress.review",
            "egress",
            &id,
            Some(sha256_hex(report_json.as_bytes())),
            Some(grant.id.clone()),
            state,
            reason,
        ));
        self.commit(transaction).await?;
        drop(_reviewing);
        if report.outcome == Outcome::Released {
            self.release(who, &id, "auto").await?;
        }
        self.egress(who, &id).await
    }

    /// What earlier egress requests of `grant` that may leave (released, or waiting for an
    /// operator) released: their subjects for differencing, their cells for the interval
    /// audit, and the ε they spent.
    async fn grant_history(
        &self,
        grant_id: &str,
    ) -> Result<(Vec<EarlierRelease>, Vec<ReleasedTable>, f64), GatewayError> {
        let rows = self
            .store
            .fetch(
                "SELECT e.id AS id, e.output_name AS output_name, e.state AS state, e.report_json AS report_json FROM egress e JOIN jobs j ON e.job_id = j.id WHERE j.grant_id = $1 ORDER BY e.created_ms",
                &[Param::Text(grant_id)],
            )
            .await?;
        let mut earlier = Vec::new();
        let mut released = Vec::new();
        let mut spent = 0.0;
        for row in rows {
            let report: ReviewReport = serde_json::from_str(&row["report_json"])
                .map_err(|error| GatewayError::internal("decoding a report", error))?;
            spent += report.epsilon_charged;
            if matches!(row["state"].as_str(), "blocked" | "rejected") {
                continue;
            }
            let read_sketches = |name: &str| -> Result<Option<Vec<SubjectSketches>>, GatewayError> {
                match std::fs::read(self.dir.join("egress").join(format!("{}.{name}.json", row["id"]))) {
                    Ok(bytes) => serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|error| GatewayError::internal("decoding subject sketches", error)),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(error) => Err(GatewayError::internal("reading subject sketches", error)),
                }
            };
            if let Some(sketches) = read_sketches("sketches")? {
                earlier.push(EarlierRelease {
                    label: format!("egress {} (\"{}\")", row["id"], row["output_name"]),
                    sketches,
                    withheld: read_sketches("withheld-sketches")?.unwrap_or_default(),
                    complements: read_sketches("complement-sketches")?.unwrap_or_default(),
                });
            }
            let path = self.dir.join("egress").join(format!("{}.released.json", row["id"]));
            match std::fs::read(&path) {
                Ok(bytes) => released.push(
                    serde_json::from_slice(&bytes)
                        .map_err(|error| GatewayError::internal("decoding a released table", error))?,
                ),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(GatewayError::internal("reading a released table", error)),
            }
        }
        Ok((earlier, released, spent))
    }

    /// The claimed keys (as tokens) of every verification answer requested under `grant` in
    /// the last 24 hours that may leave or has left: one entry per claim, for the rate limits.
    async fn claims_answered_today(&self, grant_id: &str) -> Result<Vec<String>, GatewayError> {
        const DAY_MS: i64 = 24 * 60 * 60 * 1000;
        let rows = self
            .store
            .fetch(
                "SELECT o.lineage_json AS lineage_json FROM egress e JOIN jobs j ON e.job_id = j.id JOIN outputs o ON o.job_id = e.job_id AND o.name = e.output_name WHERE j.grant_id = $1 AND o.kind = 'verification' AND e.created_ms >= $2 AND e.state NOT IN ('blocked', 'rejected')",
                &[Param::Text(grant_id), Param::Int(now_ms() - DAY_MS)],
            )
            .await?;
        let mut keys = Vec::new();
        for row in rows {
            let lineage: OutputLineage = serde_json::from_str(&row["lineage_json"])
                .map_err(|error| GatewayError::internal("decoding lineage", error))?;
            keys.extend(lineage.verification.map(|claims| claims.claim_keys).unwrap_or_default());
        }
        Ok(keys)
    }

    /// The values of the identifier and subject columns of `grant`'s datasets, built once per
    /// grant from the stored data and kept in memory (8 bytes per value).
    async fn identifier_set(&self, grant: &Grant) -> Result<Arc<IdentifierSet>, GatewayError> {
        if let Some(set) = self
            .identifier_sets
            .lock()
            .map_err(|_| GatewayError::Internal("identifier cache poisoned".into()))?
            .get(&grant.id)
        {
            return Ok(Arc::clone(set));
        }
        let mut tables = Vec::new();
        for dataset_id in grant.datasets() {
            tables.push(self.dataset(dataset_id).await?.table());
        }
        let set = Arc::new(unseen_runtime::identifier_index::identifier_set(&tables).await?);
        self.identifier_sets
            .lock()
            .map_err(|_| GatewayError::Internal("identifier cache poisoned".into()))?
            .insert(grant.id.clone(), Arc::clone(&set));
        Ok(set)
    }

    /// One egress request as `who` may see it.
    pub async fn egress(&self, who: &Principal, egress_id: &str) -> Result<EgressView, GatewayError> {
        let row = self
            .store
            .fetch_one(
                "SELECT * FROM egress WHERE id = $1",
                &[Param::Text(egress_id)],
                &format!("egress request {egress_id}"),
            )
            .await?;
        Self::require_owner(who, &row, &format!("egress request {egress_id}"))?;
        Ok(EgressView {
            id: row["id"].clone(),
            job_id: row["job_id"].clone(),
            output_name: row["output_name"].clone(),
            state: row["state"].clone(),
            report: serde_json::from_str(&row["report_json"])
                .map_err(|error| GatewayError::internal("decoding a report", error))?,
            release_id: row["release_id"].clone(),
            reason: row["reason"].clone(),
        })
    }

    /// Egress requests, optionally in one state (operators).
    pub async fn list_egress(&self, who: &Principal, state: &str) -> Result<Vec<EgressView>, GatewayError> {
        Self::require(who, Role::Operator)?;
        let rows = self
            .store
            .fetch(
                "SELECT id FROM egress WHERE ($1 = '' OR state = $2) ORDER BY created_ms",
                &[Param::Text(state), Param::Text(state)],
            )
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.egress(who, &row["id"]).await?);
        }
        Ok(views)
    }

    /// An operator's decision on an egress request awaiting review.
    pub async fn decide_egress(
        &self,
        who: &Principal,
        egress_id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<EgressView, GatewayError> {
        Self::require(who, Role::Operator)?;
        let view = self.egress(who, egress_id).await?;
        if view.state != "awaiting_operator" {
            return Err(GatewayError::FailedPrecondition(format!(
                "egress request {egress_id} is {}; only requests awaiting an operator can be decided",
                view.state
            )));
        }
        if approve {
            let grant = self
                .store
                .fetch_one(
                    "SELECT grants.id, grants.state FROM grants JOIN jobs ON jobs.grant_id = grants.id WHERE jobs.id = $1",
                    &[Param::Text(&view.job_id)],
                    "the request's grant",
                )
                .await?;
            if grant["state"] != "active" {
                return Err(GatewayError::FailedPrecondition(format!(
                    "grant {} is {}; nothing leaves the domain under it until it is active again",
                    grant["id"], grant["state"]
                )));
            }
        } else if reason.trim().is_empty() {
            return Err(GatewayError::InvalidInput("a rejection needs a reason".into()));
        }
        let (state, action) = if approve { ("approved", "egress.approve") } else { ("rejected", "egress.reject") };
        let mut transaction = self.store.begin().await?;
        Self::change_state(
            &mut transaction,
            ("egress request", egress_id),
            "UPDATE egress SET state = $1, reason = $2 WHERE id = $3 AND state = 'awaiting_operator'",
            &[Param::Text(state), Param::Text(reason), Param::Text(egress_id)],
        )
        .await?;
        transaction.log(audit_entry(who, action, "egress", egress_id, None, None, state, reason));
        self.commit(transaction).await?;
        if approve {
            self.release(who, egress_id, &format!("{}@{}", who.name, who.organisation)).await?;
        }
        self.egress(who, egress_id).await
    }

    /// Builds and signs the release bundle of an egress request.
    async fn release(&self, who: &Principal, egress_id: &str, approver: &str) -> Result<String, GatewayError> {
        let egress = self
            .store
            .fetch_one(
                "SELECT * FROM egress WHERE id = $1",
                &[Param::Text(egress_id)],
                &format!("egress request {egress_id}"),
            )
            .await?;
        let report: ReviewReport = serde_json::from_str(&egress["report_json"])
            .map_err(|error| GatewayError::internal("decoding a report", error))?;
        let job =
            self.store.fetch_one("SELECT * FROM jobs WHERE id = $1", &[Param::Text(&egress["job_id"])], "job").await?;
        let grant_row = self
            .store
            .fetch_one("SELECT * FROM grants WHERE id = $1", &[Param::Text(&job["grant_id"])], "grant")
            .await?;
        let grant: Grant = serde_json::from_str(&grant_row["json"])
            .map_err(|error| GatewayError::internal("decoding a grant", error))?;
        let output = self
            .store
            .fetch_one(
                "SELECT * FROM outputs WHERE job_id = $1 AND name = $2",
                &[Param::Text(&egress["job_id"]), Param::Text(&egress["output_name"])],
                "output",
            )
            .await?;
        let data = if output["kind"] != "artifact" {
            // The table as reviewed (with its noise, if any), written when the request was made.
            let candidate = self.dir.join("egress").join(format!("{egress_id}.parquet"));
            let table = match std::fs::read(&candidate) {
                Ok(bytes) => read_parquet(bytes)?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound && report.noise.is_empty() => {
                    let bytes = std::fs::read(&output["path"]).map_err(io("reading a held output"))?;
                    release_table(&report, &read_parquet(bytes)?)
                        .map_err(|error| GatewayError::internal("applying the review", error))?
                }
                Err(error) => return Err(GatewayError::internal("reading the reviewed table", error)),
            };
            csv_bytes(&table)?
        } else {
            std::fs::read(&output["path"]).map_err(io("reading a held output"))?
        };
        let mut datasets = Vec::new();
        for dataset_id in grant.datasets() {
            let stored = self.dataset(dataset_id).await?;
            datasets.push((dataset_id.to_string(), stored.dataset.content_hash));
        }
        let mut imports = Vec::new();
        for import_id in job["imports"].split(',').filter(|id| !id.is_empty()) {
            let row = self
                .store
                .fetch_one("SELECT json FROM imports WHERE id = $1", &[Param::Text(import_id)], "import")
                .await?;
            let dataset: DatasetVersion = serde_json::from_str(&row["json"])
                .map_err(|error| GatewayError::internal("decoding an import", error))?;
            imports.push((format!("{import_id} {}", dataset.id()), dataset.content_hash));
        }
        let release_id = self.store.next_id("r").await?;
        let manifest = ReleaseManifest {
            release_id: release_id.clone(),
            domain: self.name.clone(),
            output: egress["output_name"].clone(),
            data_sha256: sha256_hex(&data),
            module_sha256: job["module_hash"].clone(),
            grant_id: grant.id.clone(),
            grant_sha256: grant.hash(),
            datasets,
            imports,
            report_sha256: sha256_hex(egress["report_json"].as_bytes()),
            approver: approver.to_string(),
            released_at_unix_ms: now_ms(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|error| GatewayError::internal("encoding a manifest", error))?;
        let signature = self.release_key.sign(&manifest_bytes);
        let dir = self.dir.join("releases").join(&release_id);
        std::fs::create_dir_all(&dir).map_err(io("creating a release directory"))?;
        write_atomically(&dir.join("data.csv"), &data)?;
        write_atomically(&dir.join("report.json"), egress["report_json"].as_bytes())?;
        write_atomically(&dir.join("manifest.sig"), signature.as_ref())?;
        write_atomically(&dir.join("manifest.json"), &manifest_bytes)?;
        // The release's row, its link to the request and its log entry commit together.
        let mut transaction = self.store.begin().await?;
        transaction
            .execute(
                "INSERT INTO releases (id, egress_id, developer, dir, created_ms) VALUES ($1, $2, $3, $4, $5)",
                &[
                    Param::Text(&release_id),
                    Param::Text(egress_id),
                    Param::Text(&egress["developer"]),
                    Param::Text(&dir.to_string_lossy()),
                    Param::Int(now_ms()),
                ],
            )
            .await?;
        transaction
            .execute(
                "UPDATE egress SET release_id = $1 WHERE id = $2",
                &[Param::Text(&release_id), Param::Text(egress_id)],
            )
            .await?;
        transaction.log(audit_entry(
            who,
            "release.sign",
            "release",
            &release_id,
            Some(sha256_hex(&manifest_bytes)),
            Some(grant.id.clone()),
            "released",
            approver,
        ));
        self.commit(transaction).await?;
        Ok(release_id)
    }

    /// A release bundle, for the developer who owns it.
    pub async fn release_bundle(&self, who: &Principal, release_id: &str) -> Result<ReleaseBundle, GatewayError> {
        Self::require(who, Role::Developer)?;
        let row = self
            .store
            .fetch_one(
                "SELECT * FROM releases WHERE id = $1",
                &[Param::Text(release_id)],
                &format!("release {release_id}"),
            )
            .await?;
        Self::require_owner(who, &row, &format!("release {release_id}"))?;
        let dir = PathBuf::from(&row["dir"]);
        Ok(ReleaseBundle {
            id: release_id.to_string(),
            manifest: std::fs::read(dir.join("manifest.json")).map_err(io("reading a release"))?,
            signature: std::fs::read(dir.join("manifest.sig")).map_err(io("reading a release"))?,
            data: std::fs::read(dir.join("data.csv")).map_err(io("reading a release"))?,
            public_key: self.public_key(),
        })
    }

    /// The latest signed checkpoint of the audit log (regulators).
    pub fn checkpoint(&self, who: &Principal) -> Result<(String, u64), GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.checkpoint(&self.signer)?)
    }

    /// Audit entries `[start, end)` (at most [`MAX_AUDIT_ENTRIES`]), or every entry about
    /// `object_id` when it is not empty (regulators).
    pub fn audit_entries(
        &self,
        who: &Principal,
        start: u64,
        end: u64,
        object_id: &str,
    ) -> Result<(Vec<unseen_audit::RawEntry>, u64), GatewayError> {
        Self::require(who, Role::Regulator)?;
        let size = self.audit.len();
        let entries = if object_id.is_empty() {
            if end < start || end - start > MAX_AUDIT_ENTRIES {
                return Err(GatewayError::InvalidInput(format!(
                    "entries [{start}, {end}): ask for at most {MAX_AUDIT_ENTRIES} at a time"
                )));
            }
            self.audit.raw_entries(start, end)?
        } else {
            self.audit.raw_entries_about(object_id)?
        };
        Ok((entries, size))
    }

    /// The RFC 9162 inclusion proof of entry `index` in the tree of `size` entries (regulators).
    pub fn audit_inclusion_proof(&self, who: &Principal, index: u64, size: u64) -> Result<Vec<[u8; 32]>, GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.inclusion_proof(index, size)?)
    }

    /// The RFC 9162 consistency proof between tree sizes `old` and `new` (regulators).
    pub fn audit_consistency_proof(&self, who: &Principal, old: u64, new: u64) -> Result<Vec<[u8; 32]>, GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.consistency_proof(old, new)?)
    }

    /// The whole audit log as an offline-verifiable export (regulators).
    pub fn export_audit(&self, who: &Principal) -> Result<Export, GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.export(&self.signer)?)
    }

    /// Entries `[start, end)` of the log as an export with every leaf hash and a signed
    /// checkpoint, verifiable offline (regulators).
    pub fn export_audit_range(&self, who: &Principal, start: u64, end: u64) -> Result<Export, GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.export_range(&self.signer, start, end)?)
    }
}
