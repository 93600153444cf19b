//! The cell rules of a table output: threshold, dominance, differencing, consistency,
//! secondary suppression with its interval audit, and rounding.
//!
//! A table is seen as a grid: its aggregated columns are measures, the others are keys (the
//! GROUP BY columns; a NULL key of a ROLLUP, CUBE or GROUPING SETS row means "all", so
//! that row is a margin). Every measure cell is released, withheld by one rule, or rounded.
//! Groups the engine withheld before the module saw the result take part as cells already
//! withheld, so that secondary suppression protects them too.

use super::ReviewRule;
use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::audit::{Model, RowCell, State, TableCells};
use super::differencing::isolated_rows;
use super::protection::{Level, dominance_level, safety_share, small_group_level, unknown_group_level};
use super::released::{ReleasedCell, ReleasedMeasure, ReleasedTable, measure_identity};
use super::secondary::{FALLBACK_ROUNDS, Space, short};
use super::{
    CellAudit, CellFinding, Contributions, EarlierRelease, OutputLineage, ProtectionRecord, ReviewContext,
    ReviewReport, RuleOutcome, SuppressionCost,
};
use crate::{DisclosureParams, NkRule};

/// Why one cell is withheld.
#[derive(Debug, Clone)]
struct Withheld {
    rule: ReviewRule,
    figure: String,
    /// A primary (it needs protection of its own), not a complement.
    primary: bool,
    /// The protection it needs, when known before the audit (groups the engine withheld
    /// get theirs from their lines' values).
    level: Option<Level>,
}

impl Withheld {
    fn primary(rule: ReviewRule, figure: String, level: Option<Level>) -> Self {
        Withheld { rule, figure, primary: true, level }
    }
}

/// The measure cells of one output, emitted rows first, then the engine's withheld groups.
struct Grid {
    /// Rows the module emitted.
    rows: usize,
    /// Table column index and name of each measure column.
    measures: Vec<(usize, String)>,
    /// Fewest contributors of any subject kind per emitted row.
    contributors: Vec<u64>,
    /// Fewest contributors of each group the engine withheld, when the runtime recorded it.
    group_contributors: Vec<Option<u64>>,
    /// `cells[measure][row]`: rows `0..rows` are emitted, the rest are withheld groups.
    cells: Vec<Vec<Option<Withheld>>>,
    /// Key texts per row (None: NULL, "all"); None for a withheld group whose keys the
    /// engine did not record.
    row_keys: Vec<Option<Vec<Option<String>>>>,
    /// `values[measure][row]`, None where unknown (the engine's groups) or not a number.
    values: Vec<Vec<Option<f64>>>,
    /// Per measure: a count (no magnitude lineage), whose cells are whole numbers.
    counts: Vec<bool>,
    /// Per measure: its identity across the grant's releases.
    identities: Vec<String>,
    /// Per measure: numeric, so additive relations can hold between its cells.
    numeric: Vec<bool>,
    /// Names of the key columns.
    key_names: Vec<String>,
}

/// The text of a key cell as secondary suppression compares it; the runtime records the keys
/// of withheld groups with the same function.
pub fn key_text(column: &dyn Array, row: usize) -> String {
    match ArrayFormatter::try_new(column, &FormatOptions::default()) {
        Ok(formatter) => formatter.value(row).to_string(),
        Err(_) => String::new(),
    }
}

/// [`key_text`] of every row of `column`, None for NULL.
pub(super) fn key_texts_of(column: &dyn Array) -> Vec<Option<String>> {
    match ArrayFormatter::try_new(column, &FormatOptions::default()) {
        Ok(formatter) => {
            (0..column.len()).map(|row| (!column.is_null(row)).then(|| formatter.value(row).to_string())).collect()
        }
        Err(_) => vec![Some(String::new()); column.len()],
    }
}

