//! Suite `query`: the governed engine against plain DataFusion and DuckDB on the same SQL and
//! the same Parquet files, plus the cost of the policy check per plan.
//!
//! - `groupby_1m`, `groupby_10m`: electricity readings (one row per enterprise and month, with
//!   industry and district) grouped by district, industry and month; the governed side counts
//!   distinct enterprises per group and withholds groups below k.
//! - `join_1m`: the demo's scenario query, electricity (1M rows) joined to the enterprise
//!   register and grouped by industry and district.
//!
//! Each governed query also runs under the same grant with the differencing rule off
//! (`*_without_differencing`): the difference is what the per-group subject sketches cost.
//! And once more on the same files declared without a subject column
//! (`*_without_subjects`: the subject column is an ordinary identifier, so no contributors are
//! counted and no largest contributions kept): what the policy check, the granted tables and
//! the review of the result cost apart from counting subjects.
//! And the group-bys run in plain DataFusion reading the subject column too (`df+subject`):
//! any engine that counts subjects pays at least that.
//!
//! DuckDB runs in a Python virtual environment the suite creates on first use
//! (`pip install duckdb`, from PyPI); without it the DuckDB rows are skipped with the reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use unseen_policy::{
    AccessMode, ColumnSpec, ColumnTag, DatasetRequest, DatasetVersion, DisclosureParams, Grade, Grant,
    ScenarioApplication, SubjectKind,
};
use unseen_runtime::{DomainTable, GovernedSession, Mode};

use crate::{Args, Measurement, median};

const DISTRICTS: &[&str] = &["吴兴区", "南浔区", "德清县", "长兴县", "安吉县"];
const INDUSTRIES: &[&str] = &[
    "纺织业",
    "金属制品业",
    "批发和零售业",
    "化学原料",
    "非金属矿物",
    "通用设备",
    "电气机械",
    "木材加工",
    "食品制造",
    "造纸",
    "橡胶塑料",
    "汽车制造",
    "医药制造",
    "家具制造",
    "印刷",
    "建筑业",
    "软件和信息技术",
    "住宿和餐饮",
    "仓储物流",
    "农副食品",
];
/// Rows written to Parquet per batch while generating readings.
const CHUNK_ROWS: usize = 500_000;

const GROUPBY_SQL: &str = "SELECT district, industry, month, SUM(kwh) AS total_kwh, COUNT(*) AS n FROM readings \
                           GROUP BY district, industry, month";
/// The same grouping, also reading the subject column (counted cheaply, not distinct): what
/// any subject-aware engine must at least pay.
const GROUPBY_READING_SUBJECT_SQL: &str = "SELECT district, industry, month, SUM(kwh) AS total_kwh, COUNT(*) AS n, \
                                           COUNT(uscc) AS subject_rows FROM readings GROUP BY district, industry, month";
const JOIN_SQL: &str = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u \
                        JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";

/// One query on one set of tables, measured on all three engines.
struct Workload {
    name: String,
    sql: &'static str,
    /// The plain query that also reads the subject column, when it differs from `sql`'s reads.
    reading_subject_sql: Option<&'static str>,
    /// Table name → Parquet file.
    tables: BTreeMap<String, PathBuf>,
    grant: Grant,
    domain_tables: Vec<DomainTable>,
    repeat: usize,
}

