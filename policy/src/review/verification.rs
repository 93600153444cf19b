//! The verification rule (数据核验): answers to a module's claims leave only within the
//! grant's rate limits.
//!
//! A claim names a subject by key and states values for some fields; the host answers whether
//! the key was found and whether each stated value matches. One answer is one bit about one
//! subject, which is the point of the product and also its risk: a developer who may ask
//! without limit can guess a value (a legal representative's name, a registered capital) one
//! claim at a time. So the grant bounds the claims answered in any 24 hours, and the claims
//! about any one key; a claim over the per-key bound keeps its row, with its answers withheld.

use super::ReviewRule;
use std::collections::HashMap;

use arrow::array::RecordBatch;

use super::{OutputLineage, ReviewContext, ReviewReport, RuleOutcome, content};
use crate::grant::{CLAIM_COLUMN, VerificationSpec};
use crate::{Grant, OutputKind};

/// Reviews a verification output under `grant`: `contract` → `verification` → `content`.
pub fn review_verification(
    grant: &Grant,
    name: &str,
    table: &RecordBatch,
    lineage: &OutputLineage,
    context: ReviewContext<'_>,
) -> ReviewReport {
    let mut report = ReviewReport::new(name, OutputKind::Verification);
    report.cells_total = (table.num_rows() * table.num_columns()) as u64;
    if let Some(spec) = super::check_contract(grant, name, table, &mut report)
        && let Some(verification) = &spec.verification
    {
        check_limits(verification, table, lineage, context.earlier_claims, &mut report);
    }
    content::scan_table(table, context.identifiers, &mut report);
    report.decide(grant.application.disclosure.auto_release);
    report
}

fn check_limits(
    spec: &VerificationSpec,
    table: &RecordBatch,
    lineage: &OutputLineage,
    earlier: &[String],
    report: &mut ReviewReport,
) {
    let rows = table.num_rows();
    let Some(claims) = lineage.verification.as_ref().filter(|claims| claims.claim_keys.len() == rows) else {
        report.push(
            ReviewRule::Verification,
            RuleOutcome::Blocked,
            "the output has no host record of its claims; only the domain writes verification outputs",
        );
        return;
    };
    if claims.dataset != spec.dataset {
        report.push(
            ReviewRule::Verification,
            RuleOutcome::Blocked,
            format!("claims were checked against {}, not the declared {}", claims.dataset, spec.dataset),
        );
        return;
    }
    let answered = earlier.len() as u64;
    if answered + rows as u64 > spec.claims_per_day {
        report.push(
            ReviewRule::Verification,
            RuleOutcome::Blocked,
            format!("{answered} claims answered in the last 24 h + {rows} > claims_per_day={}", spec.claims_per_day),
        );
        return;
    }
    let mut attempts: HashMap<&str, u32> = HashMap::new();
    for key in earlier {
        *attempts.entry(key.as_str()).or_default() += 1;
    }
    let answers: Vec<String> =
        table.schema().fields().iter().map(|field| field.name().clone()).filter(|name| name != CLAIM_COLUMN).collect();
    let mut withheld = 0;
    for (row, key) in claims.claim_keys.iter().enumerate() {
        let before = attempts.entry(key.as_str()).or_default();
        if *before >= spec.attempts_per_key {
            withheld += 1;
            let figure = format!(
                "its key was claimed {before} times in 24 h already (attempts_per_key={})",
                spec.attempts_per_key
            );
            for column in &answers {
                report.suppressed_cells.push(super::CellFinding {
                    row,
                    column: column.clone(),
                    rule: ReviewRule::Verification,
                    figure: figure.clone(),
                });
            }
            report.cells_suppressed += answers.len() as u64;
        }
        *before += 1;
    }
    let figure = format!(
        "{rows} claims, {answered} earlier in 24 h (claims_per_day={}); {withheld} over attempts_per_key={}",
        spec.claims_per_day, spec.attempts_per_key
    );
    let outcome = if withheld > 0 { RuleOutcome::Suppressed } else { RuleOutcome::Pass };
    report.push(ReviewRule::Verification, outcome, figure);
}
