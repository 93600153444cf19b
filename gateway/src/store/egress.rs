//! Egress requests (出域申请) and the releases made of them.

use unseen_policy::OutputKind;

use super::jobs::OutputRow;
use super::rows::{placeholders, row, with_states};
use super::{Param, Store, Transaction};
use crate::GatewayError;
use crate::domain::now_ms;
use crate::states::EgressState;

/// The columns of an [`EgressRow`], in a query over `egress` alone.
macro_rules! egress_columns {
    () => {
        "id, developer, job_id, output_name, state, report_json, reason, release_id"
    };
}

row! {
    /// An egress request and its review.
    pub struct EgressRow from "egress" key ["id"] {
        /// `e-N`.
        pub id: String = text,
        /// The requesting organisation.
        pub developer: String = text,
        /// The job whose output it asks for.
        pub job_id: String = text,
        /// The output.
        pub output_name: String = text,
        /// Its state.
        pub state: EgressState = state,
        /// The reviewer's report (`ReviewReport`) as JSON, exactly the bytes the log and the
        /// release hash.
        pub report_json: String = text,
        /// The operator's reason.
        pub reason: String = text,
        /// The release made of it; empty until there is one.
        pub release_id: String = text,
    }
}

/// An egress request as reviewed.
#[derive(Debug, Clone, Copy)]
pub struct NewEgress<'a> {
    /// `e-N`.
    pub id: &'a str,
    /// The requesting organisation.
    pub developer: &'a str,
    /// The job.
    pub job_id: &'a str,
    /// The output.
    pub output_name: &'a str,
    /// Its state after the review.
    pub state: EgressState,
    /// The reviewer's report as JSON.
    pub report_json: &'a str,
}

row! {
    /// A signed release bundle.
    pub struct ReleaseRow from "releases" key ["id"] {
        /// `r-N`.
        pub id: String = text,
        /// The organisation it was released to.
        pub developer: String = text,
        /// The bundle's directory.
        pub dir: String = text,
    }
}

/// A release as signed.
#[derive(Debug, Clone, Copy)]
pub struct NewRelease<'a> {
    /// `r-N`.
    pub id: &'a str,
    /// The egress request released.
    pub egress_id: &'a str,
    /// The organisation it is released to.
    pub developer: &'a str,
    /// The bundle's directory.
    pub dir: &'a str,
}

impl Store {
    /// An egress request.
    pub async fn egress(&self, id: &str) -> Result<Option<EgressRow>, GatewayError> {
        self.row(concat!("SELECT ", egress_columns!(), " FROM egress WHERE id = $1"), &[Param::Text(id)]).await
    }

    /// Egress requests in `state` (all when `None`), oldest first.
    pub async fn egress_requests(&self, state: Option<EgressState>) -> Result<Vec<EgressRow>, GatewayError> {
        let state = state.map_or("", EgressState::as_str);
        self.rows(
            concat!("SELECT ", egress_columns!(), " FROM egress WHERE ($1 = '' OR state = $2) ORDER BY created_ms"),
            &[Param::Text(state), Param::Text(state)],
        )
        .await
    }

    /// The egress requests of every job of a grant, oldest first.
    pub async fn egress_of_grant(&self, grant_id: &str) -> Result<Vec<EgressRow>, GatewayError> {
        self.rows(
            "SELECT e.id AS id, e.developer AS developer, e.job_id AS job_id, e.output_name AS output_name, \
             e.state AS state, e.report_json AS report_json, e.reason AS reason, e.release_id AS release_id \
             FROM egress e JOIN jobs j ON e.job_id = j.id WHERE j.grant_id = $1 ORDER BY e.created_ms",
            &[Param::Text(grant_id)],
        )
        .await
    }

