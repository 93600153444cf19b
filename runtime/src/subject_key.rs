//! The subject key column: each row's subject as its stable 64-bit key, computed once below a
//! governed aggregate and shared by every host aggregate above it.
//!
//! The contributor counter, the largest-contributions summary and the subject sketch all need
//! to tell subjects apart. Hashing the subject text in each of them cost three string hashes
//! per row; the host instead adds `unseen_subject_key(subject)` to a projection under the
//! aggregate and hands the three functions the key column. Keys are
//! [`unseen_policy::sketch::subject_key`] of the stored value's text, the same key the
//! sketches kept with releases use. A null subject gives a null key: the counter skips it
//! (an unknown subject never makes a group reach k), the other two count it as
//! [`unknown_subject_key`] (one more subject to suppress for, never one fewer).
//! Like the other host functions it is not in the SQL function registry.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, GenericStringArray, OffsetSizeTrait, StringViewArray, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use unseen_policy::sketch::subject_key;

/// The name of the key function in the plans the host builds.
pub const SUBJECT_KEY_FUNCTION: &str = "unseen_subject_key";

/// The key of rows whose subject is null, where a function counts them as one subject.
pub fn unknown_subject_key() -> u64 {
    static KEY: LazyLock<u64> = LazyLock::new(|| subject_key(b"\0unseen:unknown-subject"));
    *KEY
}

/// `unseen_subject_key(subject)`: the stable key of each row's subject, null for null.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SubjectKeys {
    signature: Signature,
}

impl SubjectKeys {
    /// The key function as a plan can call it.
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(Self { signature: Signature::any(1, Volatility::Immutable) }))
    }
}

impl ScalarUDFImpl for SubjectKeys {
    fn name(&self) -> &str {
        SUBJECT_KEY_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [subjects] = args.args.as_slice() else { return exec_err!("{SUBJECT_KEY_FUNCTION} takes one argument") };
        Ok(ColumnarValue::Array(Arc::new(subject_keys(&subjects.to_array(args.number_rows)?)?)))
    }
}

/// The key of every row's subject, read from the stored text without copying it; numbers and
/// dates are keyed through their canonical text, so 42 and '42' are one subject.
pub fn subject_keys(subjects: &ArrayRef) -> Result<UInt64Array> {
    fn offsets<O: OffsetSizeTrait>(text: &GenericStringArray<O>) -> Vec<u64> {
        let bytes = text.value_data();
        text.offsets().windows(2).map(|ends| subject_key(&bytes[ends[0].as_usize()..ends[1].as_usize()])).collect()
    }
    let keys = match subjects.data_type() {
        DataType::Utf8View => view_keys(subjects.as_string_view()),
        DataType::Utf8 => offsets(subjects.as_string::<i32>()),
        DataType::LargeUtf8 => offsets(subjects.as_string::<i64>()),
        other => {
            let text = cast(subjects, &DataType::Utf8)
                .or_else(|error| exec_err!("{SUBJECT_KEY_FUNCTION}: subject of type {other} is not text: {error}"))?;
            offsets(text.as_string::<i32>())
        }
    };
    Ok(UInt64Array::new(keys.into(), subjects.logical_nulls()))
}

/// The keys of a view array. A subject's rows often come in runs (a company's twelve months),
/// so a row whose value equals the row before reuses its key instead of hashing again. Equal
/// views are equal values (same length and prefix, and for long values the same buffer and
/// offset), as a Parquet column read from dictionary pages gives them; views that differ are
/// equal values when their lengths and prefixes agree and their bytes do.
fn view_keys(text: &StringViewArray) -> Vec<u64> {
    /// The view's low 64 bits: the value's length and its first four bytes.
    const LENGTH_AND_PREFIX: u128 = u64::MAX as u128;
    let mut keys = Vec::with_capacity(text.len());
    let mut previous: Option<(u128, &[u8], u64)> = None;
    for (row, &view) in text.views().iter().enumerate() {
        let key = match previous {
            Some((seen, _, key)) if seen == view => key,
            Some((seen, seen_bytes, key))
                if seen & LENGTH_AND_PREFIX == view & LENGTH_AND_PREFIX && seen_bytes == text.value(row).as_bytes() =>
            {
                key
            }
            _ => {
                let bytes = text.value(row).as_bytes();
                let key = subject_key(bytes);
                previous = Some((view, bytes, key));
                key
            }
        };
        keys.push(key);
    }
    keys
}

/// The key argument of a host aggregate, checked to be the key column.
pub(crate) fn key_argument<'a>(values: &'a [ArrayRef], function: &str) -> Result<&'a UInt64Array> {
    match values.first().and_then(|keys| keys.as_primitive_opt::<UInt64Type>()) {
        Some(keys) => Ok(keys),
        None => internal_err!("{function} takes the subject key column ({SUBJECT_KEY_FUNCTION}) first"),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, LargeStringArray, StringArray, UInt32Array};
    use datafusion::arrow::compute::take;

    use super::*;

    #[test]
    fn every_text_layout_gives_the_same_keys_and_nulls_stay_null() {
        let values = [Some("91330500MA0000001X"), None, Some("short"), Some(""), Some("浙江某某纺织有限公司")];
        let expected: Vec<Option<u64>> =
            values.iter().map(|value| value.map(|text| subject_key(text.as_bytes()))).collect();
        let layouts: [ArrayRef; 3] = [
            Arc::new(StringArray::from(values.to_vec())),
            Arc::new(LargeStringArray::from(values.to_vec())),
            Arc::new(StringViewArray::from(values.to_vec())),
        ];
        for layout in layouts {
            let keys = subject_keys(&layout).expect("keys");
            assert_eq!(keys.iter().collect::<Vec<_>>(), expected, "{}", layout.data_type());
        }
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![Some(42), None]));
        let keys = subject_keys(&numbers).expect("keys");
        assert_eq!(keys.iter().collect::<Vec<_>>(), vec![Some(subject_key(b"42")), None]);
    }

    #[test]
    fn runs_of_one_value_and_neighbours_that_differ_keep_their_own_keys() {
        let values = ["91330500MA0000001X", "91330500MA0000002Y", "short", "shorter"];
        let distinct: ArrayRef = Arc::new(StringViewArray::from(values.to_vec()));
        // `take` copies views, so repeated rows share one view as dictionary pages give them.
        let rows = UInt32Array::from(vec![0, 0, 0, 1, 1, 0, 2, 2, 3, 2]);
        let repeated = take(&distinct, &rows, None).expect("take");
        let keys = subject_keys(&repeated).expect("keys");
        let expected: Vec<Option<u64>> =
            rows.values().iter().map(|&row| Some(subject_key(values[row as usize].as_bytes()))).collect();
        assert_eq!(keys.iter().collect::<Vec<_>>(), expected);
        // Copies of one value have views of their own, as plain-encoded pages give them.
        let copies: ArrayRef = Arc::new(StringViewArray::from(
            rows.values().iter().map(|&row| values[row as usize].to_string()).collect::<Vec<_>>(),
        ));
        assert_eq!(subject_keys(&copies).expect("keys").iter().collect::<Vec<_>>(), expected);
    }
}
