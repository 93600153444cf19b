//! Suite `egress`: the egress reviewer's speed, and its verdicts beside ACRO's.
//!
//! - `review_cells`: threshold and dominance over a large governed output (cells per second),
//!   beside the goal of 10M cells/s per core; `review_cells_all_rules` adds secondary
//!   suppression, whose line search formats every key.
//! - `review_differencing`: a 1,000-row output compared, sketch by sketch, with itself and an
//!   earlier 1,000-row release of the grant (pairs per second), beside XOR-comparing the same
//!   sketches' stored bytes pair by pair (what comparing stored sketches naively costs; the
//!   review instead stops at the first cells that prove a difference large).
//! - `review_audit_1k_cells`: secondary suppression and its interval audit on a 1,000-cell
//!   district × industry table with district margins (ROLLUP) and 50 earlier releases of the
//!   grant, beside the plain review of the same table (secondary suppression off);
//!   `review_10k_cells`: the same review of a 10,000-cell table, beside the goal of 100 ms.
//!   Differencing is off in both (it has its own measurement).
//! - `content_scan`: string cells scanned for checksum-valid identifiers and for the values of
//!   1M granted identifiers (MB/s), beside one plain pass over the same bytes.
//! - `review_vs_acro`: the same cross-tabulation of the same microdata judged by unseen (the
//!   governed query plus the review) and by ACRO (`benches/acro_cells.py`, from PyPI); ACRO's
//!   time over unseen's, and the agreement of their cell verdicts rule by rule.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use unseen_policy::identifiers::IdentifierSet;
use unseen_policy::review::{
    EarlierRelease, ReleasedTable, ReviewContext, SubjectSketches, key_text, nk_rule_sensitive, p_rule_sensitive,
    review_table,
};
use unseen_policy::sketch::{SubjectSketch, subject_key, width_for_threshold};
use unseen_policy::{
    AccessMode, ColumnLineage, ColumnSpec, ColumnTag, Contributions, DatasetRequest, DatasetVersion, DisclosureParams,
    Grade, Grant, MagnitudeLineage, OutputLineage, OutputSpec, ScenarioApplication, SourceColumn, SubjectCounts,
    SubjectKind, ValueClass,
};
use unseen_runtime::{DomainTable, GovernedSession, Mode};

use crate::{Args, Measurement, median};

/// Output rows of the review benchmark (two keys, two measures: 2 cells judged per row).
const REVIEW_ROWS: usize = 500_000;
/// The goal for threshold + dominance, cells per second per core.
const GOAL_CELLS_PER_SECOND: f64 = 10_000_000.0;
/// Granted identifiers in the content scan's membership structure.
const IDENTIFIERS: usize = 1_000_000;
/// String cells of the content scan.
const SCANNED_CELLS: usize = 1_000_000;

/// A small deterministic generator, so every run judges the same data.
struct Draw(u64);

