//! Applies a review to the table it judged: what actually leaves.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch};
use arrow::compute::{cast, filter_record_batch, nullif};
use arrow::datatypes::{DataType, Field, Schema};

use super::{NoisedColumn, ReviewReport};
use crate::PolicyError;
use crate::noise::{RandomBits, RandomnessFailed, Scale, discrete_laplace};

/// The table as released under `report`: withheld cells set to null, withheld rows dropped,
/// rounded columns rounded to the report's base (as Float64 unless they are integers).
/// A report that plans noise needs randomness: use [`release_noised_table`].
pub fn release_table(report: &ReviewReport, table: &RecordBatch) -> Result<RecordBatch, PolicyError> {
    if !report.noise.is_empty() {
        return Err(PolicyError::invalid(
            "release",
            "the report plans differential-privacy noise; release_noised_table draws it",
        ));
    }
    build_release(report, table, None)
}

/// [`release_table`] for a report that plans noise: each released cell of a noised column is
/// rounded to its lattice and moved by a discrete Laplace number of steps drawn from `random`,
/// before any rounding to the report's base (which is then post-processing).
pub fn release_noised_table(
    report: &ReviewReport,
    table: &RecordBatch,
    random: &mut dyn RandomBits,
) -> Result<RecordBatch, PolicyError> {
    build_release(report, table, Some(random))
}

fn build_release(
    report: &ReviewReport,
    table: &RecordBatch,
    mut random: Option<&mut dyn RandomBits>,
) -> Result<RecordBatch, PolicyError> {
    let failed = |error: arrow::error::ArrowError| PolicyError::invalid("output", error.to_string());
    let schema = table.schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.num_columns());
    let mut fields: Vec<Field> = Vec::with_capacity(table.num_columns());
    for (index, field) in schema.fields().iter().enumerate() {
        let mut column = Arc::clone(table.column(index));
        let withheld: HashSet<usize> =
            report.suppressed_cells.iter().filter(|cell| &cell.column == field.name()).map(|cell| cell.row).collect();
        if !withheld.is_empty() {
            let mask: BooleanArray = (0..column.len()).map(|row| Some(withheld.contains(&row))).collect();
            column = nullif(&column, &mask).map_err(failed)?;
        }
        if let Some(noise) = report.noise.iter().find(|noise| &noise.column == field.name()) {
            let random = random.as_deref_mut().ok_or_else(|| {
                PolicyError::invalid(
                    "release",
                    "the report plans differential-privacy noise but no randomness was given",
                )
            })?;
            column = noised_column(&column, noise, random)?;
        }
        if report.rounding_base > 0 && report.rounded_columns.contains(field.name()) {
            column = round_column(&column, report.rounding_base).map_err(failed)?;
        }
        fields.push(Field::new(field.name(), column.data_type().clone(), true));
        columns.push(column);
    }
    let table = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(failed)?;
    let dropped: HashSet<usize> = report.suppressed_rows.iter().copied().collect();
    let keep: BooleanArray = (0..table.num_rows()).map(|row| Some(!dropped.contains(&row))).collect();
    filter_record_batch(&table, &keep).map_err(failed)
}

/// The column with every non-null value moved to its lattice and by discrete Laplace steps.
fn noised_column(
    column: &ArrayRef,
    noise: &NoisedColumn,
    random: &mut dyn RandomBits,
) -> Result<ArrayRef, PolicyError> {
    let failed = |error: arrow::error::ArrowError| PolicyError::invalid("output", error.to_string());
    let steps = Scale::at_least(noise.scale / noise.step).ok_or_else(|| {
        PolicyError::invalid(
            "privacy",
            format!("noise scale {} of column \"{}\" is out of range", noise.scale, noise.column),
        )
    })?;
    let integer = column.data_type().is_integer();
    let floats = cast(column, &DataType::Float64).map_err(failed)?;
    let floats = floats
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| PolicyError::invalid("privacy", format!("column \"{}\" is not numeric", noise.column)))?;
    let noised: Float64Array = floats
        .iter()
        .map(|value| {
            value
                .map(|value| {
                    let on_lattice = (value / noise.step).round();
                    Ok((on_lattice + discrete_laplace(random, steps)? as f64) * noise.step)
                })
                .transpose()
        })
        .collect::<Result<_, RandomnessFailed>>()
        .map_err(|_| {
            PolicyError::invalid(
                "privacy",
                "the domain's random generator failed; no noise was drawn and nothing is released",
            )
        })?;
    let noised: ArrayRef = Arc::new(noised);
    if integer { cast(&noised, &DataType::Int64).map_err(failed) } else { Ok(noised) }
}

/// Rounds half away from zero to a multiple of `base`.
pub(crate) fn round_to_base(value: f64, base: u64) -> f64 {
    let base = base as f64;
    (value / base).round() * base
}

fn round_column(column: &ArrayRef, base: u64) -> Result<ArrayRef, arrow::error::ArrowError> {
    let integer = column.data_type().is_integer();
    let floats = cast(column, &DataType::Float64)?;
    let floats = floats.as_any().downcast_ref::<Float64Array>().expect("cast to Float64");
    let rounded: Float64Array = floats.iter().map(|value| value.map(|value| round_to_base(value, base))).collect();
    let rounded: ArrayRef = Arc::new(rounded);
    if integer { cast(&rounded, column.data_type()) } else { Ok(rounded) }
}
