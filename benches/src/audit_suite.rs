//! Suite `audit`: durable appends to the audit log with 1, 16 and 256 concurrent writers
//! (group commit), beside appending the same records to a plain file with one fsync each.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use unseen_audit::{AuditLog, Entry};

use crate::{Args, Measurement};

const SUITE: &str = "audit";

fn entry(writer: usize, i: usize) -> Entry {
    Entry {
        time_unix_ms: 1_790_000_000_000 + i as i64,
        organisation: format!("developer-{writer}"),
        principal: "analyst@example".into(),
        role: "developer".into(),
        action: "query.refuse".into(),
        object_kind: "job".into(),
        object_id: format!("j-{writer}-{i}"),
        object_hash: Some("c490569d8f17e1b1d2a4c9e05ad3a2b1f1e4d2c3b4a5968778695a4b3c2d1e0f".into()),
        grant: Some("g-1".into()),
        decision: "refused".into(),
        reason: "access_mode.join_only: column \"uscc\" of dataset \"enterprise@v1\" cannot be projected".into(),
    }
}

/// Appends per second with `writers` threads, and fsyncs per append.
fn durable(writers: usize, total: usize) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let log = Arc::new(AuditLog::open(dir.path(), "bench.domain")?);
    let each = total.div_ceil(writers);
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let log = log.clone();
            std::thread::spawn(move || -> Result<()> {
                for i in 0..each {
                    log.append(&entry(writer, i))?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| anyhow::anyhow!("a writer panicked"))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let appends = (each * writers) as f64;
    Ok((appends / elapsed, log.syncs() as f64 / appends))
}

/// The same records appended to a plain file, each followed by its own fsync.
fn fsync_each(total: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("plain.log"))?;
    let started = Instant::now();
    for i in 0..total {
        let bytes = entry(0, i).canonical_bytes();
        file.write_all(&(bytes.len() as u32).to_be_bytes())?;
        file.write_all(&bytes)?;
        file.sync_data()?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Runs the suite.
pub fn run(args: &Args) -> Result<Vec<Measurement>> {
    let total = args.audit_appends;
    let baseline = fsync_each(total)?;
    let mut results = Vec::new();
    let mut fsyncs_at_256 = 1.0;
    for writers in [1, 16, 256] {
        let (rate, fsyncs) = durable(writers, total.max(writers * 20))?;
        results.push(Measurement::new(
            SUITE,
            &format!("append_durable_{writers}"),
            "ops/s",
            rate,
            "fsync_each",
            baseline,
        ));
        if writers == 256 {
            fsyncs_at_256 = fsyncs;
        }
    }
    results.push(Measurement::new(SUITE, "fsyncs_per_append_256", "fsync", fsyncs_at_256, "one_each", 1.0));
    Ok(results)
}
