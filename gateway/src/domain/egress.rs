//! Egress (出域) review: a developer asks for a job's output to leave; the reviewer judges it
//! against the grant and what the grant released before, and an operator decides.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use unseen_policy::identifiers::IdentifierSet;
use unseen_policy::review::{
    EarlierRelease, ReleasedTable, ReviewContext, ReviewRule, SubjectSketches, release_noised_table, released_sketches,
    review_artifact, review_table, review_verification, withheld_sketches,
};
use unseen_policy::{Grant, Outcome, OutputKind, OutputLineage, ReviewReport, sha256_hex};
use unseen_runtime::Mode;

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::states::{EgressState, GrantState, JobState};
use crate::store::{EgressRow, NewEgress};

use super::files::{io, parquet_bytes, read_parquet, write_atomically};
use super::{AuditEvent, Domain, SystemBits, decode, found, now_ms, state_filter};

/// An egress request and its review.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EgressView {
    /// Request id.
    pub id: String,
    /// Job.
    pub job_id: String,
    /// Output.
    pub output_name: String,
    /// `auto_released`, `awaiting_operator`, `approved`, `rejected`, `blocked`.
    pub state: EgressState,
    /// The reviewer's report.
    pub report: ReviewReport,
    /// Release id once released.
    pub release_id: String,
    /// Operator's reason.
    pub reason: String,
}

/// An egress request's row as its view.
fn egress_view(row: EgressRow) -> Result<EgressView, GatewayError> {
    Ok(EgressView {
        report: decode(&row.report_json, "a report")?,
        id: row.id,
        job_id: row.job_id,
        output_name: row.output_name,
        state: row.state,
        release_id: row.release_id,
        reason: row.reason,
    })
}

/// How many cells a review withheld, with the reviewer's own by rule, for the log: `7 cells
/// suppressed (dominance 2, secondary 3)`. The report itself, with every cell, is hashed into the entry.
pub(super) fn suppression_summary(report: &ReviewReport) -> String {
    let mut by_rule: Vec<(ReviewRule, usize)> = Vec::new();
    for cell in &report.suppressed_cells {
        match by_rule.iter_mut().find(|(rule, _)| *rule == cell.rule) {
            Some((_, count)) => *count += 1,
            None => by_rule.push((cell.rule, 1)),
        }
    }
    let mut parts: Vec<String> = by_rule.iter().map(|(rule, count)| format!("{rule} {count}")).collect();
    let engine = report.engine_suppressed_cells();
    if engine > 0 {
        parts.insert(0, format!("withheld by the engine {engine}"));
    }
    if !report.suppressed_rows.is_empty() {
        parts.push(format!("{} rows dropped", report.suppressed_rows.len()));
    }
    if parts.is_empty() {
        format!("{} cells suppressed", report.cells_suppressed)
    } else {
        format!("{} cells suppressed ({})", report.cells_suppressed, parts.join(", "))
    }
}

