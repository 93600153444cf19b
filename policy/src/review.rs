//! The egress reviewer (出域审核): decides, cell by cell, what of an output may leave.
//!
//! Input is the output itself and its lineage, which the runtime computed and the module could
//! not touch: which source columns each output column derives from, whether through an
//! aggregate, and how many distinct subjects contributed to each row. Output is a report that
//! names every rule, its figure and its outcome, plus the rows to withhold.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::identifiers::find_identifiers;
use crate::{ColumnTag, Grant, SubjectKind};

/// How many individual cell findings a report lists; the counts are always complete.
const MAX_FINDINGS: usize = 50;

/// Whether an output is a governed query result or something the module computed itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A query result produced and counted by the host.
    Table,
    /// Bytes the module computed (a model, a chart); always waits for an operator.
    Artifact,
}

/// A column of a registered dataset that an output column derives from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceColumn {
    /// `name@vN`.
    pub dataset: String,
    /// Column name.
    pub column: String,
    /// The provider's tag of that column.
    pub tag: ColumnTag,
}

/// Where one output column came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnLineage {
    /// Output column name.
    pub name: String,
    /// Source columns whose values flow into it.
    pub sources: Vec<SourceColumn>,
    /// True when every source reaches it only through an aggregate.
    pub aggregated: bool,
}

/// Distinct contributing subjects of one kind, per output row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectCounts {
    /// Which kind of subject was counted.
    pub kind: SubjectKind,
    /// One count per output row.
    pub per_row: Vec<u64>,
}

/// What the host knows about an output that the module cannot forge.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputLineage {
    /// One entry per output column.
    pub columns: Vec<ColumnLineage>,
    /// The result is a governed aggregate (one row per group).
    pub aggregated: bool,
    /// Subject kinds of the datasets the result read.
    pub subject_kinds: Vec<SubjectKind>,
    /// Host-counted contributors per row, one entry per subject kind.
    pub contributors: Vec<SubjectCounts>,
    /// Groups the engine withheld before the module saw the result.
    pub suppressed_groups: u64,
    /// The rule that withheld them, e.g. `threshold k=10`.
    pub suppression_rule: Option<String>,
}

/// The verdict on a whole output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed every rule and the grant allows automatic release.
    Released,
    /// Waits for an operator's decision.
    NeedsReview,
    /// May not leave.
    Blocked,
}

impl Outcome {
    /// Name as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::NeedsReview => "needs_review",
            Self::Blocked => "blocked",
        }
    }
}

/// The outcome of one rule on one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOutcome {
    /// Nothing to object to.
    Pass,
    /// Some cells were withheld; the rest may go.
    Suppressed,
    /// The output may not leave.
    Blocked,
    /// A person has to look.
    NeedsReview,
}

/// One rule's finding on one output: the rule, its figure and what it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleResult {
    /// Rule name: `contract`, `lineage`, `threshold`, `content`, `artifact`.
    pub rule: String,
    /// What the rule decided.
    pub outcome: RuleOutcome,
    /// The figure it decided on, e.g. `min contributors 3 < k=10`.
    pub figure: String,
}

/// One cell a rule acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellFinding {
    /// Row index in the output as the module emitted it.
    pub row: usize,
    /// Column name.
    pub column: String,
    /// The rule.
    pub rule: String,
    /// Why, without the cell's value.
    pub figure: String,
}

/// The reviewer's report on one output, what an operator decides from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewReport {
    /// Output name.
    pub output: String,
    /// Table or artifact.
    pub kind: OutputKind,
    /// The verdict.
    pub outcome: Outcome,
    /// Every rule applied, in order.
    pub rules: Vec<RuleResult>,
    /// Cells in the output as emitted (0 for artifacts).
    pub cells_total: u64,
    /// Cells withheld, including the engine's suppressed groups.
    pub cells_suppressed: u64,
    /// Rows of the emitted output to withhold from a release.
    pub suppressed_rows: Vec<usize>,
    /// The first cell findings, values never included.
    pub findings: Vec<CellFinding>,
}

impl ReviewReport {
    fn decide(&mut self, auto_release: bool) {
        self.outcome = if self.rules.iter().any(|rule| rule.outcome == RuleOutcome::Blocked) {
            Outcome::Blocked
        } else if self.kind == OutputKind::Artifact
            || !auto_release
            || self.rules.iter().any(|rule| rule.outcome == RuleOutcome::NeedsReview)
        {
            Outcome::NeedsReview
        } else {
            Outcome::Released
        };
    }

