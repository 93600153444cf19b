//! The workflow of one domain, independent of gRPC: register → apply → approve → upload →
//! run → request egress → review → release. Every state change appends an audit entry.
//!
//! This file holds the domain itself (opening it, its keys and store, committing a change with
//! its entries, the role checks); each stage of the workflow is a room of its own:
//! [`recovery`] (what a killed process left), [`datasets`], [`samples`], [`imports`],
//! [`scenarios`], [`grants`], [`jobs`] (claim → run → persist outputs → finish), [`egress`]
//! (review and the operator's decision), [`release`], [`views`] (what a regulator reads),
//! [`retention`], [`files`] (the domain directory's files) and [`shutdown`] (stopping with
//! running guests cancelled and logged as interrupted).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use unseen_audit::{AuditLog, DomainSigner, Entry};
use unseen_policy::DatasetVersion;
use unseen_policy::identifiers::IdentifierSet;
use unseen_runtime::{CancelFlag, DomainTable, Runtime, RuntimeConfig};

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::store::{Store, Transaction};

mod datasets;
mod egress;
mod files;
mod grants;
mod imports;
mod jobs;
mod recovery;
mod refusals;
mod release;
mod retention;
mod samples;
mod scenarios;
mod shutdown;
mod views;
pub use datasets::DatasetRegistration;
pub use egress::EgressView;
pub use files::csv_bytes;
use files::{io, lock_directory, read_key_or_create};
pub use grants::{GrantAction, GrantView};
pub use imports::{ImportView, MAX_IMPORT_BYTES};
pub use jobs::{JobView, OutputSummary};
pub use refusals::{BURST as REFUSAL_BURST, REFILL as REFUSAL_REFILL};
pub use release::{ReleaseBundle, ReleaseManifest, verify_release};
pub use retention::{MIN_AUDIT_RETENTION_DAYS, PruneOutcome};
pub use samples::{SampleDecision, SampleView};
pub use views::MAX_AUDIT_ENTRIES;

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
    pub path: PathBuf,
    /// The file of the sample developers get (or, when none is offered, the last derived).
    pub sample_path: PathBuf,
    /// The kind of sample offered to developers, if one is.
    pub sample_kind: Option<unseen_policy::sample::SampleKind>,
}

