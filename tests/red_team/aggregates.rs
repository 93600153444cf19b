//! Aggregates that are not aggregates in the disclosure sense, under a grant where an operator
//! left identifiers and magnitudes `visible` — the mistake the egress reviewer exists to catch.
//! Each attack runs through the governed engine in production mode and is reviewed as a
//! release would be; the `lineage` rule must block it, whatever the grant allowed. Spreads
//! pass lineage and are judged cell by cell by `dominance`, like the sums they come from.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use unseen_policy::review::{ReviewContext, review_table};
use unseen_policy::{AccessMode, Grant, Outcome, ReviewReport, RuleOutcome, ValueClass};
use unseen_runtime::{GovernedResult, GovernedSession, Mode};
use unseen_tests::{Fixture, fixture, grant};

/// Identifiers, names and registered capital (the enterprises' "income") visible, every
/// attack's output declared: only the reviewer stands between these queries and a release.
fn careless_grant() -> Grant {
    use AccessMode::*;
    grant(
        "g-careless",
        &[
            ("population@v1", "person_id", Visible),
            ("population@v1", "id_card", Visible),
            ("population@v1", "name", Visible),
            ("population@v1", "sex", Visible),
            ("population@v1", "district", Visible),
            ("enterprise@v1", "uscc", JoinOnly),
            ("enterprise@v1", "industry", Visible),
            ("enterprise@v1", "district", Visible),
            ("enterprise@v1", "employees", Visible),
            ("enterprise@v1", "registered_capital", Visible),
            ("electricity@v1", "uscc", JoinOnly),
            ("electricity@v1", "month", Visible),
            ("electricity@v1", "kwh", Visible),
        ],
        &[
            ("by_district", &["district", "value"]),
            ("by_cell", &["industry", "district", "value"]),
            ("whole", &["value"]),
        ],
    )
}

fn table(result: &GovernedResult) -> RecordBatch {
    let first = result.batches.first().expect("the query returned rows");
    concat_batches(&first.schema(), &result.batches).expect("one table")
}

/// Runs `sql` under `grant` in production mode and reviews its result as output `output`.
async fn reviewed(fixture: &Fixture, grant: &Grant, output: &str, sql: &str) -> (GovernedResult, ReviewReport) {
    let session = GovernedSession::new(grant, &fixture.tables, Mode::Production).await.expect("the session opens");
    let result = session.query(sql).await.unwrap_or_else(|error| panic!("the engine runs {sql}: {error}"));
    let report = review_table(grant, output, &table(&result), &result.lineage, ReviewContext::default());
    (result, report)
}

/// Asserts that `sql` is blocked by `lineage`, which names the column, its function and the
/// phrase of its class.
async fn blocked_by_lineage(fixture: &Fixture, output: &str, sql: &str, function: &str, phrase: &str) {
    let (_, report) = reviewed(fixture, &careless_grant(), output, sql).await;
    assert_eq!(report.outcome, Outcome::Blocked, "{sql}: {}", report.render());
    assert!(report.blocking_rules().contains(&"lineage"), "{sql}: lineage must block: {}", report.render());
    let figure = &report.rule("lineage").expect("lineage ran").figure;
    assert!(figure.contains("column \"value\""), "{sql}: the refusal names the column: {figure}");
    assert!(figure.contains(function), "{sql}: the refusal names {function}: {figure}");
    assert!(figure.contains(phrase), "{sql}: the refusal says {phrase:?}: {figure}");
}

const ONE_SUBJECT: &str = "one subject's value, not an aggregate";
const ROWS: &str = "rows, not an aggregate";

