//! The cell rules of a table output: threshold, dominance, secondary suppression, rounding.
//!
//! A table is seen as a grid: its aggregated columns are measures, the others are keys (the
//! GROUP BY columns). Every measure cell is released, withheld by one rule, or rounded. Groups
//! the engine withheld before the module saw the result take part as cells already withheld,
//! so that secondary suppression protects them too.

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::differencing::isolated_rows;
use super::{CellFinding, Contributions, EarlierRelease, OutputLineage, ReviewContext, ReviewReport, RuleOutcome};
use crate::{DisclosureParams, NkRule};

/// Why one cell is withheld.
#[derive(Debug, Clone)]
struct Withheld {
    rule: &'static str,
    figure: String,
}

/// The measure cells of one output, emitted rows first, then the engine's withheld groups.
struct Grid {
    /// Rows the module emitted.
    rows: usize,
    /// Table column index and name of each measure column.
    measures: Vec<(usize, String)>,
    /// Table column indexes of the key columns.
    keys: Vec<usize>,
    /// Fewest contributors of any subject kind per emitted row.
    contributors: Vec<u64>,
    /// `cells[measure][row]`: rows `0..rows` are emitted, the rest are withheld groups.
    cells: Vec<Vec<Option<Withheld>>>,
}

/// The text of a key cell as secondary suppression compares it; the runtime records the keys
/// of withheld groups with the same function.
pub fn key_text(column: &dyn Array, row: usize) -> String {
    match ArrayFormatter::try_new(column, &FormatOptions::default()) {
        Ok(formatter) => formatter.value(row).to_string(),
        Err(_) => String::new(),
    }
}

/// [`key_text`] of every row of `column`.
fn key_texts(column: &dyn Array) -> Vec<String> {
    match ArrayFormatter::try_new(column, &FormatOptions::default()) {
        Ok(formatter) => (0..column.len()).map(|row| formatter.value(row).to_string()).collect(),
        Err(_) => vec![String::new(); column.len()],
    }
}

pub(super) fn review_cells(
    params: &DisclosureParams,
    table: &RecordBatch,
    lineage: &OutputLineage,
    context: ReviewContext<'_>,
    report: &mut ReviewReport,
) {
    if !lineage.aggregated {
        if lineage.subject_kinds.is_empty() {
            report.push("threshold", RuleOutcome::Pass, "no subject data read");
        } else {
            report.push("threshold", RuleOutcome::Blocked, "row-level output: every row describes a single subject");
        }
        return;
    }
    let schema = table.schema();
    let aggregated = |name: &str| lineage.columns.iter().any(|column| column.name == name && column.aggregated);
    let (mut measures, mut keys) = (Vec::new(), Vec::new());
    for (index, field) in schema.fields().iter().enumerate() {
        if aggregated(field.name()) {
            measures.push((index, field.name().clone()));
        } else {
            keys.push(index);
        }
    }
    let rows = table.num_rows();
    let contributors: Vec<u64> = (0..rows)
        .map(|row| {
            let counts = lineage.contributors.iter().map(|counts| counts.per_row.get(row).copied().unwrap_or(0));
            counts.min().unwrap_or(u64::MAX)
        })
        .collect();
    let withheld_groups = lineage.suppressed_groups as usize;
    let mut grid =
        Grid { rows, cells: vec![vec![None; rows + withheld_groups]; measures.len()], measures, keys, contributors };
    for column in &mut grid.cells {
        for cell in column.iter_mut().skip(rows) {
            *cell = Some(Withheld { rule: "threshold", figure: "withheld by the engine".into() });
        }
    }

    threshold(params, lineage, &mut grid, report);
    dominance(params, lineage, &mut grid, report);
    differencing(params, lineage, context.earlier, &mut grid, report);
    secondary(params, table, lineage, &mut grid, report);

    let measure_count = grid.measures.len().max(1) as u64;
    report.cells_suppressed = lineage.suppressed_groups * measure_count;
    for (measure, (_, name)) in grid.cells.iter().zip(&grid.measures) {
        for (row, cell) in measure.iter().take(rows).enumerate() {
            if let Some(withheld) = cell {
                report.cells_suppressed += 1;
                report.suppressed_cells.push(CellFinding {
                    row,
                    column: name.clone(),
                    rule: withheld.rule.into(),
                    figure: withheld.figure.clone(),
                });
            }
        }
    }
    report.suppressed_cells.sort_by_key(|cell| cell.row);
    rounding(params, table, &grid, report);
}