impl Draw {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn grant(outputs: Vec<OutputSpec>, disclosure: DisclosureParams, datasets: Vec<DatasetRequest>) -> Grant {
    let application = ScenarioApplication {
        title: "bench".into(),
        purpose: "bench".into(),
        developer: "bench".into(),
        datasets,
        outputs,
        disclosure,
        validity_days: 30,
        limits: Default::default(),
    };
    Grant::freeze("g-bench".into(), "s-bench".into(), application, "bench".into(), 0, [9; 32])
}

pub(crate) fn run(args: &Args, runtime: &tokio::runtime::Runtime) -> Result<Vec<Measurement>> {
    let mut measurements = review_cells(args)?;
    measurements.extend(review_audit(args)?);
    measurements.extend(review_differencing(args)?);
    measurements.extend(content_scan(args)?);
    match runtime.block_on(review_vs_acro(args)) {
        Ok(compared) => measurements.extend(compared),
        Err(error) => eprintln!("egress: review_vs_acro skipped: {error:#}"),
    }
    Ok(measurements)
}

fn review_cells(args: &Args) -> Result<Vec<Measurement>> {
    let mut draw = Draw(0x5eed);
    let rows = REVIEW_ROWS;
    let schema = Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, false),
        Field::new("industry", DataType::Utf8, false),
        Field::new("total_kwh", DataType::Float64, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let districts: Vec<String> = (0..rows).map(|row| format!("d{}", row / 1000)).collect();
    let industries: Vec<String> = (0..rows).map(|row| format!("i{}", row % 1000)).collect();
    let table = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(districts)),
            Arc::new(StringArray::from(industries)),
            Arc::new(Float64Array::from_iter_values((0..rows).map(|_| draw.next(1_000_000) as f64))),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|_| draw.next(1000) as i64))),
        ],
    )?;
    let counts: Vec<u64> =
        (0..rows).map(|_| if draw.next(100) < 2 { draw.next(10) } else { 10 + draw.next(90) }).collect();
    let contributions: Vec<Contributions> = (0..rows)
        .map(|_| {
            // Most cells spread over many subjects; about 2% dominated by one or two.
            let total = 1_000.0 + draw.next(100_000) as f64;
            let dominated = draw.next(100) < 2;
            let first = total
                * if dominated { 0.5 + draw.next(50) as f64 / 100.0 } else { 0.01 + draw.next(30) as f64 / 100.0 };
            let second = (total - first) * draw.next(30) as f64 / 100.0;
            Contributions { total, largest: vec![first, second], bucketed: false }
        })
        .collect();
    let source = vec![SourceColumn { dataset: "e@v1".into(), column: "kwh".into(), tag: ColumnTag::Sensitive }];
    let lineage = OutputLineage {
        columns: vec![
            ColumnLineage::new("district", vec![], ValueClass::Key),
            ColumnLineage::new("industry", vec![], ValueClass::Key),
            ColumnLineage::new("total_kwh", source.clone(), ValueClass::Aggregate),
            ColumnLineage::new("n", source, ValueClass::Aggregate),
        ],
        aggregated: true,
        subject_kinds: vec![SubjectKind::Enterprise],
        contributors: vec![SubjectCounts { kind: SubjectKind::Enterprise, per_row: counts }],
        magnitudes: vec![MagnitudeLineage {
            measure: "sum(kwh)".into(),
            columns: vec!["total_kwh".into()],
            kind: SubjectKind::Enterprise,
            per_row: contributions,
        }],
        suppressed_groups: 0,
        suppression_rule: None,
        withheld_keys: Vec::new(),
        withheld_values: Vec::new(),
        withheld_contributors: Vec::new(),
        sketches: Vec::new(),
        verification: None,
    };
    let spec = OutputSpec {
        name: "cells".into(),
        columns: ["district", "industry", "total_kwh", "n"].map(String::from).to_vec(),
        max_rows: rows as u64,
        verification: None,
    };
    let cells = (rows * 2) as f64;
    let mut measurements = Vec::new();
    for (name, secondary) in [("review_cells", false), ("review_cells_all_rules", true)] {
        // Differencing has its own measurement below.
        let disclosure =
            DisclosureParams { secondary_suppression: secondary, differencing: false, ..Default::default() };
        let grant = grant(vec![spec.clone()], disclosure, Vec::new());
        let mut samples = Vec::new();
        let mut withheld = 0;
        for _ in 0..args.repeat.clamp(3, 7) {
            let started = Instant::now();
            let report = review_table(&grant, "cells", &table, &lineage, ReviewContext::default());
            samples.push(started.elapsed());
            withheld = report.suppressed_cells.len();
        }
        let seconds = median(samples) / 1e3;
        eprintln!("egress: {name}: {rows} rows, {} judged cells, {withheld} withheld", cells as u64);
        measurements.push(Measurement::new("egress", name, "c/s", cells / seconds, "goal", GOAL_CELLS_PER_SECOND));
    }
    Ok(measurements)
}

/// Districts × industries of the audit benchmarks: with one margin row per district and two
/// measures, about 1,000 and 10,000 cells.
const AUDIT_SMALL: (usize, usize) = (20, 24);
const AUDIT_LARGE: (usize, usize) = (100, 49);
/// Earlier releases of the grant in the audit benchmarks.
const EARLIER_RELEASES: usize = 50;
/// The goal for the whole review of a 10,000-cell table, in milliseconds.
const GOAL_REVIEW_MS: f64 = 100.0;

