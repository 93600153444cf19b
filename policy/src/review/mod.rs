//! The egress reviewer (出域审核): decides, cell by cell, what of an output may leave.
//!
//! Input is the output itself and its lineage, which the runtime computed and the module could
//! not touch: which source columns each output column derives from, whether through an
//! aggregate, how many distinct subjects contributed to each row, and how much the largest of
//! them put into each magnitude cell. Output is a report that names every rule, its figure and
//! its outcome, and every cell to withhold; [`release_table`] applies it to the table.
//!
//! The rules, in the order they run (docs/policy-basis.md, egress review):
//! `contract` → `lineage` → `threshold` → `dominance` → `differencing` → `consistency` →
//! `secondary` (with the interval audit) →
//! `privacy` → `rounding` → `content` (→ `artifact` for module-computed bytes). The JSON report is documented in
//! `docs/review-report.md`.

mod audit;
mod cells;
mod content;
mod differencing;
mod lineage;
mod privacy;
mod protection;
mod release;
mod released;
mod secondary;
mod verification;

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

pub use self::cells::{key_text, nk_rule_sensitive, p_rule_sensitive};
pub use self::differencing::{released_sketches, withheld_sketches};
pub use self::lineage::{ValueClass, aggregate_function_class, is_magnitude_function};
pub use self::release::{release_noised_table, release_table};
pub use self::released::{ReleasedCell, ReleasedMeasure, ReleasedTable, measure_identity};
pub use self::verification::review_verification;
use crate::identifiers::IdentifierSet;
use crate::sketch::SubjectSketch;
use crate::{ColumnTag, Grant, OutputSpec, SubjectKind};

/// How many content findings a report lists; the counts are always complete.
const MAX_FINDINGS: usize = 50;

/// Whether an output is a governed query result or something the module computed itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A query result produced and counted by the host.
    Table,
    /// Bytes the module computed (a model, a chart); always waits for an operator.
    Artifact,
    /// Answers to a module's claims (数据核验), written by the host: one row per claim.
    Verification,
}

impl OutputKind {
    /// Name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::Artifact => "artifact",
            Self::Verification => "verification",
        }
    }
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

/// Where one output column came from, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnLineage {
    /// Output column name.
    pub name: String,
    /// Source columns whose values flow into it.
    pub sources: Vec<SourceColumn>,
    /// True when the column is a measure the cell rules judge: an aggregate or a spread
    /// ([`ValueClass::is_aggregate`]). The host writes it from `class`.
    pub aggregated: bool,
    /// What the column is, classified by the host from the plan; the `lineage` rule judges it.
    /// Lineage stored before classes existed reads as `unknown`, blocked when the column reads
    /// data (see [`ValueClass`]).
    #[serde(default)]
    pub class: ValueClass,
    /// The aggregate function or expression, as the module's query planned it, that gave the
    /// column its class (`max(p.income)`), so that a refusal can name it; empty for keys.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expression: String,
    /// For an aggregated column, what it aggregates: the aggregate and the query input below
    /// its GROUP BY, so that cells of different outputs of one measure relate additively (a
    /// coarser output's cell is the sum of the finer one's), which the interval audit relies on
    /// across a grant's releases; None: the reviewer falls back to the column's name and sorted
    /// sources. Written by the host as normalised text — sources as `dataset@vN.column`, no aliases,
    /// the input's scans sorted, its filter and join conditions as a sorted set — so that it
    /// depends neither on the SQL's spelling nor on GROUP BY, HAVING, ORDER BY or LIMIT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<String>,
}

impl ColumnLineage {
    /// A column of the given class, with no expression or measure recorded: for tables whose
    /// lineage is stated rather than computed by the host (computed tables, tests).
    pub fn new(name: impl Into<String>, sources: Vec<SourceColumn>, class: ValueClass) -> Self {
        Self {
            name: name.into(),
            sources,
            aggregated: class.is_aggregate(),
            class,
            expression: String::new(),
            measure: None,
        }
    }
}

