//! `unseen check`: the egress reviewer offline, for developers before they ask.
//!
//! The same governed engine and the same rules as in a domain: a query is planned and checked
//! against the grant, run over local files (suppression included), and its result reviewed;
//! or an already-computed table with its contributor counts is reviewed as it is. Nothing is
//! sent anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Float64Type, UInt64Type};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use serde::Serialize;
use unseen_policy::identifiers::IdentifierSet;
use unseen_policy::review::{ReviewContext, release_noised_table, release_table, review_table};
use unseen_policy::{
    ColumnLineage, Contributions, DatasetVersion, Grant, MagnitudeLineage, Outcome, OutputLineage, ReviewReport,
    ScenarioApplication, SubjectCounts, SubjectKind, ValueClass,
};
use unseen_runtime::{DomainTable, GovernedSession, Mode, RuntimeError};

/// Exit status: every output passed and may leave automatically.
const EXIT_RELEASED: u8 = 0;
/// Exit status: the output would wait for an operator.
const EXIT_NEEDS_REVIEW: u8 = 10;
/// Exit status: the output could not leave.
const EXIT_BLOCKED: u8 = 11;
/// Exit status: the engine refused the query.
const EXIT_REFUSED: u8 = 12;

/// Check a query or a computed table against a grant, offline, with the domain's own rules.
///
/// Exit status: 0 released, 10 needs an operator's review, 11 blocked, 12 query refused,
/// 1 the check itself failed (bad files, bad grant).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    unseen check --write-example ./try\n  \
    unseen check --grant ./try/grant.json --data ./try --sql \"SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district\"\n  \
    unseen check --grant ./try/grant.json --table computed.csv --contributors companies --json")]
pub struct CheckArgs {
    /// The grant (JSON, as a domain issues it) or a scenario application (JSON), which is
    /// checked as if approved as it stands.
    #[arg(long, required_unless_present = "write_example")]
    grant: Option<PathBuf>,
    /// The data: a directory with `catalog.json` (the dataset versions with their column tags)
    /// and one `<dataset>.parquet` or `<dataset>.csv` per dataset.
    #[arg(long, requires = "sql", conflicts_with = "table")]
    data: Option<PathBuf>,
    /// The query to run over `--data`, as a module would send it.
    #[arg(long, requires = "data")]
    sql: Option<String>,
    /// An already-computed table (Parquet or CSV) to review as it is. Its contributor counts
    /// are a column (`--contributors`); optional dominance figures are the columns
    /// `dominance_total`, `dominance_top1`, `dominance_top2` (per-subject |value| sums).
    #[arg(long, conflicts_with_all = ["data", "sql"])]
    table: Option<PathBuf>,
    /// The column of `--table` that holds each row's distinct contributing subjects.
    #[arg(long, default_value = "contributors")]
    contributors: String,
    /// Which declared output of the grant the result is (default: the grant's only output).
    #[arg(long)]
    output: Option<String>,
    /// Also print the table as it would be released (withheld cells empty, rounding applied).
    #[arg(long)]
    show_release: bool,
    /// Print one JSON document: `{"outcome", "report", "refusal"}`.
    #[arg(long)]
    json: bool,
    /// Write synthetic example data, its catalog, the demo's green-energy grant, its scenario
    /// application and the compiled green-energy module — and the enterprise-verification
    /// application, module and claims — into this directory, to try the command (and a
    /// domain's client commands) on.
    #[arg(long, value_name = "DIR")]
    write_example: Option<PathBuf>,
    /// People in the example's population register (from 10 thousand to 10 million and more).
    #[arg(long, value_name = "N", default_value_t = 3_000, requires = "write_example")]
    example_people: usize,
    /// Enterprises in the example's enterprise register.
    #[arg(long, value_name = "N", default_value_t = 2_000, requires = "write_example")]
    example_enterprises: usize,
    /// Months of electricity use and social-insurance contributions in the example
    /// (rows: enterprises × months, and about 0.4 × people × months).
    #[arg(long, value_name = "N", default_value_t = 12, requires = "write_example")]
    example_months: u32,
}

#[derive(Debug, Serialize)]
struct CheckOutcome {
    /// `released`, `needs_review`, `blocked` or `refused`.
    outcome: String,
    /// The reviewer's report (docs/review-report.md); absent when the query was refused.
    report: Option<ReviewReport>,
    /// The engine's refusal, naming the rule and the column.
    refusal: Option<String>,
    /// Rows the query returned to the module (after the engine's suppression).
    rows: Option<u64>,
}

/// Runs `unseen check`.
pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(check(args))
}

