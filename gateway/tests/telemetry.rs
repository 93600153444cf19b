//! What an operator watches a gateway by: the health service answers SERVING while the
//! gateway admits requests and NOT_SERVING once it stops admitting, and every request is
//! counted by RPC and status in the domain's metrics.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::principal;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use unseen_gateway::Domain;
use unseen_gateway::identity::Role;
use unseen_proto::v1 as pb;
use unseen_proto::v1::developer_client::DeveloperClient;
use unseen_proto::v1::operator_client::OperatorClient;

#[tokio::test(flavor = "multi_thread")]
async fn health_is_serving_until_the_gateway_stops_admitting_and_every_request_is_counted() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "telemetry.domain").await.expect("the domain opens"));
    let mut gateway = common::Gateway::serve(Arc::clone(&domain)).await;
    let connect = |role: Role| gateway.connect(principal("acme", role));

    // Any identity of the domain may ask; the whole gateway and each role service are SERVING.
    let mut health = HealthClient::new(connect(Role::Developer).await);
    for service in ["", "unseen.v1.Developer", "unseen.v1.Regulator"] {
        let reply = health.check(HealthCheckRequest { service: service.into() }).await.expect("check");
        assert_eq!(reply.into_inner().status(), ServingStatus::Serving, "{service:?}");
    }

    // Requests are counted by RPC and status, refusals too.
    let developer = connect(Role::Developer).await;
    DeveloperClient::new(developer.clone()).list_scenarios(pb::ListRequest::default()).await.expect("list");
    DeveloperClient::new(developer.clone()).list_scenarios(pb::ListRequest::default()).await.expect("list");
    let refused = OperatorClient::new(developer).list_grants(pb::ListRequest::default()).await;
    assert_eq!(refused.expect_err("a developer is not an operator").code(), tonic::Code::PermissionDenied);
    let metrics = domain.metrics().encode();
    for line in [
        "unseen_requests_total{rpc=\"/unseen.v1.Developer/ListScenarios\",code=\"Ok\"} 2",
        "unseen_requests_total{rpc=\"/unseen.v1.Operator/ListGrants\",code=\"PermissionDenied\"} 1",
        "unseen_request_seconds_count{rpc=\"/unseen.v1.Developer/ListScenarios\"} 2",
    ] {
        assert!(metrics.lines().any(|metric| metric == line), "{line} missing from\n{metrics}");
    }

    // A watcher hears NOT_SERVING as soon as the gateway stops admitting.
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.expect("watch").into_inner();
    let first: HealthCheckResponse = watch.message().await.expect("a status").expect("one");
    assert_eq!(first.status(), ServingStatus::Serving);
    gateway.server.stop_admitting().await;
    let next = watch.message().await.expect("a status").expect("one");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    assert!(
        gateway.server.shutdown_within(std::time::Duration::from_secs(5)).await.expect("shutdown"),
        "nothing left in flight"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_reviews_audit_appends_and_epsilon_spent_are_measured() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "measured.domain").await.expect("the domain opens"));
    let developer = principal("green-tech", Role::Developer);
    common::register_energy_data(&domain, dir.path(), 600, 3).await;
    let mut application = unseen_samples::scenarios::green_energy();
    application.disclosure.privacy = Some(unseen_policy::PrivacyParams {
        epsilon_budget: 1.0,
        epsilon_per_release: 0.4,
        sensitivity: std::collections::BTreeMap::from([("total_kwh".to_string(), 1.0e9)]),
    });
    let grant = common::granted(&domain, &developer, application).await;
    let job = common::green_energy_job(&domain, &developer, &grant.id).await;
    domain.request_egress(&developer, &job, "kwh_by_industry_district").await.expect("request");

    let metrics = domain.metrics().encode();
    let value = |name: &str| -> f64 {
        let line =
            metrics.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{name} in\n{metrics}"));
        line.rsplit(' ').next().and_then(|value| value.parse().ok()).expect("a number")
    };
    assert_eq!(value("unseen_job_seconds_count{outcome=\"succeeded\"}"), 1.0);
    assert_eq!(value("unseen_jobs_queued "), 0.0);
    assert_eq!(value("unseen_review_seconds_count "), 1.0);
    assert_eq!(value(&format!("unseen_privacy_epsilon_spent{{grant=\"{}\"}}", grant.id)), 0.4);
    // Registrations, the scenario, the job and the review were each logged and synced.
    assert!(value("unseen_audit_entries_total ") >= 8.0, "{metrics}");
    assert!(value("unseen_audit_fsync_seconds_count ") >= 1.0, "{metrics}");
}

/// The `request.refused` entries in `domain`'s log, as (organisation, RPC, decision, reason).
fn refusals(domain: &Domain) -> Vec<(String, String, String, String)> {
    let regulator = principal("regulator", Role::Regulator);
    let (entries, _) = domain.audit_entries(&regulator, 0, domain_len(domain), "").expect("entries");
    entries
        .iter()
        .map(|raw| unseen_audit::Entry::from_canonical_bytes(&raw.bytes).expect("an entry"))
        .filter(|entry| entry.action == "request.refused")
        .map(|entry| (entry.organisation, entry.object_id, entry.decision, entry.reason))
        .collect()
}

fn domain_len(domain: &Domain) -> u64 {
    let regulator = principal("regulator", Role::Regulator);
    domain.audit_entries(&regulator, 0, 0, "").expect("size").1
}

#[tokio::test(flavor = "multi_thread")]
async fn role_violations_probes_and_refused_requests_are_audited_within_a_bound() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "refusals.domain").await.expect("the domain opens"));
    let gateway = common::Gateway::serve(Arc::clone(&domain)).await;
    // A developer calls an operator RPC; another probes a job that is not its own.
    let mut as_operator = OperatorClient::new(gateway.connect(principal("greenfin-analytics", Role::Developer)).await);
    let refused = as_operator.list_egress(pb::ListRequest { state: String::new() }).await;
    assert_eq!(refused.map(drop).map_err(|status| status.code()), Err(Code::PermissionDenied));
    let mut prober = DeveloperClient::new(gateway.connect(principal("shadow-analytics", Role::Developer)).await);
    let probe = prober.get_job(pb::GetJobRequest { job_id: "j-1".into(), wait_ms: 0 }).await;
    assert_eq!(probe.map(drop).map_err(|status| status.code()), Err(Code::NotFound));

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logged = loop {
        let logged = refusals(&domain);
        if logged.len() >= 2 || std::time::Instant::now() > deadline {
            break logged;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(logged.len(), 2, "{logged:?}");
    let violation = logged.iter().find(|entry| entry.0 == "greenfin-analytics").expect("the role violation");
    assert_eq!((violation.1.as_str(), violation.2.as_str()), ("/unseen.v1.Operator/ListEgress", "PermissionDenied"));
    let probe = logged.iter().find(|entry| entry.0 == "shadow-analytics").expect("the probe");
    assert_eq!((probe.1.as_str(), probe.2.as_str()), ("/unseen.v1.Developer/GetJob", "NotFound"));

    // A flood is bounded: a burst is logged, the rest counted, and the log stays usable.
    let before = domain_len(&domain);
    for _ in 0..(unseen_gateway::domain::REFUSAL_BURST + 40) {
        let _ = prober.get_job(pb::GetJobRequest { job_id: "j-1".into(), wait_ms: 0 }).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let added = domain_len(&domain) - before;
    assert!(added <= u64::from(unseen_gateway::domain::REFUSAL_BURST) + 2, "{added} entries for a flood");
    assert!(domain.metrics().encode().contains("unseen_refusals_not_logged_total"), "the dropped ones are counted");
}