/// A district × industry output as the runtime emits it, with a margin row per district
/// (ROLLUP over industry): about 2% of groups below k (withheld by the engine, keys
/// recorded), 2% dominated by one company, the rest spread.
fn audit_table(districts: usize, industries: usize, key_of: &str) -> Result<(RecordBatch, OutputLineage)> {
    let mut draw = Draw(0xa0d17);
    let source = vec![SourceColumn { dataset: "e@v1".into(), column: "kwh".into(), tag: ColumnTag::Sensitive }];
    let (mut district_keys, mut industry_keys) = (Vec::new(), Vec::new());
    let (mut kwh, mut n, mut counts, mut contributions, mut withheld) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for district in 0..districts {
        let (mut total, mut companies) = (0.0, 0u64);
        for industry in 0..industries {
            let value = (1_000 + draw.next(100_000)) as f64;
            let roll = draw.next(100);
            let subjects = if roll < 2 { 1 + draw.next(9) } else { 10 + draw.next(90) };
            total += value;
            companies += subjects;
            let keys = vec![format!("{key_of}{district:03}"), format!("i{industry:03}")];
            if subjects < 10 {
                withheld.push(keys);
                continue;
            }
            let largest = if roll < 4 { vec![value * 0.95, value * 0.01] } else { vec![value / 10.0, value / 12.0] };
            district_keys.push(Some(keys[0].clone()));
            industry_keys.push(Some(keys[1].clone()));
            kwh.push(value);
            n.push(subjects as i64);
            counts.push(subjects.min(10));
            contributions.push(Contributions { total: value, largest, bucketed: false });
        }
        district_keys.push(Some(format!("{key_of}{district:03}")));
        industry_keys.push(None);
        kwh.push(total);
        n.push(companies as i64);
        counts.push(10);
        contributions.push(Contributions { total, largest: vec![total / 20.0, total / 25.0], bucketed: false });
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, true),
        Field::new("industry", DataType::Utf8, true),
        Field::new("total_kwh", DataType::Float64, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let table = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(district_keys)),
            Arc::new(StringArray::from(industry_keys)),
            Arc::new(Float64Array::from(kwh)),
            Arc::new(Int64Array::from(n)),
        ],
    )?;
    let measure = |name: &str, identity: &str| ColumnLineage {
        measure: Some(identity.into()),
        ..ColumnLineage::new(name, source.clone(), ValueClass::Aggregate)
    };
    let lineage = OutputLineage {
        columns: vec![
            ColumnLineage::new("district", vec![], ValueClass::Key),
            ColumnLineage::new("industry", vec![], ValueClass::Key),
            measure("total_kwh", "sum(e.kwh) FROM e@v1"),
            measure("n", "count(DISTINCT e.uscc) FROM e@v1"),
        ],
        aggregated: true,
        subject_kinds: vec![SubjectKind::Enterprise],
        contributors: vec![SubjectCounts { kind: SubjectKind::Enterprise, per_row: counts }],
        magnitudes: vec![MagnitudeLineage {
            measure: "sum(kwh)".into(),
            columns: vec!["total_kwh".into()],
            kind: SubjectKind::Enterprise,
            per_row: contributions,
        }],
        suppressed_groups: withheld.len() as u64,
        suppression_rule: Some("threshold k=10 distinct subjects".into()),
        withheld_keys: withheld,
        withheld_values: Vec::new(),
        withheld_contributors: Vec::new(),
        sketches: Vec::new(),
        verification: None,
    };
    Ok((table, lineage))
}

/// 50 earlier releases of the grant: the same output released before (a re-run: every cell
/// relates, its withheld cells stay withheld), then 49 outputs of other measures (other
/// identities, which the audit skips by its index).
fn earlier_releases(grant: &Grant, districts: usize, industries: usize) -> Result<Vec<ReleasedTable>> {
    let (table, lineage) = audit_table(districts, industries, "d")?;
    let context = ReviewContext::default();
    let report = review_table(grant, "cells", &table, &lineage, context);
    let first = ReleasedTable::from_review("egress e-1 (\"cells\")", &table, &lineage, &report);
    let mut released = vec![first.clone()];
    for index in 1..EARLIER_RELEASES {
        let mut other = first.clone();
        other.label = format!("egress e-{} (\"other\")", index + 1);
        for measure in &mut other.measures {
            measure.measure = format!("{} WHERE year = {}", measure.measure, 2000 + index);
        }
        released.push(other);
    }
    Ok(released)
}