fn threshold(params: &DisclosureParams, lineage: &OutputLineage, grid: &mut Grid, report: &mut ReviewReport) {
    let k = params.threshold_k;
    let mut weakest = u64::MAX;
    for row in 0..grid.rows {
        let contributors = grid.contributors[row];
        weakest = weakest.min(contributors);
        if contributors < k {
            report.suppressed_rows.push(row);
            for column in &mut grid.cells {
                column[row] =
                    Some(Withheld { rule: "threshold", figure: format!("{contributors} contributors < k={k}") });
            }
        }
    }
    let outcome = if report.suppressed_rows.is_empty() && lineage.suppressed_groups == 0 {
        RuleOutcome::Pass
    } else {
        RuleOutcome::Suppressed
    };
    let weakest = if weakest == u64::MAX { "no rows".to_string() } else { format!("min contributors {weakest}") };
    report.push(
        "threshold",
        outcome,
        format!(
            "k={k}; {weakest} among emitted rows; {} groups withheld by the engine, {} rows by review",
            lineage.suppressed_groups,
            report.suppressed_rows.len()
        ),
    );
}

/// Whether the p%-rule finds a magnitude cell sensitive: the contributions of everyone but the
/// two largest subjects are less than p% of the largest, so the second largest could estimate
/// the largest to within p%. Cells with nothing in them are not sensitive.
pub fn p_rule_sensitive(p_percent: u32, contributions: &Contributions) -> Option<f64> {
    let largest = contributions.largest.first().copied().unwrap_or(0.0);
    if p_percent == 0 || contributions.total <= 0.0 || largest <= 0.0 {
        return None;
    }
    let second = contributions.largest.get(1).copied().unwrap_or(0.0);
    let rest = (contributions.total - largest - second).max(0.0);
    (rest < f64::from(p_percent) / 100.0 * largest).then_some(100.0 * rest / largest)
}

/// Whether the (n,k)-rule finds a magnitude cell sensitive: the n largest subjects contribute
/// k% of the total or more (at exactly k% too, as ACRO 1.0 does). Returns their share in
/// percent when they do.
pub fn nk_rule_sensitive(rule: NkRule, contributions: &Contributions) -> Option<f64> {
    if rule.n == 0 || contributions.total <= 0.0 {
        return None;
    }
    let top: f64 = contributions.largest.iter().take(rule.n as usize).sum();
    (top >= f64::from(rule.k_percent) / 100.0 * contributions.total)
        .then_some((100.0 * top / contributions.total).min(100.0))
}

/// Why a magnitude cell is dominated, or None when it is safe.
fn dominated(params: &DisclosureParams, contributions: &Contributions) -> Option<String> {
    if let Some(rest) = p_rule_sensitive(params.p_percent, contributions) {
        return Some(format!(
            "p%-rule: all but the two largest contribute {rest:.1}% of the largest < p={}%",
            params.p_percent
        ));
    }
    nk_rule_sensitive(params.nk_rule, contributions).map(|share| {
        let (n, k) = (params.nk_rule.n, params.nk_rule.k_percent);
        format!("({n},{k})-rule: the {n} largest contribute {share:.1}% of the total")
    })
}