/// Distinct contributing subjects of one kind, per output row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectCounts {
    /// Which kind of subject was counted.
    pub kind: SubjectKind,
    /// One count per output row.
    pub per_row: Vec<u64>,
}

/// How much the largest subjects put into one magnitude cell (a SUM or AVG, or the sum a
/// spread such as a standard deviation comes from), host-computed.
///
/// Contributions are absolute values summed per subject. `largest` holds the largest
/// per-subject totals, biggest first: exact for groups of up to 16 subjects; for larger groups,
/// sums of subjects that share a bucket, so that the sum of the i largest entries is never
/// below the sum of the i largest true contributions. Dominance rules need only the largest
/// and such prefix sums, so judged on them they err towards suppression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contributions {
    /// Sum of |value| over every row of the group.
    pub total: f64,
    /// The largest contributions, biggest first (at most [`crate::MAX_DOMINANCE_N`]).
    pub largest: Vec<f64>,
    /// True when the group had too many subjects to track each: `largest` are bucket sums
    /// (upper bounds), not single subjects' contributions.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bucketed: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The subjects behind each output row, as sketches (see [`crate::sketch`]), for the
/// differencing rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectSketches {
    /// Which kind of subject was sketched.
    pub kind: SubjectKind,
    /// One sketch per output row.
    pub per_row: Vec<SubjectSketch>,
}

/// The largest contributions behind one magnitude aggregate, per output row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MagnitudeLineage {
    /// The aggregate as planned, e.g. `sum(e.kwh)`.
    pub measure: String,
    /// Output columns computed from it (usually one).
    pub columns: Vec<String>,
    /// Which kind of subject the contributions are per.
    pub kind: SubjectKind,
    /// One entry per output row.
    pub per_row: Vec<Contributions>,
}

/// What the host knows about an output that the module cannot forge.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutputLineage {
    /// One entry per output column.
    pub columns: Vec<ColumnLineage>,
    /// The result is a governed aggregate (one row per group).
    pub aggregated: bool,
    /// Subject kinds of the datasets the result read.
    pub subject_kinds: Vec<SubjectKind>,
    /// Host-counted contributors per row, one entry per subject kind.
    pub contributors: Vec<SubjectCounts>,
    /// Largest contributions per magnitude aggregate and subject kind, per row.
    #[serde(default)]
    pub magnitudes: Vec<MagnitudeLineage>,
    /// Groups the engine withheld before the module saw the result.
    pub suppressed_groups: u64,
    /// The rule that withheld them, e.g. `threshold k=10`.
    pub suppression_rule: Option<String>,
    /// The key values (the output's columns that are not aggregated, in column order) of each
    /// group the engine withheld, so that secondary suppression can protect them too. Held in
    /// the domain only; never shown to the module or written into a report.
    #[serde(default)]
    pub withheld_keys: Vec<Vec<String>>,
    /// The values of each group the engine withheld, one per aggregated column in output
    /// order (None where not a number), so that the interval audit knows the line totals they
    /// take part in and the protection they need. Held in the domain only, like their keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld_values: Vec<Vec<Option<f64>>>,
    /// The fewest distinct contributors of any subject kind of each group the engine
    /// withheld (capped at k): a total over such groups that adds up to fewer than k is below
    /// the threshold itself, so the audit does not credit an attacker with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld_contributors: Vec<u64>,
    /// The subjects of each row, per subject kind, when the grant checks differencing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sketches: Vec<SubjectSketches>,
    /// For a verification output: what was claimed about whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationLineage>,
}

/// The host's record of a verification output's claims, for the rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationLineage {
    /// `name@vN` the claims were checked against.
    pub dataset: String,
    /// Per output row, the claimed key as a grant-keyed token (never the key itself).
    pub claim_keys: Vec<String>,
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
    /// Released values were rounded.
    Rounded,
    /// Released values carry differential-privacy noise.
    Noised,
    /// The output may not leave.
    Blocked,
    /// A person has to look.
    NeedsReview,
}