fn review_audit(args: &Args) -> Result<Vec<Measurement>> {
    let spec = OutputSpec {
        name: "cells".into(),
        columns: ["district", "industry", "total_kwh", "n"].map(String::from).to_vec(),
        max_rows: 100_000,
        verification: None,
    };
    let with_audit = DisclosureParams { differencing: false, ..Default::default() };
    let plain = DisclosureParams { secondary_suppression: false, ..with_audit.clone() };
    let full_grant = grant(vec![spec.clone()], with_audit, Vec::new());
    let plain_grant = grant(vec![spec], plain, Vec::new());
    let mut measurements = Vec::new();
    for (name, (districts, industries)) in [("review_audit_1k_cells", AUDIT_SMALL), ("review_10k_cells", AUDIT_LARGE)] {
        let (table, lineage) = audit_table(districts, industries, "d")?;
        let released = earlier_releases(&full_grant, districts, industries)?;
        let cells = table.num_rows() * 2 + lineage.withheld_keys.len() * 2;
        let (mut full, mut bare) = (Vec::new(), Vec::new());
        let mut figure = String::new();
        for _ in 0..args.repeat.clamp(3, 7) {
            let context = ReviewContext { released: &released, ..Default::default() };
            let started = Instant::now();
            let report = review_table(&full_grant, "cells", &table, &lineage, context);
            full.push(started.elapsed());
            if report.outcome == unseen_policy::Outcome::Blocked {
                bail!("the audit benchmark's table was blocked: {}", report.render());
            }
            figure = report.rule("secondary").map(|rule| rule.figure.clone()).unwrap_or_default();
            let started = Instant::now();
            review_table(&plain_grant, "cells", &table, &lineage, ReviewContext::default());
            bare.push(started.elapsed());
        }
        eprintln!("egress: {name}: {cells} cells, {EARLIER_RELEASES} earlier releases; {figure}");
        let (full, bare) = (median(full), median(bare));
        measurements.push(if name == "review_10k_cells" {
            Measurement::new("egress", name, "ms", full, "goal", GOAL_REVIEW_MS)
        } else {
            Measurement::new("egress", name, "ms", full, "plain_review", bare)
        });
    }
    Ok(measurements)
}

/// Rows of the new output and of the earlier release in `review_differencing`.
const DIFFERENCING_ROWS: usize = 1_000;

