//! The tonic services, one per role. They authenticate the caller from the client
//! certificate, translate proto messages to domain types and back, and nothing else: the
//! workflow is [`crate::domain`], the mapping of errors to status codes is in [`crate::error`].

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::CertificateDer;
use tonic::{Request, Response, Status, Streaming};
use unseen_policy::{ColumnSpec, ColumnTag, Grade, PolicyError, ScenarioApplication, SubjectKind};
use unseen_proto::v1 as pb;
use unseen_runtime::Mode;

use crate::GatewayError;
use crate::domain::{
    DatasetRegistration, Domain, EgressView, GrantAction, GrantView, ImportView, JobView, MAX_IMPORT_BYTES,
};
use crate::identity::{Principal, Role, principal_from_certificate};
use crate::states::{EgressState, GrantState, ImportState, JobState, ScenarioState};

mod edge;
use edge::{
    MAX_APPLICATION_BYTES, MAX_NAME_CHARS, MAX_REASON_CHARS, bounded_text, dataset_id, json_enum, module_hash,
    object_id, validate_state_filter,
};

/// Largest module upload accepted, bytes.
const MAX_UPLOAD_BYTES: usize = unseen_runtime::host::MAX_MODULE_BYTES;
/// Longest a `GetJob` may wait.
const MAX_WAIT_MS: u32 = 120_000;

/// All four role services share one domain.
#[derive(Debug, Clone)]
pub struct Services {
    domain: Arc<Domain>,
}

impl Services {
    /// Services over `domain`.
    pub fn new(domain: Arc<Domain>) -> Self {
        Self { domain }
    }
}

/// The caller, from its client certificate, if it holds `role`: each service is for one role,
/// and a caller of another role is refused before its request is looked at.
fn caller<T>(request: &Request<T>, role: Role) -> Result<Principal, Status> {
    let who = certified_caller(request)?;
    if who.role != role {
        return Err(Status::from(GatewayError::Denied(format!(
            "the {} service is for the {} role; {} of {} holds the {} role",
            role.as_str(),
            role.as_str(),
            who.name,
            who.organisation,
            who.role.as_str()
        ))));
    }
    Ok(who)
}

fn certified_caller<T>(request: &Request<T>) -> Result<Principal, Status> {
    Ok(principal_of_peer(request.peer_certs().as_deref().map(Vec::as_slice))?)
}