fn dominance(params: &DisclosureParams, lineage: &OutputLineage, grid: &mut Grid, report: &mut ReviewReport) {
    if params.p_percent == 0 && params.nk_rule.n == 0 {
        report.push("dominance", RuleOutcome::Pass, "off in this grant");
        return;
    }
    let rules = format!("p={}%, ({},{}%)", params.p_percent, params.nk_rule.n, params.nk_rule.k_percent);
    let (mut judged, mut dominated_cells) = (0u64, 0u64);
    for magnitude in &lineage.magnitudes {
        for column in &magnitude.columns {
            let Some(measure) = grid.measures.iter().position(|(_, name)| name == column) else { continue };
            for (row, contributions) in magnitude.per_row.iter().enumerate().take(grid.rows) {
                if grid.cells[measure][row].is_some() {
                    continue;
                }
                judged += 1;
                if let Some(figure) = dominated(params, contributions) {
                    dominated_cells += 1;
                    grid.cells[measure][row] = Some(Withheld { rule: "dominance", figure });
                }
            }
        }
    }
    if lineage.magnitudes.is_empty() {
        report.push("dominance", RuleOutcome::Pass, format!("{rules}; no magnitude cells (counts only)"));
    } else if dominated_cells == 0 {
        report.push("dominance", RuleOutcome::Pass, format!("{rules}; none of {judged} magnitude cells dominated"));
    } else {
        report.push(
            "dominance",
            RuleOutcome::Suppressed,
            format!("{rules}; {dominated_cells} of {judged} magnitude cells dominated by their largest subjects"),
        );
    }
}

fn differencing(
    params: &DisclosureParams,
    lineage: &OutputLineage,
    earlier: &[EarlierRelease],
    grid: &mut Grid,
    report: &mut ReviewReport,
) {
    if !params.differencing {
        report.push("differencing", RuleOutcome::Pass, "off in this grant");
        return;
    }
    if lineage.sketches.is_empty() {
        report.push(
            "differencing",
            RuleOutcome::NeedsReview,
            "no subject sketches came with the output; an operator must compare it with earlier releases",
        );
        return;
    }
    let withheld = report.dropped_rows(grid.rows);
    let isolated = isolated_rows(params.threshold_k, lineage, earlier, &withheld);
    let earlier_rows: usize =
        earlier.iter().map(|release| release.sketches.first().map_or(0, |sketches| sketches.per_row.len())).sum();
    let compared = format!(
        "k={}; {} rows compared with each other and with {earlier_rows} rows of {} earlier releases",
        params.threshold_k,
        grid.rows,
        earlier.len()
    );
    if isolated.is_empty() {
        report.push(
            "differencing",
            RuleOutcome::Pass,
            format!("{compared}; no difference isolates fewer than k subjects"),
        );
        return;
    }
    for found in &isolated {
        report.suppressed_rows.push(found.row);
        for column in &mut grid.cells {
            column[found.row] = Some(Withheld { rule: "differencing", figure: found.figure.clone() });
        }
    }
    report.suppressed_rows.sort_unstable();
    report.push(
        "differencing",
        RuleOutcome::Suppressed,
        format!(
            "{compared}; {} rows withheld: their difference from another group isolates fewer than k subjects",
            isolated.len()
        ),
    );
}