fn review_differencing(args: &Args) -> Result<Vec<Measurement>> {
    let width = width_for_threshold(10);
    // Row r of a release holds 50 subjects of its own, 3 rows each.
    let sketches = |release: u64| -> Vec<SubjectSketch> {
        (0..DIFFERENCING_ROWS as u64)
            .map(|row| {
                let mut sketch = SubjectSketch::new(width);
                for subject in 0..50u64 {
                    sketch.insert(subject_key(&(release << 40 | row << 8 | subject).to_le_bytes()), 3);
                }
                sketch
            })
            .collect()
    };
    let earlier = [EarlierRelease {
        label: "egress e-1".into(),
        sketches: vec![SubjectSketches { kind: SubjectKind::Enterprise, per_row: sketches(1) }],
        withheld: Vec::new(),
        complements: Vec::new(),
    }];
    let source = vec![SourceColumn { dataset: "e@v1".into(), column: "kwh".into(), tag: ColumnTag::Sensitive }];
    let lineage = OutputLineage {
        columns: vec![
            ColumnLineage::new("district", vec![], ValueClass::Key),
            ColumnLineage::new("n", source, ValueClass::Aggregate),
        ],
        aggregated: true,
        subject_kinds: vec![SubjectKind::Enterprise],
        contributors: vec![SubjectCounts { kind: SubjectKind::Enterprise, per_row: vec![50; DIFFERENCING_ROWS] }],
        sketches: vec![SubjectSketches { kind: SubjectKind::Enterprise, per_row: sketches(2) }],
        ..Default::default()
    };
    let table = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("district", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values((0..DIFFERENCING_ROWS).map(|row| format!("d{row}")))),
            Arc::new(Int64Array::from(vec![150; DIFFERENCING_ROWS])),
        ],
    )?;
    let spec = OutputSpec {
        name: "by_district".into(),
        columns: vec!["district".into(), "n".into()],
        max_rows: 10_000,
        verification: None,
    };
    let disclosure = DisclosureParams { secondary_suppression: false, p_percent: 0, ..Default::default() };
    let grant = grant(vec![spec], disclosure, Vec::new());
    let pairs = (DIFFERENCING_ROWS * DIFFERENCING_ROWS + DIFFERENCING_ROWS * (DIFFERENCING_ROWS - 1) / 2) as f64;
    let encoded: Vec<Vec<u8>> = lineage.sketches[0].per_row.iter().map(SubjectSketch::to_bytes).collect();
    let (mut review, mut read) = (Vec::new(), Vec::new());
    let mut checksum = 0u64;
    for _ in 0..args.repeat.clamp(3, 7) {
        let context = ReviewContext { earlier: &earlier, ..Default::default() };
        let started = Instant::now();
        let report = review_table(&grant, "by_district", &table, &lineage, context);
        review.push(started.elapsed());
        if !report.suppressed_rows.is_empty() {
            bail!("disjoint groups were withheld for differencing: {}", report.render());
        }
        let started = Instant::now();
        for left in 0..DIFFERENCING_ROWS {
            for right in 0..DIFFERENCING_ROWS + left {
                let other = &encoded[right % DIFFERENCING_ROWS];
                checksum =
                    checksum.wrapping_add(encoded[left].iter().zip(other).map(|(a, b)| u64::from(a ^ b)).sum::<u64>());
            }
        }
        read.push(started.elapsed());
    }
    std::hint::black_box(checksum);
    eprintln!(
        "egress: review_differencing: {DIFFERENCING_ROWS} rows × ({DIFFERENCING_ROWS} earlier + earlier rows of the output), sketch width {width}"
    );
    Ok(vec![Measurement::new(
        "egress",
        "review_differencing",
        "pairs/s",
        pairs / (median(review) / 1e3),
        "read_sketch_bytes",
        pairs / (median(read) / 1e3),
    )])
}

fn content_scan(args: &Args) -> Result<Vec<Measurement>> {
    let mut draw = Draw(0xc0ffee);
    let identifiers: Vec<String> = (0..IDENTIFIERS).map(|index| format!("P{:010}", index * 7 + 3)).collect();
    let set = IdentifierSet::from_values(&identifiers);
    let texts: Vec<String> = (0..SCANNED_CELLS)
        .map(|index| match draw.next(4) {
            0 => format!("湖州市吴兴区第{index}号工业园"),
            1 => format!("order-{}-{}", draw.next(1_000_000), draw.next(1000)),
            2 => format!("{:.3}", draw.next(1_000_000) as f64 / 7.0),
            _ => format!("note {index}: energy audit passed"),
        })
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false)]));
    let table = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(texts.clone()))])?;
    let spec = OutputSpec {
        name: "notes".into(),
        columns: vec!["text".into()],
        max_rows: SCANNED_CELLS as u64,
        verification: None,
    };
    let grant = grant(vec![spec], DisclosureParams::default(), Vec::new());
    let lineage =
        OutputLineage { columns: vec![ColumnLineage::new("text", vec![], ValueClass::Key)], ..Default::default() };
    let (mut scan, mut plain) = (Vec::new(), Vec::new());
    let mut checksum = 0u64;
    for _ in 0..args.repeat.clamp(3, 7) {
        let started = Instant::now();
        let report = review_table(
            &grant,
            "notes",
            &table,
            &lineage,
            ReviewContext { identifiers: Some(&set), ..Default::default() },
        );
        scan.push(started.elapsed());
        if report.outcome == unseen_policy::Outcome::Blocked {
            bail!("the synthetic notes hold no identifiers, but the scan found some: {}", report.render());
        }
        let started = Instant::now();
        for text in &texts {
            checksum = checksum.wrapping_add(text.bytes().map(u64::from).sum::<u64>());
        }
        plain.push(started.elapsed());
    }
    std::hint::black_box(checksum);
    let megabytes = bytes as f64 / 1e6;
    eprintln!("egress: content_scan: {SCANNED_CELLS} cells, {megabytes:.1} MB, {} identifiers in the set", set.len());
    Ok(vec![Measurement::new(
        "egress",
        "content_scan",
        "MB/s",
        megabytes / (median(scan) / 1e3),
        "byte_pass",
        megabytes / (median(plain) / 1e3),
    )])
}

