//! What a claimed job leaves when it ends: the runtime's decisions logged, its outputs
//! written and recorded (checked against the contract and content rules in sample mode), and
//! how it ended.

use std::path::Path;

use unseen_policy::{Grant, OutputKind};
use unseen_runtime::{JobOutput, JobReport, Mode, RuntimeError};

use crate::GatewayError;
use crate::identity::Principal;
use crate::states::JobState;
use crate::store::{JobEnd, NewOutput, Transaction, mode_name};

use super::{JobView, OutputSummary};
use crate::domain::files::{csv_bytes, parquet_bytes, write_atomically};
use crate::domain::{AuditEvent, Domain};

/// A job claimed by a worker: what every step of its run needs to know.
pub(in crate::domain) struct ClaimedJob<'a> {
    pub id: &'a str,
    /// The grant it runs under, with its imports joined.
    pub grant: &'a Grant,
    pub mode: Mode,
}

/// Logs the runtime's decisions during a job: refused queries, and groups withheld from the
/// module below the grant's threshold.
pub(super) fn log_runtime_decisions(
    transaction: &mut Transaction,
    who: &Principal,
    job: &ClaimedJob<'_>,
    report: &JobReport,
) {
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
pub(super) async fn persist_output(
    domain: &Domain,
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
        .put_output(&NewOutput {
            job_id,
            name: &output.name,
            kind: output.kind,
            path: &domain.stored_path(&path),
            lineage_json: &lineage,
            rows,
        })
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
pub(super) async fn finish_job(
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
        mode: mode_name(mode).into(),
        state,
        error: developer_error.clone(),
        outputs: summaries,
        guest_log: report.guest_log.clone(),
        queries: report.queries.clone(),
        metering: report.metering.clone(),
    };
    let json = serde_json::to_string(&view).map_err(|error| GatewayError::internal("encoding a job", error))?;
    let end = JobEnd { state, error: &error, developer_error: &developer_error };
    transaction.finish_job(job_id, &end, &json).await?;
    transaction.log(
        AuditEvent::new(who, "job.finish", "job", job_id)
            .grant(grant.id.clone())
            .decision(state.as_str())
            .reason(if error.is_empty() { format!("{kept} outputs") } else { error })
            .entry(),
    );
    Ok(())
}
