//! The sample modules of the demo's scenarios (`samples/`), run on the fixture's data under the
//! grants their applications ask for: what each one emits, and the review path it takes.

use std::sync::Arc;

use unseen_policy::review::{ReviewContext, release_table, review_artifact, review_table, review_verification};
use unseen_policy::{Grant, Outcome, OutputKind};
use unseen_runtime::{Mode, Runtime};
use unseen_samples::modules::{ENERGY_MODEL, ENTERPRISE_VERIFICATION, POPULATION_REPORT, RED_TEAM};
use unseen_samples::scenarios;
use unseen_tests::{fixture, run, run_with};

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

/// The register's (uscc, name, district, industry) of its first `count` enterprises, as the
/// fixture generated them.
fn registered(count: usize) -> Vec<[String; 4]> {
    use datafusion::arrow::array::AsArray;
    let register = unseen_samples::data::enterprises(2_000, 11);
    let text = |name: &str, row: usize| {
        register.column_by_name(name).expect("register column").as_string::<i32>().value(row).to_string()
    };
    (0..count).map(|row| [text("uscc", row), text("name", row), text("district", row), text("industry", row)]).collect()
}

fn booleans(table: &datafusion::arrow::array::RecordBatch, column: &str) -> Vec<Option<bool>> {
    use datafusion::arrow::array::AsArray;
    table.column_by_name(column).expect("answer column").as_boolean().iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn enterprise_verification_answers_each_claim_per_field_and_the_module_reads_nothing() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    let grant = approved(scenarios::enterprise_verification());
    let [first, second, third] = <[[String; 4]; 3]>::try_from(registered(3)).expect("three enterprises");
    let params = format!(
        "uscc,name,district\n{},{},{}\n{},湖州并不存在有限公司,{}\n{},,{}\n91330500MA00000000,{},\n",
        first[0], first[1], first[2], second[0], second[2], third[0], first[2], first[1]
    );
    let report = run_with(&runtime, ENTERPRISE_VERIFICATION, grant.clone(), &fixture, Mode::Production, &params).await;
    assert!(report.failure.is_none(), "{:?} {:?}", report.failure, report.guest_log);
    let output = &report.outputs[0];
    assert_eq!((output.name.as_str(), output.kind), ("enterprise_checks", OutputKind::Verification));
    let table = output.table.as_ref().expect("answers");
    let schema = table.schema();
    let columns: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
    assert_eq!(columns, ["claim", "found", "name", "district", "industry"]);
    assert_eq!(booleans(table, "found"), [Some(true), Some(true), Some(true), Some(false)]);
    assert_eq!(booleans(table, "name"), [Some(true), Some(false), None, None], "stated names, matched or not");
    // The third claim states the first enterprise's district for the third enterprise.
    let third_district = Some(third[2] == first[2]);
    assert_eq!(booleans(table, "district"), [Some(true), Some(true), third_district, None]);
    assert_eq!(booleans(table, "industry"), [None; 4], "nothing was stated about industry");
    let claims = output.lineage.verification.as_ref().expect("the host's record of the claims");
    assert_eq!(claims.claim_keys.len(), 4);
    assert!(claims.claim_keys.iter().all(|token| token.len() == 32 && !token.contains(&first[0])), "tokens, not keys");
    assert!(report.guest_log.iter().any(|line| line.contains("4 claims answered")), "{:?}", report.guest_log);
    assert!(report.queries.is_empty(), "the module ran no query: the grant lets it read no column");
    let review = review_verification(&grant, &output.name, table, &output.lineage, ReviewContext::default());
    assert_eq!(review.outcome, Outcome::Released, "{}", review.render());

    // A claim stating a field the grant does not declare is not answered at all.
    let undeclared = format!("uscc,employees\n{},12\n", first[0]);
    let refused = run_with(&runtime, ENTERPRISE_VERIFICATION, grant, &fixture, Mode::Production, &undeclared).await;
    assert!(refused.outputs.is_empty());
    let log = refused.guest_log.join("\n");
    assert!(
        log.contains("column \"employees\" that is neither the key \"uscc\" nor one of the declared fields"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_an_enterprises_name_claim_after_claim_gets_three_answers_a_day() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    let grant = approved(scenarios::enterprise_verification());
    let [target] = <[[String; 4]; 1]>::try_from(registered(1)).expect("one enterprise");
    // Five guesses at one company's name in one job, the right one last.
    let mut params = String::from("uscc,name\n");
    for guess in ["湖州甲有限公司", "湖州乙有限公司", "湖州丙有限公司", "湖州丁有限公司", target[1].as_str()]
    {
        params.push_str(&format!("{},{guess}\n", target[0]));
    }
    let report = run_with(&runtime, ENTERPRISE_VERIFICATION, grant.clone(), &fixture, Mode::Production, &params).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let output = &report.outputs[0];
    let table = output.table.as_ref().expect("answers");
    assert_eq!(booleans(table, "name"), [Some(false), Some(false), Some(false), Some(false), Some(true)]);
    let review = review_verification(&grant, &output.name, table, &output.lineage, ReviewContext::default());
    let rule = review.rule("verification").expect("the verification rule ran");
    assert!(rule.figure.contains("2 over attempts_per_key=3"), "{}", rule.figure);
    let released = release_table(&review, table).expect("release");
    assert_eq!(
        booleans(&released, "name"),
        [Some(false), Some(false), Some(false), None, None],
        "the right guess never leaves"
    );

    // A developer who stays under the per-key limit in each job meets it across jobs: the
    // domain hands the reviewer the keys answered under the grant in the last 24 hours.
    let earlier = output.lineage.verification.as_ref().expect("claims").claim_keys[..3].to_vec();
    let once = format!("uscc,name\n{},{}\n", target[0], target[1]);
    let report = run_with(&runtime, ENTERPRISE_VERIFICATION, grant.clone(), &fixture, Mode::Production, &once).await;
    let output = &report.outputs[0];
    let table = output.table.as_ref().expect("answers");
    let context = ReviewContext { earlier_claims: &earlier, ..Default::default() };
    let review = review_verification(&grant, &output.name, table, &output.lineage, context);
    assert_eq!(review.suppressed_cells.len(), 4, "found, name, district and industry withheld: {}", review.render());
    assert!(review.suppressed_cells[0].figure.contains("claimed 3 times in 24 h already"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_cannot_write_a_verification_outputs_answers_itself() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    let grant = approved(scenarios::enterprise_verification());
    let params = "attack=forge_answers\noutput=enterprise_checks";
    let report = run_with(&runtime, RED_TEAM, grant, &fixture, Mode::Production, params).await;
    assert!(report.outputs.is_empty(), "neither the forged table nor the forged bytes were kept");
    let log = report.guest_log.join("\n");
    let rule =
        "output \"enterprise_checks\" is a verification output in grant g-sample; submit claims to it with verify";
    assert!(log.contains(&format!("table refused: InvalidArgument: {rule}")), "{log}");
    assert!(log.contains(rule) && report.failure.is_some(), "the artifact is refused too: {log}");
}