/// One cell verdict of both tools: (threshold, p-ratio, nk-rule).
type Verdicts = (bool, bool, bool);
/// Picks one rule's verdict.
type RulePick = fn(&Verdicts) -> bool;

/// Microdata for the comparison: `rows_per_subject` rows per subject. Most subjects fall in a
/// 5 × 4 block of large cells; a few fall in row `r5` (five small cells, some below k), and one
/// subject in two hundred is a giant that dominates its cell.
fn microdata(subjects: usize, rows_per_subject: usize) -> Vec<(String, String, String, f64)> {
    let mut draw = Draw(0xac20);
    let mut rows = Vec::new();
    for subject in 0..subjects {
        let (row, col) = if draw.next(400) == 0 { (5, draw.next(5)) } else { (draw.next(5), draw.next(4)) };
        let giant = draw.next(200) == 0 && row < 5 || subject == 0;
        let (row, col) = if subject == 0 { (5, 4) } else { (row, col) };
        for _ in 0..rows_per_subject {
            let value = if giant { 5_000_000.0 } else { 100.0 + draw.next(10_000) as f64 };
            rows.push((format!("s{subject:06}"), format!("r{row}"), format!("c{col}"), value));
        }
    }
    rows
}

async fn review_vs_acro(args: &Args) -> Result<Vec<Measurement>> {
    let python = crate::query_suite::bench_python(&["acro"])?;
    let mut measurements = Vec::new();
    for (name, rows_per_subject) in [("review_vs_acro", 1), ("review_vs_acro_12_rows_each", 12)] {
        let dir = tempfile::tempdir()?;
        let micro = microdata(20_000, rows_per_subject);
        let (unseen_seconds, unseen_cells) = unseen_crosstab(&micro, dir.path(), args).await?;
        let csv = dir.path().join("micro.csv");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        writeln!(file, "subject,row,col,value")?;
        for (subject, row, col, value) in &micro {
            writeln!(file, "{subject},{row},{col},{value}")?;
        }
        file.flush()?;
        drop(file);
        let verdicts = dir.path().join("acro.json");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("acro_cells.py");
        let status = std::process::Command::new(&python)
            .arg(&script)
            .args(["--data", csv.to_str().unwrap_or_default(), "--out", verdicts.to_str().unwrap_or_default()])
            .args(["--repeat", &args.repeat.clamp(1, 3).to_string()])
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
        let acro: serde_json::Value = serde_json::from_slice(&std::fs::read(&verdicts)?)?;
        let acro_seconds = acro["seconds"].as_f64().unwrap_or(f64::NAN);
        let mut acro_cells: BTreeMap<(String, String), Verdicts> = BTreeMap::new();
        for cell in acro["cells"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = (cell["row"].as_str().unwrap_or("").to_string(), cell["col"].as_str().unwrap_or("").to_string());
            let flag = |rule: &str| cell[rule].as_bool().unwrap_or(false);
            acro_cells.insert(key, (flag("threshold"), flag("p_ratio"), flag("nk_rule")));
        }
        print_agreement(name, rows_per_subject, &unseen_cells, &acro_cells);
        measurements.push(Measurement::new("egress", name, "ms", unseen_seconds * 1e3, "acro", acro_seconds * 1e3));
    }
    Ok(measurements)
}

