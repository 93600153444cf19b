//! The privacy rule: under a grant with differential privacy, every measure column leaves with
//! discrete Laplace noise and the release spends ε from the grant's budget.
//!
//! The rule plans the noise (which columns, what scale, what lattice) and checks the budget;
//! the noise itself is drawn once when the release table is built
//! ([`super::release_noised_table`]) so a report never contains it. The declared sensitivity of
//! each column is checked against the host's largest per-subject contributions wherever they
//! are exact: a subject who put more into one cell than the grant says it can would break the
//! guarantee, so such an output is blocked.

use super::ReviewRule;
use arrow::array::RecordBatch;

use super::{NoisedColumn, OutputLineage, ReviewReport, RuleOutcome};
use crate::DisclosureParams;
use crate::noise::lattice_step;

pub(super) fn review_privacy(
    params: &DisclosureParams,
    table: &RecordBatch,
    lineage: &OutputLineage,
    epsilon_spent: f64,
    report: &mut ReviewReport,
) {
    let Some(privacy) = &params.privacy else { return };
    let measures: Vec<(usize, String)> = table
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, field)| lineage.columns.iter().any(|column| &column.name == field.name() && column.aggregated))
        .map(|(index, field)| (index, field.name().clone()))
        .collect();
    if measures.is_empty() {
        report.push(
            ReviewRule::Privacy,
            RuleOutcome::Blocked,
            "a grant with differential privacy releases only aggregates",
        );
        return;
    }
    let undeclared: Vec<&str> = measures
        .iter()
        .filter(|(_, name)| !privacy.sensitivity.contains_key(name))
        .map(|(_, name)| name.as_str())
        .collect();
    if !undeclared.is_empty() {
        report.push(
            ReviewRule::Privacy,
            RuleOutcome::Blocked,
            format!("no declared sensitivity for [{}]; every released measure must be noised", undeclared.join(", ")),
        );
        return;
    }
    let non_numeric: Vec<&str> = measures
        .iter()
        .filter(|(index, _)| !table.column(*index).data_type().is_numeric())
        .map(|(_, name)| name.as_str())
        .collect();
    if !non_numeric.is_empty() {
        report.push(
            ReviewRule::Privacy,
            RuleOutcome::Blocked,
            format!("[{}] are not numeric and cannot be noised", non_numeric.join(", ")),
        );
        return;
    }
    let dropped = report.dropped_rows(table.num_rows());
    for magnitude in &lineage.magnitudes {
        for column in magnitude.columns.iter().filter(|column| measures.iter().any(|(_, name)| name == *column)) {
            let bound = privacy.sensitivity[column];
            let over = magnitude.per_row.iter().enumerate().find(|(row, contributions)| {
                !dropped.get(*row).copied().unwrap_or(true)
                    && !contributions.bucketed
                    && contributions.largest.first().is_some_and(|&largest| largest > bound)
            });
            if let Some((row, _)) = over {
                report.push(
                    ReviewRule::Privacy,
                    RuleOutcome::Blocked,
                    format!(
                        "in row {row} one {} contributes more to \"{column}\" than its declared sensitivity {bound}; clip the values in the query or ask for a larger bound",
                        magnitude.kind.as_str()
                    ),
                );
                return;
            }
        }
    }
    let epsilon = privacy.epsilon_per_release;
    let remaining = privacy.epsilon_budget - epsilon_spent;
    if epsilon > remaining + 1e-12 {
        report.push(
            ReviewRule::Privacy,
            RuleOutcome::Blocked,
            format!("ε budget spent: {epsilon_spent} of {} used, this release needs {epsilon}", privacy.epsilon_budget),
        );
        return;
    }
    let per_column = epsilon / measures.len() as f64;
    for (index, name) in &measures {
        let sensitivity = privacy.sensitivity[name];
        let scale = sensitivity / per_column;
        let step = if table.column(*index).data_type().is_integer() { 1.0 } else { lattice_step(scale) };
        report.noise.push(NoisedColumn { column: name.clone(), sensitivity, epsilon: per_column, scale, step });
    }
    report.epsilon_charged = epsilon;
    let columns: Vec<String> = report
        .noise
        .iter()
        .map(|noise| format!("{} (Δ={}, b={:.3})", noise.column, noise.sensitivity, noise.scale))
        .collect();
    report.push(
        ReviewRule::Privacy,
        RuleOutcome::Noised,
        format!(
            "ε={epsilon} charged ({} of {} spent after); discrete Laplace noise on {}",
            epsilon_spent + epsilon,
            privacy.epsilon_budget,
            columns.join(", ")
        ),
    );
}
