//! Jobs: a developer uploads a module and runs it under a grant. A job is claimed, run on the
//! runtime, its outputs persisted, and finished, each step logged; it can be cancelled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use unseen_policy::{DatasetVersion, Grant, OutputKind, sha256_hex};
use unseen_runtime::{CancelFlag, DomainTable, JobOutput, JobReport, JobSpec, Mode, RuntimeError};

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::states::JobState;
use crate::store::{Param, Transaction};

use super::files::{csv_bytes, io, parquet_bytes, write_atomically};
use super::imports::JobImport;
use super::{AuditEvent, Domain, StoredDataset, now_ms};

/// How long cancelling a running job waits for it to stop before answering.
pub(super) const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// A job accepted and waiting for its blocking thread: everything `execute_job` needs.
pub(super) struct QueuedJob {
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
    pub state: JobState,
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

/// What a job submission's log entry says: the mode, then the parameters and imports if any.
pub(super) fn submission_detail(mode: &str, params: &str, imports: &[&str]) -> String {
    let mut detail = mode.to_string();
    if !params.is_empty() {
        detail += &format!("; params: {params}");
    }
    if !imports.is_empty() {
        detail += &format!("; imports: {}", imports.join(", "));
    }
    detail
}

impl Domain {
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
                self.append(vec![
                    AuditEvent::new(who, "module.upload", "module", "-")
                        .grant(grant_id.to_string())
                        .decision("refused")
                        .reason(error.to_string())
                        .entry(),
                ])
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
        transaction.log(
            AuditEvent::new(who, "module.upload", "module", &info.hash)
                .object_hash(info.hash.clone())
                .grant(grant_id.to_string())
                .decision("accepted")
                .reason(format!("{} bytes", info.size))
                .entry(),
        );
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
        self.refuse_if_stopping()?;
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
                "INSERT INTO jobs (id, developer, grant_id, module_hash, mode, params, state, imports, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[Param::Text(&job_id), Param::Text(&who.organisation), Param::Text(grant_id), Param::Text(module_hash), Param::Text(mode_name), Param::Text(params), Param::Text(JobState::Queued.as_str()), Param::Text(&import_ids.join(",")), Param::Int(now_ms())],
            )
            .await?;
        transaction.log(
            AuditEvent::new(who, "job.submit", "job", &job_id)
                .object_hash(module_hash.to_string())
                .grant(grant_id.to_string())
                .decision(JobState::Queued.as_str())
                .reason(submission_detail(mode_name, params, &import_ids))
                .entry(),
        );
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
            let queued = domain.metrics.job_queued();
            let Ok(_organisation_slot) = domain.organisation_slot(&who.organisation).acquire_owned().await else {
                return;
            };
            let Ok(_worker) = Arc::clone(&domain.workers).acquire_owned().await else { return };
            drop(queued);
            if let Err(error) = domain.execute_job(&who, job).await {
                tracing::error!(job = %job_id, "job bookkeeping failed: {error}");
                let _ = domain
                    .store
                    .execute("UPDATE jobs SET state = $1, error = $2, developer_error = 'internal error in the domain' WHERE id = $3", &[Param::Text(JobState::Failed.as_str()), Param::Text(&error.to_string()), Param::Text(&job_id)])
                    .await;
            }
        });
        Ok(job_id)
    }

    /// The semaphore that bounds how many jobs `organisation` runs at once.
    pub(super) fn organisation_slot(&self, organisation: &str) -> Arc<tokio::sync::Semaphore> {
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
        if self.end_queued_job(who, (job_id, &row["grant_id"]), (JobState::Cancelled, "job.cancel"), why).await? {
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
        self.append(vec![
            AuditEvent::new(who, "job.cancel", "job", job_id)
                .grant(row["grant_id"].clone())
                .decision("cancelling")
                .reason(why)
                .entry(),
        ])
        .await?;
        // The guest stops at its next check; the job's own record says `cancelled` then.
        self.job(who, job_id, CANCEL_WAIT).await
    }

    /// Sets the cancel switch of a claimed job; false when the job is not running here.
    pub(super) fn cancel_running(&self, job_id: &str, why: &str) -> bool {
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
    pub(super) fn running_jobs_of(&self, grant_id: &str) -> Vec<CancelFlag> {
        let running = self.running_jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        running.values().filter(|(grant, _)| grant == grant_id).map(|(_, flag)| flag.clone()).collect()
    }

    /// Where a job's imported tables are decrypted while it runs.
    pub(super) fn work_dir(&self, job_id: &str) -> PathBuf {
        self.dir.join("work").join(job_id)
    }

    pub(super) async fn execute_job(&self, who: &Principal, job: QueuedJob) -> Result<(), GatewayError> {
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
                let claimed = ClaimedJob { id: job_id, grant: &grant, mode };
                self.claim_and_run(who, claimed, tables, module_path, params, cancel).await
            }
            // The import was destroyed after the job was queued: it cannot start.
            Ok(Err(gone)) => {
                self.end_queued_job(who, (job_id, &grant.id), (JobState::Failed, "job.finish"), &gone).await.map(drop)
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
    pub(super) async fn end_queued_job(
        &self,
        who: &Principal,
        (job_id, grant_id): (&str, &str),
        (state, action): (JobState, &str),
        why: &str,
    ) -> Result<bool, GatewayError> {
        let mut transaction = self.store.begin().await?;
        let ended = transaction
            .execute(
                "UPDATE jobs SET state = $1, error = $2, developer_error = $2 WHERE id = $3 AND state = $4",
                &[
                    Param::Text(state.as_str()),
                    Param::Text(why),
                    Param::Text(job_id),
                    Param::Text(JobState::Queued.as_str()),
                ],
            )
            .await?;
        if ended == 0 {
            return Ok(false);
        }
        transaction.log(
            AuditEvent::new(who, action, "job", job_id)
                .grant(grant_id.to_string())
                .decision(state.as_str())
                .reason(why)
                .entry(),
        );
        self.commit(transaction).await?;
        Ok(true)
    }

    /// Claims, runs and finishes a job: the steps a worker takes for one queued job.
    pub(super) async fn claim_and_run(
        &self,
        who: &Principal,
        job: ClaimedJob<'_>,
        tables: Vec<DomainTable>,
        module_path: String,
        params: String,
        cancel: CancelFlag,
    ) -> Result<(), GatewayError> {
        // Claim the job; a job cancelled while it waited is not run, nor one the domain's
        // shutdown caught before it started (it is marked interrupted).
        if self.is_stopping() {
            return Ok(());
        }
        let claimed = self
            .store
            .execute(
                "UPDATE jobs SET state = $1 WHERE id = $2 AND state = $3",
                &[Param::Text(JobState::Running.as_str()), Param::Text(job.id), Param::Text(JobState::Queued.as_str())],
            )
            .await?;
        if claimed == 0 {
            return Ok(());
        }
        let report = self.run_claimed(&job, tables, &module_path, params, cancel).await?;
        self.metrics.job_ran(&report);
        if self.is_stopping() && matches!(report.failure, Some(RuntimeError::Cancelled(_))) {
            return Ok(()); // stopped by the shutdown: marked interrupted, not cancelled
        }
        // The decrypted imports go before the job is seen to end. A failure here must not lose
        // the job's outcome: execute_job removes the directory again afterwards and reports it.
        let work = self.work_dir(job.id);
        if work.exists()
            && let Err(error) = std::fs::remove_dir_all(&work)
        {
            tracing::warn!(job = %job.id, "removing a job's decrypted imports failed, will retry: {error}");
        }
        // The job's outcome, its outputs and every runtime decision commit together.
        let mut transaction = self.store.begin().await?;
        log_runtime_decisions(&mut transaction, who, &job, &report);
        let out_dir = self.dir.join("outputs").join(job.id);
        std::fs::create_dir_all(&out_dir).map_err(io("creating an output directory"))?;
        // A cancelled job keeps nothing it produced: its grant may be gone.
        let kept =
            if matches!(report.failure, Some(RuntimeError::Cancelled(_))) { &[][..] } else { &report.outputs[..] };
        let mut summaries = Vec::with_capacity(kept.len());
        for output in kept {
            summaries.push(persist_output(&mut transaction, who, &job, &out_dir, output).await?);
        }
        finish_job(&mut transaction, who, &job, &report, summaries).await?;
        self.commit(transaction).await
    }

    /// Runs a claimed job's module on the runtime, on a blocking thread.
    async fn run_claimed(
        &self,
        job: &ClaimedJob<'_>,
        tables: Vec<DomainTable>,
        module_path: &str,
        params: String,
        cancel: CancelFlag,
    ) -> Result<JobReport, GatewayError> {
        let (job_id, grant, mode) = (job.id, job.grant, job.mode);
        let bytes = std::fs::read(module_path).map_err(io("reading a module"))?;
        let runtime = self.runtime.clone();
        let handle = tokio::runtime::Handle::current();
        let job_grant = grant.clone();
        let seed = sha256_hex(job_id.as_bytes()).bytes().fold(0u64, |seed, byte| seed.rotate_left(5) ^ u64::from(byte));
        tokio::task::spawn_blocking(move || {
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
        .map_err(|error| GatewayError::internal("running a job", error))
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
            let state: JobState = row["state"].parse()?;
            let finished = state.is_finished();
            if finished || tokio::time::Instant::now() >= deadline {
                // A job that never reached its end (still going, interrupted, or failed inside
                // the domain before the runtime reported) has no stored view: show its row.
                if !finished || row["report_json"] == "{}" {
                    let error = if finished { row["developer_error"].clone() } else { String::new() };
                    return Ok(JobView {
                        id: job_id.into(),
                        grant_id: row["grant_id"].clone(),
                        mode: row["mode"].clone(),
                        state,
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
}

/// A job claimed by a worker: what every step of its run needs to know.
pub(super) struct ClaimedJob<'a> {
    pub id: &'a str,
    /// The grant it runs under, with its imports joined.
    pub grant: &'a Grant,
    pub mode: Mode,
}

/// Logs the runtime's decisions during a job: refused queries, and groups withheld from the
/// module below the grant's threshold.
fn log_runtime_decisions(transaction: &mut Transaction, who: &Principal, job: &ClaimedJob<'_>, report: &JobReport) {
    let (job_id, grant) = (job.id, job.grant);
    for query in &report.queries {
        if query.outcome != "allowed" {
            transaction.log(
                AuditEvent::new(who, "query.refuse", "job", job_id)
                    .grant(grant.id.clone())
                    .decision("refused")
                    .reason(query.message.clone().unwrap_or_default())
                    .entry(),
            );
        } else if query.suppressed_groups > 0 {
            // A runtime decision in its own right: groups the module never saw.
            transaction.log(
                AuditEvent::new(who, "query.suppress", "job", job_id)
                    .grant(grant.id.clone())
                    .decision("suppressed")
                    .reason(format!(
                        "{} groups below the grant's threshold withheld from the module",
                        query.suppressed_groups
                    ))
                    .entry(),
            );
        }
    }
}

/// Writes one output of a finished job to `out_dir` and its row to the store; in sample mode
/// the output is checked against the contract and content rules and, when it passes, its
/// content comes back with the job.
async fn persist_output(
    transaction: &mut Transaction,
    who: &Principal,
    job: &ClaimedJob<'_>,
    out_dir: &Path,
    output: &JobOutput,
) -> Result<OutputSummary, GatewayError> {
    let (job_id, grant, mode) = (job.id, job.grant, job.mode);
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
    let lineage =
        serde_json::to_string(&output.lineage).map_err(|error| GatewayError::internal("encoding lineage", error))?;
    transaction
        .execute(
            "INSERT INTO outputs (job_id, name, kind, path, lineage_json, rows) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, name) DO UPDATE SET kind = excluded.kind, path = excluded.path, lineage_json = excluded.lineage_json, rows = excluded.rows",
            &[Param::Text(job_id), Param::Text(&output.name), Param::Text(kind), Param::Text(&path.to_string_lossy()), Param::Text(&lineage), Param::Int(rows as i64)],
        )
        .await?;
    let checked = match (mode, output.kind, output.table.as_ref()) {
        (Mode::Sample, OutputKind::Table, Some(table)) => {
            Some(unseen_policy::review::review_sample_table(grant, &output.name, table))
        }
        (Mode::Sample, OutputKind::Artifact, _) => {
            Some(unseen_policy::review::review_sample_artifact(grant, &output.name, &bytes))
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
            transaction.log(
                AuditEvent::new(who, "job.sample_withheld", "job", job_id)
                    .grant(grant.id.clone())
                    .decision("withheld")
                    .reason(format!("output \"{}\" {why}", output.name))
                    .entry(),
            );
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
    Ok(OutputSummary {
        name: output.name.clone(),
        kind: kind.into(),
        rows,
        suppressed_groups: output.lineage.suppressed_groups,
        content,
        withheld,
    })
}

/// Records how a job ended: its state, its view for the developer, and its entry.
async fn finish_job(
    transaction: &mut Transaction,
    who: &Principal,
    job: &ClaimedJob<'_>,
    report: &JobReport,
    summaries: Vec<OutputSummary>,
) -> Result<(), GatewayError> {
    let (job_id, grant, mode) = (job.id, job.grant, job.mode);
    let kept = summaries.len();
    let (state, error, developer_error) = match &report.failure {
        None => (JobState::Succeeded, String::new(), String::new()),
        Some(failure @ RuntimeError::Cancelled(_)) => {
            (JobState::Cancelled, failure.to_string(), failure.developer_message(mode))
        }
        Some(failure) => (JobState::Failed, failure.to_string(), failure.developer_message(mode)),
    };
    let view = JobView {
        id: job_id.to_string(),
        grant_id: grant.id.clone(),
        mode: if mode == Mode::Sample { "sample".into() } else { "production".into() },
        state,
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
                Param::Text(state.as_str()),
                Param::Text(&error),
                Param::Text(&developer_error),
                Param::Text(&json),
                Param::Text(job_id),
            ],
        )
        .await?;
    transaction.log(
        AuditEvent::new(who, "job.finish", "job", job_id)
            .grant(grant.id.clone())
            .decision(state.as_str())
            .reason(if error.is_empty() { format!("{kept} outputs") } else { error })
            .entry(),
    );
    Ok(())
}
