//! Grants (授权): what a developer may read and release. Operators suspend, resume, revoke
//! and terminate them; a terminated grant's outputs are closed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use unseen_policy::Grant;

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::states::{EgressState, GrantState, ImportState, JobState};
use crate::store::{GrantRow, JobEnd};

use super::files::remove_if_present;
use super::jobs::CANCEL_WAIT;
use super::{AuditEvent, Domain, decode, found, now_ms};

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

pub(super) fn grant_view(row: GrantRow) -> Result<GrantView, GatewayError> {
    let grant: Grant = decode(&row.json, "a grant")?;
    let state = if row.state == GrantState::Active && now_ms() >= grant.expires_at_unix_ms {
        GrantState::Expired
    } else {
        row.state
    };
    Ok(GrantView {
        id: row.id,
        scenario_id: row.scenario_id,
        developer: row.developer,
        state,
        hash: row.hash,
        expires_at_unix_ms: grant.expires_at_unix_ms,
        reason: row.reason,
    })
}

impl Domain {
    /// Grants, optionally in one state (operators). A grant past its validity is shown as
    /// `expired` whatever its stored state.
    pub async fn list_grants(&self, who: &Principal, state: &str) -> Result<Vec<GrantView>, GatewayError> {
        Self::require(who, Role::Operator)?;
        let rows = self.store.grants().await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            let view = grant_view(row)?;
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
        let row = self.grant_row(grant_id).await?;
        let (stored, hash) = (row.state, row.hash.clone());
        let current = grant_view(row)?.state;
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
        let changed = transaction.set_grant_state(grant_id, (stored, to), reason).await?;
        Self::decided(changed, ("grant", grant_id))?;
        let mut detail = reason.to_string();
        if action != GrantAction::Resume {
            let end = JobEnd { state: JobState::Cancelled, error: &why, developer_error: &why };
            let cancelled = transaction.end_jobs_of_grant(grant_id, JobState::Queued, &end).await?;
            let running = self.running_jobs_of(grant_id).len();
            detail = format!("{reason} ({cancelled} queued jobs cancelled, {running} running jobs stopped)");
        }
        transaction.log(
            AuditEvent::new(who, verb, "grant", grant_id)
                .object_hash(hash)
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
        grant_view(self.grant_row(grant_id).await?)
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
        let outputs = self.store.outputs_of_grant(grant_id).await?;
        for output in &outputs {
            remove_if_present(&self.domain_file(&output.path))?;
        }
        for candidate in self.store.egress_of_grant(grant_id).await? {
            remove_if_present(&self.dir.join("egress").join(format!("{}.parquet", candidate.id)))?;
        }
        let destroyed = self.destroy_grant_imports(grant_id).await?;
        let mut transaction = self.store.begin().await?;
        for import_id in &destroyed {
            transaction.force_import_state(import_id, ImportState::Destroyed, why).await?;
            transaction.log(
                AuditEvent::new(who, "import.destroy", "import", import_id)
                    .grant(grant_id.to_string())
                    .decision(ImportState::Destroyed.as_str())
                    .reason(format!("key and encrypted table destroyed: {why}"))
                    .entry(),
            );
        }
        let rejected = (EgressState::AwaitingOperator, EgressState::Rejected);
        let rejected = transaction.set_egress_states_of_grant(grant_id, rejected, why).await?;
        transaction.delete_outputs_of_grant(grant_id).await?;
        transaction.log(AuditEvent::new(who, "grant.purge", "grant", grant_id).grant(grant_id.to_string()).decision("deleted").reason(format!(
                "{} held outputs deleted, {rejected} egress requests awaiting an operator rejected, {} imported tables destroyed",
                outputs.len(),
                destroyed.len()
            )).entry());
        self.commit(transaction).await
    }

    pub(super) async fn grant_for(&self, who: &Principal, grant_id: &str) -> Result<Grant, GatewayError> {
        let row = self.grant_row(grant_id).await?;
        Self::require_owner(who, &row.developer, &format!("grant {grant_id}"))?;
        if row.state != GrantState::Active {
            return Err(GatewayError::Denied(format!("grant {grant_id} is {}; no work may run under it", row.state)));
        }
        let grant: Grant = decode(&row.json, "a grant")?;
        grant.check_usable(now_ms())?;
        Ok(grant)
    }

    /// A grant's row, or not found.
    async fn grant_row(&self, grant_id: &str) -> Result<GrantRow, GatewayError> {
        found(self.store.grant(grant_id).await?, format_args!("grant {grant_id}"))
    }
}
