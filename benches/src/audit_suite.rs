//! Suite `audit`: durable appends to the audit log with 1, 16 and 256 concurrent writers
//! (group commit), beside appending the same records to a plain file with one fsync each; and
//! inclusion and consistency proofs in a large tree, beside the definition's recomputation;
//! and regulators' lookups of every entry about one object in a large log, beside reading and
//! decoding the whole log (how lookups were answered before the object index).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use unseen_audit::merkle::{self, Hash, Tree};
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
    results.extend(proofs(args.audit_entries)?);
    results.extend(lookups(args.audit_log_entries)?);
    Ok(results)
}

/// Median µs of `samples` runs of `work`.
fn median_us(samples: usize, mut work: impl FnMut(usize) -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(samples);
    for sample in 0..samples {
        let started = Instant::now();
        work(sample)?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Proofs in a tree of `size` leaves: the stored-subtree tree against recomputing from the
/// leaves as RFC 9162 defines it; verification against one node hash.
fn proofs(size: usize) -> Result<Vec<Measurement>> {
    let mut tree = Tree::new();
    for i in 0..size as u64 {
        tree.push(merkle::leaf_hash(&i.to_le_bytes()));
    }
    let (n, root) = (size as u64, tree.root(size as u64));
    let pick = |sample: usize| (sample as u64).wrapping_mul(2_654_435_761) % n;
    let label = size_label(size);
    let prove = median_us(1_001, |sample| {
        std::hint::black_box(tree.inclusion_proof(pick(sample), n));
        Ok(())
    })?;
    let recompute = median_us(3, |sample| {
        std::hint::black_box(merkle::inclusion_proof(pick(sample) as usize, tree.leaves()));
        Ok(())
    })?;
    let inclusion: Vec<(u64, Vec<Hash>)> =
        (0..1_001).map(|sample| (pick(sample), tree.inclusion_proof(pick(sample), n))).collect();
    let verify = median_us(inclusion.len(), |sample| {
        let (index, proof) = &inclusion[sample];
        if !merkle::verify_inclusion(*index, n, &tree.leaves()[*index as usize], proof, &root) {
            bail!("inclusion proof of {index} did not verify");
        }
        Ok(())
    })?;
    let node = median_us(10_001, |sample| {
        let leaf: Hash = tree.leaves()[pick(sample) as usize];
        std::hint::black_box(merkle::node_hash(&leaf, &root));
        Ok(())
    })?;
    let old = |sample: usize| 1 + pick(sample) % (n - 1);
    let consistency = median_us(1_001, |sample| {
        std::hint::black_box(tree.consistency_proof(old(sample), n));
        Ok(())
    })?;
    let consistency_recompute = median_us(3, |sample| {
        std::hint::black_box(merkle::consistency_proof(old(sample) as usize, tree.leaves()));
        Ok(())
    })?;
    let consistent: Vec<(u64, Hash, Vec<Hash>)> = (0..1_001)
        .map(|sample| (old(sample), tree.root(old(sample)), tree.consistency_proof(old(sample), n)))
        .collect();
    let verify_consistency = median_us(consistent.len(), |sample| {
        let (old, old_root, proof) = &consistent[sample];
        if !merkle::verify_consistency(*old, n, old_root, &root, proof) {
            bail!("consistency proof from {old} did not verify");
        }
        Ok(())
    })?;
    Ok(vec![
        Measurement::new(SUITE, &format!("prove_inclusion_{label}"), "µs", prove, "recompute", recompute),
        Measurement::new(SUITE, &format!("verify_inclusion_{label}"), "µs", verify, "sha256_node", node),
        Measurement::new(
            SUITE,
            &format!("prove_consistency_{label}"),
            "µs",
            consistency,
            "recompute",
            consistency_recompute,
        ),
        Measurement::new(
            SUITE,
            &format!("verify_consistency_{label}"),
            "µs",
            verify_consistency.max(0.0),
            "sha256_node",
            node,
        ),
    ])
}

/// `10m`, `1m`, `100k`.
fn size_label(size: usize) -> String {
    if size >= 1_000_000 { format!("{}m", size / 1_000_000) } else { format!("{}k", size / 1_000) }
}

/// Entries about one object (ten per object) in a log of `size` entries: the first lookup,
/// which builds the object index, and the median later one, each beside one pass that reads
/// and decodes every entry.
fn lookups(size: usize) -> Result<Vec<Measurement>> {
    const PER_OBJECT: usize = 10;
    let dir = tempfile::tempdir()?;
    let log = AuditLog::open(dir.path(), "bench.domain")?;
    let about = |i: usize| Entry { object_id: format!("j-{}", i / PER_OBJECT), ..entry(0, i) };
    for batch in (0..size).collect::<Vec<_>>().chunks(10_000) {
        log.append_all(&batch.iter().map(|&i| about(i)).collect::<Vec<_>>())?;
    }
    let objects = size / PER_OBJECT;
    let pick = |sample: usize| format!("j-{}", (sample as u64).wrapping_mul(2_654_435_761) % objects as u64);
    let scan = median_us(3, |sample| {
        let wanted = pick(sample);
        let mut found = 0;
        for raw in log.raw_entries(0, log.len())? {
            found += usize::from(Entry::from_canonical_bytes(&raw.bytes)?.object_id == wanted);
        }
        if found != PER_OBJECT {
            bail!("the scan found {found} entries about {wanted}");
        }
        Ok(())
    })?;
    let check = |sample: usize| -> Result<()> {
        let found = log.raw_entries_about(&pick(sample))?.len();
        if found != PER_OBJECT {
            bail!("the lookup found {found} entries about {}", pick(sample));
        }
        Ok(())
    };
    let started = Instant::now();
    check(1_000_000)?;
    let first = started.elapsed().as_secs_f64() * 1e6;
    let lookup = median_us(1_001, check)?;
    let label = size_label(size);
    Ok(vec![
        Measurement::new(SUITE, &format!("entries_about_first_{label}"), "µs", first, "scan", scan),
        Measurement::new(SUITE, &format!("entries_about_{label}"), "µs", lookup, "scan", scan),
    ])
}
