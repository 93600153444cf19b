//! Grants (授权).

use super::rows::{placeholders, row, with_states};
use super::{Param, Store, Transaction};
use crate::GatewayError;
use crate::domain::now_ms;
use crate::states::{GrantState, ImportState};

row! {
    /// A grant and its stored state (an expired grant's row stays `active`).
    pub struct GrantRow from "grants" key ["id"] {
        /// `g-N`.
        pub id: String = text,
        /// The scenario it was approved from.
        pub scenario_id: String = text,
        /// The developer organisation.
        pub developer: String = text,
        /// The frozen grant (`Grant`) as JSON.
        pub json: String = text,
        /// Hex SHA-256 of the frozen grant.
        pub hash: String = text,
        /// Its stored state.
        pub state: GrantState = state,
        /// Why it was last suspended, resumed or terminated.
        pub reason: String = text,
    }
}

/// A grant as approved.
#[derive(Debug, Clone, Copy)]
pub struct NewGrant<'a> {
    /// `g-N`.
    pub id: &'a str,
    /// The scenario it was approved from.
    pub scenario_id: &'a str,
    /// The developer organisation.
    pub developer: &'a str,
    /// The frozen grant as JSON.
    pub json: &'a str,
    /// Hex SHA-256 of the frozen grant.
    pub hash: &'a str,
    /// Its state.
    pub state: GrantState,
}

impl Store {
    /// Every grant, oldest first.
    pub async fn grants(&self) -> Result<Vec<GrantRow>, GatewayError> {
        self.rows("SELECT id, scenario_id, developer, json, hash, state, reason FROM grants ORDER BY created_ms", &[])
            .await
    }

    /// A grant.
    pub async fn grant(&self, id: &str) -> Result<Option<GrantRow>, GatewayError> {
        self.row(
            "SELECT id, scenario_id, developer, json, hash, state, reason FROM grants WHERE id = $1",
            &[Param::Text(id)],
        )
        .await
    }

    /// The grant a job ran under.
    pub async fn grant_of_job(&self, job_id: &str) -> Result<Option<GrantRow>, GatewayError> {
        self.row(
            "SELECT grants.id, grants.scenario_id, grants.developer, grants.json, grants.hash, grants.state, \
             grants.reason FROM grants JOIN jobs ON jobs.grant_id = grants.id WHERE jobs.id = $1",
            &[Param::Text(job_id)],
        )
        .await
    }

    /// Grants in `state` that still have a job's output stored, or an import in one of
    /// `import_states`.
    pub async fn grants_with_outputs_or_imports(
        &self,
        state: GrantState,
        import_states: &[ImportState],
    ) -> Result<Vec<GrantRow>, GatewayError> {
        let sql = format!(
            "SELECT id, scenario_id, developer, json, hash, state, reason FROM grants WHERE state = $1 AND (\
             id IN (SELECT jobs.grant_id FROM jobs JOIN outputs ON outputs.job_id = jobs.id) OR \
             id IN (SELECT grant_id FROM imports WHERE state IN ({})))",
            placeholders(2, import_states.len())
        );
        let params = with_states(&[Param::Text(state.as_str())], import_states, ImportState::as_str);
        self.rows(sqlx::AssertSqlSafe(sql), &params).await
    }
}

impl Transaction {
    /// Records an approved grant.
    pub async fn insert_grant(&mut self, grant: &NewGrant<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO grants (id, scenario_id, developer, json, hash, state, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                Param::Text(grant.id),
                Param::Text(grant.scenario_id),
                Param::Text(grant.developer),
                Param::Text(grant.json),
                Param::Text(grant.hash),
                Param::Text(grant.state.as_str()),
                Param::Int(now_ms()),
            ],
        )
        .await
        .map(drop)
    }

    /// Moves a grant from `from` to `to` with the operator's `reason`; false when it is no
    /// longer in `from`.
    pub async fn set_grant_state(
        &mut self,
        id: &str,
        (from, to): (GrantState, GrantState),
        reason: &str,
    ) -> Result<bool, GatewayError> {
        let changed = self
            .execute(
                "UPDATE grants SET state = $1, reason = $2 WHERE id = $3 AND state = $4",
                &[Param::Text(to.as_str()), Param::Text(reason), Param::Text(id), Param::Text(from.as_str())],
            )
            .await?;
        Ok(changed > 0)
    }
}