/// Runs the cross-tabulation through the governed engine and the reviewer's rules; returns
/// the time (query + review) and each cell's verdicts.
async fn unseen_crosstab(
    micro: &[(String, String, String, f64)],
    dir: &Path,
    args: &Args,
) -> Result<(f64, BTreeMap<(String, String), Verdicts>)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("subject", DataType::Utf8, false),
        Field::new("row", DataType::Utf8, false),
        Field::new("col", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(micro.iter().map(|row| row.0.as_str()))),
            Arc::new(StringArray::from_iter_values(micro.iter().map(|row| row.1.as_str()))),
            Arc::new(StringArray::from_iter_values(micro.iter().map(|row| row.2.as_str()))),
            Arc::new(Float64Array::from_iter_values(micro.iter().map(|row| row.3))),
        ],
    )?;
    let path = dir.join("micro.parquet");
    unseen_samples::data::write_parquet(&batch, &path)?;
    let column = |name: &str, tag| ColumnSpec { name: name.into(), tag };
    let dataset = DatasetVersion {
        name: "micro".into(),
        version: 1,
        provider: "bench".into(),
        grade: Grade::General,
        subject_kind: Some(SubjectKind::Enterprise),
        content_hash: "00".into(),
        columns: vec![
            column("subject", ColumnTag::Subject),
            column("row", ColumnTag::Public),
            column("col", ColumnTag::Public),
            column("value", ColumnTag::Sensitive),
        ],
    };
    let request = DatasetRequest {
        dataset: "micro@v1".into(),
        columns: BTreeMap::from([
            ("row".into(), AccessMode::Visible),
            ("col".into(), AccessMode::Visible),
            ("value".into(), AccessMode::AggregateOnly),
        ]),
        row_filter: None,
    };
    let spec = OutputSpec {
        name: "crosstab".into(),
        columns: ["row", "col", "total"].map(String::from).to_vec(),
        max_rows: 1000,
        verification: None,
    };
    let disclosure = DisclosureParams { secondary_suppression: false, ..Default::default() };
    let grant = grant(vec![spec], disclosure.clone(), vec![request]);
    // The sample copy is the same file, so the engine keeps every group for the verdicts.
    let tables = [DomainTable { dataset, production_path: path.clone(), sample_path: path }];
    let session = GovernedSession::new(&grant, &tables, Mode::Sample).await?;
    let sql = "SELECT row, col, SUM(value) AS total FROM micro GROUP BY row, col";
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..args.repeat.clamp(3, 7) {
        let started = Instant::now();
        let result = session.query(sql).await?;
        let table = concat_batches(&result.batches[0].schema(), &result.batches)?;
        let report = review_table(&grant, "crosstab", &table, &result.lineage, ReviewContext::default());
        samples.push(started.elapsed());
        last = Some((table, result.lineage, report));
    }
    let Some((table, lineage, _)) = last else { bail!("no run") };
    let mut verdicts = BTreeMap::new();
    let magnitude = &lineage.magnitudes[0];
    for row in 0..table.num_rows() {
        let key = (key_text(table.column(0).as_ref(), row), key_text(table.column(1).as_ref(), row));
        let contributors = lineage.contributors[0].per_row[row];
        let contributions = &magnitude.per_row[row];
        verdicts.insert(
            key,
            (
                contributors < disclosure.threshold_k,
                p_rule_sensitive(disclosure.p_percent, contributions).is_some(),
                nk_rule_sensitive(disclosure.nk_rule, contributions).is_some(),
            ),
        );
    }
    Ok((median(samples) / 1e3, verdicts))
}

fn print_agreement(
    name: &str,
    rows_per_subject: usize,
    unseen: &BTreeMap<(String, String), Verdicts>,
    acro: &BTreeMap<(String, String), Verdicts>,
) {
    eprintln!("egress: {name}: {rows_per_subject} row(s) per subject; cells flagged (unseen / acro / both agree):");
    let rules: [(&str, RulePick); 3] = [("threshold", |v| v.0), ("p_ratio", |v| v.1), ("nk_rule", |v| v.2)];
    for (rule, pick) in rules {
        let (mut ours, mut theirs, mut agree, mut cells) = (0, 0, 0, 0);
        let mut differing = Vec::new();
        for (key, verdict) in unseen {
            let Some(other) = acro.get(key) else { continue };
            cells += 1;
            ours += usize::from(pick(verdict));
            theirs += usize::from(pick(other));
            if pick(verdict) == pick(other) {
                agree += 1;
            } else {
                differing.push(format!("{}×{}", key.0, key.1));
            }
        }
        eprintln!(
            "egress:   {rule:<10} unseen {ours:>3}  acro {theirs:>3}  agree {agree}/{cells}{}",
            if differing.is_empty() { String::new() } else { format!("  differ: {}", differing.join(" ")) }
        );
    }
    let only_acro: Vec<_> = acro.keys().filter(|key| !unseen.contains_key(*key)).collect();
    if !only_acro.is_empty() {
        eprintln!("egress:   cells only ACRO lists (empty in the data): {}", only_acro.len());
    }
}
