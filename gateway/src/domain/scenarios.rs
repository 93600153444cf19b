//! Scenarios (场景): a developer applies for one; an operator approves it into a grant or
//! rejects it, and every decision is logged.

use ring::rand::{SecureRandom, SystemRandom};
use unseen_policy::{DatasetVersion, Grant, ModeRisk, ScenarioApplication, sha256_hex};

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::states::{GrantState, ScenarioState};
use crate::store::{NewGrant, NewScenario, ScenarioRow};

use super::{AuditEvent, Domain, decode, found, now_ms, state_filter};

impl Domain {
    /// The access modes of `application` an operator should read twice before approving
    /// (`ModeRisk`), judged against the registered datasets it names; a dataset the domain
    /// does not have is skipped (the application was refused for it at submission).
    pub async fn access_risks(&self, application: &ScenarioApplication) -> Result<Vec<ModeRisk>, GatewayError> {
        let mut datasets: Vec<DatasetVersion> = Vec::new();
        for request in &application.datasets {
            match self.dataset(&request.dataset).await {
                Ok(stored) => datasets.push(stored.dataset),
                Err(GatewayError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(application.risky_modes(|id| datasets.iter().find(|dataset| dataset.id() == id)))
    }

    /// Files a scenario application; returns its id.
    pub async fn submit_scenario(
        &self,
        who: &Principal,
        mut application: ScenarioApplication,
    ) -> Result<String, GatewayError> {
        Self::require(who, Role::Developer)?;
        // The applying organisation is the caller's; an application naming another is refused
        // rather than silently rewritten (left empty, it is filled in).
        if !application.developer.is_empty() && application.developer != who.organisation {
            return Err(GatewayError::InvalidInput(format!(
                "developer: the application names \"{}\" but you are {} of \"{}\"; an organisation applies only for itself",
                application.developer, who.name, who.organisation
            )));
        }
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
            .insert_scenario(&NewScenario {
                id: &id,
                developer: &who.organisation,
                state: ScenarioState::Submitted,
                application_json: &json,
            })
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
    pub async fn list_scenarios(&self, who: &Principal, state: &str) -> Result<Vec<ScenarioRow>, GatewayError> {
        let developer = match who.role {
            Role::Operator => None,
            Role::Developer => Some(who.organisation.as_str()),
            _ => return Self::require(who, Role::Operator).map(|()| Vec::new()),
        };
        let Some(state) = state_filter(state) else { return Ok(Vec::new()) };
        self.store.scenarios(state, developer).await
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
        let row = found(self.store.scenario(scenario_id).await?, format_args!("scenario {scenario_id}"))?;
        let state = row.state;
        if state != ScenarioState::Submitted {
            return Err(GatewayError::FailedPrecondition(format!("scenario {scenario_id} is {state}, not submitted")));
        }
        if !approve {
            if reason.trim().is_empty() {
                return Err(GatewayError::InvalidInput("a rejection needs a reason".into()));
            }
            let mut transaction = self.store.begin().await?;
            let rejected = (ScenarioState::Submitted, ScenarioState::Rejected);
            let changed = transaction.set_scenario_state(scenario_id, rejected, reason, "").await?;
            Self::decided(changed, ("scenario", scenario_id))?;
            transaction.log(
                AuditEvent::new(who, "scenario.reject", "scenario", scenario_id)
                    .decision(ScenarioState::Rejected.as_str())
                    .reason(reason)
                    .entry(),
            );
            self.commit(transaction).await?;
            return Ok(None);
        }
        let application: ScenarioApplication = decode(&row.application_json, "a scenario")?;
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).map_err(|_| GatewayError::Internal("drawing a grant key".into()))?;
        let mut transaction = self.store.begin().await?;
        let grant_id = transaction.next_id("g").await?;
        let grant =
            Grant::freeze(grant_id.clone(), scenario_id.to_string(), application, who.name.clone(), now_ms(), key);
        let hash = grant.hash();
        let json = serde_json::to_string(&grant).map_err(|error| GatewayError::internal("encoding a grant", error))?;
        transaction
            .insert_grant(&NewGrant {
                id: &grant_id,
                scenario_id,
                developer: &row.developer,
                json: &json,
                hash: &hash,
                state: GrantState::Active,
            })
            .await?;
        let approved = (ScenarioState::Submitted, ScenarioState::Approved);
        let changed = transaction.set_scenario_state(scenario_id, approved, reason, &grant_id).await?;
        Self::decided(changed, ("scenario", scenario_id))?;
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
