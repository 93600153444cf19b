//! Applies a review to the table it judged: what actually leaves.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch};
use arrow::compute::{cast, filter_record_batch, nullif};
use arrow::datatypes::{DataType, Field, Schema};

use super::ReviewReport;
use crate::PolicyError;

/// The table as released under `report`: withheld cells set to null, withheld rows dropped,
/// rounded columns rounded to the report's base (as Float64 unless they are integers).
pub fn release_table(report: &ReviewReport, table: &RecordBatch) -> Result<RecordBatch, PolicyError> {
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
