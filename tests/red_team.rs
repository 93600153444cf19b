//! Attacks on the domain, each expected to fail for a named rule — and the legitimate work
//! around them, expected to succeed.

use datafusion::arrow::array::AsArray;
use unseen_policy::review::review_table;
use unseen_policy::{AccessMode, Outcome, OutputKind};
use unseen_runtime::{GovernedSession, Mode, Runtime};
use unseen_tests::{fixture, grant, green_grant, mixed_grant, run};

mod aggregates;
mod content;
mod egress_audit;
mod samples;

#[tokio::test(flavor = "multi_thread")]
async fn groups_below_k_never_reach_the_module_and_the_count_says_so() {
    let fixture = fixture().await;
    let session = GovernedSession::new(&green_grant(), &fixture.tables, Mode::Production).await.unwrap();
    let sql = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    let result = session.query(sql).await.unwrap();
    assert!(result.lineage.suppressed_groups >= 1, "the synthetic data has small industry×district groups");
    // The withheld groups stay in the domain's lineage with their keys, values and
    // contributors, so that secondary suppression can protect them exactly.
    let withheld = result.lineage.suppressed_groups as usize;
    assert_eq!(result.lineage.withheld_keys.len(), withheld);
    assert_eq!(result.lineage.withheld_values.len(), withheld);
    assert!(
        result.lineage.withheld_values.iter().all(|values| values.len() == 1 && values[0].is_some_and(|kwh| kwh > 0.0))
    );
    assert!(result.lineage.withheld_contributors.iter().all(|&count| (1..10).contains(&count)));
    let counts = &result.lineage.contributors[0].per_row;
    assert_eq!(counts.len() as u64, result.rows);
    assert!(
        counts.iter().all(|&count| count >= 10),
        "every group the module sees has ≥ k distinct enterprises: {counts:?}"
    );
    for batch in &result.batches {
        assert!(
            batch.schema().fields().iter().all(|field| !field.name().starts_with("__unseen")),
            "hidden lineage never reaches the module"
        );
    }
    // Sample mode shows every group of the desensitised sample.
    let sample = GovernedSession::new(&green_grant(), &fixture.tables, Mode::Sample).await.unwrap();
    assert_eq!(sample.query(sql).await.unwrap().lineage.suppressed_groups, 0);
    // Twelve monthly rows per company count as one contributor: distinct subjects, not rows,
    // counted up to k (the counter stops there: a threshold needs no more).
    let rows_sql = "SELECT e.industry, e.district, COUNT(*) AS n FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    for (session, mode) in [(&session, Mode::Production), (&sample, Mode::Sample)] {
        let rows = session.query(rows_sql).await.unwrap();
        let mut row = 0;
        for batch in &rows.batches {
            for n in batch.column(2).as_primitive::<datafusion::arrow::datatypes::Int64Type>().values() {
                let contributors = rows.lineage.contributors[0].per_row[row];
                if mode == Mode::Production {
                    assert_eq!(*n as u64 % 12, 0, "twelve rows per company");
                    assert_eq!(contributors, (*n as u64 / 12).min(10), "group {row}: {n} rows");
                } else {
                    // The synthetic sample draws each company's number of rows.
                    assert!(contributors >= 1 && contributors <= *n as u64, "group {row}: {n} rows");
                }
                row += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_module_under_a_narrow_grant_is_refused_in_the_engine() {
    let fixture = fixture().await;
    let runtime = std::sync::Arc::new(Runtime::new().unwrap());
    runtime.validate(unseen_samples::modules::HOSTILE_ID_DUMP).unwrap();
    let report =
        run(&runtime, unseen_samples::modules::HOSTILE_ID_DUMP, green_grant(), &fixture, Mode::Production).await;
    assert!(report.outputs.is_empty(), "nothing was emitted");
    let query = &report.queries[0];
    assert_ne!(query.outcome, "allowed");
    assert!(report.failure.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_id_dump_is_blocked_by_the_egress_reviewer_naming_its_rules() {
    let fixture = fixture().await;
    let verification = grant(
        "g-verify",
        &[
            ("population@v1", "id_card", AccessMode::Visible),
            ("population@v1", "name", AccessMode::Visible),
            ("population@v1", "district", AccessMode::Visible),
        ],
        &[("verification_result", &["district", "matched"]), ("verification_notes", &["text"])],
    );
    let runtime = std::sync::Arc::new(Runtime::new().unwrap());
    let report =
        run(&runtime, unseen_samples::modules::HOSTILE_ID_DUMP, verification.clone(), &fixture, Mode::Production).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let table = report.outputs.iter().find(|output| output.kind == OutputKind::Table).expect("a table output");
    let review =
        review_table(&verification, &table.name, table.table.as_ref().unwrap(), &table.lineage, Default::default());
    assert_eq!(review.outcome, Outcome::Blocked);
    for rule in ["contract", "lineage", "threshold", "content"] {
        assert!(review.blocking_rules().contains(&rule), "{rule} should block: {:?}", review.rules);
    }
    let artifact = report.outputs.iter().find(|output| output.kind == OutputKind::Artifact).expect("an artifact");
    let review = unseen_policy::review::review_artifact(
        &verification,
        &artifact.name,
        artifact.artifact.as_ref().unwrap(),
        Default::default(),
    );
    assert_eq!(review.outcome, Outcome::Blocked);
    assert_eq!(review.blocking_rules(), vec!["content"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn green_energy_module_runs_identically_on_sample_and_real_data() {
    let fixture = fixture().await;
    let runtime = std::sync::Arc::new(Runtime::new().unwrap());
    for mode in [Mode::Sample, Mode::Production] {
        let report = run(&runtime, unseen_samples::modules::GREEN_ENERGY, green_grant(), &fixture, mode).await;
        assert!(report.failure.is_none(), "{mode:?}: {:?}", report.failure);
        assert_eq!(report.outputs.len(), 1);
        assert_eq!(report.outputs[0].name, "kwh_by_industry_district");
        assert!(report.metering.fuel > 0 && report.metering.queries == 1);
        assert!(!report.guest_log.is_empty(), "the module logs what it read");
    }
}

#[test]
fn malformed_modules_are_refused_at_upload_with_the_reason() {
    let runtime = Runtime::new().unwrap();
    let refuse = |bytes: &[u8]| runtime.validate(bytes).unwrap_err().to_string();
    assert!(refuse(b"").contains("empty"));
    assert!(refuse(b"#!/bin/sh\nrm -rf /\n").contains("not a WebAssembly binary"));
    assert!(refuse(b"\0asm\x01\0\0\0\xff\xff").contains("not valid WebAssembly"));
    let files = wat_module(
        r#"(import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
                                (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))"#,
    );
    let message = refuse(&files);
    assert!(
        message.contains("wasi_snapshot_preview1.path_open") && message.contains("wasi_snapshot_preview1.sock_accept"),
        "{message}"
    );
    let no_entry = wat_module("");
    assert!(refuse(&no_entry).contains("missing export"));
    let mut oversized = b"\0asm\x01\0\0\0".to_vec();
    oversized.resize(unseen_runtime::host::MAX_MODULE_BYTES + 1, 0);
    assert!(refuse(&oversized).contains("exceeds the"), "too large");
    let two_memories = wat_module(r#"(memory 1)"#);
    let message = refuse(&two_memories);
    assert!(message.contains("instance limits") && message.contains("memories count of 2"), "{message}");
}

fn wat_module(imports: &str) -> Vec<u8> {
    // A tiny hand-written module: text format compiled by wasmtime's own parser inside the
    // runtime would hide the bytes; here the test assembles the binary it uploads.
    let text = format!("(module {imports} (memory (export \"memory\") 1))");
    wat::parse_str(text).expect("valid text format")
}

/// Every value of one string column of a result.
fn strings(result: &unseen_runtime::GovernedResult, column: usize) -> Vec<String> {
    result
        .batches
        .iter()
        .flat_map(|batch| {
            let values =
                datafusion::arrow::compute::cast(batch.column(column), &datafusion::arrow::datatypes::DataType::Utf8)
                    .expect("cast to text");
            values.as_string::<i32>().iter().map(|value| value.unwrap_or_default().to_string()).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pseudonymised_ids_are_grant_keyed_tokens_that_join_within_the_grant_only() {
    let fixture = fixture().await;
    let first = GovernedSession::new(&mixed_grant("g-a", [1; 32]), &fixture.tables, Mode::Production).await.unwrap();
    let second = GovernedSession::new(&mixed_grant("g-b", [2; 32]), &fixture.tables, Mode::Production).await.unwrap();
    let sql = "SELECT person_id FROM population ORDER BY district, sex";
    let tokens_a = strings(&first.query(sql).await.unwrap(), 0);
    let tokens_b = strings(&second.query(sql).await.unwrap(), 0);
    assert!(tokens_a.len() > 1000);
    assert!(
        tokens_a.iter().all(|token| token.len() == 32 && !token.starts_with('P')),
        "tokens, not ids: {}",
        tokens_a[0]
    );
    let ids_a: std::collections::BTreeSet<_> = tokens_a.iter().collect();
    assert_eq!(ids_a.len(), tokens_a.len(), "distinct ids give distinct tokens");
    assert!(tokens_b.iter().all(|token| !ids_a.contains(token)), "no token links across grants");
    // Within a grant the token is stable, so a self-join on it pairs every person with itself.
    let joined = first
        .query("SELECT a.district FROM population a JOIN population b ON a.person_id = b.person_id")
        .await
        .unwrap();
    assert_eq!(joined.rows as usize, tokens_a.len());
    // The module may filter on a token it saw, and finds exactly that person.
    let one =
        first.query(&format!("SELECT district FROM population WHERE person_id = '{}'", tokens_a[0])).await.unwrap();
    assert_eq!(one.rows, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_outside_the_grants_row_filter_are_invisible_however_asked() {
    let fixture = fixture().await;
    let session = GovernedSession::new(&mixed_grant("g-a", [1; 32]), &fixture.tables, Mode::Production).await.unwrap();
    let districts = strings(&session.query("SELECT district FROM population").await.unwrap(), 0);
    assert!(districts.len() > 1000 && districts.len() < 3000, "the filter removed some rows, not all");
    assert!(districts.iter().all(|district| district != "安吉县"));
    for sql in [
        "SELECT district FROM population WHERE district = '安吉县' OR 1 = 1",
        "SELECT district FROM population WHERE NOT (district <> '安吉县')",
        "SELECT p.district FROM population p JOIN population q ON p.id_card = q.id_card WHERE q.district = '安吉县'",
    ] {
        let result = session.query(sql).await.unwrap();
        assert!(strings(&result, 0).iter().all(|district| district != "安吉县"), "{sql}");
    }
    // Without the filter, the same data has them.
    let open = grant("g-open", &[("population@v1", "district", AccessMode::Visible)], &[]);
    let open = GovernedSession::new(&open, &fixture.tables, Mode::Production).await.unwrap();
    let all = strings(&open.query("SELECT district FROM population").await.unwrap(), 0);
    assert_eq!(all.len(), 3000);
    assert_eq!(all.iter().filter(|district| *district != "安吉县").count(), districts.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_row_filter_names_the_grant_and_the_dataset() {
    let fixture = fixture().await;
    for (condition, reason) in [("no_such_column = 1", "no_such_column"), ("district", "not a condition")] {
        let mut broken = mixed_grant("g-broken", [1; 32]);
        for request in &mut broken.application.datasets {
            if request.dataset == "population@v1" {
                request.row_filter = Some(condition.into());
            }
        }
        let error = GovernedSession::new(&broken, &fixture.tables, Mode::Production).await.unwrap_err().to_string();
        assert!(error.contains("row filter of grant g-broken on population@v1"), "{error}");
        assert!(error.contains(reason), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_computed_subject_does_not_inflate_the_contributor_count() {
    let fixture = fixture().await;
    let session = GovernedSession::new(&green_grant(), &fixture.tables, Mode::Production).await.unwrap();
    let honest = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    // Every row its own "subject": twelve monthly rows of one company would count as twelve.
    let forged = "SELECT i, d, SUM(k) AS total_kwh FROM (SELECT e.industry AS i, e.district AS d, u.kwh AS k, concat(u.uscc, random()) AS uscc FROM electricity u JOIN enterprise e ON u.uscc = e.uscc) t GROUP BY i, d";
    let honest = session.query(honest).await.unwrap();
    let forged = session.query(forged).await.unwrap();
    assert!(honest.lineage.suppressed_groups > 0);
    assert_eq!(forged.rows, honest.rows);
    assert_eq!(forged.lineage.suppressed_groups, honest.lineage.suppressed_groups);
    assert_eq!(forged.lineage.contributors, honest.lineage.contributors);
}

/// The largest contributions behind every SUM cell, per enterprise (not per row), as a plain
/// per-enterprise recomputation finds them: exact in small groups, never too low in large.
#[tokio::test(flavor = "multi_thread")]
async fn largest_contributions_per_subject_travel_with_magnitude_cells() {
    use std::collections::BTreeMap;

    use datafusion::arrow::datatypes::Float64Type;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    let fixture = fixture().await;
    let session = GovernedSession::new(&green_grant(), &fixture.tables, Mode::Production).await.unwrap();
    let sql = "SELECT e.industry, e.district, SUM(u.kwh) / 1000 AS mwh, COUNT(*) AS n FROM electricity u \
               JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district ORDER BY 1, 2";
    let result = session.query(sql).await.unwrap();
    let [magnitude] = result.lineage.magnitudes.as_slice() else {
        panic!("one magnitude aggregate (SUM), COUNT is not one: {:?}", result.lineage.magnitudes)
    };
    assert_eq!(magnitude.columns, vec!["mwh".to_string()], "the output column computed from the SUM");
    assert_eq!(magnitude.per_row.len() as u64, result.rows);

    // The same groups recomputed per enterprise on the stored files, outside the engine.
    let plain = SessionContext::new();
    for table in &fixture.tables {
        let path = table.production_path.to_str().unwrap();
        plain.register_parquet(&table.dataset.name, path, ParquetReadOptions::default()).await.unwrap();
    }
    let per_subject = plain
        .sql(
            "SELECT e.industry, e.district, SUM(ABS(u.kwh)) AS amount FROM electricity u \
             JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district, u.uscc",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut groups: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for batch in &per_subject {
        let (industry, district) = (batch.column(0).as_string_view(), batch.column(1).as_string_view());
        let amount = batch.column(2).as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            let key = (industry.value(row).to_string(), district.value(row).to_string());
            groups.entry(key).or_default().push(amount.value(row));
        }
    }
    let mut row = 0;
    let (mut exact_groups, mut estimated_groups) = (0, 0);
    for batch in &result.batches {
        let (industry, district) = (batch.column(0).as_string_view(), batch.column(1).as_string_view());
        for index in 0..batch.num_rows() {
            let key = (industry.value(index).to_string(), district.value(index).to_string());
            let mut truth = groups.remove(&key).expect("the group exists in the plain result");
            truth.sort_by(|left, right| right.total_cmp(left));
            let host = &magnitude.per_row[row];
            let total: f64 = truth.iter().sum();
            assert!((host.total - total).abs() <= 1e-6 * total, "group {key:?}: total {} vs {total}", host.total);
            if truth.len() <= 16 {
                assert_eq!(host.largest.len(), truth.len().min(5));
                for (estimate, exact) in host.largest.iter().zip(&truth) {
                    assert!((estimate - exact).abs() <= 1e-6 * exact, "group {key:?}: {estimate} vs {exact}");
                }
            } else {
                // Folded into buckets: the sum of the i largest never falls below the truth's.
                let (mut reported, mut exact) = (0.0, 0.0);
                for (index, truth) in truth.iter().take(5).enumerate() {
                    reported += host.largest.get(index).copied().unwrap_or(0.0);
                    exact += truth;
                    assert!(reported >= exact * (1.0 - 1e-9), "group {key:?}: top {} {reported} < {exact}", index + 1);
                }
            }
            if truth.len() <= 16 {
                exact_groups += 1
            } else {
                estimated_groups += 1
            }
            row += 1;
        }
    }
    assert!(exact_groups > 0 && estimated_groups > 0, "{exact_groups} exact, {estimated_groups} estimated groups");

    let counts = session.query("SELECT e.district, COUNT(*) AS n FROM enterprise e GROUP BY e.district").await.unwrap();
    assert!(counts.lineage.magnitudes.is_empty(), "COUNT is not a magnitude");
}

/// Attack: a module emits a table by industry × district, whose small groups the engine
/// withheld, together with totals (here: any margin published anywhere). Secondary
/// suppression must leave no line of the table with a single withheld cell, so that no
/// withheld group follows from a total. And every cell that the per-enterprise data shows to
/// be dominated must be withheld.
#[tokio::test(flavor = "multi_thread")]
async fn withheld_groups_cannot_be_recovered_from_totals_and_dominated_cells_do_not_leave() {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::Array;
    use datafusion::arrow::datatypes::Float64Type;
    use unseen_policy::review::{ReviewContext, key_text, release_table};

    let fixture = fixture().await;
    let mut cells = grant(
        "g-cells",
        &[
            ("enterprise@v1", "uscc", AccessMode::JoinOnly),
            ("enterprise@v1", "industry", AccessMode::Visible),
            ("enterprise@v1", "district", AccessMode::Visible),
            ("electricity@v1", "uscc", AccessMode::JoinOnly),
            ("electricity@v1", "kwh", AccessMode::AggregateOnly),
        ],
        &[("by_cell", &["industry", "district", "mwh"])],
    );
    // A stricter dominance rule than the default, so that the synthetic data has dominated cells.
    cells.application.disclosure.nk_rule.k_percent = 40;
    let session = GovernedSession::new(&cells, &fixture.tables, Mode::Production).await.unwrap();
    let sql = "SELECT e.industry, e.district, SUM(u.kwh) / 1000 AS mwh FROM electricity u \
               JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    let result = session.query(sql).await.unwrap();
    assert!(result.lineage.suppressed_groups > 0, "the engine withheld small groups");
    assert_eq!(result.lineage.withheld_keys.len() as u64, result.lineage.suppressed_groups);
    let schema = result.batches[0].schema();
    let table = datafusion::arrow::compute::concat_batches(&schema, &result.batches).unwrap();
    let report = review_table(&cells, "by_cell", &table, &result.lineage, ReviewContext::default());

    let withheld = |row: usize| report.suppressed_cells.iter().any(|cell| cell.row == row);
    // No line (one key fixed, the other varying) holds exactly one withheld cell.
    for fixed in 0..2 {
        let mut lines: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for row in 0..table.num_rows() {
            let line = lines.entry(key_text(table.column(fixed).as_ref(), row)).or_default();
            line.0 += 1;
            line.1 += usize::from(withheld(row));
        }
        for keys in &result.lineage.withheld_keys {
            let line = lines.entry(keys[fixed].clone()).or_default();
            line.0 += 1;
            line.1 += 1;
        }
        for (key, (members, withheld)) in lines {
            assert!(members < 2 || withheld != 1, "{key}: one withheld cell among {members} follows from the total");
        }
    }

    // Dominance, recomputed per enterprise outside the engine.
    let magnitude = &result.lineage.magnitudes[0];
    let mut dominated = 0;
    for row in 0..table.num_rows() {
        let contributions = &magnitude.per_row[row];
        let top_two: f64 = contributions.largest.iter().take(2).sum();
        if top_two > 0.40 * contributions.total {
            dominated += 1;
            assert!(withheld(row), "row {row} is dominated ({top_two} of {}) but released", contributions.total);
        }
    }
    assert!(dominated > 0, "the stricter rule finds dominated cells");
    assert!(report.suppressed_cells.iter().any(|cell| cell.rule == "dominance"));
    let released = release_table(&report, &table).unwrap();
    let mwh = released.column(2).as_primitive::<Float64Type>();
    assert_eq!(mwh.null_count(), report.suppressed_cells.len(), "every withheld cell is null in the release");
}

/// Differencing: two releases that each pass the threshold — a district's total, and later the
/// same district without one small industry — would together publish that industry's few
/// enterprises. The second release's row is withheld by the differencing rule; a release that
/// differs by many enterprises goes out.
#[tokio::test(flavor = "multi_thread")]
async fn a_later_release_that_differs_from_an_earlier_one_by_a_few_enterprises_is_withheld() {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    use unseen_policy::review::{EarlierRelease, ReviewContext, key_text, released_sketches};

    let fixture = fixture().await;
    // Find, with plain DataFusion outside the domain, a district and an industry that has
    // between 1 and 9 enterprises there: the attacker's target.
    let plain = SessionContext::new();
    let enterprise = fixture.tables.iter().find(|table| table.dataset.name == "enterprise").unwrap();
    plain
        .register_parquet("enterprise", enterprise.production_path.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap();
    let small = plain
        .sql("SELECT district, industry, COUNT(DISTINCT uscc) AS n FROM enterprise GROUP BY district, industry HAVING COUNT(DISTINCT uscc) BETWEEN 1 AND 9 ORDER BY n DESC, district, industry LIMIT 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let (district, industry, few) = (
        key_text(small[0].column(0).as_ref(), 0),
        key_text(small[0].column(1).as_ref(), 0),
        small[0].column(2).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0),
    );

    let attack = grant(
        "g-diff",
        &[
            ("enterprise@v1", "uscc", AccessMode::JoinOnly),
            ("enterprise@v1", "industry", AccessMode::FilterOnly),
            ("enterprise@v1", "district", AccessMode::Visible),
            ("electricity@v1", "uscc", AccessMode::JoinOnly),
            ("electricity@v1", "kwh", AccessMode::AggregateOnly),
        ],
        &[("by_district", &["district", "kwh"])],
    );
    let session = GovernedSession::new(&attack, &fixture.tables, Mode::Production).await.unwrap();
    let review = |sql: String, earlier: Vec<EarlierRelease>| {
        let session = &session;
        let attack = &attack;
        async move {
            let result = session.query(&sql).await.unwrap();
            let table =
                datafusion::arrow::compute::concat_batches(&result.batches[0].schema(), &result.batches).unwrap();
            let context = ReviewContext { earlier: &earlier, ..Default::default() };
            let report = review_table(attack, "by_district", &table, &result.lineage, context);
            let kept = released_sketches(&result.lineage, &report);
            (table, report, kept)
        }
    };
    let first_sql = "SELECT e.district, SUM(u.kwh) AS kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
                     GROUP BY e.district"
        .to_string();
    let (_, first, first_kept) = review(first_sql, Vec::new()).await;
    assert!(first.suppressed_rows.is_empty(), "district totals are safe on their own: {}", first.render());
    let earlier = vec![EarlierRelease {
        label: "egress e-1 (\"by_district\")".into(),
        sketches: first_kept,
        withheld: Vec::new(),
        complements: Vec::new(),
    }];

    let second_sql = format!(
        "SELECT e.district, SUM(u.kwh) AS kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
         WHERE e.industry <> '{industry}' GROUP BY e.district"
    );
    let (table, second, _) = review(second_sql.clone(), earlier.clone()).await;
    let target = (0..table.num_rows())
        .find(|&row| key_text(table.column(0).as_ref(), row) == district)
        .expect("district released");
    let rule = second.rule("differencing").expect("differencing ran");
    assert_eq!(rule.outcome, unseen_policy::RuleOutcome::Suppressed, "{}", second.render());
    assert!(second.suppressed_rows.contains(&target), "{district} minus {few} {industry} enterprises is withheld");
    let cell = second.suppressed_cells.iter().find(|cell| cell.row == target).unwrap();
    assert_eq!(cell.rule, "differencing");
    assert!(cell.figure.contains(&format!("by {few} subjects < k=10")), "{}", cell.figure);

    // Without the earlier release nothing isolates the industry; and the same groups asked
    // again (a filter that keeps every row) differ by nothing and go out.
    let (_, alone, _) = review(second_sql, Vec::new()).await;
    assert!(!alone.suppressed_rows.contains(&target));
    let unrelated = "SELECT e.district, SUM(u.kwh) AS kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
                     WHERE e.industry IS NOT NULL GROUP BY e.district"
        .to_string();
    let (_, same_rows, _) = review(unrelated, earlier).await;
    assert_eq!(
        same_rows.rule("differencing").unwrap().outcome,
        unseen_policy::RuleOutcome::Pass,
        "{}",
        same_rows.render()
    );
}
