//! Grants (授权): what a developer may read and release. Operators suspend, resume, revoke
//! and terminate them; a terminated grant's outputs are closed.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use unseen_policy::Grant;

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::states::{EgressState, GrantState, ImportState, JobState};
use crate::store::Param;

use super::files::remove_if_present;
use super::jobs::CANCEL_WAIT;
use super::{AuditEvent, Domain, now_ms};

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
    /// Its state; `expired` once past its validity, whatever is stored.
    pub state: GrantState,
    /// Hex SHA-256 of the frozen grant.
    pub hash: String,
    /// When it stops being usable.
    pub expires_at_unix_ms: i64,
    /// Why it was last suspended, resumed or terminated.
    pub reason: String,
}

pub(super) fn grant_view(row: &crate::store::Record) -> Result<GrantView, GatewayError> {
    let grant: Grant =
        serde_json::from_str(&row["json"]).map_err(|error| GatewayError::internal("decoding a grant", error))?;
    let stored: GrantState = row["state"].parse()?;
    let state =
        if stored == GrantState::Active && now_ms() >= grant.expires_at_unix_ms { GrantState::Expired } else { stored };
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

impl Domain {
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
        let (from, to): (&[GrantState], GrantState) = match action {
            GrantAction::Suspend => (&[GrantState::Active], GrantState::Suspended),
            GrantAction::Resume => (&[GrantState::Suspended], GrantState::Active),
            GrantAction::Terminate => {
                (&[GrantState::Active, GrantState::Suspended, GrantState::Expired], GrantState::Terminated)
            }
        };
        if !from.contains(&current) {
            let from: Vec<&str> = from.iter().map(|state| state.as_str()).collect();
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
            &[Param::Text(to.as_str()), Param::Text(reason), Param::Text(grant_id), Param::Text(&row["state"])],
        )
        .await?;
        let mut detail = reason.to_string();
        if action != GrantAction::Resume {
            let cancelled = transaction
                .execute(
                    "UPDATE jobs SET state = $1, error = $2, developer_error = $2 WHERE grant_id = $3 AND state = $4",
                    &[
                        Param::Text(JobState::Cancelled.as_str()),
                        Param::Text(&why),
                        Param::Text(grant_id),
                        Param::Text(JobState::Queued.as_str()),
                    ],
                )
                .await?;
            let running = self.running_jobs_of(grant_id).len();
            detail = format!("{reason} ({cancelled} queued jobs cancelled, {running} running jobs stopped)");
        }
        transaction.log(
            AuditEvent::new(who, verb, "grant", grant_id)
                .object_hash(row["hash"].clone())
                .grant(grant_id.to_string())
                .decision(to.as_str())
                .reason(detail)
                .entry(),
        );
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
    pub(super) async fn close_grant_outputs(
        &self,
        who: &Principal,
        grant_id: &str,
        why: &str,
    ) -> Result<(), GatewayError> {
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
                    "UPDATE imports SET state = $1, reason = $2 WHERE id = $3",
                    &[Param::Text(ImportState::Destroyed.as_str()), Param::Text(why), Param::Text(import_id)],
                )
                .await?;
            transaction.log(
                AuditEvent::new(who, "import.destroy", "import", import_id)
                    .grant(grant_id.to_string())
                    .decision(ImportState::Destroyed.as_str())
                    .reason(format!("key and encrypted table destroyed: {why}"))
                    .entry(),
            );
        }
        let rejected = transaction
            .execute(
                "UPDATE egress SET state = $1, reason = $2 WHERE state = $3 AND job_id IN \
                 (SELECT id FROM jobs WHERE grant_id = $4)",
                &[
                    Param::Text(EgressState::Rejected.as_str()),
                    Param::Text(why),
                    Param::Text(EgressState::AwaitingOperator.as_str()),
                    Param::Text(grant_id),
                ],
            )
            .await?;
        transaction
            .execute(
                "DELETE FROM outputs WHERE job_id IN (SELECT id FROM jobs WHERE grant_id = $1)",
                &[Param::Text(grant_id)],
            )
            .await?;
        transaction.log(AuditEvent::new(who, "grant.purge", "grant", grant_id).grant(grant_id.to_string()).decision("deleted").reason(format!(
                "{} held outputs deleted, {rejected} egress requests awaiting an operator rejected, {} imported tables destroyed",
                outputs.len(),
                destroyed.len()
            )).entry());
        self.commit(transaction).await
    }

    pub(super) async fn grant_for(&self, who: &Principal, grant_id: &str) -> Result<Grant, GatewayError> {
        let row = self
            .store
            .fetch_one("SELECT * FROM grants WHERE id = $1", &[Param::Text(grant_id)], &format!("grant {grant_id}"))
            .await?;
        Self::require_owner(who, &row, &format!("grant {grant_id}"))?;
        let state: GrantState = row["state"].parse()?;
        if state != GrantState::Active {
            return Err(GatewayError::Denied(format!("grant {grant_id} is {state}; no work may run under it")));
        }
        let grant: Grant =
            serde_json::from_str(&row["json"]).map_err(|error| GatewayError::internal("decoding a grant", error))?;
        grant.check_usable(now_ms())?;
        Ok(grant)
    }
}
