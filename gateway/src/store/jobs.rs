//! Jobs, the modules they run and the outputs they leave.

use unseen_policy::OutputKind;
use unseen_runtime::Mode;

use super::rows::{placeholders, row, signed, with_states};
use super::{Param, Store, Transaction};
use crate::GatewayError;
use crate::domain::now_ms;
use crate::states::JobState;

/// How a job's mode is spelt: in its row, its view and its log entry.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Sample => "sample",
        Mode::Production => "production",
    }
}

/// The columns of a [`JobRow`], in a query over `jobs` alone.
macro_rules! job_columns {
    () => {
        "id, developer, grant_id, module_hash, mode, state, developer_error, report_json, imports"
    };
}

row! {
    /// A job.
    pub struct JobRow from "jobs" key ["id"] {
        /// `j-N`.
        pub id: String = text,
        /// The developer organisation that submitted it.
        pub developer: String = text,
        /// The grant it runs under.
        pub grant_id: String = text,
        /// The module it runs.
        pub module_hash: String = text,
        /// Which copy of the data it reads.
        pub mode: Mode = spelt(&[Mode::Sample, Mode::Production], mode_name),
        /// Its state.
        pub state: JobState = state,
        /// Why it failed, as its developer may read it.
        pub developer_error: String = text,
        /// Its view for the developer (`JobView` as JSON), once the runtime reported how it
        /// ended; `None` before, or when it ended without (interrupted, failed in the domain).
        pub report_json: Option<String> = json_once_written,
        /// The ids of the approved imports it was given.
        pub imports: Vec<String> = id_list,
    }
}

/// A job as submitted.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// `j-N`.
    pub id: &'a str,
    /// The developer organisation.
    pub developer: &'a str,
    /// The grant it runs under.
    pub grant_id: &'a str,
    /// The module it runs.
    pub module_hash: &'a str,
    /// Which copy of the data it reads.
    pub mode: Mode,
    /// Its parameters.
    pub params: &'a str,
    /// Its state.
    pub state: JobState,
    /// The ids of the approved imports it is given.
    pub imports: &'a [&'a str],
}

/// How a job ended, or is ended: its state and why, for the domain and for its developer.
#[derive(Debug, Clone, Copy)]
pub struct JobEnd<'a> {
    /// The state it ends in.
    pub state: JobState,
    /// Why, in full.
    pub error: &'a str,
    /// Why, as its developer may read it.
    pub developer_error: &'a str,
}

row! {
    /// An uploaded module, bound to a grant.
    pub struct ModuleRow from "modules" key ["hash", "grant_id"] {
        /// Hex SHA-256 of the module.
        pub hash: String = text,
        /// Its file.
        pub path: String = text,
    }
}

/// A module as uploaded.
#[derive(Debug, Clone, Copy)]
pub struct NewModule<'a> {
    /// Hex SHA-256 of the module.
    pub hash: &'a str,
    /// The developer organisation.
    pub developer: &'a str,
    /// The grant it is bound to.
    pub grant_id: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// Its file.
    pub path: &'a str,
}

/// Every kind of output, for reading a kind back.
const OUTPUT_KINDS: &[OutputKind] = &[OutputKind::Table, OutputKind::Artifact, OutputKind::Verification];

row! {
    /// An output a job left in the domain.
    pub struct OutputRow from "outputs" key ["job_id", "name"] {
        /// The job.
        pub job_id: String = text,
        /// The output's name.
        pub name: String = text,
        /// Table, artifact or verification.
        pub kind: OutputKind = spelt(OUTPUT_KINDS, OutputKind::as_str),
        /// Its file.
        pub path: String = text,
        /// Its lineage (`OutputLineage`) as JSON.
        pub lineage_json: String = text,
        /// Its rows (tables).
        pub rows: u64 = number,
    }
}

/// An output as a job left it.
#[derive(Debug, Clone, Copy)]
pub struct NewOutput<'a> {
    /// The job.
    pub job_id: &'a str,
    /// The output's name.
    pub name: &'a str,
    /// Table, artifact or verification.
    pub kind: OutputKind,
    /// Its file.
    pub path: &'a str,
    /// Its lineage as JSON.
    pub lineage_json: &'a str,
    /// Its rows (tables).
    pub rows: u64,
}

impl Store {
    /// A job.
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, GatewayError> {
        self.row(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1"), &[Param::Text(id)]).await
    }

    /// Jobs in one of `states`, oldest first.
    pub async fn jobs_in(&self, states: &[JobState]) -> Result<Vec<JobRow>, GatewayError> {
        let sql = format!(
            concat!("SELECT ", job_columns!(), " FROM jobs WHERE state IN ({}) ORDER BY created_ms"),
            placeholders(1, states.len())
        );
        self.rows(sqlx::AssertSqlSafe(sql), &with_states(&[], states, JobState::as_str)).await
    }

    /// A module `developer` uploaded for `grant_id`.
    pub async fn module(&self, hash: &str, developer: &str, grant_id: &str) -> Result<Option<ModuleRow>, GatewayError> {
        self.row(
            "SELECT hash, grant_id, path FROM modules WHERE hash = $1 AND developer = $2 AND grant_id = $3",
            &[Param::Text(hash), Param::Text(developer), Param::Text(grant_id)],
        )
        .await
    }

    /// A job's outputs, by name.
    pub async fn outputs_of_job(&self, job_id: &str) -> Result<Vec<OutputRow>, GatewayError> {
        self.rows(
            "SELECT job_id, name, kind, path, lineage_json, rows FROM outputs WHERE job_id = $1 ORDER BY name",
            &[Param::Text(job_id)],
        )
        .await
    }

    /// One output of a job.
    pub async fn output(&self, job_id: &str, name: &str) -> Result<Option<OutputRow>, GatewayError> {
        self.row(
            "SELECT job_id, name, kind, path, lineage_json, rows FROM outputs WHERE job_id = $1 AND name = $2",
            &[Param::Text(job_id), Param::Text(name)],
        )
        .await
    }

    /// The outputs of every job of a grant.
    pub async fn outputs_of_grant(&self, grant_id: &str) -> Result<Vec<OutputRow>, GatewayError> {
        self.rows(
            "SELECT outputs.job_id, outputs.name, outputs.kind, outputs.path, outputs.lineage_json, outputs.rows \
             FROM outputs JOIN jobs ON jobs.id = outputs.job_id WHERE jobs.grant_id = $1",
            &[Param::Text(grant_id)],
        )
        .await
    }
}

impl Transaction {
    /// Records an uploaded module (once per module and grant).
    pub async fn insert_module(&mut self, module: &NewModule<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO modules (hash, developer, grant_id, size, path, created_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT(hash, grant_id) DO NOTHING",
            &[
                Param::Text(module.hash),
                Param::Text(module.developer),
                Param::Text(module.grant_id),
                Param::Int(signed(module.size)),
                Param::Text(module.path),
                Param::Int(now_ms()),
            ],
        )
        .await
        .map(drop)
    }