/// The values of a measure column as numbers (None for NULL or a column that is not
/// numeric).
pub(super) fn measure_values_of(column: &dyn Array) -> Option<Vec<Option<f64>>> {
    if !column.data_type().is_numeric() {
        return None;
    }
    let cast = cast(column, &DataType::Float64).ok()?;
    let values = cast.as_any().downcast_ref::<arrow::array::Float64Array>()?;
    Some((0..values.len()).map(|row| values.is_valid(row).then(|| values.value(row))).collect())
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
            report.push(ReviewRule::Threshold, RuleOutcome::Pass, "no subject data read");
        } else {
            report.push(
                ReviewRule::Threshold,
                RuleOutcome::Blocked,
                "row-level output: every row describes a single subject",
            );
        }
        return;
    }
    let mut grid = build_grid(table, lineage);

    threshold(params, lineage, &mut grid, report);
    dominance(params, lineage, &mut grid, report);
    differencing(params, lineage, context.earlier, &mut grid, report);
    consistency(context.released, &mut grid, report);
    secondary(params, context.released, &mut grid, report);
    if params.secondary_suppression {
        withhold_rows_together(&mut grid);
    }

    let measure_count = grid.measures.len().max(1) as u64;
    report.cells_suppressed = lineage.suppressed_groups * measure_count;
    for (measure, (_, name)) in grid.cells.iter().zip(&grid.measures) {
        for (row, cell) in measure.iter().enumerate() {
            let Some(withheld) = cell else { continue };
            report.protection.push(ProtectionRecord {
                row,
                column: name.clone(),
                rule: withheld.rule,
                level: withheld.level,
            });
            if row < grid.rows {
                report.cells_suppressed += 1;
                report.suppressed_cells.push(CellFinding {
                    row,
                    column: name.clone(),
                    rule: withheld.rule,
                    figure: withheld.figure.clone(),
                });
            }
        }
    }
    report.suppressed_cells.sort_by_key(|cell| cell.row);
    rounding(params, table, &grid, report);
}