#[tokio::test(flavor = "multi_thread")]
async fn every_resident_id_as_one_list_cell_is_blocked_by_lineage() {
    let fixture = fixture().await;
    let sql = "SELECT district, array_agg(id_card) AS value FROM population GROUP BY district";
    blocked_by_lineage(&fixture, "by_district", sql, "array_agg(population.id_card)", ROWS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_name_as_one_list_cell_is_blocked_by_lineage() {
    let fixture = fixture().await;
    let sql = "SELECT district, array_agg(name) AS value FROM population GROUP BY district";
    blocked_by_lineage(&fixture, "by_district", sql, "array_agg(population.name)", ROWS).await;
    let sql = "SELECT district, string_agg(name, ',') AS value FROM population GROUP BY district";
    blocked_by_lineage(&fixture, "by_district", sql, "string_agg(", ROWS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_largest_id_with_a_suffix_is_one_residents_id_and_blocked() {
    let fixture = fixture().await;
    let sql = "SELECT district, max(concat(id_card, 'x')) AS value FROM population GROUP BY district";
    blocked_by_lineage(&fixture, "by_district", sql, "max(concat(", ONE_SUBJECT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_split_by_dashes_are_blocked_aggregated_or_not() {
    let fixture = fixture().await;
    let dashed = "concat_ws('-', substr(id_card, 1, 6), substr(id_card, 7, 8), substr(id_card, 15, 4))";
    let sql = format!("SELECT district, max({dashed}) AS value FROM population GROUP BY district");
    blocked_by_lineage(&fixture, "by_district", &sql, "max(concat_ws(", ONE_SUBJECT).await;
    let sql = format!("SELECT district, array_agg({dashed}) AS value FROM population GROUP BY district");
    blocked_by_lineage(&fixture, "by_district", &sql, "array_agg(concat_ws(", ROWS).await;
    let sql = format!("SELECT district, {dashed} AS value FROM population");
    let (_, report) = reviewed(&fixture, &careless_grant(), "by_district", &sql).await;
    assert!(report.blocking_rules().contains(&"lineage"), "{}", report.render());
    let figure = &report.rule("lineage").expect("lineage ran").figure;
    assert!(figure.contains("identifier column population@v1.id_card without aggregation"), "{figure}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_letter_encoded_with_translate_are_blocked() {
    let fixture = fixture().await;
    let encoded = "translate(id_card, '0123456789X', 'abcdefghijk')";
    let sql = format!("SELECT district, max({encoded}) AS value FROM population GROUP BY district");
    blocked_by_lineage(&fixture, "by_district", &sql, "max(translate(", ONE_SUBJECT).await;
    let sql = format!("SELECT district, array_agg({encoded}) AS value FROM population GROUP BY district");
    blocked_by_lineage(&fixture, "by_district", &sql, "array_agg(translate(", ROWS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_enterprises_exact_capital_as_max_or_min_is_blocked() {
    let fixture = fixture().await;
    for function in ["max", "min"] {
        let sql = format!("SELECT district, {function}(registered_capital) AS value FROM enterprise GROUP BY district");
        let named = format!("{function}(enterprise.registered_capital) of enterprise@v1.registered_capital");
        blocked_by_lineage(&fixture, "by_district", &sql, &named, ONE_SUBJECT).await;
    }
    let sql = "SELECT max(registered_capital) AS value FROM enterprise";
    blocked_by_lineage(&fixture, "whole", sql, "max(enterprise.registered_capital)", ONE_SUBJECT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_capital_as_one_list_cell_is_blocked() {
    let fixture = fixture().await;
    let sql = "SELECT district, array_agg(registered_capital) AS value FROM enterprise GROUP BY district";
    blocked_by_lineage(&fixture, "by_district", sql, "array_agg(enterprise.registered_capital)", ROWS).await;
    let sql = "SELECT district, make_array(SUM(registered_capital), MAX(registered_capital)) AS value \
               FROM enterprise GROUP BY district";
    blocked_by_lineage(&fixture, "by_district", sql, "max(enterprise.registered_capital)", "").await;
}

/// One subject's value in every other guise DataFusion offers, and aggregates whose argument
/// picks the rows: each is blocked by `lineage` and says why.
#[tokio::test(flavor = "multi_thread")]
async fn single_values_and_selective_aggregates_in_any_guise_are_blocked() {
    let fixture = fixture().await;
    let cases = [
        ("median(registered_capital)", "median(", ONE_SUBJECT),
        ("approx_percentile_cont(registered_capital, 0.99)", "approx_percentile_cont(", ONE_SUBJECT),
        ("approx_median(registered_capital)", "approx_median(", ONE_SUBJECT),
        ("first_value(registered_capital ORDER BY registered_capital DESC)", "first_value(", ONE_SUBJECT),
        ("last_value(registered_capital ORDER BY registered_capital)", "last_value(", ONE_SUBJECT),
        ("nth_value(registered_capital, 2 ORDER BY registered_capital DESC)", "nth_value(", ONE_SUBJECT),
        ("any_value(registered_capital)", "any_value(", ONE_SUBJECT),
        ("bit_or(employees)", "bit_or(", ONE_SUBJECT),
        ("bool_or(registered_capital > 1000000)", "bool_or(", ONE_SUBJECT),
        ("round(max(registered_capital) / 1000)", "max(enterprise.registered_capital)", ONE_SUBJECT),
        ("SUM(registered_capital) - MAX(registered_capital)", "max(", ONE_SUBJECT),
        ("SUM(CASE WHEN employees > 500 THEN registered_capital END)", "sum(CASE", "linear expression"),
        ("SUM(registered_capital * registered_capital)", "sum(", "linear expression"),
        ("SUM(DISTINCT registered_capital)", "sum(DISTINCT", "linear expression"),
        ("COUNT(*) FILTER (WHERE employees > 500)", "FILTER", "linear expression"),
        ("concat(district, SUM(registered_capital))", "concat(", "not known to be an aggregate"),
        ("named_struct('total', SUM(registered_capital))", "named_struct(", ROWS),
    ];
    for (aggregate, function, phrase) in cases {
        let sql = format!("SELECT district, {aggregate} AS value FROM enterprise GROUP BY district");
        blocked_by_lineage(&fixture, "by_district", &sql, function, phrase).await;
    }
}

/// A spread is released only as the sum it comes from would be: its cells carry that sum's
/// largest contributions, and the dominance rule withholds those a few enterprises dominate.
#[tokio::test(flavor = "multi_thread")]
async fn a_spread_of_capital_is_judged_by_the_dominance_of_its_sum() {
    let fixture = fixture().await;
    let mut strict = careless_grant();
    strict.application.disclosure.nk_rule.k_percent = 40;
    for function in ["stddev", "var_pop", "stddev_pop", "var_samp"] {
        let sql = format!(
            "SELECT industry, district, {function}(registered_capital) AS value FROM enterprise GROUP BY industry, district"
        );
        let (result, report) = reviewed(&fixture, &strict, "by_cell", &sql).await;
        assert_eq!(report.rule("lineage").map(|rule| rule.outcome), Some(RuleOutcome::Pass), "{}", report.render());
        assert_eq!(result.lineage.columns[2].class, ValueClass::Spread);
        let [magnitude] = result.lineage.magnitudes.as_slice() else {
            panic!("{function}: one largest-contributions summary, got {:?}", result.lineage.magnitudes)
        };
        assert_eq!(magnitude.columns, vec!["value".to_string()]);
        let mut dominated = 0;
        for (row, contributions) in magnitude.per_row.iter().enumerate() {
            let top_two: f64 = contributions.largest.iter().take(2).sum();
            if top_two >= 0.40 * contributions.total && contributions.total > 0.0 {
                dominated += 1;
                assert!(
                    report.suppressed_cells.iter().any(|cell| cell.row == row && cell.column == "value"),
                    "{function}: row {row} is dominated ({top_two} of {}) but released",
                    contributions.total
                );
            }
        }
        assert!(dominated > 0, "{function}: the strict rule finds dominated cells");
        assert!(report.suppressed_cells.iter().any(|cell| cell.rule == "dominance"), "{}", report.render());
    }
}

/// The legitimate work around the attacks: counts, sums and means of linear expressions, and
/// functions of them, pass `lineage` under the same careless grant.
#[tokio::test(flavor = "multi_thread")]
async fn counts_sums_and_means_of_linear_expressions_still_pass_lineage() {
    let fixture = fixture().await;
    let join = "FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.district";
    let queries = [
        "SELECT district, COUNT(*) AS value FROM population GROUP BY district".to_string(),
        format!("SELECT e.district, SUM(u.kwh) AS value {join}"),
        format!("SELECT e.district, AVG(u.kwh / 1000.0) AS value {join}"),
        format!("SELECT e.district, round(SUM(u.kwh)) AS value {join}"),
        format!("SELECT e.district, SUM(u.kwh) / COUNT(*) AS value {join}"),
    ];
    for sql in &queries {
        let (result, report) = reviewed(&fixture, &careless_grant(), "by_district", sql).await;
        let lineage = report.rule("lineage").expect("lineage ran");
        assert_eq!(lineage.outcome, RuleOutcome::Pass, "{sql}: {}", lineage.figure);
        assert_eq!(result.lineage.columns[1].class, ValueClass::Aggregate, "{sql}");
        assert!(result.lineage.columns[1].measure.is_some(), "{sql}: an aggregate has a measure");
    }
}