    /// Records a submitted job.
    pub async fn insert_job(&mut self, job: &NewJob<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO jobs (id, developer, grant_id, module_hash, mode, params, state, imports, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                Param::Text(job.id),
                Param::Text(job.developer),
                Param::Text(job.grant_id),
                Param::Text(job.module_hash),
                Param::Text(mode_name(job.mode)),
                Param::Text(job.params),
                Param::Text(job.state.as_str()),
                Param::Text(&job.imports.join(",")),
                Param::Int(now_ms()),
            ],
        )
        .await
        .map(drop)
    }

    /// Moves a job from `from` to `to`; false when it is no longer in `from`.
    pub async fn set_job_state(&mut self, id: &str, (from, to): (JobState, JobState)) -> Result<bool, GatewayError> {
        let changed = self
            .execute(
                "UPDATE jobs SET state = $1 WHERE id = $2 AND state = $3",
                &[Param::Text(to.as_str()), Param::Text(id), Param::Text(from.as_str())],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Ends a job as `end` says, whatever its state.
    pub async fn end_job(&mut self, id: &str, end: &JobEnd<'_>) -> Result<(), GatewayError> {
        self.execute(
            "UPDATE jobs SET state = $1, error = $2, developer_error = $3 WHERE id = $4",
            &[
                Param::Text(end.state.as_str()),
                Param::Text(end.error),
                Param::Text(end.developer_error),
                Param::Text(id),
            ],
        )
        .await
        .map(drop)
    }

    /// Ends a job as `end` says if it is still in `from`; false when it is not.
    pub async fn end_job_in(&mut self, id: &str, from: JobState, end: &JobEnd<'_>) -> Result<bool, GatewayError> {
        let changed = self
            .execute(
                "UPDATE jobs SET state = $1, error = $2, developer_error = $3 WHERE id = $4 AND state = $5",
                &[
                    Param::Text(end.state.as_str()),
                    Param::Text(end.error),
                    Param::Text(end.developer_error),
                    Param::Text(id),
                    Param::Text(from.as_str()),
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Ends every job of a grant still in `from` as `end` says; how many it ended.
    pub async fn end_jobs_of_grant(
        &mut self,
        grant_id: &str,
        from: JobState,
        end: &JobEnd<'_>,
    ) -> Result<u64, GatewayError> {
        self.execute(
            "UPDATE jobs SET state = $1, error = $2, developer_error = $3 WHERE grant_id = $4 AND state = $5",
            &[
                Param::Text(end.state.as_str()),
                Param::Text(end.error),
                Param::Text(end.developer_error),
                Param::Text(grant_id),
                Param::Text(from.as_str()),
            ],
        )
        .await
    }

    /// Records how a job ended, with its view for the developer (`JobView` as JSON).
    pub async fn finish_job(&mut self, id: &str, end: &JobEnd<'_>, view_json: &str) -> Result<(), GatewayError> {
        self.execute(
            "UPDATE jobs SET state = $1, error = $2, developer_error = $3, report_json = $4 WHERE id = $5",
            &[
                Param::Text(end.state.as_str()),
                Param::Text(end.error),
                Param::Text(end.developer_error),
                Param::Text(view_json),
                Param::Text(id),
            ],
        )
        .await
        .map(drop)
    }

    /// Records an output a job left (replacing one of the same name).
    pub async fn put_output(&mut self, output: &NewOutput<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO outputs (job_id, name, kind, path, lineage_json, rows) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (job_id, name) DO UPDATE SET kind = excluded.kind, path = excluded.path, \
             lineage_json = excluded.lineage_json, rows = excluded.rows",
            &[
                Param::Text(output.job_id),
                Param::Text(output.name),
                Param::Text(output.kind.as_str()),
                Param::Text(output.path),
                Param::Text(output.lineage_json),
                Param::Int(signed(output.rows)),
            ],
        )
        .await
        .map(drop)
    }

    /// Deletes the output rows of every job of a grant.
    pub async fn delete_outputs_of_grant(&mut self, grant_id: &str) -> Result<(), GatewayError> {
        self.execute(
            "DELETE FROM outputs WHERE job_id IN (SELECT id FROM jobs WHERE grant_id = $1)",
            &[Param::Text(grant_id)],
        )
        .await
        .map(drop)
    }
}
