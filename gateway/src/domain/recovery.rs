//! Recovery when a domain opens: jobs a killed process left running are marked interrupted,
//! releases and terminations it left half done are finished from what the log says was decided.

use unseen_audit::Entry;

use crate::GatewayError;
use crate::identity::Principal;
use crate::states::{EgressState, GrantState, JobState};
use crate::store::JobEnd;

use super::imports::HELD;
use super::{Domain, now_ms};

impl Domain {
    /// Jobs that were queued or running when the domain last stopped will never finish: they
    /// are marked `interrupted` (with an audit entry each) so that their developers see it and
    /// run them again. Nothing they produced was acknowledged, so nothing is lost.
    pub(super) async fn mark_interrupted_jobs(&self) -> Result<(), GatewayError> {
        let stranded = self.store.jobs_in(&[JobState::Queued, JobState::Running]).await?;
        for job in stranded {
            let message = format!("interrupted: the domain stopped while the job was {}; run it again", job.state);
            let mut transaction = self.store.begin().await?;
            let end = JobEnd { state: JobState::Interrupted, error: &message, developer_error: &message };
            transaction.end_job(&job.id, &end).await?;
            transaction.log(Entry {
                time_unix_ms: now_ms(),
                organisation: self.name.clone(),
                principal: "domain".into(),
                role: "domain".into(),
                action: "job.interrupt".into(),
                object_kind: "job".into(),
                object_id: job.id,
                object_hash: None,
                grant: Some(job.grant_id),
                decision: JobState::Interrupted.as_str().into(),
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
    pub(super) async fn finish_interrupted_releases(&self) -> Result<(), GatewayError> {
        let stranded = self.store.egress_without_release(&[EgressState::Approved, EgressState::AutoReleased]).await?;
        for egress in stranded {
            let egress_id = egress.id.as_str();
            let approved = egress.state == EgressState::Approved;
            let decision_action = if approved { "egress.approve" } else { "egress.review" };
            let who = self.logged_actor(egress_id, decision_action)?;
            let approver = if approved { format!("{}@{}", who.name, who.organisation) } else { "auto".into() };
            self.release(&who, egress_id, &approver).await?;
        }
        Ok(())
    }

    /// Grants terminated while the domain stopped before their held outputs were deleted and
    /// their imported tables destroyed: that is finished now.
    pub(super) async fn finish_interrupted_terminations(&self) -> Result<(), GatewayError> {
        let unfinished = self.store.grants_with_outputs_or_imports(GrantState::Terminated, &HELD).await?;
        for grant in unfinished {
            let who = self.logged_actor(&grant.id, "grant.terminate")?;
            let why = format!("grant {} terminated by the operator: {}", grant.id, grant.reason);
            self.close_grant_outputs(&who, &grant.id, &why).await?;
        }
        Ok(())
    }

    /// The principal whose latest `action` on `object_id` the log records.
    pub(super) fn logged_actor(&self, object_id: &str, action: &str) -> Result<Principal, GatewayError> {
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
}