    fn push(&mut self, rule: &str, outcome: RuleOutcome, figure: impl Into<String>) {
        self.rules.push(RuleResult { rule: rule.into(), outcome, figure: figure.into() });
    }

    fn finding(&mut self, row: usize, column: &str, rule: &str, figure: impl Into<String>) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(CellFinding { row, column: column.into(), rule: rule.into(), figure: figure.into() });
        }
    }

    /// The rules that blocked the output, for one-line messages.
    pub fn blocking_rules(&self) -> Vec<&str> {
        self.rules.iter().filter(|rule| rule.outcome == RuleOutcome::Blocked).map(|rule| rule.rule.as_str()).collect()
    }

    /// A short rendering an operator can decide from.
    pub fn render(&self) -> String {
        let mut text = format!(
            "output \"{}\" ({:?}): {} — {} cells, {} suppressed\n",
            self.output,
            self.kind,
            self.outcome.as_str(),
            self.cells_total,
            self.cells_suppressed
        );
        for rule in &self.rules {
            text.push_str(&format!(
                "  {:<10} {:<12} {}\n",
                rule.rule,
                format!("{:?}", rule.outcome).to_lowercase(),
                rule.figure
            ));
        }
        text
    }
}

/// Reviews a governed table output under `grant`.
pub fn review_table(grant: &Grant, name: &str, table: &RecordBatch, lineage: &OutputLineage) -> ReviewReport {
    let k = grant.application.disclosure.threshold_k;
    let rows = table.num_rows();
    let measure_columns = lineage.columns.iter().filter(|column| column.aggregated).count().max(1) as u64;
    let mut report = ReviewReport {
        output: name.to_string(),
        kind: OutputKind::Table,
        outcome: Outcome::NeedsReview,
        rules: Vec::new(),
        cells_total: (rows * table.num_columns()) as u64,
        cells_suppressed: 0,
        suppressed_rows: Vec::new(),
        findings: Vec::new(),
    };

    check_contract(grant, name, table, &mut report);
    check_lineage(lineage, &mut report);

    // Threshold: every released row needs k distinct subjects of every kind it read.
    if !lineage.aggregated && !lineage.subject_kinds.is_empty() {
        report.push("threshold", RuleOutcome::Blocked, "row-level output: every row describes a single subject");
    } else if lineage.aggregated {
        let mut weakest = u64::MAX;
        for row in 0..rows {
            let contributors = lineage
                .contributors
                .iter()
                .map(|counts| counts.per_row.get(row).copied().unwrap_or(0))
                .min()
                .unwrap_or(u64::MAX);
            weakest = weakest.min(contributors);
            if contributors < k {
                report.suppressed_rows.push(row);
                report.finding(row, "*", "threshold", format!("{contributors} contributors < k={k}"));
            }
        }
        let engine_cells = lineage.suppressed_groups * measure_columns;
        let reviewer_cells = report.suppressed_rows.len() as u64 * measure_columns;
        report.cells_suppressed = engine_cells + reviewer_cells;
        let outcome = if report.cells_suppressed > 0 { RuleOutcome::Suppressed } else { RuleOutcome::Pass };
        let weakest = if weakest == u64::MAX { "no rows".to_string() } else { format!("min contributors {weakest}") };
        report.push(
            "threshold",
            outcome,
            format!(
                "k={k}; {weakest} among released rows; {} groups withheld by the engine, {} rows by review",
                lineage.suppressed_groups,
                report.suppressed_rows.len()
            ),
        );
    } else {
        report.push("threshold", RuleOutcome::Pass, "no subject data read");
    }

    scan_table_content(table, &mut report);
    report.decide(grant.application.disclosure.auto_release);
    report
}

