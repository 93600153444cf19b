//! Attacks on the domain, each expected to fail for a named rule — and the legitimate work
//! around them, expected to succeed.

use datafusion::arrow::array::AsArray;
use unseen_policy::review::review_table;
use unseen_policy::{AccessMode, Outcome, OutputKind};
use unseen_runtime::{GovernedSession, Mode, Runtime, RuntimeError};
use unseen_tests::{fixture, grant, green_grant, run};

/// What a query should meet: allowed, or refused by a rule with a message fragment.
enum Expect {
    Allowed,
    Refused(&'static str, &'static str),
}

use Expect::{Allowed, Refused};

/// One line per query: the SQL, what must happen, and why.
const GREEN_ENERGY_QUERIES: &[(&str, Expect)] = &[
    (
        "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district",
        Allowed,
    ),
    ("SELECT industry, COUNT(*) AS n FROM enterprise GROUP BY industry", Allowed),
    // join_only columns never reach the result, however they are dressed up
    (
        "SELECT uscc FROM enterprise",
        Refused(
            "access_mode.join_only",
            "column \"uscc\" of dataset \"enterprise@v1\" is join_only in grant g-green; it cannot be projected",
        ),
    ),
    ("SELECT substr(uscc, 1, 6) AS prefix FROM enterprise", Refused("access_mode.join_only", "it cannot be projected")),
    ("SELECT md5(uscc) AS h FROM enterprise", Refused("access_mode.join_only", "it cannot be projected")),
    (
        "SELECT uscc = '91330502MA2B3C4D5E' AS hit FROM enterprise",
        Refused("access_mode.join_only", "it cannot be projected"),
    ),
    ("SELECT x FROM (SELECT uscc AS x FROM enterprise) t", Refused("access_mode.join_only", "it cannot be projected")),
    (
        "WITH c AS (SELECT uscc AS k, industry FROM enterprise) SELECT k FROM c",
        Refused("access_mode.join_only", "it cannot be projected"),
    ),
    (
        "SELECT industry FROM enterprise UNION ALL SELECT uscc FROM enterprise",
        Refused("access_mode.join_only", "it cannot be projected"),
    ),
    (
        "SELECT CASE WHEN industry = 'x' THEN uscc ELSE 'y' END AS c FROM enterprise",
        Refused("access_mode.join_only", "it cannot be projected"),
    ),
    (
        "SELECT uscc, COUNT(*) AS n FROM enterprise GROUP BY uscc",
        Refused("access_mode.join_only", "it cannot be a GROUP BY key"),
    ),
    (
        "SELECT COUNT(*) AS n FROM enterprise WHERE uscc LIKE '9133%'",
        Refused("access_mode.join_only", "it cannot be used in a filter"),
    ),
    // aggregate_only values: only aggregates that do not return one row's value
    ("SELECT kwh FROM electricity", Refused("access_mode.aggregate_only", "it cannot be projected")),
    ("SELECT MAX(kwh) AS m FROM electricity", Refused("access_mode.aggregate_only", "cannot be aggregated with max()")),
    ("SELECT MIN(kwh) AS m FROM electricity", Refused("access_mode.aggregate_only", "cannot be aggregated with min()")),
    (
        "SELECT median(kwh) AS m FROM electricity",
        Refused("access_mode.aggregate_only", "cannot be aggregated with median()"),
    ),
    (
        "SELECT array_agg(kwh) AS m FROM electricity",
        Refused("access_mode.aggregate_only", "cannot be aggregated with array_agg()"),
    ),
    (
        "SELECT first_value(kwh) AS m FROM electricity",
        Refused("access_mode.aggregate_only", "cannot be aggregated with first_value()"),
    ),
    (
        "SELECT SUM(kwh) OVER () AS s FROM electricity",
        Refused("access_mode.aggregate_only", "cannot order or partition rows"),
    ),
    (
        "SELECT COUNT(*) AS n FROM electricity WHERE kwh > 100000",
        Refused("access_mode.aggregate_only", "it cannot be used in a filter"),
    ),
    (
        "SELECT industry FROM enterprise ORDER BY registered_capital",
        Refused("access_mode.denied", "the grant does not name it"),
    ),
    // columns and tables the grant does not name
    (
        "SELECT employees FROM enterprise",
        Refused("access_mode.denied", "column \"employees\" of dataset \"enterprise@v1\" is denied in grant g-green"),
    ),
    ("SELECT * FROM enterprise", Refused("access_mode", "")),
    (
        "SELECT COUNT(*) AS n FROM population",
        Refused("catalog", "table \"population\" is not granted in grant g-green"),
    ),
    // no side doors: DDL, DML, COPY, files, subqueries the check cannot follow
    ("CREATE EXTERNAL TABLE leak STORED AS PARQUET LOCATION '/etc/'", Refused("statement", "only queries may run")),
    ("COPY enterprise TO '/tmp/leak.parquet'", Refused("statement", "only queries may run")),
    ("SELECT * FROM '/etc/passwd'", Refused("catalog", "is not granted")),
    (
        "SELECT industry FROM enterprise WHERE uscc IN (SELECT uscc FROM electricity)",
        Refused("unsupported_plan", "subqueries"),
    ),
    ("EXPLAIN SELECT industry FROM enterprise", Refused("statement", "only queries may run")),
    ("SET datafusion.execution.batch_size = 1", Refused("statement", "only queries may run")),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_green_energy_query_meets_its_expected_rule() {
    let fixture = fixture().await;
    let session = GovernedSession::new(&green_grant(), &fixture.tables, Mode::Production).await.unwrap();
    let mut failures = Vec::new();
    for (sql, expect) in GREEN_ENERGY_QUERIES {
        let outcome = session.query(sql).await;
        match (expect, outcome) {
            (Allowed, Ok(_)) => {}
            (Refused(rule, fragment), Err(RuntimeError::Refused(refusal))) => {
                if !refusal.rule.starts_with(rule) || !refusal.message.contains(fragment) {
                    failures.push(format!(
                        "{sql}\n  expected {rule}: {fragment}\n  got {}: {}",
                        refusal.rule, refusal.message
                    ));
                }
            }
            (Allowed, Err(error)) => failures.push(format!("{sql}\n  expected allowed, got {error}")),
            (Refused(..), Err(error)) => failures.push(format!("{sql}\n  expected a policy refusal, got {error}")),
            (Refused(..), Ok(result)) => {
                failures.push(format!("{sql}\n  expected a refusal, but it returned {} rows", result.rows))
            }
        }
    }
    assert!(failures.is_empty(), "{} queries misbehaved:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_below_k_never_reach_the_module_and_the_count_says_so() {
    let fixture = fixture().await;
    let session = GovernedSession::new(&green_grant(), &fixture.tables, Mode::Production).await.unwrap();
    let sql = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    let result = session.query(sql).await.unwrap();
    assert!(result.lineage.suppressed_groups >= 1, "the synthetic data has small industry×district groups");
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
    // Twelve monthly rows per company count as one contributor: distinct subjects, not rows.
    let rows_sql = "SELECT e.industry, e.district, COUNT(*) AS n FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    let rows = session.query(rows_sql).await.unwrap();
    let n = rows.batches[0].column(2).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0) as u64;
    assert_eq!(n, rows.lineage.contributors[0].per_row[0] * 12);
    // Sample mode shows every group of the desensitised sample.
    let sample = GovernedSession::new(&green_grant(), &fixture.tables, Mode::Sample).await.unwrap();
    assert_eq!(sample.query(sql).await.unwrap().lineage.suppressed_groups, 0);
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
    let review = review_table(&verification, &table.name, table.table.as_ref().unwrap(), &table.lineage);
    assert_eq!(review.outcome, Outcome::Blocked);
    for rule in ["contract", "lineage", "threshold", "content"] {
        assert!(review.blocking_rules().contains(&rule), "{rule} should block: {:?}", review.rules);
    }
    let artifact = report.outputs.iter().find(|output| output.kind == OutputKind::Artifact).expect("an artifact");
    let review =
        unseen_policy::review::review_artifact(&verification, &artifact.name, artifact.artifact.as_ref().unwrap());
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
