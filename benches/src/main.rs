//! The benchmark runner: every suite measures unseen's work side by side with its baseline in
//! the same run and reports the ratio. Machines here are shared; quote ratios, not times.
//!
//! `cargo run --release -p unseen-benches -- [SUITE…] [--json]`

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use serde::Serialize;

mod accumulator_suite;
mod audit_suite;
mod egress_suite;
mod gateway_suite;
mod query_suite;
mod runtime_suite;
mod sample_suite;

const SUITES: &[&str] = &["query", "accumulators", "runtime", "audit", "egress", "gateway", "samples"];

/// Runs unseen's benchmarks beside their baselines and prints ratios.
#[derive(Debug, Parser)]
#[command(name = "unseen-benches")]
pub(crate) struct Args {
    /// Suites to run (default: all). Known: query, accumulators, runtime, audit, egress, gateway,
    /// samples.
    suites: Vec<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Scales the query suite's tables (1.0: 1M and 10M rows) and the accumulator suite's rows
    /// (1.0: 1M); for quick checks.
    #[arg(long, default_value_t = 1.0)]
    query_scale: f64,
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
    /// Entries of the log file the audit suite looks objects up in.
    #[arg(long, default_value_t = 1_000_000)]
    audit_log_entries: usize,
    /// Job submissions per store of the gateway suite (64 clients share them). PostgreSQL is
    /// measured when UNSEEN_BENCH_POSTGRES_URL (or UNSEEN_TEST_POSTGRES_URL) is set.
    #[arg(long, default_value_t = 5_000)]
    gateway_submissions: usize,
    /// Residents of the register the samples suite derives both kinds of sample of.
    #[arg(long, default_value_t = 10_000_000)]
    sample_rows: usize,
}

/// One measured figure beside its baseline.
#[derive(Debug, Serialize)]
pub(crate) struct Measurement {
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
            "query" => query_suite::run(&args, &runtime)?,
            "accumulators" => accumulator_suite::run(&args)?,
            "runtime" => runtime_suite::run(&args, runtime.handle().clone())?,
            "audit" => audit_suite::run(&args)?,
            "egress" => egress_suite::run(&args, &runtime)?,
            "gateway" => gateway_suite::run(&args)?,
            "samples" => sample_suite::run(&args, &runtime)?,
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

pub(crate) fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}
