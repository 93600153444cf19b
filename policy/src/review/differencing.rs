//! The differencing rule: no released group may differ from another group released under the
//! same grant — earlier, or in the same output — by fewer than k subjects.
//!
//! Two releases "district A: 1,204 MWh" and, a month later, "district A without company X's
//! street: 1,150 MWh" each pass the threshold, but together they publish the street's 54 MWh,
//! the consumption of a handful of companies. The runtime sketches the subjects (and their
//! row counts) of every output row; the reviewer subtracts sketches pairwise and withholds a
//! row whose difference from any other holds between 1 and k − 1 subjects, or cannot be
//! bounded. Groups with exactly the same rows (difference 0) reveal nothing new.

use super::{EarlierRelease, OutputLineage, ReviewReport, SubjectSketches};
use crate::sketch::{Difference, SubjectSketch};

/// A row to withhold and why.
pub(super) struct Isolated {
    pub row: usize,
    pub figure: String,
    /// It needs protection of its own; false for a row that repeats an earlier complement
    /// (withheld so the earlier primary stays protected, needing no complement itself).
    pub primary: bool,
}

/// What one comparison says about the pair.
fn isolates(left: &SubjectSketch, right: &SubjectSketch, k: u64) -> Option<String> {
    let k_subjects = usize::try_from(k).unwrap_or(usize::MAX);
    match left.difference(right, k_subjects) {
        Ok(Difference::Exact(0) | Difference::AtLeast(_)) => None,
        Ok(Difference::Exact(d)) if d >= k_subjects => None,
        Ok(Difference::Exact(d)) => Some(format!("{d} subjects < k={k}")),
        Ok(Difference::Unknown) => Some(format!("a difference that could not be bounded below k={k}")),
        Err(error) => Some(format!("sketches that do not compare ({error})")),
    }
}

/// Whether a row would repeat a cell an earlier release withheld: its subjects are the same
/// as that cell's, or differ from them by fewer than k (a measure or a condition of another
/// spelling over the same subjects is the same cell).
fn repeats_withheld(left: &SubjectSketch, right: &SubjectSketch, k: u64) -> Option<String> {
    let k_subjects = usize::try_from(k).unwrap_or(usize::MAX);
    match left.difference(right, k_subjects) {
        Ok(Difference::Exact(0)) => Some("the subjects".to_string()),
        Ok(Difference::Exact(d)) if d < k_subjects => Some(format!("all but {d} < k={k} subjects")),
        Ok(Difference::Exact(_) | Difference::AtLeast(_)) => None,
        Ok(Difference::Unknown) => Some(format!("subjects that could not be told apart from those ({k} needed)")),
        Err(error) => Some(format!("sketches that do not compare ({error}) with those")),
    }
}

/// The rows of this output (not already withheld) to withhold for differencing, at most one
/// finding each. `withheld[row]` says whether an earlier rule withheld the row. Rows are
/// taken in `order` (the order of their keys' text), and of two rows of this output that
/// isolate a few subjects the later in that order is withheld: the same rows whatever the
/// order they were emitted in.
pub(super) fn isolated_rows(
    k: u64,
    lineage: &OutputLineage,
    earlier: &[EarlierRelease],
    withheld: &[bool],
    order: &[usize],
) -> Vec<Isolated> {
    let mut isolated: Vec<Isolated> = Vec::new();
    let mut out = vec![false; withheld.len()];
    for sketches in &lineage.sketches {
        for (position, &row) in order.iter().enumerate() {
            let Some(sketch) = sketches.per_row.get(row) else { continue };
            if row >= withheld.len() || withheld[row] || out[row] {
                continue;
            }
            let mut reason = None;
            let mut primary = true;
            'withheld: for release in earlier {
                let kinds =
                    [(&release.withheld, "withheld", true), (&release.complements, "withheld as a complement", false)];
                for (sketch_sets, what, needs_protection) in kinds {
                    for theirs in sketch_sets.iter().filter(|theirs| theirs.kind == sketches.kind) {
                        for their_sketch in &theirs.per_row {
                            if let Some(why) = repeats_withheld(sketch, their_sketch, k) {
                                reason = Some(format!("has {why} of a cell {} {what}", release.label));
                                primary = needs_protection;
                                break 'withheld;
                            }
                        }
                    }
                }
            }
            'earlier: for release in earlier.iter().filter(|_| reason.is_none()) {
                for theirs in release.sketches.iter().filter(|theirs| theirs.kind == sketches.kind) {
                    for (their_row, their_sketch) in theirs.per_row.iter().enumerate() {
                        if let Some(why) = isolates(sketch, their_sketch, k) {
                            reason = Some(format!("differs from {} row {their_row} by {why}", release.label));
                            break 'earlier;
                        }
                    }
                }
            }
            if reason.is_none() {
                let before = order[..position].iter().copied();
                for other in before.filter(|&other| !withheld[other] && !out[other]) {
                    let Some(theirs) = sketches.per_row.get(other) else { continue };
                    if let Some(why) = isolates(sketch, theirs, k) {
                        reason = Some(format!("differs from row {other} of this output by {why}"));
                        break;
                    }
                }
            }
            if let Some(figure) = reason {
                out[row] = true;
                isolated.push(Isolated { row, figure, primary });
            }
        }
    }
    isolated.sort_by_key(|isolated| isolated.row);
    isolated
}

/// The sketches of the rows of which `report` withholds a cell (or the whole row), kept so
/// that a later output of the grant cannot ask for the same subjects again: first the rows
/// with a cell that needs protection of its own (a primary), then the rows whose withheld
/// cells are all complements.
pub fn withheld_sketches(
    lineage: &OutputLineage,
    report: &ReviewReport,
) -> (Vec<SubjectSketches>, Vec<SubjectSketches>) {
    use std::collections::BTreeSet;
    // A row is a complement when every cell of it the audit recorded is one (no level of its
    // own); a withheld row the audit did not record is taken as a primary.
    let recorded: BTreeSet<usize> = report.protection.iter().map(|record| record.row).collect();
    let needs_protection: BTreeSet<usize> =
        report.protection.iter().filter(|record| record.level.is_some()).map(|record| record.row).collect();
    let withheld = report.suppressed_rows.iter().copied().chain(report.suppressed_cells.iter().map(|cell| cell.row));
    let (complements, primaries): (BTreeSet<usize>, BTreeSet<usize>) =
        withheld.partition(|row| recorded.contains(row) && !needs_protection.contains(row));
    let of = |rows: &BTreeSet<usize>| -> Vec<SubjectSketches> {
        lineage
            .sketches
            .iter()
            .map(|sketches| SubjectSketches {
                kind: sketches.kind,
                per_row: rows.iter().filter_map(|&row| sketches.per_row.get(row).cloned()).collect(),
            })
            .collect()
    };
    (of(&primaries), of(&complements))
}

/// The sketches of the rows `report` lets leave, to compare later releases of the grant with.
pub fn released_sketches(lineage: &OutputLineage, report: &ReviewReport) -> Vec<SubjectSketches> {
    lineage
        .sketches
        .iter()
        .map(|sketches| {
            let dropped = report.dropped_rows(sketches.per_row.len());
            SubjectSketches {
                kind: sketches.kind,
                per_row: sketches
                    .per_row
                    .iter()
                    .zip(dropped)
                    .filter(|(_, dropped)| !dropped)
                    .map(|(sketch, _)| sketch.clone())
                    .collect(),
            }
        })
        .collect()
}
