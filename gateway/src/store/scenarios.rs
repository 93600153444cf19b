//! Scenario applications (场景申请).

use super::rows::row;
use super::{Param, Store, Transaction};
use crate::GatewayError;
use crate::domain::now_ms;
use crate::states::ScenarioState;

row! {
    /// A scenario application and the operator's decision on it.
    pub struct ScenarioRow from "scenarios" key ["id"] {
        /// `s-N`.
        pub id: String = text,
        /// The applying organisation.
        pub developer: String = text,
        /// Its state.
        pub state: ScenarioState = state,
        /// The application (`ScenarioApplication`) as JSON.
        pub application_json: String = text,
        /// The operator's reason.
        pub reason: String = text,
        /// The grant it was approved into; empty until it is.
        pub grant_id: String = text,
    }
}

/// A scenario application as filed.
#[derive(Debug, Clone, Copy)]
pub struct NewScenario<'a> {
    /// `s-N`.
    pub id: &'a str,
    /// The applying organisation.
    pub developer: &'a str,
    /// Its state.
    pub state: ScenarioState,
    /// The application as JSON.
    pub application_json: &'a str,
}

impl Store {
    /// Scenarios, oldest first: those in `state` (all when `None`) of `developer` (every
    /// organisation's when `None`).
    pub async fn scenarios(
        &self,
        state: Option<ScenarioState>,
        developer: Option<&str>,
    ) -> Result<Vec<ScenarioRow>, GatewayError> {
        let (state, developer) = (state.map_or("", ScenarioState::as_str), developer.unwrap_or_default());
        self.rows(
            "SELECT id, developer, state, application_json, reason, grant_id FROM scenarios \
             WHERE ($1 = '' OR state = $2) AND ($3 = '' OR developer = $4) ORDER BY created_ms",
            &[Param::Text(state), Param::Text(state), Param::Text(developer), Param::Text(developer)],
        )
        .await
    }

    /// A scenario.
    pub async fn scenario(&self, id: &str) -> Result<Option<ScenarioRow>, GatewayError> {
        self.row(
            "SELECT id, developer, state, application_json, reason, grant_id FROM scenarios WHERE id = $1",
            &[Param::Text(id)],
        )
        .await
    }
}

impl Transaction {
    /// Files a scenario application.
    pub async fn insert_scenario(&mut self, scenario: &NewScenario<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO scenarios (id, developer, state, application_json, created_ms) VALUES ($1, $2, $3, $4, $5)",
            &[
                Param::Text(scenario.id),
                Param::Text(scenario.developer),
                Param::Text(scenario.state.as_str()),
                Param::Text(scenario.application_json),
                Param::Int(now_ms()),
            ],
        )
        .await
        .map(drop)
    }

    /// Moves a scenario from `from` to `to` with the operator's `reason` and the grant it was
    /// approved into (empty for none); false when it is no longer in `from`.
    pub async fn set_scenario_state(
        &mut self,
        id: &str,
        (from, to): (ScenarioState, ScenarioState),
        reason: &str,
        grant_id: &str,
    ) -> Result<bool, GatewayError> {
        let changed = self
            .execute(
                "UPDATE scenarios SET state = $1, reason = $2, grant_id = $3 WHERE id = $4 AND state = $5",
                &[
                    Param::Text(to.as_str()),
                    Param::Text(reason),
                    Param::Text(grant_id),
                    Param::Text(id),
                    Param::Text(from.as_str()),
                ],
            )
            .await?;
        Ok(changed > 0)
    }
}
