//! What an operator is told about an application, and whose application it is: an
//! organisation applies only for itself, and the access modes that widen what a module sees of
//! single subjects are named before anyone approves them.

use std::sync::Arc;

use unseen_gateway::identity::Role;
use unseen_gateway::{Domain, GatewayError};
use unseen_policy::AccessMode;

use crate::common::{self, principal};

#[tokio::test(flavor = "multi_thread")]
async fn an_application_for_another_organisation_is_refused_naming_both() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "scenarios.domain").await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 50, 1).await;
    let application = unseen_samples::scenarios::green_energy();
    assert_eq!(application.developer, "greenfin-analytics");
    let impostor = principal("shadow-analytics", Role::Developer);
    let error = domain.submit_scenario(&impostor, application.clone()).await.expect_err("another organisation's");
    let message = error.to_string();
    assert!(matches!(error, GatewayError::InvalidInput(_)), "{error:?}");
    assert!(message.starts_with("developer:") && message.contains("greenfin-analytics"), "{message}");
    assert!(message.contains("shadow-analytics"), "{message}");
    // Its own organisation, or none named, is filed as the caller's.
    let own = principal("greenfin-analytics", Role::Developer);
    domain.submit_scenario(&own, application.clone()).await.expect("its own application");
    let unnamed = unseen_policy::ScenarioApplication { developer: String::new(), ..application };
    domain.submit_scenario(&impostor, unnamed).await.expect("an application naming no organisation");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_is_told_of_a_visible_subject_key_and_of_filter_only_beside_visible_quasi_identifiers() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "scenarios.domain").await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 50, 2).await;
    let careful = unseen_samples::scenarios::green_energy();
    assert_eq!(domain.access_risks(&careful).await.expect("risks"), []);

    let mut risky = careful.clone();
    risky.datasets[0].columns.insert("uscc".into(), AccessMode::Visible);
    risky.datasets[1].columns.insert("kwh".into(), AccessMode::FilterOnly);
    let risks = domain.access_risks(&risky).await.expect("risks");
    let flagged: Vec<(&str, &str, AccessMode)> =
        risks.iter().map(|risk| (risk.dataset.as_str(), risk.column.as_str(), risk.mode)).collect();
    // The register's USCC is its subject key; kwh sits in another dataset, beside no visible
    // quasi-identifier of its own, so only the key is flagged.
    assert_eq!(flagged, [("enterprise@v1", "uscc", AccessMode::Visible)], "{risks:?}");
    assert!(risks[0].reason.contains("subject column visible"), "{}", risks[0].reason);
}
