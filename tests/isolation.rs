//! The isolated domain under attack: real modules compiled from `samples/modules/`, each trying
//! to outgrow a limit of its grant or to use a capability it was never given. Each attack must
//! end in its own typed error, say nothing about the data to the developer, and leave the domain
//! running the next legitimate job correctly.

use std::sync::Arc;

use unseen_policy::identifiers::find_identifiers;
use unseen_policy::{AccessMode, Grant, JobLimits};
use unseen_runtime::{CancelFlag, Mode, Runtime, RuntimeConfig, RuntimeError};
use unseen_samples::modules::{
    BENCH_PROBE, GREEN_ENERGY, RED_TEAM, RED_TEAM_CLOCK, RED_TEAM_ENV, RED_TEAM_FILES, RED_TEAM_SOCKETS,
};
use unseen_tests::{Fixture, fixture, grant, green_grant, run, run_cancellable, run_with};

const GREEN_SQL: &str = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";

fn green_with(limits: JobLimits) -> Grant {
    let mut grant = green_grant();
    grant.application.limits = limits;
    grant
}

/// A grant that lets a module read resident ID numbers inside the domain (never outside it).
fn identity_grant() -> Grant {
    grant(
        "g-identity",
        &[("population@v1", "id_card", AccessMode::Visible), ("population@v1", "district", AccessMode::Visible)],
        &[("verification_result", &["district", "matched"])],
    )
}