pub fn run(args: &Args, runtime: &tokio::runtime::Runtime) -> Result<Vec<Measurement>> {
    let dir = tempfile::tempdir()?;
    eprintln!("query: writing synthetic Parquet files (1M and 10M readings, 1M electricity rows)…");
    let mut workloads = Vec::new();
    for (rows, label) in [(1_000_000, "1m"), (10_000_000, "10m")] {
        let rows = scaled(rows, args.query_scale);
        let path = dir.path().join(format!("readings_{label}.parquet"));
        write_readings(rows, &path)?;
        let dataset = readings_dataset();
        let repeat = if rows > 2_000_000 { args.repeat.div_ceil(3).max(3) } else { args.repeat };
        workloads.push(Workload {
            name: format!("groupby_{label}"),
            sql: GROUPBY_SQL,
            reading_subject_sql: Some(GROUPBY_READING_SUBJECT_SQL),
            tables: BTreeMap::from([("readings".to_string(), path.clone())]),
            grant: readings_grant(),
            domain_tables: vec![DomainTable { dataset, production_path: path.clone(), sample_path: path }],
            repeat,
        });
    }
    workloads.push(join_workload(dir.path(), scaled(1_000_000, args.query_scale) / 12, args.repeat)?);

    let mut measurements = Vec::new();
    let duckdb = match duckdb_medians(&workloads) {
        Ok(medians) => Some(medians),
        Err(error) => {
            eprintln!("query: DuckDB baseline skipped: {error:#}");
            None
        }
    };
    for workload in &workloads {
        let Medians { governed, plain, reading_subject, without_differencing, without_subjects } =
            runtime.block_on(datafusion_medians(workload))?;
        measurements.push(Measurement::new("query", &workload.name, "ms", governed, "datafusion", plain));
        // What the differencing sketch costs: the same grant with the rule off.
        let name = format!("{}_without_differencing", workload.name);
        measurements.push(Measurement::new("query", &name, "ms", without_differencing, "datafusion", plain));
        // What governance costs apart from counting subjects: the same files without a subject.
        let name = format!("{}_without_subjects", workload.name);
        measurements.push(Measurement::new("query", &name, "ms", without_subjects, "datafusion", plain));
        if let Some(reading_subject) = reading_subject {
            measurements.push(Measurement::new("query", &workload.name, "ms", governed, "df+subject", reading_subject));
        }
        if let Some(duckdb) = duckdb.as_ref().and_then(|medians| medians.get(&workload.name)) {
            measurements.push(Measurement::new("query", &workload.name, "ms", governed, "duckdb", *duckdb));
        }
    }
    let join = workloads.last().context("the join workload")?;
    measurements.push(runtime.block_on(policy_check(join, args.repeat * 4))?);
    Ok(measurements)
}

pub(crate) fn scaled(rows: usize, scale: f64) -> usize {
    ((rows as f64 * scale) as usize).max(12_000)
}

/// The electricity readings table as a provider would register it.
fn readings_dataset() -> DatasetVersion {
    let column = |name: &str, tag| ColumnSpec { name: name.into(), tag };
    DatasetVersion {
        name: "readings".into(),
        version: 1,
        provider: "grid".into(),
        grade: Grade::Important,
        content_hash: "bench".into(),
        subject_kind: Some(SubjectKind::Enterprise),
        columns: vec![
            column("uscc", ColumnTag::Subject),
            column("district", ColumnTag::Public),
            column("industry", ColumnTag::Public),
            column("month", ColumnTag::Public),
            column("kwh", ColumnTag::Sensitive),
        ],
    }
}

fn readings_grant() -> Grant {
    let application = ScenarioApplication {
        title: "bench".into(),
        purpose: "benchmark".into(),
        developer: "bench".into(),
        datasets: vec![DatasetRequest {
            dataset: "readings@v1".into(),
            columns: BTreeMap::from([
                ("uscc".into(), AccessMode::JoinOnly),
                ("district".into(), AccessMode::Visible),
                ("industry".into(), AccessMode::Visible),
                ("month".into(), AccessMode::Visible),
                ("kwh".into(), AccessMode::AggregateOnly),
            ]),
            row_filter: None,
        }],
        outputs: Vec::new(),
        disclosure: DisclosureParams { threshold_k: 10, auto_release: false, ..Default::default() },
        validity_days: 30,
        limits: Default::default(),
    };
    Grant::freeze("g-bench".into(), "s-bench".into(), application, "bench".into(), 0, [0; 32])
}