    /// Egress requests in one of `states` of which no release was made, oldest first.
    pub async fn egress_without_release(&self, states: &[EgressState]) -> Result<Vec<EgressRow>, GatewayError> {
        let sql = format!(
            concat!(
                "SELECT ",
                egress_columns!(),
                " FROM egress WHERE state IN ({}) AND release_id = '' ORDER BY created_ms"
            ),
            placeholders(1, states.len())
        );
        self.rows(sqlx::AssertSqlSafe(sql), &with_states(&[], states, EgressState::as_str)).await
    }

    /// The outputs of `kind` of a grant's jobs requested since `since_ms` by a request now in
    /// one of `states`: one row per request.
    pub async fn requested_outputs(
        &self,
        grant_id: &str,
        kind: OutputKind,
        since_ms: i64,
        states: &[EgressState],
    ) -> Result<Vec<OutputRow>, GatewayError> {
        let sql = format!(
            "SELECT o.job_id AS job_id, o.name AS name, o.kind AS kind, o.path AS path, \
             o.lineage_json AS lineage_json, o.rows AS rows FROM egress e JOIN jobs j ON e.job_id = j.id \
             JOIN outputs o ON o.job_id = e.job_id AND o.name = e.output_name \
             WHERE j.grant_id = $1 AND o.kind = $2 AND e.created_ms >= $3 AND e.state IN ({})",
            placeholders(4, states.len())
        );
        let params = with_states(
            &[Param::Text(grant_id), Param::Text(kind.as_str()), Param::Int(since_ms)],
            states,
            EgressState::as_str,
        );
        self.rows(sqlx::AssertSqlSafe(sql), &params).await
    }

    /// A release.
    pub async fn release(&self, id: &str) -> Result<Option<ReleaseRow>, GatewayError> {
        self.row("SELECT id, developer, dir FROM releases WHERE id = $1", &[Param::Text(id)]).await
    }
}

impl Transaction {
    /// Records a reviewed egress request.
    pub async fn insert_egress(&mut self, egress: &NewEgress<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO egress (id, developer, job_id, output_name, state, report_json, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                Param::Text(egress.id),
                Param::Text(egress.developer),
                Param::Text(egress.job_id),
                Param::Text(egress.output_name),
                Param::Text(egress.state.as_str()),
                Param::Text(egress.report_json),
                Param::Int(now_ms()),
            ],
        )
        .await
        .map(drop)
    }

    /// Moves an egress request from `from` to `to` with the operator's `reason`; false when it
    /// is no longer in `from`.
    pub async fn set_egress_state(
        &mut self,
        id: &str,
        (from, to): (EgressState, EgressState),
        reason: &str,
    ) -> Result<bool, GatewayError> {
        let changed = self
            .execute(
                "UPDATE egress SET state = $1, reason = $2 WHERE id = $3 AND state = $4",
                &[Param::Text(to.as_str()), Param::Text(reason), Param::Text(id), Param::Text(from.as_str())],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Moves every egress request of a grant's jobs in `from` to `to` with `reason`; how many
    /// it moved.
    pub async fn set_egress_states_of_grant(
        &mut self,
        grant_id: &str,
        (from, to): (EgressState, EgressState),
        reason: &str,
    ) -> Result<u64, GatewayError> {
        self.execute(
            "UPDATE egress SET state = $1, reason = $2 WHERE state = $3 AND job_id IN \
             (SELECT id FROM jobs WHERE grant_id = $4)",
            &[Param::Text(to.as_str()), Param::Text(reason), Param::Text(from.as_str()), Param::Text(grant_id)],
        )
        .await
    }

    /// Records a signed release and links its egress request to it.
    pub async fn insert_release(&mut self, release: &NewRelease<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO releases (id, egress_id, developer, dir, created_ms) VALUES ($1, $2, $3, $4, $5)",
            &[
                Param::Text(release.id),
                Param::Text(release.egress_id),
                Param::Text(release.developer),
                Param::Text(release.dir),
                Param::Int(now_ms()),
            ],
        )
        .await?;
        self.execute(
            "UPDATE egress SET release_id = $1 WHERE id = $2",
            &[Param::Text(release.id), Param::Text(release.egress_id)],
        )
        .await
        .map(drop)
    }
}
