//! The benchmark runner: every suite measures unseen's work side by side with its baseline in
//! the same run and reports the ratio. Machines here are shared; quote ratios, not times.
//!
//! `cargo run --release -p unseen-benches -- [SUITE…] [--json]`

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::Serialize;
use unseen_policy::Grant;
use unseen_runtime::{DomainTable, GovernedSession, Mode};

mod audit_suite;
mod runtime_suite;

const SUITES: &[&str] = &["query", "runtime", "audit"];

/// Runs unseen's benchmarks beside their baselines and prints ratios.
#[derive(Debug, Parser)]
#[command(name = "unseen-benches")]
struct Args {
    /// Suites to run (default: all). Known: query, runtime, audit.
    suites: Vec<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Enterprises in the synthetic data (electricity has 12 rows each).
    #[arg(long, default_value_t = 50_000)]
    enterprises: usize,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 15)]
    repeat: usize,
    /// Rows of the runtime suite's table (16 bytes each).
    #[arg(long, default_value_t = 2_000_000)]
    rows: usize,
    /// Durable appends per configuration of the audit suite.
    #[arg(long, default_value_t = 5_000)]
    audit_appends: usize,
    /// Entries of the tree the audit suite proves inclusion and consistency in.
    #[arg(long, default_value_t = 10_000_000)]
    audit_entries: usize,
}

/// One measured figure beside its baseline.
#[derive(Debug, Serialize)]
struct Measurement {
    suite: &'static str,
    name: String,
    value: f64,
    unit: &'static str,
    baseline: &'static str,
    baseline_value: f64,
    ratio: f64,
}

impl Measurement {
    fn new(
        suite: &'static str,
        name: &str,
        unit: &'static str,
        value: f64,
        baseline: &'static str,
        baseline_value: f64,
    ) -> Self {
        Self { suite, name: name.into(), value, unit, baseline, baseline_value, ratio: value / baseline_value }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let suites: Vec<&str> =
        if args.suites.is_empty() { SUITES.to_vec() } else { args.suites.iter().map(String::as_str).collect() };
    for suite in &suites {
        if !SUITES.contains(suite) {
            bail!("unknown suite \"{suite}\"; known suites: {}", SUITES.join(", "));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if !args.json {
        println!(
            "{:<8} {:<30} {:>12} {:<5} {:<12} {:>12} {:>10}",
            "suite", "name", "value", "unit", "baseline", "baseline", "ratio"
        );
    }
    for suite in suites {
        let measurements = match suite {
            "query" => runtime.block_on(query_suite(&args))?,
            "runtime" => runtime_suite::run(&args, runtime.handle().clone())?,
            "audit" => audit_suite::run(&args)?,
            _ => unreachable!("checked above"),
        };
        for measurement in measurements {
            if args.json {
                println!("{}", serde_json::to_string(&measurement)?);
            } else {
                println!(
                    "{:<8} {:<30} {:>12.3} {:<5} {:<12} {:>12.3} {:>9}×",
                    measurement.suite,
                    measurement.name,
                    measurement.value,
                    measurement.unit,
                    measurement.baseline,
                    measurement.baseline_value,
                    readable_ratio(measurement.ratio)
                );
            }
        }
    }
    Ok(())
}

/// A ratio with two decimals, or in scientific notation when that would print as 0.00.
fn readable_ratio(ratio: f64) -> String {
    if ratio != 0.0 && ratio.abs() < 0.01 { format!("{ratio:.1e}") } else { format!("{ratio:.2}") }
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// The demo's governed query (electricity by industry and district) against the same SQL run
/// directly in DataFusion over the same Parquet files.
async fn query_suite(args: &Args) -> Result<Vec<Measurement>> {
    let dir = tempfile::tempdir()?;
    let enterprises = unseen_samples::data::enterprises(args.enterprises, 7);
    let electricity = unseen_samples::data::electricity(&enterprises, 12, 7);
    let enterprise_path = dir.path().join("enterprise.parquet");
    let electricity_path = dir.path().join("electricity.parquet");
    unseen_samples::data::write_parquet(&enterprises, &enterprise_path)?;
    unseen_samples::data::write_parquet(&electricity, &electricity_path)?;

    let tables = vec![
        DomainTable {
            dataset: unseen_samples::scenarios::enterprise(),
            production_path: enterprise_path.clone(),
            sample_path: enterprise_path.clone(),
        },
        DomainTable {
            dataset: unseen_samples::scenarios::electricity(),
            production_path: electricity_path.clone(),
            sample_path: electricity_path.clone(),
        },
    ];
    let application = unseen_samples::scenarios::green_energy();
    let grant = Grant::freeze("g-bench".into(), "s-bench".into(), application, "bench".into(), 0, [0; 32]);
    let governed = GovernedSession::new(&grant, &tables, Mode::Production).await?;
    let plain = SessionContext::new_with_config(datafusion::prelude::SessionConfig::new().with_target_partitions(2));
    register(&plain, "enterprise", &enterprise_path).await?;
    register(&plain, "electricity", &electricity_path).await?;

    let sql = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
               GROUP BY e.industry, e.district ORDER BY e.industry, e.district";
    // Warm both sides once (file metadata caches, allocator).
    governed.query(sql).await?;
    plain.sql(sql).await?.collect().await?;
    let (mut governed_times, mut plain_times, mut check_times, mut plan_times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.repeat {
        let started = Instant::now();
        governed.query(sql).await?;
        governed_times.push(started.elapsed());
        let started = Instant::now();
        plain.sql(sql).await?.collect().await?;
        plain_times.push(started.elapsed());
        let started = Instant::now();
        governed.check(sql).await?;
        check_times.push(started.elapsed());
        let started = Instant::now();
        plain.state().create_logical_plan(sql).await?;
        plan_times.push(started.elapsed());
    }
    let name = format!("green_energy_join_{}k", args.enterprises * 12 / 1000);
    Ok(vec![
        Measurement::new("query", &name, "ms", median(governed_times), "datafusion", median(plain_times)),
        Measurement::new(
            "query",
            "policy_check",
            "µs",
            median(check_times) * 1e3,
            "sql_planning",
            median(plan_times) * 1e3,
        ),
    ])
}

async fn register(context: &SessionContext, name: &str, path: &Path) -> Result<()> {
    let path = path.to_str().context("non-UTF-8 path")?;
    context.register_parquet(name, path, ParquetReadOptions::default()).await?;
    Ok(())
}