impl RuleOutcome {
    /// Name as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Suppressed => "suppressed",
            Self::Rounded => "rounded",
            Self::Noised => "noised",
            Self::Blocked => "blocked",
            Self::NeedsReview => "needs_review",
        }
    }
}

/// A rule of the egress review, named as reports, audit entries and the policy rule files
/// spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewRule {
    /// The output is one the grant declares, with its declared columns.
    Contract,
    /// What each column was computed from: no identifier or subject data leaves unaggregated.
    Lineage,
    /// Groups of fewer than k subjects are withheld.
    Threshold,
    /// Cells dominated by their largest contributors (p% and (n,k) rules) are withheld.
    Dominance,
    /// Groups differing from another release by fewer than k subjects are withheld.
    Differencing,
    /// No cell an earlier release of the grant withheld is released now.
    Consistency,
    /// Complements that keep every withheld cell's interval wide enough (secondary suppression).
    Secondary,
    /// Differential privacy: the grant's noise and its budget.
    Privacy,
    /// Rounding of released values to the grant's base.
    Rounding,
    /// No identifier in any cell or byte.
    Content,
    /// An artifact waits for an operator.
    Artifact,
    /// A verification answer's limits.
    Verification,
}

impl ReviewRule {
    /// The rule's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contract => "contract",
            Self::Lineage => "lineage",
            Self::Threshold => "threshold",
            Self::Dominance => "dominance",
            Self::Differencing => "differencing",
            Self::Consistency => "consistency",
            Self::Secondary => "secondary",
            Self::Privacy => "privacy",
            Self::Rounding => "rounding",
            Self::Content => "content",
            Self::Artifact => "artifact",
            Self::Verification => "verification",
        }
    }
}

impl std::fmt::Display for ReviewRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ReviewRule {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ReviewRule {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One rule's finding on one output: the rule, its figure and what it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleResult {
    /// The rule.
    pub rule: ReviewRule,
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
    /// Column name (`*` for a whole row).
    pub column: String,
    /// The rule.
    pub rule: ReviewRule,
    /// Why, without the cell's value.
    pub figure: String,
}

/// The reviewer's report on one output, what an operator decides from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Cells withheld: by the engine (withheld groups × aggregate columns) and by review.
    pub cells_suppressed: u64,
    /// Released cells whose values were rounded.
    #[serde(default)]
    pub cells_rounded: u64,
    /// Rows of the emitted output withheld whole (below the threshold).
    pub suppressed_rows: Vec<usize>,
    /// Every other cell withheld (set to null in the release), with its rule and figure.
    #[serde(default)]
    pub suppressed_cells: Vec<CellFinding>,
    /// Rounding applied on release: the base and the columns (0 and none: no rounding).
    #[serde(default)]
    pub rounding_base: u64,
    /// The columns rounded on release.
    #[serde(default)]
    pub rounded_columns: Vec<String>,
    /// Content findings (the first [`MAX_FINDINGS`]), values never included.
    pub findings: Vec<CellFinding>,
    /// Noise the release adds, per column (none without differential privacy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noise: Vec<NoisedColumn>,
    /// ε this release spends from the grant's budget (0 without differential privacy).
    #[serde(default, skip_serializing_if = "is_zero_epsilon")]
    pub epsilon_charged: f64,
    /// The interval audit of every withheld cell that needs protection of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<CellAudit>,
    /// What secondary suppression cost, per measure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppression_cost: Vec<SuppressionCost>,
    /// The exact protection each withheld cell needed, for [`ReleasedTable::from_review`];
    /// kept in the domain, never serialised (with the interval's ends, public anyway, it
    /// would give values away).
    #[serde(skip)]
    pub protection: Vec<ProtectionRecord>,
}

