//! Suite `runtime`: the isolated domain's own costs, each beside a baseline from the same run.
//!
//! Every figure comes from a real job of the `bench-probe` module (compiled from
//! `samples/modules/bench-probe`) and the metering the host records for it; the baselines run
//! the same work natively.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use unseen_policy::{
    AccessMode, ColumnSpec, ColumnTag, DatasetRequest, DatasetVersion, DisclosureParams, Grade, Grant, JobLimits,
    ScenarioApplication,
};
use unseen_runtime::{CancelFlag, DomainTable, JobReport, JobSpec, Metering, Mode, Runtime, RuntimeConfig};
use unseen_samples::modules::BENCH_PROBE;

use crate::{Args, Measurement};

const SUITE: &str = "runtime";
const SCAN: &str = "SELECT k, v FROM measurements";
/// The first release's goal for a warm instantiation.
const WARM_GOAL_US: f64 = 100.0;

/// A table of `rows` (k Int64 with 1 000 distinct keys, v Float64), public and fully visible.
fn measurements(rows: usize) -> Result<RecordBatch> {
    let keys = Int64Array::from_iter_values((0..rows as i64).map(|row| (row * 7_919) % 1_000));
    let values = Float64Array::from_iter_values((0..rows).map(|row| (row % 97) as f64 * 0.5));
    Ok(RecordBatch::try_from_iter([
        ("k", Arc::new(keys) as Arc<dyn datafusion::arrow::array::Array>),
        ("v", Arc::new(values) as Arc<dyn datafusion::arrow::array::Array>),
    ])?)
}

fn dataset() -> DatasetVersion {
    DatasetVersion {
        name: "measurements".into(),
        version: 1,
        provider: "bench".into(),
        grade: Grade::General,
        content_hash: String::new(),
        subject_kind: None,
        columns: vec![
            ColumnSpec { name: "k".into(), tag: ColumnTag::Public },
            ColumnSpec { name: "v".into(), tag: ColumnTag::Public },
        ],
    }
}

fn grant() -> Grant {
    let application = ScenarioApplication {
        title: "runtime benchmark".into(),
        purpose: "measure the isolated domain".into(),
        developer: "bench".into(),
        datasets: vec![DatasetRequest {
            dataset: "measurements@v1".into(),
            columns: BTreeMap::from([("k".into(), AccessMode::Visible), ("v".into(), AccessMode::Visible)]),
            row_filter: None,
        }],
        outputs: Vec::new(),
        disclosure: DisclosureParams::default(),
        validity_days: 1,
        limits: JobLimits { fuel: u64::MAX / 2, max_output_bytes: 1 << 40, ..JobLimits::default() },
    };
    Grant::freeze("g-bench".into(), "s-bench".into(), application, "bench".into(), 0, [0; 32])
}

struct Bench {
    runtime: Runtime,
    grant: Grant,
    tables: Vec<DomainTable>,
    tokio: tokio::runtime::Handle,
}