impl Domain {
    /// Asks for an output of a production job to leave; the reviewer decides at once whether
    /// it is auto-released, waits for an operator, or is blocked.
    pub async fn request_egress(
        &self,
        who: &Principal,
        job_id: &str,
        output_name: &str,
    ) -> Result<EgressView, GatewayError> {
        Self::require(who, Role::Developer)?;
        let job = self.store.job(job_id).await?.filter(|job| job.developer == who.organisation);
        let job = found(job, format_args!("job {job_id}"))?;
        if job.mode != Mode::Production {
            return Err(GatewayError::FailedPrecondition(format!(
                "job {job_id} ran on the sample; its outputs were shown to you when it ran, and the sample holds no real record (synthetic) or only k-anonymous, perturbed rows (de-identified) — run it in production mode to request egress"
            )));
        }
        if job.state != JobState::Succeeded {
            return Err(GatewayError::FailedPrecondition(format!(
                "job {job_id} is {}; only succeeded jobs have outputs to release",
                job.state
            )));
        }
        let grant = self.grant_for(who, &job.grant_id).await?;
        let outputs = self.store.outputs_of_job(job_id).await?;
        let Some(output) = outputs.iter().find(|output| output.name == output_name) else {
            let names: Vec<&str> = outputs.iter().map(|output| output.name.as_str()).collect();
            return Err(GatewayError::NotFound(if names.is_empty() {
                format!("job {job_id} emitted no outputs, so there is no \"{output_name}\" to release")
            } else {
                format!("job {job_id} has no output \"{output_name}\"; its outputs are: {}", names.join(", "))
            }));
        };
        let bytes = std::fs::read(self.domain_file(&output.path)).map_err(io("reading a held output"))?;
        let identifiers = self.identifier_set(&grant).await?;
        let _reviewing = self.review_lock.lock().await;
        let review_started = std::time::Instant::now();
        let (earlier, released, epsilon_spent) = self.grant_history(&grant.id).await?;
        let earlier_claims = if output.kind == OutputKind::Verification {
            self.claims_answered_today(&grant.id).await?
        } else {
            Vec::new()
        };
        let context = ReviewContext {
            identifiers: Some(&identifiers),
            earlier: &earlier,
            epsilon_spent,
            earlier_claims: &earlier_claims,
            released: &released,
        };
        let id = self.store.next_id("e").await?;
        let (report, candidate, sketches, facts) = if output.kind == OutputKind::Artifact {
            (review_artifact(&grant, output_name, &bytes, context), None, (Vec::new(), Vec::new(), Vec::new()), None)
        } else {
            let lineage: OutputLineage = decode(&output.lineage_json, "lineage")?;
            let table = read_parquet(bytes)?;
            let report = if output.kind == OutputKind::Verification {
                review_verification(&grant, output_name, &table, &lineage, context)
            } else {
                review_table(&grant, output_name, &table, &lineage, context)
            };
            let candidate = if report.outcome == Outcome::Blocked {
                None
            } else {
                // Noise is drawn once, here: the operator approves exactly this table.
                let released = release_noised_table(&report, &table, &mut SystemBits::default())
                    .map_err(|error| GatewayError::internal("applying the review", error))?;
                Some(released)
            };
            let (withheld, complements) = withheld_sketches(&lineage, &report);
            let sketches = (released_sketches(&lineage, &report), withheld, complements);
            // What this output releases and withholds, for the interval audit of the grant's
            // later outputs (kept in the domain: it holds withheld values).
            let label = format!("egress {id} (\"{output_name}\")");
            let facts = ReleasedTable::from_review(&label, &table, &lineage, &report);
            (report, candidate, sketches, (!facts.measures.is_empty()).then_some(facts))
        };
        if let Some(candidate) = &candidate {
            write_atomically(&self.dir.join("egress").join(format!("{id}.parquet")), &parquet_bytes(candidate)?)?;
        }
        if let (false, Some(facts)) = (report.outcome == Outcome::Blocked, &facts) {
            let facts = serde_json::to_vec(facts)
                .map_err(|error| GatewayError::internal("encoding a released table", error))?;
            write_atomically(&self.dir.join("egress").join(format!("{id}.released.json")), &facts)?;
        }
        if report.outcome != Outcome::Blocked && !sketches.0.is_empty() {
            let kinds =
                [("sketches", &sketches.0), ("withheld-sketches", &sketches.1), ("complement-sketches", &sketches.2)];
            for (name, kept) in kinds {
                let bytes = serde_json::to_vec(kept)
                    .map_err(|error| GatewayError::internal("encoding subject sketches", error))?;
                write_atomically(&self.dir.join("egress").join(format!("{id}.{name}.json")), &bytes)?;
            }
        }
        let state = match report.outcome {
            Outcome::Released => EgressState::AutoReleased,
            Outcome::NeedsReview => EgressState::AwaitingOperator,
            Outcome::Blocked => EgressState::Blocked,
        };
        let report_json =
            serde_json::to_string(&report).map_err(|error| GatewayError::internal("encoding a report", error))?;
        let mut transaction = self.store.begin().await?;
        transaction
            .insert_egress(&NewEgress {
                id: &id,
                developer: &who.organisation,
                job_id,
                output_name,
                state,
                report_json: &report_json,
            })
            .await?;
        if report.epsilon_charged > 0.0 {
            let budget = grant.application.disclosure.privacy.as_ref().map_or(0.0, |privacy| privacy.epsilon_budget);
            transaction.log(
                AuditEvent::new(who, "privacy.charge", "egress", &id)
                    .grant(grant.id.clone())
                    .decision("charged")
                    .reason(format!(
                        "ε={} charged to grant {}; {} of {budget} spent",
                        report.epsilon_charged,
                        grant.id,
                        epsilon_spent + report.epsilon_charged
                    ))
                    .entry(),
            );
        }
        let reason = if report.outcome == Outcome::Blocked {
            format!("blocked by {}", report.blocking_rules().join(", "))
        } else {
            suppression_summary(&report)
        };
        transaction.log(
            AuditEvent::new(who, "egress.review", "egress", &id)
                .object_hash(sha256_hex(report_json.as_bytes()))
                .grant(grant.id.clone())
                .decision(state.as_str())
                .reason(reason)
                .entry(),
        );
        self.commit(transaction).await?;
        drop(_reviewing);
        self.metrics.reviewed(review_started.elapsed());
        self.metrics.epsilon_spent(&grant.id, epsilon_spent + report.epsilon_charged);
        if report.outcome == Outcome::Released {
            self.release(who, &id, "auto").await?;
        }
        self.egress(who, &id).await
    }

