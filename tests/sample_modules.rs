//! The sample modules of the seeds' scenarios, run on the fixture's data under the grants
//! their applications ask for: what each one emits, and the review path it takes.

use std::sync::Arc;

use unseen_policy::review::{ReviewContext, review_artifact, review_table};
use unseen_policy::{Grant, Outcome, OutputKind};
use unseen_runtime::{Mode, Runtime};
use unseen_samples::modules::{ENERGY_MODEL, POPULATION_REPORT};
use unseen_samples::scenarios;
use unseen_tests::{fixture, run};

fn approved(application: unseen_policy::ScenarioApplication) -> Grant {
    Grant::freeze("g-sample".into(), "s-sample".into(), application, "operator".into(), 0, [9; 32])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_population_report_counts_residents_by_district_sex_and_age_band_and_leaves_on_its_own() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    let grant = approved(scenarios::population_report());
    let report = run(&runtime, POPULATION_REPORT, grant.clone(), &fixture, Mode::Production).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let output = &report.outputs[0];
    let table = output.table.as_ref().expect("a table");
    let schema = table.schema();
    let columns: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
    assert_eq!(columns, ["district", "sex", "age_band", "residents"]);
    assert!(table.num_rows() >= 20, "most cells of 3,000 residents have k of them: {}", table.num_rows());
    assert!(output.lineage.suppressed_groups > 0, "the oldest and youngest bands are small and withheld");
    let review = review_table(&grant, &output.name, table, &output.lineage, ReviewContext::default());
    assert_eq!(review.outcome, Outcome::Released, "{}", review.render());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_energy_model_emits_its_coefficients_as_an_artifact_that_an_operator_decides() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    let grant = approved(scenarios::energy_model());
    let report = run(&runtime, ENERGY_MODEL, grant.clone(), &fixture, Mode::Production).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let output = &report.outputs[0];
    assert_eq!((output.name.as_str(), output.kind), ("kwh_model", OutputKind::Artifact));
    let bytes = output.artifact.as_ref().expect("the coefficients");
    let model: serde_json::Value = serde_json::from_slice(bytes).expect("JSON coefficients");
    assert!(model["slope"].as_f64().unwrap() > 0.0, "more staff, more electricity: {model}");
    assert!(model["groups"].as_u64().unwrap() >= 20, "{model}");
    let review = review_artifact(&grant, &output.name, bytes, ReviewContext::default());
    assert_eq!(review.outcome, Outcome::NeedsReview, "{}", review.render());
    // Under the green-energy grant, staff numbers are not granted: the same module is refused.
    let refused = run(&runtime, ENERGY_MODEL, approved(scenarios::green_energy()), &fixture, Mode::Production).await;
    assert!(refused.failure.is_some() && refused.outputs.is_empty(), "{:?}", refused.failure);
    let query = &refused.queries[0];
    let message = query.message.clone().unwrap_or_default();
    assert_eq!(query.outcome, "access_mode.denied", "{message}");
    assert!(message.contains("\"employees\""), "{message}");
}