/// The audit of one withheld cell: how far the interval an attacker can compute for it
/// reaches on each side, as a multiple of the protection level it needed.
///
/// Multiples rather than the interval's ends or the level itself: the ends follow from
/// released figures and the totals the attacker is credited with, so together with a
/// distance or a level they would give the cell's value away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellAudit {
    /// Row of the output as emitted; None for a group the engine withheld (its keys stay in
    /// the domain).
    pub row: Option<usize>,
    /// Column name.
    pub column: String,
    /// The rule that needed the protection: a primary rule (`threshold`, `dominance`,
    /// `differencing`) or `consistency`.
    pub rule: ReviewRule,
    /// The interval reaches the level on both sides.
    pub protected: bool,
    /// Distance below the value ÷ the level needed below, floored to a tenth, at most 10.
    /// Held in the domain only, never serialised: with an end of the interval an attacker
    /// computes from released cells, the multiple gives the value back (a count's level is
    /// 1, so its multiple below is the count).
    #[serde(skip)]
    pub below: f64,
    /// Distance above the value ÷ the level needed above, as `below`; never serialised.
    #[serde(skip)]
    pub above: f64,
}

/// The information secondary suppression cost on one measure column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionCost {
    /// Column name.
    pub column: String,
    /// Cells withheld by primary rules (the engine's groups included).
    pub primary_cells: u64,
    /// Cells withheld beyond them, as complements.
    pub secondary_cells: u64,
    /// The complements' share of the column's emitted total, as a band (`under 1%`, `1–2%`,
    /// …): an exact sum would be one more equation for an attacker.
    pub secondary_share: String,
}

/// The protection one withheld cell needed (domain only).
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectionRecord {
    /// Row of the grid: emitted rows, then the engine's withheld groups.
    pub row: usize,
    /// Column name.
    pub column: String,
    /// The rule that withheld it.
    pub rule: ReviewRule,
    /// Its protection level (None: a complement).
    pub(crate) level: Option<protection::Level>,
}

fn is_zero_epsilon(value: &f64) -> bool {
    *value == 0.0
}

/// The noise one column of a release carries: discrete Laplace steps on a lattice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoisedColumn {
    /// Output column.
    pub column: String,
    /// Declared L1 sensitivity of the column.
    pub sensitivity: f64,
    /// ε spent on it.
    pub epsilon: f64,
    /// Laplace scale b = Δ/ε, in the column's units.
    pub scale: f64,
    /// The lattice the value is rounded to before noise (1 for integer columns).
    pub step: f64,
}

impl ReviewReport {
    fn new(output: &str, kind: OutputKind) -> Self {
        Self {
            output: output.to_string(),
            kind,
            outcome: Outcome::NeedsReview,
            rules: Vec::new(),
            cells_total: 0,
            cells_suppressed: 0,
            cells_rounded: 0,
            suppressed_rows: Vec::new(),
            suppressed_cells: Vec::new(),
            rounding_base: 0,
            rounded_columns: Vec::new(),
            findings: Vec::new(),
            noise: Vec::new(),
            epsilon_charged: 0.0,
            audit: Vec::new(),
            suppression_cost: Vec::new(),
            protection: Vec::new(),
        }
    }

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

    fn push(&mut self, rule: ReviewRule, outcome: RuleOutcome, figure: impl Into<String>) {
        self.rules.push(RuleResult { rule, outcome, figure: figure.into() });
    }