/// A fast deterministic generator (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One row of the readings table.
pub(crate) struct Reading {
    pub(crate) enterprise: usize,
    pub(crate) district: usize,
    pub(crate) industry: usize,
    pub(crate) month: usize,
    pub(crate) kwh: f64,
}

impl Reading {
    /// The enterprise's unified social credit code, the table's subject.
    pub(crate) fn uscc(&self) -> String {
        format!("91330{:05}MA{:07X}", 500 + self.district, self.enterprise)
    }

    /// The row's group in `GROUP BY district, industry, month` (of [`READING_GROUPS`]).
    pub(crate) fn group(&self) -> usize {
        (self.district * INDUSTRIES.len() + self.industry) * 12 + self.month
    }
}

/// The groups of `GROUP BY district, industry, month` over the readings.
pub(crate) const READING_GROUPS: usize = 5 * 20 * 12;
const _: () = assert!(READING_GROUPS == DISTRICTS.len() * INDUSTRIES.len() * 12);

/// The readings in table order: enterprises of twelve months each, a skewed industry mix,
/// kWh per month.
pub(crate) struct Readings {
    random: SplitMix,
    row: usize,
    district: usize,
    industry: usize,
}

impl Readings {
    pub(crate) fn new() -> Self {
        Self { random: SplitMix(42), row: 0, district: 0, industry: 0 }
    }
}

impl Iterator for Readings {
    type Item = Reading;

    fn next(&mut self) -> Option<Reading> {
        let row = self.row;
        self.row += 1;
        if row.is_multiple_of(12) {
            self.district = (self.random.next() % DISTRICTS.len() as u64) as usize;
            // Skewed: small industry indices are far more common.
            let draw = self.random.next() % 1_000;
            self.industry = ((draw * draw) / (1_000 * 1_000 / INDUSTRIES.len() as u64)) as usize % INDUSTRIES.len();
        }
        let kwh = (self.random.next() % 100_000) as f64 / 10.0;
        Some(Reading { enterprise: row / 12, district: self.district, industry: self.industry, month: row % 12, kwh })
    }
}

/// `rows` readings (see [`Readings`]) as a Parquet file.
fn write_readings(rows: usize, path: &Path) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("uscc", DataType::Utf8, false),
        Field::new("district", DataType::Utf8, false),
        Field::new("industry", DataType::Utf8, false),
        Field::new("month", DataType::Utf8, false),
        Field::new("kwh", DataType::Float64, false),
    ]));
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), None)?;
    let mut readings = Readings::new();
    let mut start = 0;
    while start < rows {
        let end = (start + CHUNK_ROWS).min(rows);
        let mut usccs = Vec::with_capacity(end - start);
        let mut districts = Vec::with_capacity(end - start);
        let mut industries = Vec::with_capacity(end - start);
        let mut months = Vec::with_capacity(end - start);
        let mut kwhs = Vec::with_capacity(end - start);
        for reading in readings.by_ref().take(end - start) {
            usccs.push(reading.uscc());
            districts.push(DISTRICTS[reading.district]);
            industries.push(INDUSTRIES[reading.industry]);
            months.push(format!("2024-{:02}", reading.month + 1));
            kwhs.push(reading.kwh);
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(usccs)),
                Arc::new(StringArray::from(districts)),
                Arc::new(StringArray::from(industries)),
                Arc::new(StringArray::from(months)),
                Arc::new(Float64Array::from(kwhs)),
            ],
        )?;
        writer.write(&batch)?;
        start = end;
    }
    writer.close()?;
    Ok(())
}

