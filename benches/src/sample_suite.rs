//! Suite `samples`: deriving a development sample of a large register — synthetic (drawn from
//! differentially private marginals) and de-identified (k-anonymous, perturbed, calibrated by
//! attack), each with its risk measured — beside reading the same register once into memory,
//! the floor of any derivation that reads every row.

use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use unseen_policy::noise::{RandomBits, RandomnessFailed};
use unseen_policy::sample::{SampleKind, SampleParams};
use unseen_policy::{DatasetVersion, Grade};

use crate::{Args, Measurement};

const SUITE: &str = "samples";

/// A seeded source of randomness, so two runs draw the same sample.
struct Seeded(u64);

impl RandomBits for Seeded {
    fn next_u64(&mut self) -> Result<u64, RandomnessFailed> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(mixed ^ (mixed >> 31))
    }
}

/// Seconds to read `path` once with DataFusion into memory (what every derivation starts with).
async fn read_once(path: &std::path::Path) -> Result<f64> {
    let started = Instant::now();
    let context = SessionContext::new();
    let frame = context.read_parquet(path.to_str().context("path")?, ParquetReadOptions::default()).await?;
    let batches = frame.collect().await?;
    let rows: usize = batches.iter().map(|batch| batch.num_rows()).sum();
    anyhow::ensure!(rows > 0, "the register is empty");
    Ok(started.elapsed().as_secs_f64())
}

/// Runs the suite on a population register of `args.sample_rows` residents.
pub(crate) fn run(args: &Args, runtime: &tokio::runtime::Runtime) -> Result<Vec<Measurement>> {
    let dir = tempfile::tempdir()?;
    let rows = args.sample_rows;
    let path = dir.path().join("population.parquet");
    eprintln!("samples: writing a population register of {rows} residents");
    let register = unseen_samples::data::population(rows, 2026);
    unseen_samples::data::write_parquet(&register, &path)?;
    drop(register);
    let important = unseen_samples::scenarios::population();
    let general = DatasetVersion { grade: Grade::General, ..important.clone() };
    let key = [7u8; 32];
    let mut results = Vec::new();
    runtime.block_on(async {
        // Reading once, best of three: the cache is warm for the derivations too.
        let mut read = f64::INFINITY;
        for _ in 0..3 {
            read = read.min(read_once(&path).await?);
        }
        for (kind, dataset, name) in [
            (SampleKind::Synthetic, &important, "synthetic_sample"),
            (SampleKind::Deidentified, &general, "deidentified_sample"),
        ] {
            let target = dir.path().join(format!("{name}.parquet"));
            eprintln!("samples: deriving the {} sample", kind.as_str());
            let started = Instant::now();
            let report = unseen_runtime::sample::derive_sample(
                kind,
                dataset,
                &path,
                &target,
                &key,
                &SampleParams::default(),
                &mut Seeded(1),
            )
            .await?;
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "samples: {} sample of {} rows: {:.2}% single out, {:.2}% recovered, offered {}",
                kind.as_str(),
                report.sample_rows,
                100.0 * report.risk.unique_share,
                100.0 * report.risk.recovered_share,
                report.offered
            );
            results.push(Measurement::new(
                SUITE,
                &format!("{name}_{}m", rows / 1_000_000),
                "s",
                seconds,
                "read once",
                read,
            ));
        }
        anyhow::Ok(())
    })?;
    Ok(results)
}