    fn finding(&mut self, row: usize, column: &str, rule: ReviewRule, figure: impl Into<String>) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(CellFinding { row, column: column.into(), rule, figure: figure.into() });
        }
    }

    /// For each of the output's first `rows` rows, whether the review drops it whole.
    pub fn dropped_rows(&self, rows: usize) -> Vec<bool> {
        let mut dropped = vec![false; rows];
        for &row in &self.suppressed_rows {
            if let Some(slot) = dropped.get_mut(row) {
                *slot = true;
            }
        }
        dropped
    }

    /// The rules that blocked the output, for one-line messages.
    pub fn blocking_rules(&self) -> Vec<&str> {
        self.rules.iter().filter(|rule| rule.outcome == RuleOutcome::Blocked).map(|rule| rule.rule.as_str()).collect()
    }

    /// Cells of the groups the engine withheld before the module saw the result: the part of
    /// `cells_suppressed` that `suppressed_cells` does not list.
    pub fn engine_suppressed_cells(&self) -> u64 {
        self.cells_suppressed.saturating_sub(self.suppressed_cells.len() as u64)
    }

    /// The result of one rule, if it ran.
    pub fn rule(&self, name: &str) -> Option<&RuleResult> {
        self.rules.iter().find(|rule| rule.rule == name)
    }

    /// A short rendering an operator can decide from: the verdict, one line per rule, and
    /// the first withheld cells.
    pub fn render(&self) -> String {
        let kind = self.kind.as_str();
        let mut text = format!(
            "output \"{}\" ({kind}): {} — {} cells, {} suppressed, {} rounded\n",
            self.output,
            self.outcome.as_str(),
            self.cells_total,
            self.cells_suppressed,
            self.cells_rounded
        );
        for rule in &self.rules {
            text.push_str(&format!("  {:<12} {:<12} {}\n", rule.rule, rule.outcome.as_str(), rule.figure));
        }
        let engine = self.engine_suppressed_cells();
        if engine > 0 {
            text.push_str(&format!("    {engine} cells of groups the engine withheld before the module saw them\n"));
        }
        const SHOWN: usize = 10;
        let cells = self.suppressed_cells.iter().chain(&self.findings);
        for cell in cells.clone().take(SHOWN) {
            text.push_str(&format!("    row {:<5} {:<16} {:<12} {}\n", cell.row, cell.column, cell.rule, cell.figure));
        }
        let more = cells.count().saturating_sub(SHOWN);
        if more > 0 {
            text.push_str(&format!("    … {more} more cells in the JSON report\n"));
        }
        text
    }
}

/// What the domain knows beyond the output and its grant, for the rules that need it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReviewContext<'a> {
    /// Exact values of the grant's identifier columns; None skips the membership scan.
    pub identifiers: Option<&'a IdentifierSet>,
    /// The rows released (or waiting for an operator) earlier under the same grant, for the
    /// differencing rule.
    pub earlier: &'a [EarlierRelease],
    /// ε the grant has spent before this review.
    pub epsilon_spent: f64,
    /// The key tokens of every claim answered under the grant in the last 24 hours (one per
    /// claim, repeats kept), for the verification rule's limits.
    pub earlier_claims: &'a [String],
    /// The tables released (or waiting for an operator) earlier under the same grant, for
    /// the consistency rule and the interval audit: a later total, margin or complement must
    /// not complete an earlier equation. Build each with [`ReleasedTable::from_review`].
    pub released: &'a [ReleasedTable],
}

/// The subjects of the rows of one earlier release of the same grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierRelease {
    /// How a report names it, e.g. `egress e-3 ("by_district")`.
    pub label: String,
    /// Its released rows' sketches, per subject kind.
    pub sketches: Vec<SubjectSketches>,
    /// The sketches of its rows with a cell withheld, per subject kind: a later row of (nearly)
    /// the same subjects would give such a cell back whatever measure or condition it was
    /// asked with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<SubjectSketches>,
    /// The sketches of its rows whose withheld cells are all complements, per subject kind: a
    /// later row of (nearly) the same subjects is withheld too, as a complement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub complements: Vec<SubjectSketches>,
}

/// Reviews a governed table output under `grant`.
pub fn review_table(
    grant: &Grant,
    name: &str,
    table: &RecordBatch,
    lineage: &OutputLineage,
    context: ReviewContext<'_>,
) -> ReviewReport {
    let mut report = ReviewReport::new(name, OutputKind::Table);
    report.cells_total = (table.num_rows() * table.num_columns()) as u64;
    check_contract(grant, name, table, &mut report);
    lineage::check_lineage(lineage, &table.schema(), &mut report);
    cells::review_cells(&grant.application.disclosure, table, lineage, context, &mut report);
    privacy::review_privacy(&grant.application.disclosure, table, lineage, context.epsilon_spent, &mut report);
    content::scan_table(table, context.identifiers, &mut report);
    report.decide(grant.application.disclosure.auto_release);
    report
}