/// The legitimate job, which must keep working after every attack.
async fn assert_domain_still_serves(runtime: &Arc<Runtime>, fixture: &Fixture, after: &str) {
    let report = run(runtime, GREEN_ENERGY, green_grant(), fixture, Mode::Production).await;
    assert!(report.failure.is_none(), "after {after}: {:?}", report.failure);
    assert_eq!(report.outputs.len(), 1, "after {after}");
    let table = report.outputs[0].table.as_ref().expect("a table output");
    assert!(table.num_rows() > 0 && report.outputs[0].lineage.suppressed_groups > 0, "after {after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_limit_attack_ends_in_its_own_error_and_the_domain_serves_the_next_job() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    runtime.validate(RED_TEAM).expect("the red-team module only uses the contract");
    let defaults = JobLimits::default();
    let cases: Vec<(String, JobLimits, &str)> = vec![
        ("attack=loop".into(), JobLimits { fuel: 50_000_000, ..defaults }, "cpu"),
        ("attack=loop".into(), JobLimits { fuel: u64::MAX / 2, wall_clock_ms: 300, ..defaults }, "wall_clock"),
        ("attack=memory".into(), JobLimits { memory_bytes: 64 << 20, ..defaults }, "memory"),
        ("attack=recursion".into(), defaults, "stack"),
        ("attack=huge_output".into(), JobLimits { max_output_bytes: 20 << 20, ..defaults }, "output_bytes"),
        ("attack=huge_output".into(), JobLimits { max_outputs: 2, ..defaults }, "outputs"),
        (
            format!("attack=output_rows\nsql={GREEN_SQL}"),
            JobLimits { max_outputs: 1_000, max_output_rows: 100, ..defaults },
            "output_rows",
        ),
        (
            "attack=query_flood\nsql=SELECT industry, COUNT(*) AS n FROM enterprise GROUP BY industry".into(),
            JobLimits { max_queries: 5, ..defaults },
            "queries",
        ),
        ("attack=log_flood".into(), JobLimits { max_log_bytes: 16 << 10, ..defaults }, "log_bytes"),
    ];
    for (params, limits, expected) in cases {
        let params = params.as_str();
        let report = run_with(&runtime, RED_TEAM, green_with(limits), &fixture, Mode::Production, params).await;
        match &report.failure {
            Some(RuntimeError::LimitExceeded { limit, .. }) => {
                assert_eq!(*limit, expected, "{params}: stopped by the wrong limit: {:?}", report.failure)
            }
            other => panic!("{params}: expected the {expected} limit, got {other:?}"),
        }
        let message = report.failure.as_ref().unwrap().developer_message(Mode::Production);
        assert!(message.contains(expected), "{params}: the developer is told which limit: {message}");
        assert!(!message.contains("attack"), "{params}: guest log text stays in the domain: {message}");
        assert_domain_still_serves(&runtime, &fixture, params).await;
    }
    // Frames on Rust's shadow stack run off the bottom of linear memory: a typed trap that says so.
    let report =
        run_with(&runtime, RED_TEAM, green_grant(), &fixture, Mode::Production, "attack=recursion_in_memory").await;
    match &report.failure {
        Some(error @ RuntimeError::Trapped(_)) => {
            let message = error.developer_message(Mode::Production);
            assert!(message.contains("out of bounds") && message.contains("recursion"), "{message}");
        }
        other => panic!("recursion_in_memory: expected a trap, got {other:?}"),
    }
    assert_domain_still_serves(&runtime, &fixture, "recursion_in_memory").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_that_grows_its_table_past_the_grant_is_stopped_by_the_table_limit() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    // Rust modules never grow tables; this one is written in the text format to do exactly that.
    let source = r#"(module
        (memory (export "memory") 1)
        (table 1 funcref)
        (func (export "unseen_abi_version") (result i32) i32.const 1)
        (func (export "unseen_alloc") (param i32) (result i32) i32.const 8)
        (func (export "unseen_run") (result i32)
            (if (i32.eq (table.grow (ref.null func) (i32.const 200000)) (i32.const -1)) (then unreachable))
            i32.const 0))"#;
    let module: &'static [u8] = Box::leak(wat::parse_str(source).unwrap().into_boxed_slice());
    runtime.validate(module).expect("it only uses the contract");
    let report = run(&runtime, module, green_grant(), &fixture, Mode::Production).await;
    assert!(
        matches!(&report.failure, Some(RuntimeError::LimitExceeded { limit: "table_elements", .. })),
        "{:?}",
        report.failure
    );
    let roomy = green_with(JobLimits { table_elements: 300_000, ..JobLimits::default() });
    let report = run(&runtime, module, roomy, &fixture, Mode::Production).await;
    assert!(report.failure.is_none(), "within a grant that allows it, the growth succeeds: {:?}", report.failure);
    assert_domain_still_serves(&runtime, &fixture, "a table bomb").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_lengths_are_refused_before_the_host_copies_or_allocates_anything() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    // One page of memory, and lengths of gigabytes: each call must be refused up front.
    let source = r#"(module
        (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
        (import "unseen" "query" (func $query (param i32 i32) (result i64)))
        (import "unseen" "log" (func $log (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "unseen_abi_version") (result i32) i32.const 1)
        (func (export "unseen_alloc") (param i32) (result i32) i32.const 8)
        (func (export "unseen_run") (result i32)
            (if (i32.ne (call $random (i32.const 0) (i32.const 0x7fffffff)) (i32.const 8)) (then unreachable))
            (if (i64.ne (call $query (i32.const 0) (i32.const 0x7fffffff)) (i64.const -2)) (then unreachable))
            (drop (call $log (i32.const 0) (i32.const 0x7fffffff)))
            i32.const 0))"#;
    let module: &'static [u8] = Box::leak(wat::parse_str(source).unwrap().into_boxed_slice());
    runtime.validate(module).expect("it only uses the contract");
    let report = run(&runtime, module, green_grant(), &fixture, Mode::Production).await;
    assert!(
        matches!(&report.failure, Some(RuntimeError::LimitExceeded { limit: "log_bytes", .. })),
        "randomness and SQL were refused with their error codes, the log by its limit: {:?}",
        report.failure
    );
    assert!(report.guest_log.is_empty() && report.queries.is_empty());
    assert_domain_still_serves(&runtime, &fixture, "oversized lengths").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_that_traps_mid_query_fails_without_carrying_data_out() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    let params = "attack=trap_mid_query\nsql=SELECT id_card, district FROM population";
    let report = run_with(&runtime, RED_TEAM, identity_grant(), &fixture, Mode::Production, params).await;
    let failure = report.failure.clone().expect("the trap fails the job");
    assert!(matches!(failure, RuntimeError::Trapped(_)), "a trap is a typed error: {failure:?}");
    assert_eq!(report.queries.len(), 1);
    assert_eq!(report.queries[0].outcome, "allowed", "the module did read identifiers inside the domain");
    assert!(report.outputs.is_empty(), "nothing was emitted before the trap");
    let message = failure.developer_message(Mode::Production);
    assert!(message.contains("unreachable"), "the developer learns the trap kind: {message}");
    assert!(find_identifiers(&message).is_empty(), "no identifier in what the developer sees: {message}");
    assert!(report.metering.transfer_bytes > 0, "the batch was metered");
    assert_domain_still_serves(&runtime, &fixture, "a trap mid-query").await;
}

#[test]
fn modules_importing_files_sockets_arguments_or_clocks_are_refused_at_upload() {
    let runtime = Runtime::new().unwrap();
    let cases: [(&str, &[u8], &[&str]); 4] = [
        ("files", RED_TEAM_FILES, &["wasi_snapshot_preview1.path_open"]),
        ("sockets", RED_TEAM_SOCKETS, &["wasi_snapshot_preview1.sock_accept"]),
        // The environment itself is answered empty (every Rust module imports it); the
        // arguments this module also reads are not in the contract at all.
        ("arguments", RED_TEAM_ENV, &["wasi_snapshot_preview1.args_get", "wasi_snapshot_preview1.args_sizes_get"]),
        ("clocks", RED_TEAM_CLOCK, &["wasi_snapshot_preview1.clock_time_get"]),
    ];
    for (capability, module, imports) in cases {
        let error = runtime.validate(module).expect_err(capability);
        let message = error.to_string();
        assert!(matches!(error, RuntimeError::InvalidModule(_)), "{capability}: {message}");
        assert!(message.contains("imports outside the guest contract"), "{capability}: {message}");
        for import in imports {
            assert!(message.contains(import), "{capability}: the refusal names {import}: {message}");
        }
        assert!(!message.contains("unseen."), "{capability}: contract imports are not listed: {message}");
    }
    for (name, module) in [("green-energy", GREEN_ENERGY), ("red-team", RED_TEAM), ("bench-probe", BENCH_PROBE)] {
        runtime.validate(module).unwrap_or_else(|error| panic!("{name} stays inside the contract: {error}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_module_does_not_hold_up_another_job() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    // The spinner has no limit the legitimate job could race against: it spins until it is
    // cancelled, which happens only after the legitimate job is done. No timing is assumed.
    let spinning = green_with(JobLimits { fuel: u64::MAX / 2, wall_clock_ms: 600_000, ..JobLimits::default() });
    let cancel = CancelFlag::default();
    let spinner = {
        let (runtime, tables, cancel) = (runtime.clone(), fixture.tables.clone(), cancel.clone());
        let fixture = Fixture { dir: tempfile::tempdir().unwrap(), tables };
        tokio::spawn(async move {
            run_cancellable(&runtime, RED_TEAM, spinning, &fixture, Mode::Production, "attack=loop", cancel).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_domain_still_serves(&runtime, &fixture, "starting a spinning job").await;
    assert!(!spinner.is_finished(), "the spinner is still running when the legitimate job is done");
    cancel.cancel("the test is over");
    let report = spinner.await.unwrap();
    assert!(matches!(&report.failure, Some(RuntimeError::Cancelled(_))), "{:?}", report.failure);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_job_stops_running_long_before_its_deadline() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    // Without the cancel, only this one-minute wall clock would stop the loop.
    let spinning = green_with(JobLimits { fuel: u64::MAX / 2, wall_clock_ms: 60_000, ..JobLimits::default() });
    let cancel = CancelFlag::default();
    let spinner = {
        let (runtime, cancel) = (runtime.clone(), cancel.clone());
        let fixture = Fixture { dir: tempfile::tempdir().unwrap(), tables: fixture.tables.clone() };
        tokio::spawn(async move {
            run_cancellable(&runtime, RED_TEAM, spinning, &fixture, Mode::Production, "attack=loop", cancel).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!spinner.is_finished(), "the loop runs until it is stopped");
    cancel.cancel("grant g-1 terminated by the operator");
    let report = spinner.await.unwrap();
    match &report.failure {
        Some(RuntimeError::Cancelled(reason)) => assert_eq!(reason, "grant g-1 terminated by the operator"),
        other => panic!("the cancel stops the job, not its deadline: {other:?}"),
    }
    // The runtime serves the next job as before.
    assert_domain_still_serves(&runtime, &fixture, "cancelling a job").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn precompiled_modules_survive_a_restart_and_damaged_ones_are_recompiled() {
    let fixture = fixture().await;
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeConfig::default() };
    let first = Runtime::with_config(&config).unwrap();
    assert!(!first.validate(GREEN_ENERGY).unwrap().cached, "compiled on first upload");
    drop(first);
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one precompiled module on disk: {files:?}");

    let restarted = Arc::new(Runtime::with_config(&config).unwrap());
    assert!(restarted.validate(GREEN_ENERGY).unwrap().cached, "loaded from disk after a restart");
    assert_domain_still_serves(&restarted, &fixture, "a restart").await;
    drop(restarted);

    let mut damaged = std::fs::read(&files[0]).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&files[0], &damaged).unwrap();
    let recovering = Arc::new(Runtime::with_config(&config).unwrap());
    assert!(!recovering.validate(GREEN_ENERGY).unwrap().cached, "a damaged file is discarded and the module compiled");
    assert_ne!(std::fs::read(&files[0]).unwrap(), damaged, "and the cache file rewritten");
    assert_domain_still_serves(&recovering, &fixture, "a damaged cache").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_metered_so_the_operator_can_price_it() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    let report = run(&runtime, GREEN_ENERGY, green_grant(), &fixture, Mode::Production).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let metering = &report.metering;
    let rows = report.outputs[0].table.as_ref().unwrap().num_rows() as u64;
    assert_eq!(metering.queries, 1);
    assert!(metering.rows_scanned >= 2_000 + 2_000 * 12, "both tables were read: {metering:?}");
    assert!(metering.bytes_scanned > 0, "{metering:?}");
    assert_eq!(metering.rows_returned, rows);
    assert_eq!(metering.output_rows, rows);
    assert!(metering.fuel > 0 && metering.peak_memory_bytes > 0, "{metering:?}");
    assert!(metering.instantiate_ns > 0 && metering.guest_ns > 0 && metering.host_ns > 0, "{metering:?}");
    assert!(metering.transfer_bytes > 0 && metering.log_bytes > 0, "{metering:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn job_parameters_reach_the_module_and_oversized_ones_are_refused() {
    let fixture = fixture().await;
    let runtime = Arc::new(Runtime::new().unwrap());
    let params = format!("sql={GREEN_SQL}\nkernel=0");
    let report = run_with(&runtime, BENCH_PROBE, green_grant(), &fixture, Mode::Sample, &params).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.queries.len(), 1, "the module ran the query it was given");
    assert_eq!(report.queries[0].sql, GREEN_SQL);
    let oversized = "x".repeat(unseen_runtime::host::MAX_PARAMS_BYTES + 1);
    let report = run_with(&runtime, BENCH_PROBE, green_grant(), &fixture, Mode::Sample, &oversized).await;
    assert!(
        matches!(report.failure, Some(RuntimeError::LimitExceeded { limit: "params", .. })),
        "{:?}",
        report.failure
    );
}