    /// What earlier egress requests of `grant` that may leave (released, or waiting for an
    /// operator) released: their subjects for differencing, their cells for the interval
    /// audit, and the ε they spent.
    pub(super) async fn grant_history(
        &self,
        grant_id: &str,
    ) -> Result<(Vec<EarlierRelease>, Vec<ReleasedTable>, f64), GatewayError> {
        let rows = self.store.egress_of_grant(grant_id).await?;
        let mut earlier = Vec::new();
        let mut released = Vec::new();
        let mut spent = 0.0;
        for row in rows {
            let report: ReviewReport = decode(&row.report_json, "a report")?;
            spent += report.epsilon_charged;
            if !row.state.may_leave() {
                continue;
            }
            let read_sketches = |name: &str| -> Result<Option<Vec<SubjectSketches>>, GatewayError> {
                match std::fs::read(self.dir.join("egress").join(format!("{}.{name}.json", row.id))) {
                    Ok(bytes) => serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|error| GatewayError::internal("decoding subject sketches", error)),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(error) => Err(GatewayError::internal("reading subject sketches", error)),
                }
            };
            if let Some(sketches) = read_sketches("sketches")? {
                earlier.push(EarlierRelease {
                    label: format!("egress {} (\"{}\")", row.id, row.output_name),
                    sketches,
                    withheld: read_sketches("withheld-sketches")?.unwrap_or_default(),
                    complements: read_sketches("complement-sketches")?.unwrap_or_default(),
                });
            }
            let path = self.dir.join("egress").join(format!("{}.released.json", row.id));
            match std::fs::read(&path) {
                Ok(bytes) => released.push(
                    serde_json::from_slice(&bytes)
                        .map_err(|error| GatewayError::internal("decoding a released table", error))?,
                ),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(GatewayError::internal("reading a released table", error)),
            }
        }
        Ok((earlier, released, spent))
    }

    /// The claimed keys (as tokens) of every verification answer requested under `grant` in
    /// the last 24 hours that may leave or has left: one entry per claim, for the rate limits.
    pub(super) async fn claims_answered_today(&self, grant_id: &str) -> Result<Vec<String>, GatewayError> {
        const DAY_MS: i64 = 24 * 60 * 60 * 1000;
        let may_leave: Vec<EgressState> = EgressState::ALL.iter().copied().filter(|state| state.may_leave()).collect();
        let outputs =
            self.store.requested_outputs(grant_id, OutputKind::Verification, now_ms() - DAY_MS, &may_leave).await?;
        let mut keys = Vec::new();
        for output in outputs {
            let lineage: OutputLineage = decode(&output.lineage_json, "lineage")?;
            keys.extend(lineage.verification.map(|claims| claims.claim_keys).unwrap_or_default());
        }
        Ok(keys)
    }

    /// The values of the identifier and subject columns of `grant`'s datasets, built once per
    /// grant from the stored data and kept in memory (8 bytes per value).
    pub(super) async fn identifier_set(&self, grant: &Grant) -> Result<Arc<IdentifierSet>, GatewayError> {
        if let Some(set) = self
            .identifier_sets
            .lock()
            .map_err(|_| GatewayError::Internal("identifier cache poisoned".into()))?
            .get(&grant.id)
        {
            return Ok(Arc::clone(set));
        }
        let mut tables = Vec::new();
        for dataset_id in grant.datasets() {
            tables.push(self.dataset(dataset_id).await?.table());
        }
        let set = Arc::new(unseen_runtime::identifier_index::identifier_set(&tables).await?);
        self.identifier_sets
            .lock()
            .map_err(|_| GatewayError::Internal("identifier cache poisoned".into()))?
            .insert(grant.id.clone(), Arc::clone(&set));
        Ok(set)
    }

    /// One egress request as `who` may see it.
    pub async fn egress(&self, who: &Principal, egress_id: &str) -> Result<EgressView, GatewayError> {
        let row = found(self.store.egress(egress_id).await?, format_args!("egress request {egress_id}"))?;
        Self::require_owner(who, &row.developer, &format!("egress request {egress_id}"))?;
        egress_view(row)
    }

    /// Egress requests, optionally in one state (operators).
    pub async fn list_egress(&self, who: &Principal, state: &str) -> Result<Vec<EgressView>, GatewayError> {
        Self::require(who, Role::Operator)?;
        let Some(state) = state_filter(state) else { return Ok(Vec::new()) };
        self.store.egress_requests(state).await?.into_iter().map(egress_view).collect()
    }

    /// An operator's decision on an egress request awaiting review.
    pub async fn decide_egress(
        &self,
        who: &Principal,
        egress_id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<EgressView, GatewayError> {
        Self::require(who, Role::Operator)?;
        let view = self.egress(who, egress_id).await?;
        if view.state != EgressState::AwaitingOperator {
            return Err(GatewayError::FailedPrecondition(format!(
                "egress request {egress_id} is {}; only requests awaiting an operator can be decided",
                view.state
            )));
        }
        if approve {
            let grant = found(self.store.grant_of_job(&view.job_id).await?, "the request's grant")?;
            if grant.state != GrantState::Active {
                return Err(GatewayError::FailedPrecondition(format!(
                    "grant {} is {}; nothing leaves the domain under it until it is active again",
                    grant.id, grant.state
                )));
            }
        } else if reason.trim().is_empty() {
            return Err(GatewayError::InvalidInput("a rejection needs a reason".into()));
        }
        let (state, action) =
            if approve { (EgressState::Approved, "egress.approve") } else { (EgressState::Rejected, "egress.reject") };
        let mut transaction = self.store.begin().await?;
        let changed = transaction.set_egress_state(egress_id, (EgressState::AwaitingOperator, state), reason).await?;
        Self::decided(changed, ("egress request", egress_id))?;
        transaction
            .log(AuditEvent::new(who, action, "egress", egress_id).decision(state.as_str()).reason(reason).entry());
        self.commit(transaction).await?;
        if approve {
            self.release(who, egress_id, &format!("{}@{}", who.name, who.organisation)).await?;
        }
        self.egress(who, egress_id).await
    }
}