impl Bench {
    fn job(&self, params: &str) -> Result<Metering> {
        let job = JobSpec {
            module: BENCH_PROBE,
            grant: &self.grant,
            tables: &self.tables,
            mode: Mode::Production,
            params,
            seed: 1,
            cancel: &CancelFlag::default(),
        };
        let report: JobReport = self.runtime.run_job(&job, self.tokio.clone());
        if let Some(failure) = report.failure {
            bail!("bench-probe job ({params:?}) failed: {failure}");
        }
        Ok(report.metering)
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The median of nanosecond figures.
fn median_of(values: impl IntoIterator<Item = u64>) -> f64 {
    let mut values: Vec<u64> = values.into_iter().collect();
    values.sort_unstable();
    values[values.len() / 2] as f64
}

/// Runs the suite. Blocking: call it outside the async runtime whose handle it is given.
pub fn run(args: &Args, tokio: tokio::runtime::Handle) -> Result<Vec<Measurement>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("measurements.parquet");
    unseen_samples::data::write_parquet(&measurements(args.rows)?, &path)?;
    let tables = vec![DomainTable { dataset: dataset(), production_path: path.clone(), sample_path: path.clone() }];
    let cache = dir.path().join("cache");
    let cached = RuntimeConfig { cache_dir: Some(cache.clone()), ..RuntimeConfig::default() };
    let make = |config: &RuntimeConfig| -> Result<Bench> {
        let runtime = Runtime::with_config(config)?;
        Ok(Bench { runtime, grant: grant(), tables: tables.clone(), tokio: tokio.clone() })
    };
    let bench = make(&cached)?;
    bench.runtime.validate(BENCH_PROBE)?;
    let mut results = Vec::new();

    // Warm instantiation: pooled slot, InstancePre, module already compiled.
    bench.job("")?;
    let warm: Vec<u64> =
        (0..args.repeat * 20).map(|_| bench.job("").map(|m| m.instantiate_ns)).collect::<Result<_>>()?;
    results.push(Measurement::new(SUITE, "instantiate_warm", "µs", median_of(warm) / 1e3, "goal", WARM_GOAL_US));

    // Cold start of a fresh runtime: load from the disk cache versus compile, then instantiate.
    let (mut from_cache, mut compiled) = (Vec::new(), Vec::new());
    for _ in 0..args.repeat.min(7) {
        for (samples, config) in [(&mut from_cache, cached.clone()), (&mut compiled, RuntimeConfig::default())] {
            let fresh = make(&config)?;
            let started = Instant::now();
            let info = fresh.runtime.validate(BENCH_PROBE)?;
            let prepared = nanos(started.elapsed());
            if info.cached != config.cache_dir.is_some() {
                bail!("the cold start did not use the cache as intended");
            }
            samples.push(prepared + fresh.job("")?.instantiate_ns);
        }
    }
    results.push(Measurement::new(
        SUITE,
        "instantiate_cold_cached",
        "µs",
        median_of(from_cache) / 1e3,
        "compile",
        median_of(compiled) / 1e3,
    ));

    // Host-call round trip, against a native call of the same host function body.
    let calls = 1_000_000u64;
    let idle = bench.job("")?;
    let mut per_call = Vec::new();
    for _ in 0..args.repeat {
        let metering = bench.job(&format!("calls={calls}"))?;
        let busy = metering.guest_ns + metering.host_ns;
        per_call.push(busy.saturating_sub(idle.guest_ns + idle.host_ns) / calls);
    }
    let mut native = Vec::new();
    for _ in 0..args.repeat {
        let mut last_error = String::new();
        let started = Instant::now();
        for _ in 0..calls {
            black_box(native_last_error(black_box(&mut last_error)));
        }
        native.push(nanos(started.elapsed()) / calls);
    }
    results.push(Measurement::new(
        SUITE,
        "host_call",
        "ns",
        median_of(per_call.clone()).max(1.0),
        "native_call",
        median_of(native).max(1.0),
    ));

    // Arrow batches into guest memory, against memcpy of the same bytes in the same chunks.
    let scan = format!("sql={SCAN}\nkernel=0");
    let mut transfer = Vec::new();
    let mut guest_scan = Vec::new();
    for _ in 0..args.repeat {
        let metering = bench.job(&scan)?;
        transfer.push(metering.transfer_bytes as f64 / metering.transfer_ns as f64);
        guest_scan.push(metering.guest_ns);
    }
    let batches = tokio.block_on(plain_scan(&path))?;
    let chunks: Vec<Vec<u8>> = batches.iter().map(ipc_bytes).collect::<Result<_>>()?;
    // The baseline streams the same chunks through one warm buffer, as the guest does.
    let largest = chunks.iter().map(Vec::len).max().unwrap_or(0);
    let mut destination = vec![0u8; largest];
    let mut memcpy = Vec::new();
    for _ in 0..args.repeat {
        let started = Instant::now();
        for chunk in &chunks {
            destination[..chunk.len()].copy_from_slice(black_box(chunk));
            black_box(&destination);
        }
        let elapsed = started.elapsed();
        memcpy.push(chunks.iter().map(Vec::len).sum::<usize>() as f64 / elapsed.as_nanos() as f64);
    }
    let memcpy_rate = median_f64(memcpy);
    results.push(Measurement::new(SUITE, "arrow_to_guest", "GB/s", median_f64(transfer), "memcpy", memcpy_rate));
    // Diagnostic: the host's share of the transfer, encoding alone.
    let mut encode = Vec::new();
    for _ in 0..args.repeat {
        let started = Instant::now();
        let bytes: usize = batches.iter().map(|batch| ipc_bytes(batch).map(|b| b.len())).sum::<Result<usize>>()?;
        encode.push(bytes as f64 / started.elapsed().as_nanos() as f64);
    }
    results.push(Measurement::new(SUITE, "ipc_encode", "GB/s", median_f64(encode), "memcpy", memcpy_rate));

    // A group-by kernel in the guest against the same source compiled natively.
    let repeats = 5u64;
    let kernel_params = format!("sql={SCAN}\nkernel={repeats}");
    let base = median_of(guest_scan);
    let mut guest_kernel = Vec::new();
    let mut kept_transfer = Vec::new();
    for _ in 0..args.repeat.min(7) {
        let metering = bench.job(&kernel_params)?;
        guest_kernel.push(((metering.guest_ns as f64 - base).max(0.0) / repeats as f64) as u64);
        kept_transfer.push(metering.transfer_bytes as f64 / metering.transfer_ns as f64);
    }
    // The same transfer when the module keeps every batch: guest memory grows into fresh pages.
    results.push(Measurement::new(
        SUITE,
        "arrow_to_guest_kept",
        "GB/s",
        median_f64(kept_transfer),
        "memcpy",
        memcpy_rate,
    ));
    let mut native_kernel = Vec::new();
    for _ in 0..args.repeat.min(7) {
        let started = Instant::now();
        for _ in 0..repeats {
            black_box(unseen_kernels::group_sum(black_box(&batches), 0, 1).context("kernel input types")?);
        }
        native_kernel.push(nanos(started.elapsed()) / repeats);
    }
    results.push(Measurement::new(
        SUITE,
        &format!("guest_kernel_group_sum_{}k", args.rows / 1000),
        "ms",
        median_of(guest_kernel) / 1e6,
        "native",
        median_of(native_kernel.clone()) / 1e6,
    ));
    // The same kernel without fuel metering (epoch deadline only): what counting fuel costs.
    let epoch_only = make(&RuntimeConfig { fuel_metering: false, ..RuntimeConfig::default() })?;
    epoch_only.runtime.validate(BENCH_PROBE)?;
    let epoch_base = median_of(
        (0..args.repeat.min(7)).map(|_| epoch_only.job(&scan).map(|m| m.guest_ns)).collect::<Result<Vec<_>>>()?,
    );
    let mut unfuelled = Vec::new();
    for _ in 0..args.repeat.min(7) {
        let metering = epoch_only.job(&kernel_params)?;
        unfuelled.push(((metering.guest_ns as f64 - epoch_base).max(0.0) / repeats as f64) as u64);
    }
    results.push(Measurement::new(
        SUITE,
        &format!("guest_kernel_epoch_only_{}k", args.rows / 1000),
        "ms",
        median_of(unfuelled) / 1e6,
        "native",
        median_of(native_kernel) / 1e6,
    ));
    Ok(results)
}

/// What the host does for `unseen.last_error` when nothing is pending, called natively.
#[inline(never)]
fn native_last_error(last_error: &mut String) -> i64 {
    let message = std::mem::take(last_error);
    if message.is_empty() { 0 } else { message.len() as i64 }
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ipc_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

async fn plain_scan(path: &std::path::Path) -> Result<Vec<RecordBatch>> {
    let context = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    let path = path.to_str().context("non-UTF-8 path")?;
    context.register_parquet("measurements", path, ParquetReadOptions::default()).await?;
    Ok(context.sql(SCAN).await?.collect().await?)
}
