//! Column values as the derivations work on them: text columns dictionary-coded, numeric
//! columns as `f64`, and the way back to the column's own Arrow type, so that a sample keeps
//! the schema of its dataset.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};

use crate::PolicyError;

/// The code of a null value in a [`Coded`] column.
pub(crate) const NULL_CODE: u32 = u32::MAX;

/// A text column as distinct values and one code per row.
#[derive(Debug, Clone, Default)]
pub(crate) struct Coded {
    /// Per row, the index of its value in `values`, or [`NULL_CODE`].
    pub codes: Vec<u32>,
    /// The distinct values, in order of first appearance.
    pub values: Vec<String>,
}

impl Coded {
    /// The value of `row`, None for null.
    pub fn value(&self, row: usize) -> Option<&str> {
        let code = self.codes[row];
        (code != NULL_CODE).then(|| self.values[code as usize].as_str())
    }
}

fn arrow_error(what: &str, error: impl std::fmt::Display) -> PolicyError {
    PolicyError::invalid(what, error.to_string())
}

/// Whether the derivations can treat a column of this type as text (strings, booleans).
pub(crate) fn is_textual(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => true,
        DataType::Dictionary(_, value) => is_textual(value),
        _ => false,
    }
}

/// The integer type a column of this type is stored as, when it is a date or time; the type
/// itself for plain numbers; None for types the derivations cannot treat as numbers.
fn numeric_carrier(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Date32 => Some(DataType::Int32),
        DataType::Date64 | DataType::Timestamp(_, _) | DataType::Duration(_) => Some(DataType::Int64),
        DataType::Dictionary(_, value) => numeric_carrier(value),
        other if other.is_numeric() => Some(other.clone()),
        _ => None,
    }
}

/// Whether the derivations can treat a column of this type as numbers.
pub(crate) fn is_numeric(data_type: &DataType) -> bool {
    numeric_carrier(data_type).is_some()
}

/// Whether values of this type are whole numbers (so derived values are rounded).
pub(crate) fn is_integral(data_type: &DataType) -> bool {
    numeric_carrier(data_type).is_some_and(|carrier| carrier.is_integer())
}

/// Dictionary-codes a text column (strings as they are, booleans as `true`/`false`).
pub(crate) fn code_text(column: &ArrayRef, name: &str) -> Result<Coded, PolicyError> {
    let text = cast(column, &DataType::Utf8).map_err(|error| arrow_error(name, error))?;
    let strings = text.as_string::<i32>();
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut coded = Coded { codes: Vec::with_capacity(strings.len()), values: Vec::new() };
    for row in 0..strings.len() {
        if strings.is_null(row) {
            coded.codes.push(NULL_CODE);
            continue;
        }
        let value = strings.value(row);
        let code = *index.entry(value).or_insert_with(|| {
            coded.values.push(value.to_string());
            (coded.values.len() - 1) as u32
        });
        coded.codes.push(code);
    }
    Ok(coded)
}

/// A numeric, date or time column as `f64` values.
pub(crate) fn numbers(column: &ArrayRef, name: &str) -> Result<Vec<Option<f64>>, PolicyError> {
    let carrier = numeric_carrier(column.data_type())
        .ok_or_else(|| PolicyError::invalid(name, format!("{} is not a number type", column.data_type())))?;
    let carried = cast(column, &carrier).map_err(|error| arrow_error(name, error))?;
    let floats = cast(&carried, &DataType::Float64).map_err(|error| arrow_error(name, error))?;
    Ok(floats.as_primitive::<Float64Type>().iter().collect())
}

/// Builds a column of type `data_type` from text values (the inverse of [`code_text`]).
pub(crate) fn text_column<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    data_type: &DataType,
    name: &str,
) -> Result<ArrayRef, PolicyError> {
    let strings: ArrayRef = Arc::new(values.collect::<StringArray>());
    cast(&strings, data_type).map_err(|error| arrow_error(name, error))
}

/// Builds a column of type `data_type` from numbers (the inverse of [`numbers`]); whole-number
/// types get the values rounded.
pub(crate) fn number_column(values: &[Option<f64>], data_type: &DataType, name: &str) -> Result<ArrayRef, PolicyError> {
    let integral = is_integral(data_type);
    let floats: ArrayRef = Arc::new(
        values.iter().map(|value| value.map(|v| if integral { v.round() } else { v })).collect::<Float64Array>(),
    );
    let carrier = numeric_carrier(data_type)
        .ok_or_else(|| PolicyError::invalid(name, format!("{data_type} is not a number type")))?;
    let carried = cast(&floats, &carrier).map_err(|error| arrow_error(name, error))?;
    cast(&carried, data_type).map_err(|error| arrow_error(name, error))
}

/// A column of `rows` nulls of type `data_type`.
pub(crate) fn null_column(data_type: &DataType, rows: usize) -> ArrayRef {
    new_null_array(data_type, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Date32Array, Int32Array};

    #[test]
    fn text_codes_round_trip_through_the_column_type() {
        let column: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("b"), Some("a")]));
        let coded = code_text(&column, "c").unwrap();
        assert_eq!(coded.values, ["a", "b"]);
        assert_eq!(coded.codes, [0, NULL_CODE, 1, 0]);
        let back = text_column((0..4).map(|row| coded.value(row)), &DataType::Utf8, "c").unwrap();
        assert_eq!(back.as_ref(), column.as_ref());
        let flags: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        let coded = code_text(&flags, "f").unwrap();
        let back = text_column((0..2).map(|row| coded.value(row)), &DataType::Boolean, "f").unwrap();
        assert_eq!(back.as_ref(), flags.as_ref());
    }

    #[test]
    fn numbers_round_trip_and_whole_number_types_are_rounded() {
        let years: ArrayRef = Arc::new(Int32Array::from(vec![Some(1980), None]));
        let values = numbers(&years, "y").unwrap();
        assert_eq!(values, [Some(1980.0), None]);
        let back = number_column(&[Some(1980.4), None], &DataType::Int32, "y").unwrap();
        assert_eq!(back.as_ref(), years.as_ref());
        let days: ArrayRef = Arc::new(Date32Array::from(vec![19_000]));
        assert_eq!(numbers(&days, "d").unwrap(), [Some(19_000.0)]);
        assert_eq!(number_column(&[Some(19_000.2)], &DataType::Date32, "d").unwrap().as_ref(), days.as_ref());
    }
}
