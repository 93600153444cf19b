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
            'earlier: for release in earlier {
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
                isolated.push(Isolated { row, figure });
            }
        }
    }
    isolated.sort_by_key(|isolated| isolated.row);
    isolated
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