/// Reviews an artifact (bytes the module computed): never auto-released.
pub fn review_artifact(grant: &Grant, name: &str, bytes: &[u8], context: ReviewContext<'_>) -> ReviewReport {
    let mut report = ReviewReport::new(name, OutputKind::Artifact);
    match grant.output(name) {
        None => report.push(
            ReviewRule::Contract,
            RuleOutcome::Blocked,
            format!("output \"{name}\" is not declared in grant {}", grant.id),
        ),
        Some(_) => report.push(ReviewRule::Contract, RuleOutcome::Pass, format!("declared in grant {}", grant.id)),
    }
    content::scan_bytes(bytes, context.identifiers, &mut report);
    report.push(
        ReviewRule::Artifact,
        RuleOutcome::NeedsReview,
        "module-computed outputs always need an operator's decision",
    );
    report.decide(false);
    report
}

/// What a sample-mode table passes before its developer sees it: the contract (a declared
/// output with its declared columns and row cap) and the content scan. Sample outputs are
/// not reviewed otherwise — the sample is what protects — but a module that prints a
/// checksum-valid identifier, or an undeclared output, is stopped here too.
pub fn review_sample_table(grant: &Grant, name: &str, table: &RecordBatch) -> ReviewReport {
    let mut report = ReviewReport::new(name, OutputKind::Table);
    report.cells_total = (table.num_rows() * table.num_columns()) as u64;
    check_contract(grant, name, table, &mut report);
    content::scan_table(table, None, &mut report);
    report.decide(true);
    report
}

/// [`review_sample_table`] for an artifact a sample-mode job emitted: the contract and the
/// content scan of its bytes.
pub fn review_sample_artifact(grant: &Grant, name: &str, bytes: &[u8]) -> ReviewReport {
    let mut report = ReviewReport::new(name, OutputKind::Artifact);
    if grant.output(name).is_none() {
        report.push(
            ReviewRule::Contract,
            RuleOutcome::Blocked,
            format!("output \"{name}\" is not declared in grant {}", grant.id),
        );
    } else {
        report.push(ReviewRule::Contract, RuleOutcome::Pass, format!("declared in grant {}", grant.id));
    }
    content::scan_bytes(bytes, None, &mut report);
    report.decide(true);
    report
}

/// Checks the output against its declaration; returns the declaration when it is
/// declared as the kind the report is about.
fn check_contract<'g>(
    grant: &'g Grant,
    name: &str,
    table: &RecordBatch,
    report: &mut ReviewReport,
) -> Option<&'g OutputSpec> {
    let Some(spec) = grant.output(name) else {
        report.push(
            ReviewRule::Contract,
            RuleOutcome::Blocked,
            format!("output \"{name}\" is not declared in grant {}", grant.id),
        );
        return None;
    };
    let verification = report.kind == OutputKind::Verification;
    if spec.verification.is_some() != verification {
        let declared = if spec.verification.is_some() { "a verification output" } else { "not a verification output" };
        report.push(
            ReviewRule::Contract,
            RuleOutcome::Blocked,
            format!("output \"{name}\" is {declared} in grant {}; this one is a {}", grant.id, report.kind.as_str()),
        );
        return None;
    }
    let schema = table.schema();
    let actual: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
    if actual != spec.columns.iter().map(String::as_str).collect::<Vec<_>>() {
        report.push(
            ReviewRule::Contract,
            RuleOutcome::Blocked,
            format!("columns [{}] differ from the declared [{}]", actual.join(", "), spec.columns.join(", ")),
        );
    } else if table.num_rows() as u64 > spec.max_rows {
        report.push(
            ReviewRule::Contract,
            RuleOutcome::Blocked,
            format!("{} rows exceed the declared maximum {}", table.num_rows(), spec.max_rows),
        );
    } else {
        report.push(ReviewRule::Contract, RuleOutcome::Pass, format!("matches declared output \"{name}\""));
        return Some(spec);
    }
    None
}

#[cfg(test)]
mod tests;
