//! Every RPC, called over mTLS by every role: only the role a service is for gets past the
//! role check; everyone else is answered PERMISSION_DENIED, before the request is looked at.

use crate::common;

use std::sync::Arc;

use common::principal;
use tonic::Code;
use tonic::transport::Channel;
use unseen_gateway::Domain;
use unseen_gateway::identity::Role;
use unseen_proto::v1 as pb;
use unseen_proto::v1::developer_client::DeveloperClient;
use unseen_proto::v1::operator_client::OperatorClient;
use unseen_proto::v1::provider_client::ProviderClient;
use unseen_proto::v1::regulator_client::RegulatorClient;

const ROLES: [Role; 4] = [Role::Provider, Role::Developer, Role::Operator, Role::Regulator];

/// Calls `rpc` as the caller on `channel` and returns the status code (Ok for success).
async fn call(rpc: &str, channel: Channel) -> Code {
    let result = match rpc {
        "Provider.RegisterDataset" => ProviderClient::new(channel)
            .register_dataset(pb::RegisterDatasetRequest { name: "x".into(), ..Default::default() })
            .await
            .map(drop),
        "Developer.SubmitScenario" => DeveloperClient::new(channel)
            .submit_scenario(pb::SubmitScenarioRequest { application_json: "{}".into() })
            .await
            .map(drop),
        "Developer.ListScenarios" => {
            DeveloperClient::new(channel).list_scenarios(pb::ListRequest { state: String::new() }).await.map(drop)
        }
        "Developer.GetEgress" => {
            DeveloperClient::new(channel).get_egress(pb::GetEgressRequest { egress_id: "e-404".into() }).await.map(drop)
        }
        "Developer.UploadModule" => DeveloperClient::new(channel)
            .upload_module(tokio_stream::iter(vec![pb::ModuleChunk { grant_id: "g-404".into(), data: vec![0; 8] }]))
            .await
            .map(drop),
        "Developer.RunJob" => DeveloperClient::new(channel)
            .run_job(pb::RunJobRequest {
                grant_id: "g-404".into(),
                module_hash: "00".into(),
                mode: "sample".into(),
                params: String::new(),
            })
            .await
            .map(drop),
        "Developer.GetJob" => DeveloperClient::new(channel)
            .get_job(pb::GetJobRequest { job_id: "j-404".into(), wait_ms: 0 })
            .await
            .map(drop),
        "Developer.CancelJob" => {
            DeveloperClient::new(channel).cancel_job(pb::CancelJobRequest { job_id: "j-404".into() }).await.map(drop)
        }
        "Developer.RequestEgress" => DeveloperClient::new(channel)
            .request_egress(pb::RequestEgressRequest { job_id: "j-404".into(), output_name: "x".into() })
            .await
            .map(drop),
        "Developer.GetRelease" => DeveloperClient::new(channel)
            .get_release(pb::GetReleaseRequest { release_id: "r-404".into() })
            .await
            .map(drop),
        "Developer.ImportData" => DeveloperClient::new(channel)
            .import_data(tokio_stream::iter(vec![pb::ImportChunk {
                grant_id: "g-404".into(),
                name: "customers".into(),
                data: vec![0; 8],
                ..Default::default()
            }]))
            .await
            .map(drop),
        "Developer.ListImports" => {
            DeveloperClient::new(channel).list_imports(pb::ListRequest { state: String::new() }).await.map(drop)
        }
        "Operator.ListImports" => {
            OperatorClient::new(channel).list_imports(pb::ListRequest { state: String::new() }).await.map(drop)
        }
        "Operator.DecideImport" => OperatorClient::new(channel)
            .decide_import(pb::DecideRequest { id: "i-404".into(), approve: false, reason: "no".into() })
            .await
            .map(drop),
        "Operator.ListScenarios" => {
            OperatorClient::new(channel).list_scenarios(pb::ListRequest { state: String::new() }).await.map(drop)
        }
        "Operator.DecideScenario" => OperatorClient::new(channel)
            .decide_scenario(pb::DecideRequest { id: "s-404".into(), approve: false, reason: "no".into() })
            .await
            .map(drop),
        "Operator.ListEgress" => {
            OperatorClient::new(channel).list_egress(pb::ListRequest { state: String::new() }).await.map(drop)
        }
        "Operator.DecideEgress" => OperatorClient::new(channel)
            .decide_egress(pb::DecideRequest { id: "e-404".into(), approve: false, reason: "no".into() })
            .await
            .map(drop),
        "Operator.ListGrants" => {
            OperatorClient::new(channel).list_grants(pb::ListRequest { state: String::new() }).await.map(drop)
        }
        "Operator.ChangeGrant" => OperatorClient::new(channel)
            .change_grant(pb::ChangeGrantRequest {
                grant_id: "g-404".into(),
                action: "suspend".into(),
                reason: "test".into(),
            })
            .await
            .map(drop),
        "Operator.PruneAudit" => OperatorClient::new(channel)
            .prune_audit(pb::PruneAuditRequest { before_unix_ms: 0, reason: "test".into() })
            .await
            .map(drop),
        "Operator.DeriveSample" => OperatorClient::new(channel)
            .derive_sample(pb::DeriveSampleRequest {
                dataset: "missing@v1".into(),
                kind: "synthetic".into(),
                offer: false,
                withdraw: false,
                reason: String::new(),
            })
            .await
            .map(drop),
        "Regulator.LatestCheckpoint" => {
            RegulatorClient::new(channel).latest_checkpoint(pb::CheckpointRequest {}).await.map(drop)
        }
        "Regulator.ExportAudit" => {
            RegulatorClient::new(channel).export_audit(pb::ExportAuditRequest::default()).await.map(drop)
        }
        "Regulator.AuditEntries" => RegulatorClient::new(channel)
            .audit_entries(pb::AuditEntriesRequest { start: 0, end: 1, object_id: String::new() })
            .await
            .map(drop),
        "Regulator.InclusionProof" => RegulatorClient::new(channel)
            .inclusion_proof(pb::InclusionProofRequest { index: 0, size: 1 })
            .await
            .map(drop),
        "Regulator.ConsistencyProof" => RegulatorClient::new(channel)
            .consistency_proof(pb::ConsistencyProofRequest { old_size: 1, new_size: 1 })
            .await
            .map(drop),
        other => panic!("no call written for {other}"),
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Every RPC of the API and the role its service is for.
const MATRIX: [(&str, Role); 27] = [
    ("Provider.RegisterDataset", Role::Provider),
    ("Developer.SubmitScenario", Role::Developer),
    ("Developer.ListScenarios", Role::Developer),
    ("Developer.UploadModule", Role::Developer),
    ("Developer.RunJob", Role::Developer),
    ("Developer.GetJob", Role::Developer),
    ("Developer.CancelJob", Role::Developer),
    ("Developer.RequestEgress", Role::Developer),
    ("Developer.GetEgress", Role::Developer),
    ("Developer.GetRelease", Role::Developer),
    ("Developer.ImportData", Role::Developer),
    ("Developer.ListImports", Role::Developer),
    ("Operator.ListScenarios", Role::Operator),
    ("Operator.DecideScenario", Role::Operator),
    ("Operator.ListEgress", Role::Operator),
    ("Operator.DecideEgress", Role::Operator),
    ("Operator.ListGrants", Role::Operator),
    ("Operator.ChangeGrant", Role::Operator),
    ("Operator.ListImports", Role::Operator),
    ("Operator.DecideImport", Role::Operator),
    ("Operator.PruneAudit", Role::Operator),
    ("Operator.DeriveSample", Role::Operator),
    ("Regulator.LatestCheckpoint", Role::Regulator),
    ("Regulator.ExportAudit", Role::Regulator),
    ("Regulator.AuditEntries", Role::Regulator),
    ("Regulator.InclusionProof", Role::Regulator),
    ("Regulator.ConsistencyProof", Role::Regulator),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_admits_only_its_role() {
    // The matrix names every RPC of the proto, no more and no less.
    let proto = include_str!("../../proto/proto/unseen.proto");
    let declared = proto.lines().filter(|line| line.trim_start().starts_with("rpc ")).count();
    assert_eq!(declared, MATRIX.len(), "a new RPC needs its row in the role matrix");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "roles.domain").await.expect("the domain opens"));
    let gateway = common::Gateway::serve(domain).await;

    let mut failures = Vec::new();
    for role in ROLES {
        let channel = gateway.connect(principal(&format!("org-{}", role.as_str()), role)).await;
        for (rpc, allowed) in MATRIX {
            let code = call(rpc, channel.clone()).await;
            let ok = if role == allowed {
                !matches!(code, Code::PermissionDenied | Code::Unauthenticated | Code::Internal | Code::Unimplemented)
            } else {
                code == Code::PermissionDenied
            };
            if !ok {
                failures.push(format!("{rpc} as {}: {code:?}", role.as_str()));
            }
        }
    }
    gateway.server.shutdown().await.expect("shutdown");
    assert!(failures.is_empty(), "role matrix violated:\n{}", failures.join("\n"));
}