/// The demo's scenario: electricity of `enterprises` companies (twelve months each) joined to
/// their register.
fn join_workload(dir: &Path, enterprises: usize, repeat: usize) -> Result<Workload> {
    let register = unseen_samples::data::enterprises(enterprises, 7);
    let electricity = unseen_samples::data::electricity(&register, 12, 7);
    let enterprise_path = dir.join("enterprise.parquet");
    let electricity_path = dir.join("electricity.parquet");
    unseen_samples::data::write_parquet(&register, &enterprise_path)?;
    unseen_samples::data::write_parquet(&electricity, &electricity_path)?;
    let grant = Grant::freeze(
        "g-bench".into(),
        "s-bench".into(),
        unseen_samples::scenarios::green_energy(),
        "bench".into(),
        0,
        [0; 32],
    );
    Ok(Workload {
        name: "join_1m".into(),
        sql: JOIN_SQL,
        reading_subject_sql: None,
        tables: BTreeMap::from([
            ("enterprise".to_string(), enterprise_path.clone()),
            ("electricity".to_string(), electricity_path.clone()),
        ]),
        grant,
        domain_tables: vec![
            DomainTable {
                dataset: unseen_samples::scenarios::enterprise(),
                production_path: enterprise_path.clone(),
                sample_path: enterprise_path,
            },
            DomainTable {
                dataset: unseen_samples::scenarios::electricity(),
                production_path: electricity_path.clone(),
                sample_path: electricity_path,
            },
        ],
        repeat,
    })
}

/// Median milliseconds of one workload's runs in DataFusion.
struct Medians {
    governed: f64,
    plain: f64,
    /// The plain query that also reads the subject column, when the workload has one.
    reading_subject: Option<f64>,
    /// The governed query under the same grant without the differencing rule (no sketches).
    without_differencing: f64,
    /// The governed query on the same files declared without subjects (no host aggregates).
    without_subjects: f64,
}

/// The workload's tables declared without a subject: the subject column becomes an
/// identifier (the grant's modes for it still apply), so the governed engine counts nothing
/// per subject.
fn without_subjects(tables: &[DomainTable]) -> Vec<DomainTable> {
    tables
        .iter()
        .map(|table| {
            let mut dataset = table.dataset.clone();
            dataset.subject_kind = None;
            for column in &mut dataset.columns {
                if column.tag == ColumnTag::Subject {
                    column.tag = ColumnTag::Identifier;
                }
            }
            DomainTable {
                dataset,
                production_path: table.production_path.clone(),
                sample_path: table.sample_path.clone(),
            }
        })
        .collect()
}

/// Median milliseconds of each query in [`Medians`], the runs of one repetition interleaved.
async fn datafusion_medians(workload: &Workload) -> Result<Medians> {
    let governed = GovernedSession::new(&workload.grant, &workload.domain_tables, Mode::Production).await?;
    let mut undifferenced_grant = workload.grant.clone();
    undifferenced_grant.application.disclosure.differencing = false;
    let undifferenced = GovernedSession::new(&undifferenced_grant, &workload.domain_tables, Mode::Production).await?;
    let subjectless =
        GovernedSession::new(&workload.grant, &without_subjects(&workload.domain_tables), Mode::Production).await?;
    let plain = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    for (name, path) in &workload.tables {
        let path = path.to_str().context("non-UTF-8 path")?;
        plain.register_parquet(name.as_str(), path, ParquetReadOptions::default()).await?;
    }
    governed.query(workload.sql).await?;
    undifferenced.query(workload.sql).await?;
    let result = subjectless.query(workload.sql).await?;
    if !result.lineage.contributors.is_empty() {
        bail!("{}: the query without subjects still counted contributors", workload.name);
    }
    plain.sql(workload.sql).await?.collect().await?;
    let (mut governed_times, mut plain_times, mut subject_times) = (Vec::new(), Vec::new(), Vec::new());
    let (mut undifferenced_times, mut subjectless_times) = (Vec::new(), Vec::new());
    for _ in 0..workload.repeat {
        let started = Instant::now();
        governed.query(workload.sql).await?;
        governed_times.push(started.elapsed());
        let started = Instant::now();
        undifferenced.query(workload.sql).await?;
        undifferenced_times.push(started.elapsed());
        let started = Instant::now();
        subjectless.query(workload.sql).await?;
        subjectless_times.push(started.elapsed());
        let started = Instant::now();
        plain.sql(workload.sql).await?.collect().await?;
        plain_times.push(started.elapsed());
        if let Some(sql) = workload.reading_subject_sql {
            let started = Instant::now();
            plain.sql(sql).await?.collect().await?;
            subject_times.push(started.elapsed());
        }
    }
    Ok(Medians {
        governed: median(governed_times),
        plain: median(plain_times),
        reading_subject: (!subject_times.is_empty()).then(|| median(subject_times)),
        without_differencing: median(undifferenced_times),
        without_subjects: median(subjectless_times),
    })
}

