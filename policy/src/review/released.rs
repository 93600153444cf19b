//! What the grant has released, kept so that later reviews audit against it: per earlier
//! output, its keys and, per measure, each cell's released value or the protection it
//! needed when withheld.
//!
//! A [`ReleasedTable`] stays in the domain: it holds values as reviewed (before rounding
//! and noise, so the audit credits the attacker with the exact figures, which errs towards
//! protection) and, for withheld cells, their value and protection level.

use super::ReviewRule;
use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::{ColumnLineage, OutputLineage, ReviewReport};

/// The record of one output released (or awaiting an operator) under a grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleasedTable {
    /// How a report names it, e.g. `egress e-3 ("by_district")`.
    pub label: String,
    /// The key (GROUP BY) column names.
    pub keys: Vec<String>,
    /// Per row, the key texts in `keys` order; None is NULL (a margin row: "all").
    pub rows: Vec<Vec<Option<String>>>,
    /// The measures, each with one cell per row.
    pub measures: Vec<ReleasedMeasure>,
}

/// One measure column of a released table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleasedMeasure {
    /// Output column name.
    pub column: String,
    /// Its measure identity: equal identities are the same aggregate over the same rows, so
    /// their cells add up across tables.
    pub measure: String,
    /// One per row of the table.
    pub cells: Vec<ReleasedCell>,
}

/// One cell of a released table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleasedCell {
    /// Published with this value (as reviewed, before rounding or noise).
    Released {
        /// The value.
        value: f64,
    },
    /// Withheld: by a primary rule (with the protection it needed) or as a complement.
    Withheld {
        /// Its value, when the reviewer knew it (not for groups the engine withheld).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        /// The rule that withheld it.
        rule: ReviewRule,
        /// The distance below its value its interval had to reach (0: a complement).
        #[serde(default)]
        below: f64,
        /// The distance above its value its interval had to reach.
        #[serde(default)]
        above: f64,
    },
}

/// The identity of an aggregated column across outputs: its lineage's measure text, or
/// its name and sorted source columns when the runtime gave none.
pub fn measure_identity(column: &ColumnLineage) -> String {
    if let Some(measure) = &column.measure {
        return measure.clone();
    }
    let mut sources: Vec<String> =
        column.sources.iter().map(|source| format!("{}.{}", source.dataset, source.column)).collect();
    sources.sort_unstable();
    format!("{}({})", column.name, sources.join(","))
}

impl ReleasedTable {
    /// The record of an output just reviewed, from the report `review_table` returned (its
    /// protection levels are not serialised, so build this before storing the report).
    /// Rows the review dropped and groups the engine withheld are withheld cells.
    pub fn from_review(label: &str, table: &RecordBatch, lineage: &OutputLineage, report: &ReviewReport) -> Self {
        let schema = table.schema();
        let aggregated =
            |name: &str| lineage.columns.iter().find(|column| column.name == name).filter(|column| column.aggregated);
        let mut keys = Vec::new();
        let mut key_indexes = Vec::new();
        let mut measures = Vec::new();
        for (index, field) in schema.fields().iter().enumerate() {
            match aggregated(field.name()) {
                Some(column) => measures.push((index, field.name().clone(), measure_identity(column))),
                None => {
                    keys.push(field.name().clone());
                    key_indexes.push(index);
                }
            }
        }
        let texts: Vec<Vec<Option<String>>> =
            key_indexes.iter().map(|&index| super::cells::key_texts_of(table.column(index).as_ref())).collect();
        let emitted = table.num_rows();
        let mut rows: Vec<Vec<Option<String>>> =
            (0..emitted).map(|row| texts.iter().map(|column| column[row].clone()).collect()).collect();
        let has_margins: Vec<bool> = texts.iter().map(|column| column.iter().any(Option::is_none)).collect();
        let groups: Vec<usize> = (0..lineage.suppressed_groups as usize)
            .filter(|&group| lineage.withheld_keys.get(group).is_some_and(|texts| texts.len() == keys.len()))
            .collect();
        for &group in &groups {
            let recorded = &lineage.withheld_keys[group];
            rows.push(
                recorded
                    .iter()
                    .zip(&has_margins)
                    .map(|(text, &margins)| (!(margins && text.is_empty())).then(|| text.clone()))
                    .collect(),
            );
        }
        let dropped = report.dropped_rows(emitted);
        let protection: std::collections::HashMap<(usize, &str), &super::ProtectionRecord> =
            report.protection.iter().map(|cell| ((cell.row, cell.column.as_str()), cell)).collect();
        let measures = measures
            .into_iter()
            .enumerate()
            .map(|(position, (index, column, measure))| {
                let values = super::cells::measure_values_of(table.column(index).as_ref());
                let record = |row: usize| protection.get(&(row, column.as_str())).copied();
                let mut cells: Vec<ReleasedCell> = (0..emitted)
                    .map(|row| {
                        let value = values.as_ref().and_then(|values| values[row]);
                        match record(row) {
                            Some(withheld) => ReleasedCell::Withheld {
                                value,
                                rule: withheld.rule,
                                below: withheld.level.map_or(0.0, |level| level.below),
                                above: withheld.level.map_or(0.0, |level| level.above),
                            },
                            None if dropped[row] => {
                                ReleasedCell::Withheld { value, rule: ReviewRule::Threshold, below: 0.0, above: 0.0 }
                            }
                            None => ReleasedCell::Released { value: value.unwrap_or(0.0) },
                        }
                    })
                    .collect();
                for &group in &groups {
                    let level = record(emitted + group).and_then(|withheld| withheld.level);
                    let value = lineage.withheld_values.get(group).and_then(|values| values.get(position)).copied();
                    cells.push(ReleasedCell::Withheld {
                        value: value.flatten(),
                        rule: ReviewRule::Threshold,
                        below: level.map_or(0.0, |level| level.below),
                        above: level.map_or(0.0, |level| level.above),
                    });
                }
                ReleasedMeasure { column, measure, cells }
            })
            .collect();
        ReleasedTable { label: label.to_string(), keys, rows, measures }
    }
}