/// Reviews an artifact (bytes the module computed): never auto-released.
pub fn review_artifact(grant: &Grant, name: &str, bytes: &[u8]) -> ReviewReport {
    let mut report = ReviewReport {
        output: name.to_string(),
        kind: OutputKind::Artifact,
        outcome: Outcome::NeedsReview,
        rules: Vec::new(),
        cells_total: 0,
        cells_suppressed: 0,
        suppressed_rows: Vec::new(),
        findings: Vec::new(),
    };
    if grant.output(name).is_none() {
        report.push(
            "contract",
            RuleOutcome::Blocked,
            format!("output \"{name}\" is not declared in grant {}", grant.id),
        );
    } else {
        report.push("contract", RuleOutcome::Pass, format!("declared in grant {}", grant.id));
    }
    let text = String::from_utf8_lossy(bytes);
    let found = find_identifiers(&text);
    if found.is_empty() {
        report.push("content", RuleOutcome::Pass, format!("{} bytes scanned, no identifiers", bytes.len()));
    } else {
        for found in found.iter().take(MAX_FINDINGS) {
            report.finding(0, "bytes", "content", format!("{} at byte {}", found.kind.as_str(), found.start));
        }
        report.push("content", RuleOutcome::Blocked, format!("{} checksum-valid identifiers found", found.len()));
    }
    report.push("artifact", RuleOutcome::NeedsReview, "module-computed outputs always need an operator's decision");
    report.decide(false);
    report
}

fn check_contract(grant: &Grant, name: &str, table: &RecordBatch, report: &mut ReviewReport) {
    let Some(spec) = grant.output(name) else {
        report.push(
            "contract",
            RuleOutcome::Blocked,
            format!("output \"{name}\" is not declared in grant {}", grant.id),
        );
        return;
    };
    let schema = table.schema();
    let actual: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
    if actual != spec.columns.iter().map(String::as_str).collect::<Vec<_>>() {
        report.push(
            "contract",
            RuleOutcome::Blocked,
            format!("columns [{}] differ from the declared [{}]", actual.join(", "), spec.columns.join(", ")),
        );
    } else if table.num_rows() as u64 > spec.max_rows {
        report.push(
            "contract",
            RuleOutcome::Blocked,
            format!("{} rows exceed the declared maximum {}", table.num_rows(), spec.max_rows),
        );
    } else {
        report.push("contract", RuleOutcome::Pass, format!("matches declared output \"{name}\""));
    }
}

fn check_lineage(lineage: &OutputLineage, report: &mut ReviewReport) {
    let mut leaks = Vec::new();
    for column in &lineage.columns {
        if column.aggregated {
            continue;
        }
        for source in &column.sources {
            if matches!(source.tag, ColumnTag::Identifier | ColumnTag::Subject) {
                leaks.push(format!(
                    "column \"{}\" derives from {} column {}.{} without aggregation",
                    column.name,
                    source.tag.as_str(),
                    source.dataset,
                    source.column
                ));
            }
        }
    }
    if leaks.is_empty() {
        report.push("lineage", RuleOutcome::Pass, "no identifier or subject column leaves unaggregated");
    } else {
        report.push("lineage", RuleOutcome::Blocked, leaks.join("; "));
    }
}

