//! Scenarios (场景): a developer applies for one; an operator approves it into a grant or
//! rejects it, and every decision is logged.

use ring::rand::{SecureRandom, SystemRandom};
use unseen_policy::{Grant, ScenarioApplication, sha256_hex};

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::states::{GrantState, ScenarioState};
use crate::store::Param;

use super::{AuditEvent, Domain, now_ms};

impl Domain {
    /// Files a scenario application; returns its id.
    pub async fn submit_scenario(
        &self,
        who: &Principal,
        mut application: ScenarioApplication,
    ) -> Result<String, GatewayError> {
        Self::require(who, Role::Developer)?;
        application.developer = who.organisation.clone();
        let mut datasets = Vec::new();
        for request in &application.datasets {
            datasets.push(self.dataset(&request.dataset).await?.dataset);
        }
        application.validate(|id| datasets.iter().find(|dataset| dataset.id() == id))?;
        let json = serde_json::to_string(&application)
            .map_err(|error| GatewayError::internal("encoding a scenario", error))?;
        let mut transaction = self.store.begin().await?;
        let id = transaction.next_id("s").await?;
        transaction
            .execute(
                "INSERT INTO scenarios (id, developer, state, application_json, created_ms) VALUES ($1, $2, $3, $4, $5)",
                &[
                    Param::Text(&id),
                    Param::Text(&who.organisation),
                    Param::Text(ScenarioState::Submitted.as_str()),
                    Param::Text(&json),
                    Param::Int(now_ms()),
                ],
            )
            .await?;
        transaction.log(
            AuditEvent::new(who, "scenario.submit", "scenario", &id)
                .object_hash(sha256_hex(json.as_bytes()))
                .decision("submitted")
                .reason(application.title.clone())
                .entry(),
        );
        self.commit(transaction).await?;
        Ok(id)
    }

    /// Lists scenarios, optionally in one state: every scenario for operators, a developer's
    /// own organisation's for developers.
    pub async fn list_scenarios(
        &self,
        who: &Principal,
        state: &str,
    ) -> Result<Vec<crate::store::Record>, GatewayError> {
        let developer = match who.role {
            Role::Operator => "",
            Role::Developer => who.organisation.as_str(),
            _ => return Self::require(who, Role::Operator).map(|()| Vec::new()),
        };
        self.store
            .fetch(
                "SELECT * FROM scenarios WHERE ($1 = '' OR state = $2) AND ($3 = '' OR developer = $4) \
                 ORDER BY created_ms",
                &[Param::Text(state), Param::Text(state), Param::Text(developer), Param::Text(developer)],
            )
            .await
    }

    /// Approves (freezing a grant) or rejects a submitted scenario.
    pub async fn decide_scenario(
        &self,
        who: &Principal,
        scenario_id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<Option<Grant>, GatewayError> {
        Self::require(who, Role::Operator)?;
        let row = self
            .store
            .fetch_one(
                "SELECT * FROM scenarios WHERE id = $1",
                &[Param::Text(scenario_id)],
                &format!("scenario {scenario_id}"),
            )
            .await?;
        let state: ScenarioState = row["state"].parse()?;
        if state != ScenarioState::Submitted {
            return Err(GatewayError::FailedPrecondition(format!("scenario {scenario_id} is {state}, not submitted")));
        }
        if !approve {
            if reason.trim().is_empty() {
                return Err(GatewayError::InvalidInput("a rejection needs a reason".into()));
            }
            let mut transaction = self.store.begin().await?;
            Self::change_state(
                &mut transaction,
                ("scenario", scenario_id),
                "UPDATE scenarios SET state = $1, reason = $2 WHERE id = $3 AND state = $4",
                &[
                    Param::Text(ScenarioState::Rejected.as_str()),
                    Param::Text(reason),
                    Param::Text(scenario_id),
                    Param::Text(ScenarioState::Submitted.as_str()),
                ],
            )
            .await?;
            transaction.log(
                AuditEvent::new(who, "scenario.reject", "scenario", scenario_id)
                    .decision(ScenarioState::Rejected.as_str())
                    .reason(reason)
                    .entry(),
            );
            self.commit(transaction).await?;
            return Ok(None);
        }
        let application: ScenarioApplication = serde_json::from_str(&row["application_json"])
            .map_err(|error| GatewayError::internal("decoding a scenario", error))?;
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).map_err(|_| GatewayError::Internal("drawing a grant key".into()))?;
        let mut transaction = self.store.begin().await?;
        let grant_id = transaction.next_id("g").await?;
        let grant =
            Grant::freeze(grant_id.clone(), scenario_id.to_string(), application, who.name.clone(), now_ms(), key);
        let hash = grant.hash();
        let json = serde_json::to_string(&grant).map_err(|error| GatewayError::internal("encoding a grant", error))?;
        transaction
            .execute(
                "INSERT INTO grants (id, scenario_id, developer, json, hash, state, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[Param::Text(&grant_id), Param::Text(scenario_id), Param::Text(&row["developer"]), Param::Text(&json), Param::Text(&hash), Param::Text(GrantState::Active.as_str()), Param::Int(now_ms())],
            )
            .await?;
        Self::change_state(
            &mut transaction,
            ("scenario", scenario_id),
            "UPDATE scenarios SET state = $1, reason = $2, grant_id = $3 WHERE id = $4 AND state = $5",
            &[
                Param::Text(ScenarioState::Approved.as_str()),
                Param::Text(reason),
                Param::Text(&grant_id),
                Param::Text(scenario_id),
                Param::Text(ScenarioState::Submitted.as_str()),
            ],
        )
        .await?;
        transaction.log(
            AuditEvent::new(who, "scenario.approve", "grant", &grant_id)
                .object_hash(hash)
                .grant(grant_id.clone())
                .decision(ScenarioState::Approved.as_str())
                .reason(reason)
                .entry(),
        );
        self.commit(transaction).await?;
        Ok(Some(grant))
    }
}