/// Withholds more cells until no line of the table (cells that differ in one key only) holds
/// exactly one withheld cell: its value would follow from the line's total, which may be
/// published in another output, another release, or an official statistic.
fn secondary(
    params: &DisclosureParams,
    table: &RecordBatch,
    lineage: &OutputLineage,
    grid: &mut Grid,
    report: &mut ReviewReport,
) {
    if !params.secondary_suppression {
        report.push("secondary", RuleOutcome::Pass, "off in this grant");
        return;
    }
    let any_withheld = grid.cells.iter().any(|column| column.iter().any(Option::is_some));
    if !any_withheld || grid.keys.is_empty() {
        report.push("secondary", RuleOutcome::Pass, "no withheld cell to protect from totals");
        return;
    }
    let lines = lines_by_dimension(table, lineage, grid);
    let mut added = 0u64;
    for measure in 0..grid.measures.len() {
        loop {
            let mut changed = false;
            for (dimension, lines) in lines.iter().enumerate() {
                for members in lines {
                    let mut withheld = members.iter().copied().filter(|&row| grid.cells[measure][row].is_some());
                    let (Some(protected), None) = (withheld.next(), withheld.next()) else { continue };
                    let partner = members
                        .iter()
                        .copied()
                        .filter(|&row| row < grid.rows && grid.cells[measure][row].is_none())
                        .min_by_key(|&row| (grid.contributors[row], row));
                    let Some(partner) = partner else { continue };
                    let whom = if protected < grid.rows {
                        format!("row {protected}")
                    } else {
                        "a group the engine withheld".to_string()
                    };
                    let over = table.schema().field(grid.keys[dimension]).name().clone();
                    grid.cells[measure][partner] = Some(Withheld {
                        rule: "secondary",
                        figure: format!("protects {whom} from the total over {over}"),
                    });
                    added += 1;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
    if added == 0 {
        report.push("secondary", RuleOutcome::Pass, "every withheld cell shares its rows and columns with another");
    } else {
        report.push(
            "secondary",
            RuleOutcome::Suppressed,
            format!("{added} more cells withheld so that no withheld cell follows from a row or column total"),
        );
    }
}

/// For each key column, the lines of the table along it: groups of rows (emitted rows, then
/// the engine's withheld groups) that agree on every other key, those with two members or more.
fn lines_by_dimension(table: &RecordBatch, lineage: &OutputLineage, grid: &Grid) -> Vec<Vec<Vec<usize>>> {
    let columns: Vec<Vec<String>> = grid.keys.iter().map(|&index| key_texts(table.column(index).as_ref())).collect();
    let withheld_groups = lineage.suppressed_groups as usize;
    // A withheld group whose keys were not recorded shares a line with every row.
    let recorded = |group: usize| lineage.withheld_keys.get(group).filter(|keys| keys.len() == grid.keys.len());
    let key = |row: usize, position: usize| -> &str {
        if row < grid.rows {
            &columns[position][row]
        } else {
            recorded(row - grid.rows).map_or("", |keys| &keys[position])
        }
    };
    let everywhere: Vec<usize> =
        (grid.rows..grid.rows + withheld_groups).filter(|&row| recorded(row - grid.rows).is_none()).collect();
    (0..grid.keys.len())
        .map(|dimension| {
            let mut lines: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
            for row in (0..grid.rows + withheld_groups).filter(|row| !everywhere.contains(row)) {
                let line =
                    (0..grid.keys.len()).filter(|&position| position != dimension).map(|position| key(row, position));
                lines.entry(line.collect()).or_default().push(row);
            }
            if lines.is_empty() && !everywhere.is_empty() {
                lines.insert(Vec::new(), Vec::new());
            }
            lines
                .into_values()
                .map(|mut members| {
                    members.extend(&everywhere);
                    members
                })
                .filter(|members| members.len() >= 2)
                .collect()
        })
        .collect()
}

fn rounding(params: &DisclosureParams, table: &RecordBatch, grid: &Grid, report: &mut ReviewReport) {
    let base = params.rounding_base;
    if base == 0 {
        return;
    }
    let mut rounded = 0u64;
    for (measure, (index, name)) in grid.measures.iter().enumerate() {
        if !table.column(*index).data_type().is_numeric() || matches!(table.column(*index).data_type(), DataType::Null)
        {
            continue;
        }
        report.rounded_columns.push(name.clone());
        rounded += grid.cells[measure].iter().take(grid.rows).filter(|cell| cell.is_none()).count() as u64;
    }
    report.rounding_base = base;
    report.cells_rounded = rounded;
    report.push(
        "rounding",
        RuleOutcome::Rounded,
        format!("{rounded} released cells of [{}] rounded to a multiple of {base}", report.rounded_columns.join(", ")),
    );
}