fn scan_table_content(table: &RecordBatch, report: &mut ReviewReport) {
    let schema = table.schema();
    let mut hits = 0u64;
    let mut scanned = 0u64;
    for (index, field) in schema.fields().iter().enumerate() {
        let column = table.column(index);
        let mut scan = |row: usize, text: &str, report: &mut ReviewReport| {
            scanned += 1;
            for found in find_identifiers(text) {
                hits += 1;
                report.finding(row, field.name(), "content", found.kind.as_str());
            }
        };
        match field.data_type() {
            DataType::Utf8 => {
                let strings = column.as_string::<i32>();
                for row in 0..strings.len() {
                    if strings.is_valid(row) {
                        scan(row, strings.value(row), report);
                    }
                }
            }
            DataType::LargeUtf8 => {
                let strings = column.as_string::<i64>();
                for row in 0..strings.len() {
                    if strings.is_valid(row) {
                        scan(row, strings.value(row), report);
                    }
                }
            }
            DataType::Utf8View => {
                let strings = column.as_string_view();
                for row in 0..strings.len() {
                    if strings.is_valid(row) {
                        scan(row, strings.value(row), report);
                    }
                }
            }
            _ => {}
        }
    }
    if hits == 0 {
        report.push("content", RuleOutcome::Pass, format!("{scanned} string cells scanned, no identifiers"));
    } else {
        report.push(
            "content",
            RuleOutcome::Blocked,
            format!("{hits} checksum-valid identifiers in {scanned} string cells"),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::{AccessMode, DatasetRequest, DisclosureParams, OutputSpec, ScenarioApplication};

    fn grant(auto_release: bool) -> Grant {
        let application = ScenarioApplication {
            title: "t".into(),
            purpose: "p".into(),
            developer: "acme".into(),
            datasets: vec![DatasetRequest {
                dataset: "e@v1".into(),
                columns: BTreeMap::from([("kwh".into(), AccessMode::AggregateOnly)]),
                row_filter: None,
            }],
            outputs: vec![OutputSpec {
                name: "by_district".into(),
                columns: vec!["district".into(), "kwh".into()],
                max_rows: 10,
            }],
            disclosure: DisclosureParams { threshold_k: 10, auto_release },
            validity_days: 30,
            limits: Default::default(),
        };
        Grant::freeze("g-1".into(), "s-1".into(), application, "op".into(), 0, [1; 32])
    }

    fn table(labels: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("district", DataType::Utf8, false),
            Field::new("kwh", DataType::Float64, false),
        ]));
        let values: Vec<f64> = (0..labels.len()).map(|i| i as f64 * 10.0).collect();
        RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(labels.to_vec())), Arc::new(Float64Array::from(values))],
        )
        .unwrap()
    }

    fn aggregated_lineage(counts: Vec<u64>, engine_suppressed: u64) -> OutputLineage {
        OutputLineage {
            columns: vec![
                ColumnLineage { name: "district".into(), sources: vec![], aggregated: false },
                ColumnLineage {
                    name: "kwh".into(),
                    sources: vec![SourceColumn {
                        dataset: "e@v1".into(),
                        column: "kwh".into(),
                        tag: ColumnTag::Sensitive,
                    }],
                    aggregated: true,
                },
            ],
            aggregated: true,
            subject_kinds: vec![SubjectKind::Enterprise],
            contributors: vec![SubjectCounts { kind: SubjectKind::Enterprise, per_row: counts }],
            suppressed_groups: engine_suppressed,
            suppression_rule: Some("threshold k=10".into()),
        }
    }

    #[test]
    fn rows_below_k_are_suppressed_and_counted() {
        let report = review_table(
            &grant(true),
            "by_district",
            &table(&["a", "b", "c"]),
            &aggregated_lineage(vec![12, 3, 40], 2),
        );
        assert_eq!(report.suppressed_rows, vec![1]);
        assert_eq!(report.cells_suppressed, 3, "two engine groups and one reviewed row, one measure column each");
        assert_eq!(report.outcome, Outcome::Released);
        let report = review_table(&grant(false), "by_district", &table(&["a"]), &aggregated_lineage(vec![12], 0));
        assert_eq!(report.outcome, Outcome::NeedsReview, "no auto-release in the grant");
    }

    #[test]
    fn undeclared_output_and_identifier_content_block() {
        let id = "11010519491231002X";
        assert!(crate::identifiers::is_valid_resident_id(id));
        let report = review_table(&grant(true), "dump", &table(&[id]), &aggregated_lineage(vec![50], 0));
        assert_eq!(report.outcome, Outcome::Blocked);
        assert_eq!(report.blocking_rules(), vec!["contract", "content"]);
        assert!(!format!("{report:?}").contains(id), "reports never carry cell values");
    }

    #[test]
    fn unaggregated_identifier_lineage_blocks() {
        let mut lineage = aggregated_lineage(vec![50], 0);
        lineage.columns[0].sources.push(SourceColumn {
            dataset: "p@v1".into(),
            column: "id_card".into(),
            tag: ColumnTag::Identifier,
        });
        let report = review_table(&grant(true), "by_district", &table(&["x"]), &lineage);
        assert_eq!(report.blocking_rules(), vec!["lineage"]);
    }

    #[test]
    fn row_level_subject_data_is_blocked_and_artifacts_wait() {
        let mut lineage = aggregated_lineage(vec![], 0);
        lineage.aggregated = false;
        let report = review_table(&grant(true), "by_district", &table(&["x"]), &lineage);
        assert_eq!(report.blocking_rules(), vec!["threshold"]);
        let report = review_artifact(&grant(true), "by_district", b"coefficients: 0.5, 1.25");
        assert_eq!(report.outcome, Outcome::NeedsReview);
    }
}
