//! Request validation at the edge: malformed ids, hashes, enum values, filters and oversized
//! text are answered INVALID_ARGUMENT with the field named, before the workflow looks anything
//! up, and the gateway serves the next request.

use crate::common;

use std::sync::Arc;

use common::principal;
use tonic::Code;
use unseen_gateway::Domain;
use unseen_gateway::identity::Role;
use unseen_proto::v1 as pb;
use unseen_proto::v1::developer_client::DeveloperClient;
use unseen_proto::v1::operator_client::OperatorClient;
use unseen_proto::v1::regulator_client::RegulatorClient;

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_refused_at_the_edge_naming_the_field() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "edge.domain").await.expect("the domain opens"));
    let gateway = common::Gateway::serve(domain).await;
    let channel = |role: Role| gateway.connect(principal(&format!("org-{}", role.as_str()), role));
    let mut developer = DeveloperClient::new(channel(Role::Developer).await);
    let mut operator = OperatorClient::new(channel(Role::Operator).await);
    let mut regulator = RegulatorClient::new(channel(Role::Regulator).await);
    let huge = "x".repeat(100_000);

    let cases: Vec<(&str, Result<(), tonic::Status>, &str)> = vec![
        (
            "RunJob with a path for a grant",
            developer
                .run_job(pb::RunJobRequest {
                    grant_id: "../g-1".into(),
                    module_hash: "a".repeat(64),
                    mode: "sample".into(),
                    params: String::new(),
                })
                .await
                .map(drop),
            "grant_id",
        ),
        (
            "RunJob with a short hash",
            developer
                .run_job(pb::RunJobRequest {
                    grant_id: "g-1".into(),
                    module_hash: "abc".into(),
                    mode: "sample".into(),
                    params: String::new(),
                })
                .await
                .map(drop),
            "module_hash",
        ),
        (
            "RunJob in an unknown mode",
            developer
                .run_job(pb::RunJobRequest {
                    grant_id: "g-1".into(),
                    module_hash: "a".repeat(64),
                    mode: "turbo".into(),
                    params: String::new(),
                })
                .await
                .map(drop),
            "mode",
        ),
        (
            "GetJob with SQL for an id",
            developer.get_job(pb::GetJobRequest { job_id: "j-1' OR '1'='1".into(), wait_ms: 0 }).await.map(drop),
            "job_id",
        ),
        (
            "RequestEgress with a huge output name",
            developer
                .request_egress(pb::RequestEgressRequest { job_id: "j-1".into(), output_name: huge.clone() })
                .await
                .map(drop),
            "output_name",
        ),
        (
            "GetEgress with a release id",
            developer.get_egress(pb::GetEgressRequest { egress_id: "r-1".into() }).await.map(drop),
            "egress_id",
        ),
        (
            "GetRelease with an empty id",
            developer.get_release(pb::GetReleaseRequest { release_id: String::new() }).await.map(drop),
            "release_id",
        ),
        (
            "ListScenarios with a misspelt state",
            developer.list_scenarios(pb::ListRequest { state: "aproved".into() }).await.map(drop),
            "state",
        ),
        (
            "DecideScenario rejecting without a reason",
            operator
                .decide_scenario(pb::DecideRequest { id: "s-1".into(), approve: false, reason: " ".into() })
                .await
                .map(drop),
            "reason",
        ),
        (
            "DecideEgress with a 100,000-character reason",
            operator
                .decide_egress(pb::DecideRequest { id: "e-1".into(), approve: true, reason: huge.clone() })
                .await
                .map(drop),
            "reason",
        ),
        (
            "ChangeGrant with an unknown action",
            operator
                .change_grant(pb::ChangeGrantRequest {
                    grant_id: "g-1".into(),
                    action: "pause".into(),
                    reason: "x".into(),
                })
                .await
                .map(drop),
            "action",
        ),
        (
            "ListEgress with an unknown state",
            operator.list_egress(pb::ListRequest { state: "released".into() }).await.map(drop),
            "state",
        ),
        (
            "ImportData for a path instead of a grant",
            developer
                .import_data(tokio_stream::iter(vec![pb::ImportChunk {
                    grant_id: "/etc/g-1".into(),
                    name: "customers".into(),
                    data: b"PAR1".to_vec(),
                    ..Default::default()
                }]))
                .await
                .map(drop),
            "grant_id",
        ),
        (
            "ImportData with an unknown tag",
            developer
                .import_data(tokio_stream::iter(vec![pb::ImportChunk {
                    grant_id: "g-1".into(),
                    name: "customers".into(),
                    columns: vec![pb::ColumnTag { name: "uscc".into(), tag: "secret".into() }],
                    data: b"PAR1".to_vec(),
                    ..Default::default()
                }]))
                .await
                .map(drop),
            "tag",
        ),
        (
            "SubmitScenario with a misspelt field deep in the application",
            developer
                .submit_scenario(pb::SubmitScenarioRequest {
                    application_json: r#"{"title": "t", "purpose": "p", "developer": "org-developer",
                        "datasets": [{"dataset": "population@v1", "columns": {"district": "visible"},
                                      "row_filtr": "district = 'x'"}],
                        "outputs": [], "disclosure": {"threshold_k": 10, "auto_release": false},
                        "validity_days": 30}"#
                        .into(),
                })
                .await
                .map(drop),
            "application_json: unknown field \"datasets.0.row_filtr\"",
        ),
        (
            "ListImports with an unknown state",
            developer.list_imports(pb::ListRequest { state: "deleted".into() }).await.map(drop),
            "state",
        ),
        (
            "DecideImport with a scenario id",
            operator
                .decide_import(pb::DecideRequest { id: "s-1".into(), approve: true, reason: String::new() })
                .await
                .map(drop),
            "id",
        ),
        (
            "DeriveSample of a malformed dataset version",
            operator
                .derive_sample(pb::DeriveSampleRequest {
                    dataset: "population; DROP".into(),
                    kind: "synthetic".into(),
                    offer: false,
                    withdraw: false,
                    reason: String::new(),
                })
                .await
                .map(drop),
            "dataset",
        ),
        (
            "DeriveSample of an unknown kind",
            operator
                .derive_sample(pb::DeriveSampleRequest {
                    dataset: "population@v1".into(),
                    kind: "raw".into(),
                    offer: false,
                    withdraw: false,
                    reason: String::new(),
                })
                .await
                .map(drop),
            "kind",
        ),
        (
            "DeriveSample offered without a reason",
            operator
                .derive_sample(pb::DeriveSampleRequest {
                    dataset: "population@v1".into(),
                    kind: "synthetic".into(),
                    offer: true,
                    withdraw: false,
                    reason: String::new(),
                })
                .await
                .map(drop),
            "reason",
        ),
        (
            "AuditEntries about a huge object id",
            regulator
                .audit_entries(pb::AuditEntriesRequest { start: 0, end: 0, object_id: huge.clone() })
                .await
                .map(drop),
            "object_id",
        ),
    ];
    let mut failures = Vec::new();
    for (case, result, field) in cases {
        match result {
            Err(status) if status.code() == Code::InvalidArgument && status.message().starts_with(field) => {
                assert!(
                    status.message().len() < 300,
                    "{case}: the message does not echo the input: {}",
                    status.message()
                );
            }
            other => failures.push(format!("{case}: expected INVALID_ARGUMENT about {field}, got {other:?}")),
        }
    }
    // Well-formed requests for things that do not exist are NOT_FOUND, and the gateway serves on.
    let missing = developer.get_job(pb::GetJobRequest { job_id: "j-404".into(), wait_ms: 0 }).await;
    assert_eq!(missing.map(drop).map_err(|status| status.code()), Err(Code::NotFound));
    gateway.server.shutdown().await.expect("shutdown");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