fn build_grid(table: &RecordBatch, lineage: &OutputLineage) -> Grid {
    let schema = table.schema();
    let column_lineage = |name: &str| lineage.columns.iter().find(|column| column.name == name);
    let (mut measures, mut keys) = (Vec::new(), Vec::new());
    for (index, field) in schema.fields().iter().enumerate() {
        if column_lineage(field.name()).is_some_and(|column| column.aggregated) {
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
    let key_columns: Vec<Vec<Option<String>>> =
        keys.iter().map(|&index| key_texts_of(table.column(index).as_ref())).collect();
    let mut row_keys: Vec<Option<Vec<Option<String>>>> =
        (0..rows).map(|row| Some(key_columns.iter().map(|column| column[row].clone()).collect())).collect();
    // A withheld group's key is its text; "" stands for NULL when the emitted rows of that
    // key have NULLs (the engine formats NULL as ""), i.e. the output has margins over it.
    let has_margins: Vec<bool> = key_columns.iter().map(|column| column.iter().any(Option::is_none)).collect();
    for group in 0..withheld_groups {
        let recorded = lineage.withheld_keys.get(group).filter(|texts| texts.len() == keys.len());
        row_keys.push(recorded.map(|texts| {
            texts
                .iter()
                .zip(&has_margins)
                .map(|(text, &margins)| (!(margins && text.is_empty())).then(|| text.clone()))
                .collect()
        }));
    }
    let mut values = Vec::with_capacity(measures.len());
    let mut numeric = Vec::with_capacity(measures.len());
    for (position, &(index, _)) in measures.iter().enumerate() {
        let column = measure_values_of(table.column(index).as_ref());
        numeric.push(column.is_some());
        let mut column = column.unwrap_or_else(|| vec![None; rows]);
        // The engine's groups: their values when the runtime recorded one per measure.
        column.extend((0..withheld_groups).map(|group| {
            lineage
                .withheld_values
                .get(group)
                .filter(|values| values.len() == measures.len())
                .and_then(|values| values[position])
        }));
        values.push(column);
    }
    let counts = measures
        .iter()
        .map(|(_, name)| !lineage.magnitudes.iter().any(|magnitude| magnitude.columns.contains(name)))
        .collect();
    let identities =
        measures.iter().map(|(_, name)| column_lineage(name).map_or_else(|| name.clone(), measure_identity)).collect();
    let mut cells = vec![vec![None; rows + withheld_groups]; measures.len()];
    for column in &mut cells {
        for cell in column.iter_mut().skip(rows) {
            *cell = Some(Withheld::primary(ReviewRule::Threshold, "withheld by the engine".into(), None));
        }
    }
    let key_names = keys.iter().map(|&index| schema.field(index).name().clone()).collect();
    let group_contributors =
        (0..withheld_groups).map(|group| lineage.withheld_contributors.get(group).copied()).collect();
    Grid {
        rows,
        measures,
        contributors,
        group_contributors,
        cells,
        row_keys,
        values,
        counts,
        identities,
        numeric,
        key_names,
    }
}

/// The measures of one row describe the same subjects and determine each other (a sum is
/// an average times a count, a spread follows from sums), while complements are chosen per
/// measure: a row with any withheld measure cell has all of them withheld, so that a cell one
/// measure protects is not given back through another.
fn withhold_rows_together(grid: &mut Grid) {
    if grid.measures.len() < 2 {
        return;
    }
    for row in 0..grid.rows {
        if !grid.cells.iter().any(|column| column[row].is_some()) {
            continue;
        }
        for column in &mut grid.cells {
            if column[row].is_none() {
                column[row] = Some(Withheld {
                    rule: ReviewRule::Secondary,
                    figure: "withheld with the other measures of its row".into(),
                    primary: false,
                    level: None,
                });
            }
        }
    }
}

fn threshold(params: &DisclosureParams, lineage: &OutputLineage, grid: &mut Grid, report: &mut ReviewReport) {
    let k = params.threshold_k;
    let mut weakest = u64::MAX;
    for row in 0..grid.rows {
        let contributors = grid.contributors[row];
        weakest = weakest.min(contributors);
        if contributors < k {
            report.suppressed_rows.push(row);
            let share = safety_share(params);
            for (measure, column) in grid.cells.iter_mut().enumerate() {
                let level =
                    grid.values[measure][row].map(|value| small_group_level(share, value, grid.counts[measure]));
                column[row] =
                    Some(Withheld::primary(ReviewRule::Threshold, format!("fewer than k={k} contributors"), level));
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
        ReviewRule::Threshold,
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
    // The figure names the rule, never the cell's own shares: the report leaves the domain.
    if p_rule_sensitive(params.p_percent, contributions).is_some() {
        return Some(format!(
            "p%-rule: all but the two largest contribute less than p={}% of the largest",
            params.p_percent
        ));
    }
    nk_rule_sensitive(params.nk_rule, contributions).map(|_| {
        let (n, k) = (params.nk_rule.n, params.nk_rule.k_percent);
        format!("({n},{k})-rule: the {n} largest contribute at least {k}% of the total")
    })
}

fn dominance(params: &DisclosureParams, lineage: &OutputLineage, grid: &mut Grid, report: &mut ReviewReport) {
    if params.p_percent == 0 && params.nk_rule.n == 0 {
        report.push(ReviewRule::Dominance, RuleOutcome::Pass, "off in this grant");
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
                    let value = grid.values[measure][row].unwrap_or(contributions.total);
                    let level = dominance_level(params, contributions, value);
                    grid.cells[measure][row] = Some(Withheld::primary(ReviewRule::Dominance, figure, Some(level)));
                }
            }
        }
    }
    if lineage.magnitudes.is_empty() {
        report.push(ReviewRule::Dominance, RuleOutcome::Pass, format!("{rules}; no magnitude cells (counts only)"));
    } else if dominated_cells == 0 {
        report.push(
            ReviewRule::Dominance,
            RuleOutcome::Pass,
            format!("{rules}; none of {judged} magnitude cells dominated"),
        );
    } else {
        report.push(
            ReviewRule::Dominance,
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
        report.push(ReviewRule::Differencing, RuleOutcome::Pass, "off in this grant");
        return;
    }
    if lineage.sketches.is_empty() {
        report.push(
            ReviewRule::Differencing,
            RuleOutcome::NeedsReview,
            "no subject sketches came with the output; an operator must compare it with earlier releases",
        );
        return;
    }
    // Rows with a cell an earlier rule withheld are not compared: they are withheld already
    // (all their measures together), under the protection that rule asked for.
    let mut withheld = report.dropped_rows(grid.rows);
    for (row, slot) in withheld.iter_mut().enumerate() {
        *slot = *slot || grid.cells.iter().any(|column| column[row].is_some());
    }
    let mut order: Vec<usize> = (0..grid.rows).collect();
    order.sort_by(|&a, &b| grid.row_keys[a].cmp(&grid.row_keys[b]).then(a.cmp(&b)));
    let isolated = isolated_rows(params.threshold_k, lineage, earlier, &withheld, &order);
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
            ReviewRule::Differencing,
            RuleOutcome::Pass,
            format!("{compared}; no difference isolates fewer than k subjects"),
        );
        return;
    }
    let share = safety_share(params);
    for found in &isolated {
        report.suppressed_rows.push(found.row);
        for (measure, column) in grid.cells.iter_mut().enumerate() {
            column[found.row] = Some(if found.primary {
                let level =
                    grid.values[measure][found.row].map(|value| small_group_level(share, value, grid.counts[measure]));
                Withheld::primary(ReviewRule::Differencing, found.figure.clone(), level)
            } else {
                Withheld { rule: ReviewRule::Differencing, figure: found.figure.clone(), primary: false, level: None }
            });
        }
    }
    report.suppressed_rows.sort_unstable();
    report.push(
        ReviewRule::Differencing,
        RuleOutcome::Suppressed,
        format!(
            "{compared}; {} rows withheld: their difference from another group isolates fewer than k subjects",
            isolated.len()
        ),
    );
}

/// Withholds again every cell that an earlier release of the grant withheld (same measure,
/// same keys): releasing it now would undo that release's protection.
fn consistency(released: &[ReleasedTable], grid: &mut Grid, report: &mut ReviewReport) {
    if released.is_empty() {
        return;
    }
    let identities: BTreeSet<&str> = grid.identities.iter().map(String::as_str).collect();
    // (identity, canonical keys) → the level it needed and where it was withheld.
    let mut withheld_before: BTreeMap<(&str, CanonicalKey<'_>), (Option<Level>, &str)> = BTreeMap::new();
    for earlier in released {
        for measure in earlier.measures.iter().filter(|measure| identities.contains(measure.measure.as_str())) {
            for (row, cell) in measure.cells.iter().enumerate() {
                let ReleasedCell::Withheld { below, above, .. } = cell else { continue };
                let Some(keys) = earlier.rows.get(row) else { continue };
                let key = canonical(&earlier.keys, keys);
                let level = (*below > 0.0 || *above > 0.0).then_some(Level { below: *below, above: *above });
                let entry = withheld_before.entry((measure.measure.as_str(), key)).or_insert((level, &earlier.label));
                if let (Some(old), Some(new)) = (entry.0, level) {
                    entry.0 = Some(old.max(new));
                }
            }
        }
    }
    let mut again = 0u64;
    for measure in 0..grid.measures.len() {
        let identity = grid.identities[measure].as_str();
        for row in 0..grid.rows {
            if grid.cells[measure][row].is_some() {
                continue;
            }
            let Some(Some(keys)) = grid.row_keys.get(row) else { continue };
            let key = canonical(&grid.key_names, keys);
            if let Some(&(level, label)) = withheld_before.get(&(identity, key)) {
                again += 1;
                let figure = format!("withheld in {label}; released now it would undo that protection");
                grid.cells[measure][row] =
                    Some(Withheld { rule: ReviewRule::Consistency, figure, primary: level.is_some(), level });
            }
        }
    }
    let compared = format!("{} earlier releases of the grant compared", released.len());
    if again == 0 {
        report.push(
            ReviewRule::Consistency,
            RuleOutcome::Pass,
            format!("{compared}; no cell they withheld is released here"),
        );
    } else {
        report.push(
            ReviewRule::Consistency,
            RuleOutcome::Suppressed,
            format!("{compared}; {again} cells they withheld are withheld again"),
        );
    }
}

/// A cell's keys as compared across tables: (column, text) of every key that is not NULL,
/// sorted by column.
type CanonicalKey<'a> = Vec<(&'a str, &'a str)>;

fn canonical<'a>(columns: &'a [String], keys: &'a [Option<String>]) -> CanonicalKey<'a> {
    let mut key: Vec<(&str, &str)> = columns
        .iter()
        .zip(keys)
        .filter_map(|(column, text)| text.as_deref().map(|text| (column.as_str(), text)))
        .collect();
    key.sort_unstable();
    key
}

/// Chooses complements until every primary cell's interval, as the audit computes it from
/// every released cell and every relation (this output's lines and margins, the totals an
/// attacker may know, the grant's earlier releases), is as wide as its protection level.
fn secondary(params: &DisclosureParams, released: &[ReleasedTable], grid: &mut Grid, report: &mut ReviewReport) {
    if !params.secondary_suppression {
        report.push(ReviewRule::Secondary, RuleOutcome::Pass, "off in this grant");
        return;
    }
    // Earlier releases of a measure of this output: their withheld cells take part too.
    // The earlier releases' measures by identity: hundreds of releases are read once here,
    // and a measure of this output reads only those of its own identity.
    let mut by_identity: BTreeMap<&str, Vec<(&ReleasedTable, &ReleasedMeasure)>> = BTreeMap::new();
    for earlier in released {
        for measure in &earlier.measures {
            by_identity.entry(measure.measure.as_str()).or_default().push((earlier, measure));
        }
    }
    let earlier_of = |identity: &str| {
        by_identity.get(identity).is_some_and(|measures| {
            measures
                .iter()
                .any(|(_, measure)| measure.cells.iter().any(|cell| matches!(cell, ReleasedCell::Withheld { .. })))
        })
    };
    let to_protect = |measure: usize, grid: &Grid| {
        grid.cells[measure].iter().any(Option::is_some) || earlier_of(&grid.identities[measure])
    };
    if !(0..grid.measures.len()).any(|measure| to_protect(measure, grid)) {
        report.push(ReviewRule::Secondary, RuleOutcome::Pass, "no withheld cell to protect");
        return;
    }
    let share = safety_share(params);
    let key_names = grid.key_names.clone();
    let unplaced = grid.row_keys.iter().filter(|keys| keys.is_none()).count();
    let mut earlier_used: BTreeSet<&str> = BTreeSet::new();
    let (mut added, mut audited, mut relations, mut by_lp, mut earlier_audited) =
        (0u64, 0usize, 0usize, 0usize, 0usize);
    let mut tightest = f64::INFINITY;
    let mut failures: Vec<String> = Vec::new();
    for measure in 0..grid.measures.len() {
        if !grid.numeric[measure] || !to_protect(measure, grid) {
            continue;
        }
        let identity = grid.identities[measure].clone();
        let column_name = grid.measures[measure].1.clone();
        let mut tables = vec![current_cells(grid, measure, &key_names)];
        for &(earlier, cells) in by_identity.get(identity.as_str()).into_iter().flatten() {
            earlier_used.insert(&earlier.label);
            tables.push(earlier_cells(earlier, cells));
        }
        let mut model = Model::build(&tables, grid.counts[measure], params.threshold_k);
        set_group_levels(&mut model, grid, measure, share);
        let space = Space::new(&model, &key_names);
        let primaries: Vec<usize> = (0..model.cells.len())
            .filter(|&cell| model.cells[cell].level.is_some() && model.cells[cell].current.is_some())
            .collect();
        let before = added;
        for &primary in &primaries {
            let Some(level) = model.cells[primary].level else { continue };
            for choice in space.protect(&model, primary, level) {
                added += withhold(&mut model, grid, measure, &choice.corners, primary);
            }
        }
        let touched = |cells: &[usize], model: &Model| cells.iter().any(|&cell| model.cells[cell].current.is_some());
        let mut audit = model.audit(|cells| touched(cells, &model));
        for _ in 0..FALLBACK_ROUNDS {
            let short = short(&model, &audit);
            if short.is_empty() {
                break;
            }
            let mut widened = false;
            for primary in short {
                let level = model.cells[primary].level.unwrap_or_default();
                if let Some(choice) = space.widen(&model, primary, level) {
                    added += withhold(&mut model, grid, measure, &choice.corners, primary);
                    widened = true;
                }
            }
            if !widened {
                break;
            }
            audit = model.audit(|cells| touched(cells, &model));
        }
        // A primary of this output that an earlier release published is no secret any more:
        // nothing withheld now can protect it.
        for cell in model.cells.iter().filter(|cell| cell.level.is_some() && cell.state == State::Released) {
            let Some(row) = cell.current else { continue };
            let rule = grid.cells[measure][row].as_ref().map_or(ReviewRule::Secondary, |withheld| withheld.rule);
            let emitted = row < grid.rows;
            let whom = if emitted { format!("row {row}") } else { "a group the engine withheld".to_string() };
            failures.push(format!("{whom} {column_name} ({rule}; an earlier release published it)"));
            report.audit.push(CellAudit {
                row: emitted.then_some(row),
                column: column_name.clone(),
                rule,
                protected: false,
                below: 0.0,
                above: 0.0,
            });
        }
        audited += audit.audited.len();
        relations += audit.relations;
        by_lp += audit.by_lp;
        for result in &audit.audited {
            let cell = &model.cells[result.cell];
            let ratio = |extent: f64, needed: f64| if needed > 0.0 { extent / needed } else { f64::INFINITY };
            tightest = tightest
                .min(ratio(result.extent.below, result.level.below))
                .min(ratio(result.extent.above, result.level.above));
            let Some(row) = cell.current else {
                earlier_audited += 1;
                if !result.protected {
                    failures.push(format!("a cell of an earlier release ({column_name})"));
                }
                continue;
            };
            let rule = grid.cells[measure][row].as_ref().map_or(ReviewRule::Secondary, |withheld| withheld.rule);
            let emitted = row < grid.rows;
            if !result.protected {
                let whom = if emitted { format!("row {row}") } else { "a group the engine withheld".to_string() };
                failures.push(format!("{whom} {column_name} ({rule})"));
            }
            report.audit.push(CellAudit {
                row: emitted.then_some(row),
                column: column_name.clone(),
                rule,
                protected: result.protected,
                below: multiple(result.extent.below, result.level.below),
                above: multiple(result.extent.above, result.level.above),
            });
        }
        let secondary_cells = added - before;
        let primary_cells = grid.cells[measure].iter().flatten().filter(|withheld| withheld.primary).count() as u64;
        let total: f64 = (0..grid.rows).filter_map(|row| grid.values[measure][row]).map(f64::abs).sum();
        let cost: f64 = (0..grid.rows)
            .filter(|&row| {
                grid.cells[measure][row].as_ref().is_some_and(|withheld| withheld.rule == ReviewRule::Secondary)
            })
            .filter_map(|row| grid.values[measure][row])
            .map(f64::abs)
            .sum();
        report.suppression_cost.push(SuppressionCost {
            column: column_name,
            primary_cells,
            secondary_cells,
            secondary_share: share_bucket(cost, total),
        });
    }
    report.audit.sort_by(|a, b| (a.row, &a.column).cmp(&(b.row, &b.column)));
    let earlier = if earlier_audited > 0 { format!(" ({earlier_audited} of earlier releases)") } else { String::new() };
    let programs = if by_lp > 0 { format!("; {by_lp} components by linear programming") } else { String::new() };
    let releases = match earlier_used.len() {
        1 => "1 earlier release".to_string(),
        count => format!("{count} earlier releases"),
    };
    let audit_figure = format!(
        "{audited} withheld cells audited{earlier} against {relations} relations and {releases} of its measures{programs}"
    );
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(5).map(String::as_str).collect();
        let more = failures.len().saturating_sub(shown.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        report.push(
            ReviewRule::Secondary,
            RuleOutcome::Blocked,
            format!(
                "{audit_figure}; the attacker's interval stays narrower than the protection level of {}{more}: no complement in this output widens it (released cells of this or an earlier release fix it)",
                shown.join(", ")
            ),
        );
        return;
    }
    // How tight the tightest interval is stays in the domain too (see CellAudit::below).
    let tightest = if tightest.is_finite() { "; every protection level met".to_string() } else { String::new() };
    let figure = format!("{added} more cells withheld; {audit_figure}{tightest}");
    if unplaced > 0 {
        report.push(
            ReviewRule::Secondary,
            RuleOutcome::NeedsReview,
            format!("{figure}; {unplaced} groups the engine withheld have no recorded keys: an operator must check their lines"),
        );
    } else if added > 0 {
        report.push(ReviewRule::Secondary, RuleOutcome::Suppressed, figure);
    } else {
        report.push(ReviewRule::Secondary, RuleOutcome::Pass, figure);
    }
}

/// The current output's cells of one measure, for the audit.
fn current_cells(grid: &Grid, measure: usize, key_names: &[String]) -> TableCells {
    let rows = grid
        .row_keys
        .iter()
        .enumerate()
        .filter_map(|(row, keys)| {
            let keys = keys.clone()?;
            let withheld = grid.cells[measure][row].as_ref();
            Some(RowCell {
                keys,
                value: grid.values[measure][row],
                withheld: withheld.is_some(),
                level: withheld.filter(|withheld| withheld.primary).and_then(|withheld| withheld.level),
                row: Some(row),
                contributors: if row < grid.rows {
                    grid.contributors.get(row).copied().filter(|&count| count != u64::MAX)
                } else {
                    grid.group_contributors.get(row - grid.rows).copied().flatten()
                },
            })
        })
        .collect();
    TableCells { columns: key_names.to_vec(), rows, current: true }
}

/// One measure of an earlier release, for the audit.
fn earlier_cells(earlier: &ReleasedTable, measure: &ReleasedMeasure) -> TableCells {
    let rows = earlier
        .rows
        .iter()
        .zip(&measure.cells)
        .map(|(keys, cell)| match cell {
            ReleasedCell::Released { value } => RowCell {
                keys: keys.clone(),
                value: Some(*value),
                withheld: false,
                level: None,
                row: None,
                contributors: None,
            },
            ReleasedCell::Withheld { value, below, above, .. } => RowCell {
                keys: keys.clone(),
                value: *value,
                withheld: true,
                level: (*below > 0.0 || *above > 0.0).then_some(Level { below: *below, above: *above }),
                row: None,
                contributors: None,
            },
        })
        .collect();
    TableCells { columns: earlier.keys.clone(), rows, current: false }
}

/// Gives the primaries whose level waited for the audit's model (the engine's groups, whose
/// value the reviewer does not know) their level: from the value when the relations give
/// it away, else from the largest value of their lines.
fn set_group_levels(model: &mut Model, grid: &mut Grid, measure: usize, share: f64) {
    let count = grid.counts[measure];
    for cell in 0..model.cells.len() {
        let Some(row) = model.cells[cell].current else { continue };
        let Some(withheld) = grid.cells[measure][row].as_mut() else { continue };
        if !withheld.primary || withheld.level.is_some() {
            continue;
        }
        let level = if model.cells[cell].value_known {
            small_group_level(share, model.cells[cell].value, count)
        } else {
            let stand_in = model
                .relations
                .iter()
                .filter(|relation| relation.fine.contains(&cell))
                .flat_map(|relation| relation.fine.iter())
                .map(|&other| &model.cells[other])
                .filter(|other| other.value_known && !other.implied)
                .fold(0.0f64, |largest, other| largest.max(other.value.abs()));
            unknown_group_level(share, stand_in, count)
        };
        withheld.level = Some(level);
        model.cells[cell].level = Some(level);
    }
}

/// Withholds the corners of a hypercube chosen for `primary`; returns how many cells of
/// this output it newly withheld.
fn withhold(model: &mut Model, grid: &mut Grid, measure: usize, corners: &[usize], primary: usize) -> u64 {
    let whom = match model.cells[primary].current {
        Some(row) if row < grid.rows => format!("row {row}"),
        Some(_) => "a group the engine withheld".to_string(),
        None => "a cell of an earlier release".to_string(),
    };
    let mut added = 0;
    for &corner in corners {
        if model.cells[corner].state == State::Withheld {
            continue;
        }
        model.cells[corner].state = State::Withheld;
        let Some(row) = model.cells[corner].current else { continue };
        if grid.cells[measure][row].is_none() {
            grid.cells[measure][row] = Some(Withheld {
                rule: ReviewRule::Secondary,
                figure: format!("protects {whom}"),
                primary: false,
                level: None,
            });
            added += 1;
        }
    }
    added
}

/// A distance as a multiple of the level it needed, floored to a tenth and capped at 10 (so
/// that the report cannot be combined with the interval's ends to give the value away).
fn multiple(extent: f64, needed: f64) -> f64 {
    if needed <= 0.0 {
        return 10.0;
    }
    ((extent / needed).min(10.0) * 10.0).floor() / 10.0
}

/// The share of a measure's released total that secondary suppression withheld, as a band
/// (an exact figure would be one more equation for an attacker).
fn share_bucket(withheld: f64, total: f64) -> String {
    if withheld <= 0.0 {
        return "0%".into();
    }
    let percent = if total > 0.0 { 100.0 * withheld / total } else { 100.0 };
    let bands = [(1.0, "under 1%"), (2.0, "1–2%"), (5.0, "2–5%"), (10.0, "5–10%"), (20.0, "10–20%"), (50.0, "20–50%")];
    bands.iter().find(|(upper, _)| percent < *upper).map_or("over 50%", |(_, band)| band).to_string()
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
        ReviewRule::Rounding,
        RuleOutcome::Rounded,
        format!("{rounded} released cells of [{}] rounded to a multiple of {base}", report.rounded_columns.join(", ")),
    );
}