async fn check(args: CheckArgs) -> Result<ExitCode> {
    if let Some(dir) = &args.write_example {
        write_example(dir, args.example_people, args.example_enterprises, args.example_months)?;
        println!(
            "wrote example data, catalog.json, grant.json, application.json and green_energy.wasm (green energy), verification_application.json, enterprise_verification.wasm and claims.csv (data verification) into {}",
            dir.display()
        );
        println!(
            "try: unseen check --grant {0}/grant.json --data {0} --sql \"SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district\"",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let grant_path = args.grant.as_ref().ok_or_else(|| anyhow!("--grant is required"))?;
    let mut grant = read_grant(grant_path)?;
    let output = match &args.output {
        Some(name) => name.clone(),
        None => match grant.application.outputs.as_slice() {
            [only] => only.name.clone(),
            outputs => bail!(
                "the grant declares {} outputs ({}); say which one this is with --output",
                outputs.len(),
                outputs.iter().map(|output| output.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    let (table, lineage, identifiers, rows) = if let Some(sql) = &args.sql {
        let data = args.data.as_ref().ok_or_else(|| anyhow!("--sql needs --data"))?;
        let scratch = tempfile::tempdir().context("creating a scratch directory")?;
        let tables = domain_tables(data, &grant, scratch.path()).await?;
        let session = GovernedSession::new(&grant, &tables, Mode::Production).await?;
        let result = match session.query(sql).await {
            Ok(result) => result,
            Err(RuntimeError::Refused(refusal)) => {
                let message = format!("refused by {}: {}", refusal.rule, refusal.message);
                return finish(
                    &args,
                    CheckOutcome { outcome: "refused".into(), report: None, refusal: Some(message), rows: None },
                    None,
                );
            }
            Err(RuntimeError::InvalidQuery(message)) => {
                bail!("the query is not valid SQL for these tables: {message}")
            }
            Err(error) => return Err(error.into()),
        };
        let schema = match result.batches.first() {
            Some(batch) => batch.schema(),
            None => Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        };
        let table = concat_batches(&schema, &result.batches).context("assembling the result")?;
        let identifiers = unseen_runtime::identifier_index::identifier_set(&tables).await?;
        (table, result.lineage, identifiers, Some(result.rows))
    } else if let Some(path) = &args.table {
        let table = read_table(path).await?;
        let (table, lineage) = computed_lineage(table, &args.contributors)?;
        // A computed table carries counts, not subjects: differencing needs the domain's
        // sketches and its earlier releases, so it is checked there.
        grant.application.disclosure.differencing = false;
        (table, lineage, IdentifierSet::default(), None)
    } else {
        bail!("say what to check: --sql with --data, or --table");
    };
    let context = ReviewContext { identifiers: Some(&identifiers), ..Default::default() };
    let report = review_table(&grant, &output, &table, &lineage, context);
    let released = match (args.show_release && report.outcome != Outcome::Blocked, report.noise.is_empty()) {
        (false, _) => None,
        (true, true) => Some(release_table(&report, &table)?),
        (true, false) => Some(release_noised_table(&report, &table, &mut unseen_gateway::SystemBits::default())?),
    };
    let outcome = CheckOutcome { outcome: report.outcome.as_str().into(), report: Some(report), refusal: None, rows };
    finish(&args, outcome, released.as_ref())
}

fn finish(args: &CheckArgs, outcome: CheckOutcome, released: Option<&RecordBatch>) -> Result<ExitCode> {
    let code = match (&outcome.report, &outcome.refusal) {
        (_, Some(_)) => EXIT_REFUSED,
        (Some(report), None) => match report.outcome {
            Outcome::Released => EXIT_RELEASED,
            Outcome::NeedsReview => EXIT_NEEDS_REVIEW,
            Outcome::Blocked => EXIT_BLOCKED,
        },
        (None, None) => 1,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        if let Some(refusal) = &outcome.refusal {
            println!("query refused — {refusal}");
        }
        if let Some(report) = &outcome.report {
            if let Some(rows) = outcome.rows {
                println!("the query returned {rows} rows to the module");
            }
            print!("{}", report.render());
            if report.outcome == Outcome::NeedsReview {
                println!("in a domain this output waits for an operator's decision");
            }
        }
        if let Some(released) = released {
            let text = datafusion::arrow::util::pretty::pretty_format_batches(std::slice::from_ref(released))?;
            println!("as released:\n{text}");
        } else if args.show_release && outcome.report.as_ref().is_some_and(|report| report.outcome == Outcome::Blocked)
        {
            println!("blocked: nothing of this output would be released");
        }
    }
    Ok(ExitCode::from(code))
}

/// A grant file, or an application file frozen as a local draft grant.
fn read_grant(path: &Path) -> Result<Grant> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(grant) = serde_json::from_str::<Grant>(&text) {
        return Ok(grant);
    }
    let application = crate::documents::read_application(path)
        .with_context(|| format!("{} is neither a grant nor a scenario application", path.display()))?;
    // Refusals name the grant: here, the application file the developer is drafting.
    Ok(Grant::freeze(path.display().to_string(), "s-check".into(), application, "unseen check".into(), 0, [0; 32]))
}

/// The grant's datasets from `dir`: `catalog.json` plus a Parquet (or CSV, converted into
/// `scratch`) file per dataset.
pub(crate) async fn domain_tables(dir: &Path, grant: &Grant, scratch: &Path) -> Result<Vec<DomainTable>> {
    let catalog_path = dir.join("catalog.json");
    let catalog = crate::documents::read_catalog(&catalog_path)?;
    let catalog: BTreeMap<String, DatasetVersion> =
        catalog.into_iter().map(|dataset| (dataset.id(), dataset)).collect();
    let mut tables = Vec::new();
    for id in grant.datasets() {
        let dataset = catalog
            .get(id)
            .ok_or_else(|| anyhow!("{} has no entry for {id}, which the grant names", catalog_path.display()))?
            .clone();
        let parquet = dir.join(format!("{}.parquet", dataset.name));
        let csv = dir.join(format!("{}.csv", dataset.name));
        let path = if parquet.exists() {
            parquet
        } else if csv.exists() {
            let converted = scratch.join(format!("{}.parquet", dataset.name));
            let table = read_table(&csv).await?;
            unseen_samples::data::write_parquet(&table, &converted)
                .with_context(|| format!("converting {}", csv.display()))?;
            converted
        } else {
            bail!("no {}.parquet or {}.csv in {} for {id}", dataset.name, dataset.name, dir.display());
        };
        tables.push(DomainTable { dataset, production_path: path.clone(), sample_path: path });
    }
    Ok(tables)
}

async fn read_table(path: &Path) -> Result<RecordBatch> {
    let context = SessionContext::new();
    let name = path.to_string_lossy().to_string();
    let frame = match path.extension().and_then(|extension| extension.to_str()) {
        Some("parquet") => context.read_parquet(name, ParquetReadOptions::default()).await,
        Some("csv") => context.read_csv(name, CsvReadOptions::new().has_header(true)).await,
        _ => bail!("{} is neither .parquet nor .csv", path.display()),
    }
    .with_context(|| format!("reading {}", path.display()))?;
    let batches = frame.collect().await.with_context(|| format!("reading {}", path.display()))?;
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        None => bail!("{} has no rows", path.display()),
    };
    Ok(concat_batches(&schema, &batches)?)
}

/// Column names that carry a computed table's dominance figures rather than output.
const DOMINANCE_COLUMNS: [&str; 3] = ["dominance_total", "dominance_top1", "dominance_top2"];

/// Splits a computed table into the output and the lineage its extra columns state: numeric
/// columns are aggregates, the rest are keys; the counts and dominance columns are lineage.
fn computed_lineage(table: RecordBatch, contributors: &str) -> Result<(RecordBatch, OutputLineage)> {
    let schema = table.schema();
    let counts_index = schema.index_of(contributors).map_err(|_| {
        anyhow!("the table has no column \"{contributors}\" with contributor counts (see --contributors)")
    })?;
    let counts = cast(table.column(counts_index), &DataType::UInt64)
        .with_context(|| format!("column \"{contributors}\" must hold whole numbers"))?;
    let counts = counts.as_primitive::<UInt64Type>();
    if counts.null_count() > 0 {
        bail!("column \"{contributors}\" has empty cells; every row needs its count");
    }
    let float_column = |name: &str| -> Result<Option<Vec<f64>>> {
        let Ok(index) = schema.index_of(name) else { return Ok(None) };
        let values = cast(table.column(index), &DataType::Float64).with_context(|| format!("column \"{name}\""))?;
        Ok(Some(values.as_primitive::<Float64Type>().iter().map(|value| value.unwrap_or(0.0)).collect()))
    };
    let [total, top1, top2] = DOMINANCE_COLUMNS.map(float_column);
    let (total, top1, top2) = (total?, top1?, top2?);
    let output: Vec<usize> = (0..schema.fields().len())
        .filter(|&index| index != counts_index && !DOMINANCE_COLUMNS.contains(&schema.field(index).name().as_str()))
        .collect();
    let output_table = table.project(&output)?;
    let columns: Vec<ColumnLineage> = output_table
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let class = if field.data_type().is_numeric() { ValueClass::Aggregate } else { ValueClass::Key };
            ColumnLineage::new(field.name().clone(), Vec::new(), class)
        })
        .collect();
    let mut magnitudes = Vec::new();
    if let (Some(total), Some(top1)) = (total, top1) {
        let top2 = top2.unwrap_or_else(|| vec![0.0; total.len()]);
        let per_row: Vec<Contributions> = (0..total.len())
            .map(|row| Contributions { total: total[row], largest: vec![top1[row], top2[row]], bucketed: false })
            .collect();
        let measures: Vec<String> =
            columns.iter().filter(|column| column.aggregated).map(|column| column.name.clone()).collect();
        magnitudes.push(MagnitudeLineage {
            measure: "computed table".into(),
            columns: measures,
            kind: SubjectKind::Enterprise,
            per_row,
        });
    }
    let lineage = OutputLineage {
        columns,
        aggregated: true,
        subject_kinds: vec![SubjectKind::Enterprise],
        contributors: vec![SubjectCounts { kind: SubjectKind::Enterprise, per_row: counts.values().to_vec() }],
        magnitudes,
        suppressed_groups: 0,
        suppression_rule: None,
        withheld_keys: Vec::new(),
        withheld_values: Vec::new(),
        withheld_contributors: Vec::new(),
        sketches: Vec::new(),
        verification: None,
    };
    Ok((output_table, lineage))
}

/// Synthetic example data of the given sizes, the catalog and the green-energy grant.
fn write_example(dir: &Path, people: usize, enterprises: usize, months: u32) -> Result<()> {
    if people == 0 || enterprises == 0 || months == 0 {
        bail!("--example-people, --example-enterprises and --example-months must be at least 1");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut progress = crate::client::Progress::new(false);
    progress.show(&format!("generating {people} people and {enterprises} enterprises…"));
    let population = unseen_samples::data::population(people, 7);
    let enterprises = unseen_samples::data::enterprises(enterprises, 7);
    progress.show(&format!("generating {months} months of electricity use and social insurance…"));
    let electricity = unseen_samples::data::electricity(&enterprises, months, 7);
    let insurance = unseen_samples::data::social_insurance(&population, &enterprises, months, 7);
    progress.show("writing Parquet files…");
    let catalog = vec![
        unseen_samples::scenarios::population(),
        unseen_samples::scenarios::enterprise(),
        unseen_samples::scenarios::electricity(),
        unseen_samples::scenarios::social_insurance(),
    ];
    for (dataset, batch) in catalog.iter().zip([&population, &enterprises, &electricity, &insurance]) {
        let path = dir.join(format!("{}.parquet", dataset.name));
        unseen_samples::data::write_parquet(batch, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(dir.join("catalog.json"), serde_json::to_vec_pretty(&catalog)?)?;
    let grant = Grant::freeze(
        "g-example".into(),
        "s-example".into(),
        unseen_samples::scenarios::green_energy(),
        "example operator".into(),
        0,
        [7; 32],
    );
    std::fs::write(dir.join("grant.json"), serde_json::to_vec_pretty(&grant)?)?;
    // What a developer submits to a domain (`unseen scenario submit`) and the module it runs.
    // The applications name no developer: the domain files them for whoever submits them (an
    // application naming another organisation is refused).
    let unnamed = |application: ScenarioApplication| ScenarioApplication { developer: String::new(), ..application };
    std::fs::write(
        dir.join("application.json"),
        serde_json::to_vec_pretty(&unnamed(unseen_samples::scenarios::green_energy()))?,
    )?;
    std::fs::write(dir.join("green_energy.wasm"), unseen_samples::modules::GREEN_ENERGY)?;
    // Data verification (数据核验): its application, its module, and three claims to check.
    std::fs::write(
        dir.join("verification_application.json"),
        serde_json::to_vec_pretty(&unnamed(unseen_samples::scenarios::enterprise_verification()))?,
    )?;
    std::fs::write(dir.join("enterprise_verification.wasm"), unseen_samples::modules::ENTERPRISE_VERIFICATION)?;
    std::fs::write(dir.join("claims.csv"), example_claims(&enterprises))?;
    Ok(())
}

/// Claims about the example's enterprises, as the enterprise-verification module reads them:
/// the first as registered, the second under a wrong name, a credit code the register lacks.
fn example_claims(register: &RecordBatch) -> String {
    let text = |column: &str, row: usize| {
        register
            .column_by_name(column)
            .filter(|values| values.len() > row)
            .map(|values| values.as_string::<i32>().value(row).to_string())
            .unwrap_or_default()
    };
    format!(
        "uscc,name,district\n{},{},{}\n{},湖州并不存在有限公司,\n91330500MA0000000X,{},\n",
        text("uscc", 0),
        text("name", 0),
        text("district", 0),
        text("uscc", 1),
        text("name", 0)
    )
}
