//! Differential privacy through the whole workflow: each egress request of a grant with a
//! privacy budget draws its noise once, spends ε and logs the charge; once the budget is
//! spent the next request is blocked by the `privacy` rule.

use std::collections::BTreeMap;
use std::sync::Arc;

use unseen_gateway::Domain;
use unseen_gateway::identity::Role;
use unseen_policy::{PrivacyParams, RuleOutcome};

use crate::common;

use common::principal;

#[tokio::test(flavor = "multi_thread")]
async fn each_release_spends_epsilon_and_the_spent_budget_blocks_the_next() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "test.domain").await.expect("the domain opens"));
    let developer = principal("green-tech", Role::Developer);
    let operator = principal("operator", Role::Operator);
    let regulator = principal("regulator", Role::Regulator);

    common::register_energy_data(&domain, dir.path(), 600, 3).await;

    let mut application = unseen_samples::scenarios::green_energy();
    application.disclosure.privacy = Some(PrivacyParams {
        epsilon_budget: 1.0,
        epsilon_per_release: 0.4,
        sensitivity: BTreeMap::from([("total_kwh".to_string(), 1.0e9)]),
    });
    let grant = common::granted(&domain, &developer, application).await;
    let job = common::green_energy_job(&domain, &developer, &grant.id).await;
    let output = "kwh_by_industry_district";

    let mut releases = Vec::new();
    for spent_before in [0.0, 0.4] {
        let egress = domain.request_egress(&developer, &job, output).await.expect("request");
        let privacy = egress.report.rule("privacy").expect("the privacy rule ran");
        assert_eq!(privacy.outcome, RuleOutcome::Noised, "{}", egress.report.render());
        assert!(privacy.figure.contains(&format!("{} of 1 spent after", spent_before + 0.4)), "{}", privacy.figure);
        assert_eq!(egress.report.epsilon_charged, 0.4);
        let approved = domain.decide_egress(&operator, &egress.id, true, "noised").await.expect("approve");
        releases.push(domain.release_bundle(&developer, &approved.release_id).await.expect("bundle").data);
    }
    assert_ne!(releases[0], releases[1], "each release draws its own noise");

    let third = domain.request_egress(&developer, &job, output).await.expect("request");
    assert_eq!(third.state, "blocked");
    let privacy = third.report.rule("privacy").expect("the privacy rule ran");
    assert_eq!(privacy.outcome, RuleOutcome::Blocked);
    assert!(privacy.figure.contains("ε budget spent: 0.8 of 1 used, this release needs 0.4"), "{}", privacy.figure);

    // Every charge is in the audit log, naming the grant and the running total.
    let (_, size) = domain.checkpoint(&regulator).expect("checkpoint");
    let (entries, _) = domain.audit_entries(&regulator, 0, size, "").expect("entries");
    let charges: Vec<String> = entries
        .iter()
        .map(|raw| unseen_audit::Entry::from_canonical_bytes(&raw.bytes).expect("a valid entry"))
        .filter(|entry| entry.action == "privacy.charge")
        .map(|entry| entry.reason)
        .collect();
    assert_eq!(charges.len(), 2, "{charges:?}");
    assert!(
        charges[1].contains(&format!("grant {}", grant.id)) && charges[1].contains("0.8 of 1 spent"),
        "{charges:?}"
    );
}