/// Who the client certificates of a connection name: the one reading of a caller's identity,
/// for the services' role checks and the request log alike ([`crate::telemetry`]).
pub(crate) fn principal_of_peer(certificates: Option<&[CertificateDer<'_>]>) -> Result<Principal, GatewayError> {
    let certificates = certificates.ok_or_else(|| {
        GatewayError::Unauthenticated("no client certificate: connect with mTLS and a domain-issued identity".into())
    })?;
    let leaf =
        certificates.first().ok_or_else(|| GatewayError::Unauthenticated("empty client certificate chain".into()))?;
    principal_from_certificate(leaf.as_ref()).map_err(|error| GatewayError::Unauthenticated(error.to_string()))
}

fn job_view(view: JobView) -> pb::JobView {
    pb::JobView {
        job_id: view.id,
        grant_id: view.grant_id,
        mode: view.mode,
        state: view.state.to_string(),
        error: view.error,
        outputs: view
            .outputs
            .into_iter()
            .map(|output| pb::OutputView {
                name: output.name,
                kind: output.kind,
                rows: output.rows,
                content: output.content,
                suppressed_groups: output.suppressed_groups,
                withheld: output.withheld,
            })
            .collect(),
        guest_log: view.guest_log,
        queries: view
            .queries
            .into_iter()
            .map(|query| pb::QueryView {
                sql: query.sql,
                outcome: query.outcome,
                message: query.message.unwrap_or_default(),
                rows: query.rows,
                suppressed_groups: query.suppressed_groups,
            })
            .collect(),
        metering_json: serde_json::to_string(&view.metering).unwrap_or_default(),
    }
}

fn grant_view(view: GrantView) -> pb::GrantView {
    pb::GrantView {
        grant_id: view.id,
        scenario_id: view.scenario_id,
        developer: view.developer,
        state: view.state.to_string(),
        grant_hash: view.hash,
        expires_at_unix_ms: view.expires_at_unix_ms,
        reason: view.reason,
    }
}

fn egress_view(view: EgressView) -> pb::EgressView {
    pb::EgressView {
        egress_id: view.id,
        job_id: view.job_id,
        output_name: view.output_name,
        state: view.state.to_string(),
        report_json: serde_json::to_string(&view.report).unwrap_or_default(),
        release_id: view.release_id,
        reason: view.reason,
    }
}

/// A table's name, subject kind and column tags as a request states them.
fn registration(
    name: String,
    grade: Grade,
    subject_kind: &str,
    tags: Vec<pb::ColumnTag>,
) -> Result<DatasetRegistration, Status> {
    let subject_kind: Option<SubjectKind> = if subject_kind.is_empty() {
        None
    } else {
        Some(json_enum("subject_kind", subject_kind, "person, enterprise")?)
    };
    let mut columns = Vec::with_capacity(tags.len());
    for column in tags {
        let tag: ColumnTag = json_enum("tag", &column.tag, "subject, identifier, quasi, sensitive, public")?;
        columns.push(ColumnSpec { name: column.name, tag });
    }
    Ok(DatasetRegistration { name, grade, subject_kind, columns })
}

fn import_view(view: ImportView) -> pb::ImportView {
    pb::ImportView {
        import_id: view.id,
        developer: view.developer,
        grant_id: view.grant_id,
        dataset: view.dataset.id(),
        content_hash: view.dataset.content_hash,
        subject_kind: view.dataset.subject_kind.map(|kind| kind.as_str().to_string()).unwrap_or_default(),
        columns: view
            .dataset
            .columns
            .into_iter()
            .map(|column| pb::ColumnTag { name: column.name, tag: column.tag.as_str().into() })
            .collect(),
        rows: view.rows,
        bytes: view.bytes,
        state: view.state.to_string(),
        reason: view.reason,
    }
}

#[tonic::async_trait]
impl pb::provider_server::Provider for Services {
    async fn register_dataset(
        &self,
        request: Request<pb::RegisterDatasetRequest>,
    ) -> Result<Response<pb::RegisterDatasetReply>, Status> {
        let who = caller(&request, Role::Provider)?;
        let request = request.into_inner();
        let grade: Grade = json_enum("grade", &request.grade, "general, important, core")?;
        if request.parquet.is_empty() {
            return Err(Status::invalid_argument("parquet is empty: send the dataset's Parquet file"));
        }
        let registration = registration(request.name, grade, &request.subject_kind, request.columns)?;
        let (dataset, rows, sample) = self.domain.register_dataset(&who, registration, request.parquet).await?;
        Ok(Response::new(pb::RegisterDatasetReply {
            dataset: dataset.id(),
            content_hash: dataset.content_hash,
            rows,
            sample_rows: sample.report.sample_rows,
            sample: Some(sample_view(sample)?),
        }))
    }
}

#[tonic::async_trait]
impl pb::developer_server::Developer for Services {
    async fn submit_scenario(
        &self,
        request: Request<pb::SubmitScenarioRequest>,
    ) -> Result<Response<pb::SubmitScenarioReply>, Status> {
        let who = caller(&request, Role::Developer)?;
        let size = request.get_ref().application_json.len();
        if size > MAX_APPLICATION_BYTES {
            return Err(Status::invalid_argument(format!(
                "application_json is {size} bytes; at most {MAX_APPLICATION_BYTES} are accepted"
            )));
        }
        // Strictly: an unknown field (a misspelt `row_filter`) is refused by name, not dropped.
        let application: ScenarioApplication =
            unseen_policy::from_json_strict("application_json", request.get_ref().application_json.as_bytes())
                .map_err(|error| match error {
                    PolicyError::InvalidInput { field, reason } => {
                        Status::invalid_argument(format!("{field}: {reason}"))
                    }
                    other => Status::invalid_argument(other.to_string()),
                })?;
        let scenario_id = self.domain.submit_scenario(&who, application).await?;
        Ok(Response::new(pb::SubmitScenarioReply { scenario_id, state: ScenarioState::Submitted.to_string() }))
    }

    async fn list_scenarios(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ScenarioList>, Status> {
        let who = caller(&request, Role::Developer)?;
        Ok(Response::new(self.scenarios(&who, &request.get_ref().state).await?))
    }

    async fn upload_module(
        &self,
        request: Request<Streaming<pb::ModuleChunk>>,
    ) -> Result<Response<pb::UploadModuleReply>, Status> {
        let who = caller(&request, Role::Developer)?;
        let mut stream = request.into_inner();
        let mut grant_id = String::new();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if grant_id.is_empty() {
                grant_id = chunk.grant_id;
            }
            if bytes.len() + chunk.data.len() > MAX_UPLOAD_BYTES {
                return Err(Status::invalid_argument(format!("module exceeds the {MAX_UPLOAD_BYTES}-byte limit")));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        if grant_id.is_empty() {
            return Err(Status::invalid_argument("the first chunk must name the grant_id the module is bound to"));
        }
        object_id("grant_id", &grant_id, 'g', "a grant")?;
        let info = self.domain.upload_module(&who, &grant_id, bytes).await?;
        Ok(Response::new(pb::UploadModuleReply {
            module_hash: info.hash,
            size: info.size as u64,
            imports: info.imports,
        }))
    }

    async fn run_job(&self, request: Request<pb::RunJobRequest>) -> Result<Response<pb::RunJobReply>, Status> {
        let who = caller(&request, Role::Developer)?;
        let request = request.into_inner();
        object_id("grant_id", &request.grant_id, 'g', "a grant")?;
        module_hash(&request.module_hash)?;
        let mode: Mode = json_enum("mode", &request.mode, "sample, production")?;
        let job_id = self.domain.run_job(&who, &request.grant_id, &request.module_hash, mode, &request.params).await?;
        Ok(Response::new(pb::RunJobReply { job_id, state: JobState::Queued.to_string() }))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::JobView>, Status> {
        let who = caller(&request, Role::Developer)?;
        let request = request.into_inner();
        object_id("job_id", &request.job_id, 'j', "a job")?;
        let wait = Duration::from_millis(u64::from(request.wait_ms.min(MAX_WAIT_MS)));
        Ok(Response::new(job_view(self.domain.job(&who, &request.job_id, wait).await?)))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Result<Response<pb::JobView>, Status> {
        let who = caller(&request, Role::Developer)?;
        let request = request.into_inner();
        object_id("job_id", &request.job_id, 'j', "a job")?;
        Ok(Response::new(job_view(self.domain.cancel_job(&who, &request.job_id).await?)))
    }

    async fn request_egress(
        &self,
        request: Request<pb::RequestEgressRequest>,
    ) -> Result<Response<pb::EgressView>, Status> {
        let who = caller(&request, Role::Developer)?;
        let request = request.into_inner();
        object_id("job_id", &request.job_id, 'j', "a job")?;
        bounded_text("output_name", &request.output_name, MAX_NAME_CHARS, true)?;
        Ok(Response::new(egress_view(self.domain.request_egress(&who, &request.job_id, &request.output_name).await?)))
    }

    async fn get_egress(&self, request: Request<pb::GetEgressRequest>) -> Result<Response<pb::EgressView>, Status> {
        let who = caller(&request, Role::Developer)?;
        object_id("egress_id", &request.get_ref().egress_id, 'e', "an egress request")?;
        Ok(Response::new(egress_view(self.domain.egress(&who, &request.get_ref().egress_id).await?)))
    }

    async fn get_release(
        &self,
        request: Request<pb::GetReleaseRequest>,
    ) -> Result<Response<pb::ReleaseBundle>, Status> {
        let who = caller(&request, Role::Developer)?;
        object_id("release_id", &request.get_ref().release_id, 'r', "a release")?;
        let bundle = self.domain.release_bundle(&who, &request.get_ref().release_id).await?;
        Ok(Response::new(pb::ReleaseBundle {
            release_id: bundle.id,
            manifest: bundle.manifest,
            signature: bundle.signature,
            data: bundle.data,
            domain_public_key: bundle.public_key,
        }))
    }

    async fn import_data(
        &self,
        request: Request<Streaming<pb::ImportChunk>>,
    ) -> Result<Response<pb::ImportView>, Status> {
        let who = caller(&request, Role::Developer)?;
        let mut stream = request.into_inner();
        let Some(first) = stream.message().await? else {
            return Err(Status::invalid_argument(
                "no chunks: the first chunk names the grant, the table and its columns",
            ));
        };
        object_id("grant_id", &first.grant_id, 'g', "a grant")?;
        bounded_text("name", &first.name, MAX_NAME_CHARS, true)?;
        let grant_id = first.grant_id;
        let registration = registration(first.name, Grade::General, &first.subject_kind, first.columns)?;
        let mut parquet = first.data;
        while let Some(chunk) = stream.message().await? {
            if parquet.len() + chunk.data.len() > MAX_IMPORT_BYTES {
                return Err(Status::invalid_argument(format!(
                    "the table exceeds the {MAX_IMPORT_BYTES}-byte import limit"
                )));
            }
            parquet.extend_from_slice(&chunk.data);
        }
        if parquet.is_empty() {
            return Err(Status::invalid_argument("the table is empty: send its Parquet file in the chunks' data"));
        }
        Ok(Response::new(import_view(self.domain.import_data(&who, &grant_id, registration, parquet).await?)))
    }

    async fn list_imports(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ImportList>, Status> {
        let who = caller(&request, Role::Developer)?;
        Ok(Response::new(self.imports(&who, &request.get_ref().state).await?))
    }
}

impl Services {
    /// Imports `who` may see (all for operators, their own for developers).
    async fn imports(&self, who: &Principal, state: &str) -> Result<pb::ImportList, Status> {
        validate_state_filter(state, &ImportState::names())?;
        let views = self.domain.list_imports(who, state).await?;
        Ok(pb::ImportList { imports: views.into_iter().map(import_view).collect() })
    }

    /// Scenarios `who` may see (all for operators, their own for developers).
    async fn scenarios(&self, who: &Principal, state: &str) -> Result<pb::ScenarioList, Status> {
        validate_state_filter(state, &ScenarioState::names())?;
        let rows = self.domain.list_scenarios(who, state).await?;
        let mut scenarios = Vec::with_capacity(rows.len());
        for row in rows {
            let risks = match serde_json::from_str::<ScenarioApplication>(&row.application_json) {
                Ok(application) => self.domain.access_risks(&application).await?,
                Err(_) => Vec::new(),
            };
            scenarios.push(pb::ScenarioView {
                scenario_id: row.id,
                developer: row.developer,
                state: row.state.to_string(),
                application_json: row.application_json,
                reason: row.reason,
                grant_id: row.grant_id,
                risks: risks
                    .into_iter()
                    .map(|risk| pb::AccessRisk {
                        dataset: risk.dataset,
                        column: risk.column,
                        mode: risk.mode.as_str().into(),
                        reason: risk.reason,
                    })
                    .collect(),
            });
        }
        Ok(pb::ScenarioList { scenarios })
    }
}

fn sample_view(view: crate::domain::SampleView) -> Result<pb::SampleView, Status> {
    let report_json = serde_json::to_string(&view.report)
        .map_err(|error| Status::internal(format!("encoding a sample report: {error}")))?;
    Ok(pb::SampleView {
        dataset: view.dataset,
        kind: view.kind.as_str().into(),
        offered: view.offered,
        report_json,
        content_hash: view.content_hash,
    })
}

#[tonic::async_trait]
impl pb::operator_server::Operator for Services {
    async fn list_scenarios(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ScenarioList>, Status> {
        let who = caller(&request, Role::Operator)?;
        Ok(Response::new(self.scenarios(&who, &request.get_ref().state).await?))
    }

    async fn decide_scenario(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideScenarioReply>, Status> {
        let who = caller(&request, Role::Operator)?;
        let request = request.into_inner();
        object_id("id", &request.id, 's', "a scenario")?;
        bounded_text("reason", &request.reason, MAX_REASON_CHARS, !request.approve)?;
        let grant = self.domain.decide_scenario(&who, &request.id, request.approve, &request.reason).await?;
        Ok(Response::new(match grant {
            Some(grant) => pb::DecideScenarioReply {
                scenario_id: request.id,
                state: ScenarioState::Approved.to_string(),
                grant_hash: grant.hash(),
                grant_id: grant.id,
            },
            None => pb::DecideScenarioReply {
                scenario_id: request.id,
                state: ScenarioState::Rejected.to_string(),
                grant_id: String::new(),
                grant_hash: String::new(),
            },
        }))
    }

    async fn list_egress(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::EgressList>, Status> {
        let who = caller(&request, Role::Operator)?;
        validate_state_filter(&request.get_ref().state, &EgressState::names())?;
        let views = self.domain.list_egress(&who, &request.get_ref().state).await?;
        Ok(Response::new(pb::EgressList { requests: views.into_iter().map(egress_view).collect() }))
    }

    async fn list_grants(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::GrantList>, Status> {
        let who = caller(&request, Role::Operator)?;
        validate_state_filter(&request.get_ref().state, &GrantState::names())?;
        let grants = self.domain.list_grants(&who, &request.get_ref().state).await?;
        Ok(Response::new(pb::GrantList { grants: grants.into_iter().map(grant_view).collect() }))
    }

    async fn change_grant(&self, request: Request<pb::ChangeGrantRequest>) -> Result<Response<pb::GrantView>, Status> {
        let who = caller(&request, Role::Operator)?;
        let request = request.into_inner();
        object_id("grant_id", &request.grant_id, 'g', "a grant")?;
        bounded_text("reason", &request.reason, MAX_REASON_CHARS, true)?;
        let action: GrantAction = json_enum("action", &request.action, "suspend, resume, terminate")?;
        Ok(Response::new(grant_view(self.domain.change_grant(&who, &request.grant_id, action, &request.reason).await?)))
    }

    async fn list_imports(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ImportList>, Status> {
        let who = caller(&request, Role::Operator)?;
        Ok(Response::new(self.imports(&who, &request.get_ref().state).await?))
    }

    async fn prune_audit(
        &self,
        request: Request<pb::PruneAuditRequest>,
    ) -> Result<Response<pb::PruneAuditReply>, Status> {
        let who = caller(&request, Role::Operator)?;
        let request = request.into_inner();
        bounded_text("reason", &request.reason, MAX_REASON_CHARS, true)?;
        let before = (request.before_unix_ms != 0).then_some(request.before_unix_ms);
        let outcome = self.domain.prune_audit(&who, before, &request.reason, crate::domain::now_ms()).await?;
        Ok(Response::new(pb::PruneAuditReply {
            pruned: outcome.pruned,
            newly_pruned: outcome.newly_pruned,
            cutoff_unix_ms: outcome.cutoff_unix_ms,
            retention_days: outcome.retention_days,
            stopped_at: outcome.stopped_at,
        }))
    }

    async fn decide_import(&self, request: Request<pb::DecideRequest>) -> Result<Response<pb::ImportView>, Status> {
        let who = caller(&request, Role::Operator)?;
        let request = request.into_inner();
        object_id("id", &request.id, 'i', "an imported table")?;
        bounded_text("reason", &request.reason, MAX_REASON_CHARS, !request.approve)?;
        Ok(Response::new(import_view(
            self.domain.decide_import(&who, &request.id, request.approve, &request.reason).await?,
        )))
    }

    async fn derive_sample(
        &self,
        request: Request<pb::DeriveSampleRequest>,
    ) -> Result<Response<pb::SampleView>, Status> {
        let who = caller(&request, Role::Operator)?;
        let request = request.into_inner();
        dataset_id("dataset", &request.dataset)?;
        let kind: unseen_policy::sample::SampleKind = json_enum("kind", &request.kind, "synthetic, deidentified")?;
        let decision = match (request.offer, request.withdraw) {
            (true, true) => return Err(Status::invalid_argument("offer and withdraw: ask for one of them")),
            (true, false) => crate::domain::SampleDecision::Offer,
            (false, true) => crate::domain::SampleDecision::Withdraw,
            (false, false) => crate::domain::SampleDecision::Show,
        };
        bounded_text("reason", &request.reason, MAX_REASON_CHARS, request.offer || request.withdraw)?;
        let view = self.domain.derive_sample(&who, &request.dataset, kind, decision, &request.reason).await?;
        Ok(Response::new(sample_view(view)?))
    }

    async fn decide_egress(&self, request: Request<pb::DecideRequest>) -> Result<Response<pb::EgressView>, Status> {
        let who = caller(&request, Role::Operator)?;
        let request = request.into_inner();
        object_id("id", &request.id, 'e', "an egress request")?;
        bounded_text("reason", &request.reason, MAX_REASON_CHARS, !request.approve)?;
        Ok(Response::new(egress_view(
            self.domain.decide_egress(&who, &request.id, request.approve, &request.reason).await?,
        )))
    }
}

#[tonic::async_trait]
impl pb::regulator_server::Regulator for Services {
    async fn latest_checkpoint(
        &self,
        request: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointReply>, Status> {
        let who = caller(&request, Role::Regulator)?;
        let (checkpoint, size) = self.domain.checkpoint(&who)?;
        Ok(Response::new(pb::CheckpointReply { checkpoint, size }))
    }

    async fn export_audit(
        &self,
        request: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<pb::ExportAuditReply>, Status> {
        let who = caller(&request, Role::Regulator)?;
        let request = request.into_inner();
        let export = match (request.start, request.end) {
            (0, 0) => self.domain.export_audit(&who)?,
            (start, 0) => self.domain.export_audit_range(&who, start, u64::MAX)?,
            (start, end) => self.domain.export_audit_range(&who, start, end)?,
        };
        let export_json = serde_json::to_string(&export)
            .map_err(|error| Status::internal(format!("encoding the export: {error}")))?;
        Ok(Response::new(pb::ExportAuditReply { export_json }))
    }

    async fn audit_entries(
        &self,
        request: Request<pb::AuditEntriesRequest>,
    ) -> Result<Response<pb::AuditEntriesReply>, Status> {
        let who = caller(&request, Role::Regulator)?;
        let request = request.into_inner();
        bounded_text("object_id", &request.object_id, MAX_NAME_CHARS, false)?;
        let (entries, size) = self.domain.audit_entries(&who, request.start, request.end, &request.object_id)?;
        let entries = entries
            .into_iter()
            .map(|raw| pb::AuditEntry {
                index: raw.index,
                canonical_json: String::from_utf8_lossy(&raw.bytes).into_owned(),
                leaf_hash_hex: hex::encode(raw.leaf),
            })
            .collect();
        Ok(Response::new(pb::AuditEntriesReply { entries, size }))
    }

    async fn inclusion_proof(
        &self,
        request: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::ProofReply>, Status> {
        let who = caller(&request, Role::Regulator)?;
        let request = request.into_inner();
        let proof = self.domain.audit_inclusion_proof(&who, request.index, request.size)?;
        Ok(Response::new(pb::ProofReply { hashes: proof.iter().map(|hash| hash.to_vec()).collect() }))
    }

    async fn consistency_proof(
        &self,
        request: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::ProofReply>, Status> {
        let who = caller(&request, Role::Regulator)?;
        let request = request.into_inner();
        let proof = self.domain.audit_consistency_proof(&who, request.old_size, request.new_size)?;
        Ok(Response::new(pb::ProofReply { hashes: proof.iter().map(|hash| hash.to_vec()).collect() }))
    }
}