impl StoredDataset {
    fn table(&self) -> DomainTable {
        DomainTable {
            dataset: self.dataset.clone(),
            production_path: self.path.clone(),
            sample_path: self.sample_path.clone(),
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
    /// What the domain counts and times, for the metrics endpoint.
    metrics: Arc<crate::metrics::Metrics>,
    /// How many refused requests each organisation may still log (`refusals`).
    refusal_bound: refusals::RefusalBound,
    /// Set once the domain is stopping ([`Domain::stop`]): no job starts after it.
    stopping: std::sync::atomic::AtomicBool,
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

/// An audit entry about to be logged: `who` did `action` to an object, with the decision and
/// why. It is logged in the transaction that makes the change it records; only a decision that
/// changes nothing stored (a refused upload) is appended on its own.
#[derive(Debug)]
pub(crate) struct AuditEvent<'a> {
    who: &'a Principal,
    action: &'a str,
    object_kind: &'a str,
    object_id: &'a str,
    object_hash: Option<String>,
    grant: Option<String>,
    decision: String,
    reason: String,
}

impl<'a> AuditEvent<'a> {
    /// `who` did `action` to the object `object_kind` `object_id`.
    pub(crate) fn new(who: &'a Principal, action: &'a str, object_kind: &'a str, object_id: &'a str) -> Self {
        Self {
            who,
            action,
            object_kind,
            object_id,
            object_hash: None,
            grant: None,
            decision: String::new(),
            reason: String::new(),
        }
    }

    /// The hash of the object's content (a module, a report, a bundle), if it has one.
    pub(crate) fn object_hash(mut self, hash: impl Into<Option<String>>) -> Self {
        self.object_hash = hash.into();
        self
    }

    /// The grant the action was taken under.
    pub(crate) fn grant(mut self, grant: impl Into<Option<String>>) -> Self {
        self.grant = grant.into();
        self
    }

    /// What was decided or became of the object (`approved`, `succeeded`, a state).
    pub(crate) fn decision(mut self, decision: impl Into<String>) -> Self {
        self.decision = decision.into();
        self
    }

    /// Why, or what the action found.
    pub(crate) fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// The entry, stamped now.
    pub(crate) fn entry(self) -> Entry {
        Entry {
            time_unix_ms: now_ms(),
            organisation: self.who.organisation.clone(),
            principal: self.who.name.clone(),
            role: self.who.role.as_str().to_string(),
            action: self.action.to_string(),
            object_kind: self.object_kind.to_string(),
            object_id: self.object_id.to_string(),
            object_hash: self.object_hash,
            grant: self.grant,
            decision: self.decision,
            reason: self.reason,
        }
    }
}

/// The row of a lookup, or not found naming `what` (`job j-3`).
pub(crate) fn found<T>(row: Option<T>, what: impl std::fmt::Display) -> Result<T, GatewayError> {
    row.ok_or_else(|| GatewayError::NotFound(format!("{what} not found")))
}

/// A stored JSON column as the domain type it holds, or an internal error saying what
/// (`a grant`) did not decode.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, GatewayError> {
    serde_json::from_str(json).map_err(|error| GatewayError::internal(&format!("decoding {what}"), error))
}

/// A list's state filter as the caller gave it: every state (`Some(None)`) when empty, one
/// state, or `None` for a spelling no state has, which no row is in.
pub(crate) fn state_filter<S: std::str::FromStr>(text: &str) -> Option<Option<S>> {
    if text.is_empty() {
        return Some(None);
    }
    text.parse().ok().map(Some)
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or(0)
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
        // Absolute from here on: a domain served from any working directory names the same files.
        let dir = &std::fs::canonicalize(dir).map_err(io("resolving the domain directory"))?;
        let lock = lock_directory(dir)?;
        for sub in ["keys/imports", "audit"].into_iter().chain(files::AREAS) {
            std::fs::create_dir_all(dir.join(sub)).map_err(io("creating the domain directory"))?;
        }
        // Under the lock no write is under way: a `*.partial` is what a crash or a full disk left.
        let swept = files::sweep_partial_files(dir)?;
        if swept > 0 {
            tracing::info!(files = swept, "removed partial files an interrupted write left");
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
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let observer = Arc::clone(&metrics);
        audit.observe_syncs(move |time| observer.audit_synced(time));
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
            metrics,
            refusal_bound: refusals::RefusalBound::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
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

    /// The domain's Ed25519 public key (releases and checkpoints verify under it).
    pub fn public_key(&self) -> Vec<u8> {
        self.release_key.public_key().as_ref().to_vec()
    }

    /// The domain's name (the audit log's origin and the checkpoint key name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the domain counts and times ([`crate::metrics`]).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
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
        let count = entries.len();
        tokio::task::spawn_blocking(move || audit.append_all(&entries))
            .await
            .map_err(|error| GatewayError::internal("appending to the audit log", error))??;
        self.metrics.audit_appended(count);
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

    /// A decision's state change is made only while the object is still in the state the
    /// decision saw: if it was not (`changed` is false), another decision on the object came
    /// first and this one fails.
    fn decided(changed: bool, (kind, id): (&str, &str)) -> Result<(), GatewayError> {
        if !changed {
            return Err(GatewayError::FailedPrecondition(format!(
                "{kind} {id} was decided by someone else meanwhile; look at it again"
            )));
        }
        Ok(())
    }

    /// Developers see only their own organisation's objects; to anyone else they do not exist.
    fn require_owner(who: &Principal, developer: &str, what: &str) -> Result<(), GatewayError> {
        if who.role == Role::Developer && developer != who.organisation {
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
}