/// Microseconds to plan and check one query against its grant, beside planning alone.
async fn policy_check(workload: &Workload, repeat: usize) -> Result<Measurement> {
    let governed = GovernedSession::new(&workload.grant, &workload.domain_tables, Mode::Production).await?;
    let plain = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    for (name, path) in &workload.tables {
        let path = path.to_str().context("non-UTF-8 path")?;
        plain.register_parquet(name.as_str(), path, ParquetReadOptions::default()).await?;
    }
    let (mut check_times, mut plan_times) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        let started = Instant::now();
        governed.check(workload.sql).await?;
        check_times.push(started.elapsed());
        let started = Instant::now();
        plain.state().create_logical_plan(workload.sql).await?;
        plan_times.push(started.elapsed());
    }
    Ok(Measurement::new(
        "query",
        "policy_check",
        "µs",
        median(check_times) * 1e3,
        "sql_planning",
        median(plan_times) * 1e3,
    ))
}

/// The Python that has `packages` (PyPI names, imported under the same names):
/// `UNSEEN_BENCH_PYTHON`, or a virtual environment under the user's cache, made and filled on
/// first use.
pub(crate) fn bench_python(packages: &[&str]) -> Result<PathBuf> {
    if let Some(python) = std::env::var_os("UNSEEN_BENCH_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let venv = Path::new(&home).join(".cache/unseen-bench-venv");
    let python = venv.join("bin/python");
    let importable = |python: &Path| {
        let imports = packages.iter().map(|package| format!("import {package}")).collect::<Vec<_>>().join("; ");
        Command::new(python).args(["-c", &imports]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    if python.exists() && importable(&python) {
        return Ok(python);
    }
    eprintln!("bench: installing {} from PyPI into {} (once)…", packages.join(", "), venv.display());
    if !python.exists() {
        let status =
            Command::new("python3").arg("-m").arg("venv").arg(&venv).status().context("running python3 -m venv")?;
        if !status.success() {
            bail!("python3 -m venv {} failed", venv.display());
        }
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet"])
        .args(packages)
        .status()
        .with_context(|| format!("running pip install {}", packages.join(" ")))?;
    if !status.success() || !importable(&python) {
        bail!("pip install {} did not give importable packages", packages.join(" "));
    }
    Ok(python)
}

/// Median milliseconds per workload in DuckDB, on the same files with the same thread count.
fn duckdb_medians(workloads: &[Workload]) -> Result<BTreeMap<String, f64>> {
    let python = bench_python(&["duckdb"])?;
    let mut medians = BTreeMap::new();
    for workload in workloads {
        let job = serde_json::json!({
            "threads": 2,
            "repeat": workload.repeat,
            "tables": workload.tables,
            "queries": { workload.name.clone(): workload.sql },
        });
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(include_str!("../duckdb_baseline.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the DuckDB baseline")?;
        child.stdin.take().context("stdin of the DuckDB baseline")?.write_all(job.to_string().as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("the DuckDB baseline failed on {}", workload.name);
        }
        let reply: serde_json::Value = serde_json::from_slice(&output.stdout).context("reading DuckDB's figures")?;
        let median = reply["medians_ms"][&workload.name].as_f64().context("a median in DuckDB's figures")?;
        medians.insert(workload.name.clone(), median);
    }
    Ok(medians)
}
