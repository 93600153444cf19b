//! `unseen scenario draft`: a scenario application derived from the queries a developer
//! plans to run, offline. Each query is planned by the domain's own governed engine under a
//! grant that shows every column; every use it makes of a column (projected, grouped, joined,
//! filtered, aggregated) is recorded, and each column gets the narrowest access mode that
//! allows all of its uses (`policy::least_mode`). Nobody hand-writes a column list the engine
//! can derive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use unseen_policy::{
    AccessMode, DatasetRequest, DatasetVersion, DisclosureParams, Grant, JobLimits, OutputSpec, ScenarioApplication,
    Usage, least_mode,
};
use unseen_runtime::{GovernedSession, Mode, RuntimeError};

use crate::client::emit;

/// Rows an output may have in a draft, to be edited.
const DRAFT_MAX_ROWS: u64 = 1_000;
/// Validity of a draft, in days.
const DRAFT_VALIDITY_DAYS: u32 = 365;

/// What `unseen scenario draft` was asked.
pub struct DraftRequest {
    /// Directory with `catalog.json` and the datasets (or their samples).
    pub data: PathBuf,
    /// The planned queries.
    pub queries: Vec<String>,
    /// The output each query's result is released as.
    pub outputs: Vec<String>,
    /// The application's title and purpose.
    pub title: String,
    pub purpose: String,
    /// Where to write the application (else it is printed).
    pub out: Option<PathBuf>,
    pub json: bool,
}

/// One column of the draft and why it has its mode.
#[derive(Debug, serde::Serialize)]
struct ColumnChoice {
    dataset: String,
    column: String,
    mode: AccessMode,
    uses: Vec<String>,
}

fn use_phrase(usage: &Usage, query: usize) -> String {
    let what = match usage {
        Usage::Project => "projected".to_string(),
        Usage::GroupBy => "grouped by".to_string(),
        Usage::Aggregate { function, .. } => format!("in {function}()"),
        Usage::Filter => "filtered on".to_string(),
        Usage::Join => "joined on".to_string(),
        Usage::Order => "ordered by".to_string(),
    };
    format!("{what} in query {query}")
}

/// Runs the draft.
pub async fn draft(request: DraftRequest) -> Result<()> {
    if request.outputs.len() > request.queries.len() {
        bail!(
            "{} --output names for {} --sql queries; give one per query",
            request.outputs.len(),
            request.queries.len()
        );
    }
    let catalog_path = request.data.join("catalog.json");
    let catalog = crate::documents::read_catalog(&catalog_path)?;
    let present: Vec<&DatasetVersion> = catalog.iter().filter(|dataset| has_file(&request.data, dataset)).collect();
    if present.is_empty() {
        bail!("{} has no <dataset>.parquet or .csv for any dataset of its catalog.json", request.data.display());
    }
    // Every column of every dataset present, visible: the engine then refuses only what no
    // grant could allow, and records every use.
    let everything = ScenarioApplication {
        title: "draft".into(),
        purpose: "draft".into(),
        developer: String::new(),
        datasets: present
            .iter()
            .map(|dataset| DatasetRequest {
                dataset: dataset.id(),
                columns: dataset.columns.iter().map(|column| (column.name.clone(), AccessMode::Visible)).collect(),
                row_filter: None,
            })
            .collect(),
        outputs: Vec::new(),
        disclosure: DisclosureParams::default(),
        validity_days: DRAFT_VALIDITY_DAYS,
        limits: JobLimits::default(),
    };
    let grant =
        Grant::freeze("g-draft".into(), "s-draft".into(), everything, "unseen scenario draft".into(), 0, [0; 32]);
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let tables = crate::check::domain_tables(&request.data, &grant, scratch.path()).await?;
    let session = GovernedSession::new(&grant, &tables, Mode::Sample).await?;

    let mut uses: BTreeMap<(String, String), Vec<(Usage, usize)>> = BTreeMap::new();
    let mut outputs = Vec::new();
    for (index, sql) in request.queries.iter().enumerate() {
        let number = index + 1;
        let (used, columns) = session.column_usages(sql).await.map_err(|error| match error {
            RuntimeError::Refused(refusal) => {
                anyhow!("query {number} would be refused under any grant, by {}: {}", refusal.rule, refusal.message)
            }
            RuntimeError::InvalidQuery(message) => {
                anyhow!("query {number} is not valid SQL for these tables: {message}")
            }
            other => anyhow!("query {number}: {other}"),
        })?;
        for (source, usage) in used {
            uses.entry((source.dataset, source.column)).or_default().push((usage, number));
        }
        let name = request.outputs.get(index).cloned().unwrap_or_else(|| format!("result_{number}"));
        outputs.push(OutputSpec { name, columns, max_rows: DRAFT_MAX_ROWS, verification: None });
    }

    let mut choices = Vec::new();
    let mut datasets: BTreeMap<String, DatasetRequest> = BTreeMap::new();
    for ((dataset, column), column_uses) in uses {
        let usages: Vec<Usage> = column_uses.iter().map(|(usage, _)| usage.clone()).collect();
        let mode = least_mode(&usages);
        let mut phrases: Vec<String> = column_uses.iter().map(|(usage, query)| use_phrase(usage, *query)).collect();
        let mut seen = std::collections::BTreeSet::new();
        phrases.retain(|phrase| seen.insert(phrase.clone()));
        datasets
            .entry(dataset.clone())
            .or_insert_with(|| DatasetRequest { dataset: dataset.clone(), columns: BTreeMap::new(), row_filter: None })
            .columns
            .insert(column.clone(), mode);
        choices.push(ColumnChoice { dataset, column, mode, uses: phrases });
    }
    let application = ScenarioApplication {
        title: request.title,
        purpose: request.purpose,
        developer: String::new(),
        datasets: datasets.into_values().collect(),
        outputs,
        disclosure: DisclosureParams::default(),
        validity_days: DRAFT_VALIDITY_DAYS,
        limits: JobLimits::default(),
    };
    let by_id: BTreeMap<String, &DatasetVersion> = catalog.iter().map(|dataset| (dataset.id(), dataset)).collect();
    if let Err(error) = application.validate(|id| by_id.get(id).copied()) {
        bail!("the drafted application would not be accepted: {error}");
    }

    let text = serde_json::to_string_pretty(&application)?;
    if let Some(out) = &request.out {
        std::fs::write(out, format!("{text}\n")).with_context(|| format!("writing {}", out.display()))?;
    }
    let value = json!({ "application": application, "columns": choices, "written": request.out });
    emit(request.json, &value, || {
        let mut lines = Vec::new();
        if request.out.is_none() {
            lines.push(text.clone());
        }
        lines.push("columns and the narrowest modes the queries need:".into());
        for choice in &choices {
            lines.push(format!(
                "  {:<28} {:<15} {}",
                format!("{}.{}", choice.dataset, choice.column),
                choice.mode.as_str(),
                choice.uses.join(", ")
            ));
        }
        if let Some(out) = &request.out {
            lines.push(format!(
                "wrote {}; edit its title, purpose, disclosure and limits, check it with `unseen check --grant {0} \
                 --data {} --sql …`, then `unseen scenario submit {0}`",
                out.display(),
                request.data.display()
            ));
        }
        lines.join("\n")
    })
}

fn has_file(dir: &Path, dataset: &DatasetVersion) -> bool {
    ["parquet", "csv"].iter().any(|extension| dir.join(format!("{}.{extension}", dataset.name)).exists())
}
