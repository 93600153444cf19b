//! The content rule: every cell that leaves — strings, numbers, binary, and the values inside
//! lists, structs, maps, dictionaries and unions — and artifact bytes scanned for personal
//! identifiers (resident ID numbers, credit codes, bank cards, mobiles, e-mails; see
//! [`crate::identifiers`] for the disguises read through) and for values of the grant's
//! identifier columns.
//!
//! Each array yields one [`Finds`] byte per element; a nested cell's verdict is the union of
//! its values', so a list of resident IDs (`array_agg(id_card)`) is found like one ID. Types
//! without a reading of their own are scanned in their display form; a column the scan cannot
//! read blocks the output, since an unread cell is an unchecked one.

use super::ReviewRule;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, Float16Type,
    Float32Type, Float64Type, Int32Type, Int64Type, RunEndIndexType, UInt32Type, UInt64Type, i256,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{ReviewReport, RuleOutcome};
use crate::identifiers::{Finds, IdentifierKind, IdentifierScanner, IdentifierSet};

/// Nesting deeper than this is not read (and blocks): a hostile schema must not exhaust the
/// stack.
const MAX_DEPTH: usize = 32;

/// How a top-level cell is counted in the rule's figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellKind {
    String,
    Numeric,
    Binary,
    Nested,
    Other,
}

impl CellKind {
    const ALL: [Self; 5] = [Self::String, Self::Numeric, Self::Binary, Self::Nested, Self::Other];

    fn of(data_type: &DataType) -> Self {
        match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::String,
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _) => Self::Numeric,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
                Self::Binary
            }
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(_, _)
            | DataType::Struct(_)
            | DataType::Map(_, _)
            | DataType::Union(_, _) => Self::Nested,
            DataType::Dictionary(_, values) => Self::of(values),
            DataType::RunEndEncoded(_, values) => Self::of(values.data_type()),
            _ => Self::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Numeric => "numeric",
            Self::Binary => "binary",
            Self::Nested => "nested",
            Self::Other => "other",
        }
    }
}

/// What the scan read and found, without values.
#[derive(Default)]
struct Tally {
    /// Non-null top-level cells read, by [`CellKind`].
    cells: [u64; 5],
    /// Values read inside nested cells.
    inner_values: u64,
    /// Cells holding each [`IdentifierKind`].
    by_kind: [u64; 5],
    /// Cells holding any regulated identifier.
    with_identifiers: u64,
    /// Cells holding a value of the grant's identifier columns.
    granted_values: u64,
    /// Columns the scan could not read: `column "x" (type)`.
    unreadable: Vec<String>,
}

impl Tally {
    fn record(&mut self, row: usize, column: &str, finds: Finds, report: &mut ReviewReport) {
        if finds.kinds().next().is_some() {
            self.with_identifiers += 1;
        }
        for kind in finds.kinds() {
            self.by_kind[kind as usize] += 1;
            report.finding(row, column, ReviewRule::Content, kind.as_str());
        }
        if finds.granted_value() {
            self.granted_values += 1;
            report.finding(row, column, ReviewRule::Content, "value of an identifier column of the granted data");
        }
    }

    /// `1,200 string, 800 numeric, 40 nested cells (3,000 values inside)`.
    fn scanned(&self) -> String {
        let kinds: Vec<String> = CellKind::ALL
            .iter()
            .zip(self.cells)
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| format!("{} {}", grouped(count), kind.as_str()))
            .collect();
        let mut text = if kinds.is_empty() { "0".to_string() } else { kinds.join(", ") };
        text.push_str(" cells");
        if self.inner_values > 0 {
            text.push_str(&format!(" ({} values inside)", grouped(self.inner_values)));
        }
        text
    }

    fn conclude(self, report: &mut ReviewReport) {
        let scanned = self.scanned();
        if !self.unreadable.is_empty() {
            report.push(
                ReviewRule::Content,
                RuleOutcome::Blocked,
                format!("{} cannot be read by the content scan; {scanned} scanned", self.unreadable.join(", ")),
            );
        } else if self.with_identifiers == 0 && self.granted_values == 0 {
            report.push(ReviewRule::Content, RuleOutcome::Pass, format!("{scanned} scanned, no identifiers"));
        } else {
            let kinds: Vec<String> = IdentifierKind::ALL
                .iter()
                .zip(self.by_kind)
                .filter(|(_, count)| *count > 0)
                .map(|(kind, count)| format!("{} {}", kind.as_str(), grouped(count)))
                .collect();
            let kinds = if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) };
            report.push(
                ReviewRule::Content,
                RuleOutcome::Blocked,
                format!(
                    "identifiers in {} cells{kinds} and values of granted identifier columns in {} cells, of {scanned} scanned",
                    grouped(self.with_identifiers),
                    grouped(self.granted_values)
                ),
            );
        }
    }
}

/// `1234567` as `1,234,567`.
fn grouped(count: u64) -> String {
    let digits = count.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// Reads arrays into one [`Finds`] per element, reusing its buffers across cells.
struct Reader<'a> {
    scanner: IdentifierScanner,
    set: Option<&'a IdentifierSet>,
    /// A cell's text: decoded bytes or a display form.
    text: String,
    /// Values read below the top level.
    inner_values: u64,
}

/// The array's type, for a refusal.
struct Unreadable(DataType);

impl<'a> Reader<'a> {
    fn new(set: Option<&'a IdentifierSet>) -> Self {
        Self {
            scanner: IdentifierScanner::new(),
            set: set.filter(|set| !set.is_empty()),
            text: String::new(),
            inner_values: 0,
        }
    }

    /// One verdict per element of `array`; nulls find nothing.
    fn read(&mut self, array: &dyn Array, depth: usize) -> Result<Vec<Finds>, Unreadable> {
        if depth > MAX_DEPTH {
            return Err(Unreadable(array.data_type().clone()));
        }
        let container = matches!(array.data_type(), DataType::Dictionary(_, _) | DataType::RunEndEncoded(_, _));
        if depth > 0 && !array.data_type().is_nested() && !container {
            self.inner_values += (array.len() - array.null_count()) as u64;
        }
        let set = self.set;
        let finds = match array.data_type() {
            DataType::Utf8 => self.strings(array.as_string::<i32>().iter()),
            DataType::LargeUtf8 => self.strings(array.as_string::<i64>().iter()),
            DataType::Utf8View => self.strings(array.as_string_view().iter()),
            DataType::Binary => self.binaries(array.as_binary::<i32>().iter()),
            DataType::LargeBinary => self.binaries(array.as_binary::<i64>().iter()),
            DataType::BinaryView => self.binaries(array.as_binary_view().iter()),
            DataType::FixedSizeBinary(_) => self.binaries(array.as_fixed_size_binary().iter()),
            // Too small to hold 9 digits: nothing to compare.
            DataType::Null
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::UInt8
            | DataType::UInt16 => {
                vec![Finds::default(); array.len()]
            }
            DataType::Int32 => self.integers(array.as_primitive::<Int32Type>()),
            DataType::Int64 => self.integers(array.as_primitive::<Int64Type>()),
            DataType::UInt32 => self.integers(array.as_primitive::<UInt32Type>()),
            DataType::UInt64 => self.integers(array.as_primitive::<UInt64Type>()),
            DataType::Float16 => self.each(array.as_primitive::<Float16Type>().iter(), |scanner, value| {
                scanner.float(f64::from(value), set)
            }),
            DataType::Float32 => self.each(array.as_primitive::<Float32Type>().iter(), |scanner, value| {
                scanner.float(f64::from(value), set)
            }),
            DataType::Float64 => self.floats(array.as_primitive::<Float64Type>()),
            DataType::Decimal32(_, scale) => {
                let scale = *scale;
                self.each(array.as_primitive::<Decimal32Type>().iter(), |scanner, value| {
                    scanner.decimal(i128::from(value), scale, set)
                })
            }
            DataType::Decimal64(_, scale) => {
                let scale = *scale;
                self.each(array.as_primitive::<Decimal64Type>().iter(), |scanner, value| {
                    scanner.decimal(i128::from(value), scale, set)
                })
            }
            DataType::Decimal128(_, scale) => {
                let scale = *scale;
                self.each(array.as_primitive::<Decimal128Type>().iter(), |scanner, value| {
                    scanner.decimal(value, scale, set)
                })
            }
            DataType::Decimal256(_, scale) => {
                let scale = *scale;
                let values: Vec<Option<i256>> = array.as_primitive::<Decimal256Type>().iter().collect();
                let mut finds = Vec::with_capacity(values.len());
                for value in values {
                    finds.push(match value {
                        None => Finds::default(),
                        Some(value) => match value.to_i128() {
                            Some(value) => self.scanner.decimal(value, scale, set),
                            // Beyond 10^38: its digits, as text.
                            None => {
                                self.text.clear();
                                self.text.push_str(&value.to_string());
                                self.scanner.text(&self.text, set)
                            }
                        },
                    });
                }
                finds
            }
            // Times, dates and durations hold integers a module can fill with any digits.
            DataType::Date64 | DataType::Time64(_) | DataType::Timestamp(_, _) | DataType::Duration(_) => {
                let integers =
                    arrow::compute::cast(array, &DataType::Int64).map_err(|_| Unreadable(array.data_type().clone()))?;
                self.integers(integers.as_primitive::<Int64Type>())
            }
            DataType::Date32 | DataType::Time32(_) => {
                let integers =
                    arrow::compute::cast(array, &DataType::Int32).map_err(|_| Unreadable(array.data_type().clone()))?;
                self.integers(integers.as_primitive::<Int32Type>())
            }
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                let inner = self.read(list.values().as_ref(), depth + 1)?;
                ranges(array, list.offsets().windows(2).map(|pair| (pair[0] as usize, pair[1] as usize)), &inner)
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                let inner = self.read(list.values().as_ref(), depth + 1)?;
                ranges(array, list.offsets().windows(2).map(|pair| (pair[0] as usize, pair[1] as usize)), &inner)
            }
            DataType::ListView(_) => {
                let list = array.as_list_view::<i32>();
                let inner = self.read(list.values().as_ref(), depth + 1)?;
                let spans = list.offsets().iter().zip(list.sizes().iter());
                ranges(array, spans.map(|(&offset, &size)| (offset as usize, offset as usize + size as usize)), &inner)
            }
            DataType::LargeListView(_) => {
                let list = array.as_list_view::<i64>();
                let inner = self.read(list.values().as_ref(), depth + 1)?;
                let spans = list.offsets().iter().zip(list.sizes().iter());
                ranges(array, spans.map(|(&offset, &size)| (offset as usize, offset as usize + size as usize)), &inner)
            }
            DataType::FixedSizeList(_, size) => {
                let list = array.as_fixed_size_list();
                let inner = self.read(list.values().as_ref(), depth + 1)?;
                let size = *size as usize;
                ranges(
                    array,
                    (0..array.len())
                        .map(|row| (list.value_offset(row) as usize, list.value_offset(row) as usize + size)),
                    &inner,
                )
            }
            DataType::Map(_, _) => {
                let map = array.as_map();
                let inner = self.read(map.entries(), depth + 1)?;
                ranges(array, map.offsets().windows(2).map(|pair| (pair[0] as usize, pair[1] as usize)), &inner)
            }
            DataType::Struct(_) => {
                let fields = array.as_struct();
                let mut finds = vec![Finds::default(); array.len()];
                for column in fields.columns() {
                    for (cell, found) in finds.iter_mut().zip(self.read(column.as_ref(), depth + 1)?) {
                        *cell |= found;
                    }
                }
                clear_nulls(array, &mut finds);
                finds
            }
            DataType::Union(fields, _) => {
                let union = array.as_union();
                let mut children = Vec::new();
                for (type_id, _) in fields.iter() {
                    children.push((type_id, self.read(union.child(type_id).as_ref(), depth + 1)?));
                }
                (0..array.len())
                    .map(|row| {
                        let type_id = union.type_id(row);
                        children
                            .iter()
                            .find(|(id, _)| *id == type_id)
                            .and_then(|(_, finds)| finds.get(union.value_offset(row)).copied())
                            .unwrap_or_default()
                    })
                    .collect()
            }
            DataType::Dictionary(_, _) => {
                let dictionary = array.as_any_dictionary();
                let values = self.read(dictionary.values().as_ref(), depth)?;
                let mut finds: Vec<Finds> = dictionary
                    .normalized_keys()
                    .into_iter()
                    .map(|key| values.get(key).copied().unwrap_or_default())
                    .collect();
                clear_nulls(array, &mut finds);
                finds
            }
            DataType::RunEndEncoded(run_ends, _) => match run_ends.data_type() {
                DataType::Int16 => self.runs(array.as_run::<arrow::datatypes::Int16Type>(), depth)?,
                DataType::Int32 => self.runs(array.as_run::<Int32Type>(), depth)?,
                DataType::Int64 => self.runs(array.as_run::<Int64Type>(), depth)?,
                _ => return Err(Unreadable(array.data_type().clone())),
            },
            _ => self.display(array)?,
        };
        Ok(finds)
    }

    fn each<T>(
        &mut self,
        values: impl Iterator<Item = Option<T>>,
        mut scan: impl FnMut(&mut IdentifierScanner, T) -> Finds,
    ) -> Vec<Finds> {
        values.map(|value| value.map(|value| scan(&mut self.scanner, value)).unwrap_or_default()).collect()
    }

    fn strings<'s>(&mut self, values: impl Iterator<Item = Option<&'s str>>) -> Vec<Finds> {
        let set = self.set;
        self.each(values, |scanner, text| scanner.text(text, set))
    }

    /// Bytes read as UTF-8, invalid sequences replaced.
    fn binaries<'s>(&mut self, values: impl Iterator<Item = Option<&'s [u8]>>) -> Vec<Finds> {
        let set = self.set;
        let mut finds = Vec::new();
        for value in values {
            finds.push(match value {
                None => Finds::default(),
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => self.scanner.text(text, set),
                    Err(_) => {
                        self.text.clear();
                        for chunk in bytes.utf8_chunks() {
                            self.text.push_str(chunk.valid());
                            if !chunk.invalid().is_empty() {
                                self.text.push(char::REPLACEMENT_CHARACTER);
                            }
                        }
                        self.scanner.text(&self.text, set)
                    }
                },
            });
        }
        finds
    }

    /// Integers: most columns hold none of 9 digits or more, and are passed in one sweep.
    fn integers<T: ArrowPrimitiveType>(&mut self, array: &arrow::array::PrimitiveArray<T>) -> Vec<Finds>
    where
        T::Native: Into<i128>,
    {
        // Without identifier values to compare, only mobiles and longer matter.
        let smallest: u128 = if self.set.is_some() { 100_000_000 } else { 13_000_000_000 };
        if array.values().iter().all(|&value| Into::<i128>::into(value).unsigned_abs() < smallest) {
            return vec![Finds::default(); array.len()];
        }
        let set = self.set;
        self.each(array.iter(), |scanner, value| scanner.integer(Into::<i128>::into(value).unsigned_abs(), set))
    }

    fn floats(&mut self, array: &arrow::array::Float64Array) -> Vec<Finds> {
        let smallest = if self.set.is_some() { 100_000_000.0 } else { 13_000_000_000.0 };
        if array.values().iter().all(|value| value.abs() < smallest || value.fract() != 0.0) {
            return vec![Finds::default(); array.len()];
        }
        let set = self.set;
        self.each(array.iter(), |scanner, value| scanner.float(value, set))
    }

    fn runs<R: RunEndIndexType>(
        &mut self,
        array: &arrow::array::RunArray<R>,
        depth: usize,
    ) -> Result<Vec<Finds>, Unreadable> {
        let values = self.read(array.values().as_ref(), depth)?;
        let physical = array.get_physical_indices(&(0..array.len() as u64).collect::<Vec<_>>());
        let physical = physical.map_err(|_| Unreadable(array.data_type().clone()))?;
        Ok(physical.into_iter().map(|index| values.get(index).copied().unwrap_or_default()).collect())
    }

    /// Any other type (intervals, …) by its display form.
    fn display(&mut self, array: &dyn Array) -> Result<Vec<Finds>, Unreadable> {
        let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())
            .map_err(|_| Unreadable(array.data_type().clone()))?;
        let mut finds = Vec::with_capacity(array.len());
        for row in 0..array.len() {
            if array.is_null(row) {
                finds.push(Finds::default());
                continue;
            }
            self.text.clear();
            use std::fmt::Write;
            write!(self.text, "{}", formatter.value(row)).map_err(|_| Unreadable(array.data_type().clone()))?;
            finds.push(self.scanner.text(&self.text, self.set));
        }
        Ok(finds)
    }
}

/// A list-like array's verdicts: the union of the values in each row's range.
fn ranges(array: &dyn Array, spans: impl Iterator<Item = (usize, usize)>, inner: &[Finds]) -> Vec<Finds> {
    let mut finds: Vec<Finds> = spans
        .map(|(start, end)| {
            inner
                .get(start..end.min(inner.len()))
                .unwrap_or_default()
                .iter()
                .fold(Finds::default(), |all, &one| all | one)
        })
        .collect();
    clear_nulls(array, &mut finds);
    finds
}

fn clear_nulls(array: &dyn Array, finds: &mut [Finds]) {
    if array.null_count() > 0 {
        for (row, cell) in finds.iter_mut().enumerate() {
            if array.is_null(row) {
                *cell = Finds::default();
            }
        }
    }
}

pub(super) fn scan_table(table: &RecordBatch, identifiers: Option<&IdentifierSet>, report: &mut ReviewReport) {
    let mut tally = Tally::default();
    let mut reader = Reader::new(identifiers);
    for (index, field) in table.schema().fields().iter().enumerate() {
        let column = table.column(index);
        match reader.read(column.as_ref(), 0) {
            Ok(finds) => {
                tally.cells[CellKind::of(field.data_type()) as usize] +=
                    (column.len() - column.logical_null_count()) as u64;
                for (row, found) in finds.into_iter().enumerate() {
                    if !found.is_empty() && column.is_valid(row) {
                        tally.record(row, field.name(), found, report);
                    }
                }
            }
            Err(Unreadable(data_type)) => tally.unreadable.push(format!("column \"{}\" ({data_type})", field.name())),
        }
    }
    tally.inner_values = reader.inner_values;
    tally.conclude(report);
}

pub(super) fn scan_bytes(bytes: &[u8], identifiers: Option<&IdentifierSet>, report: &mut ReviewReport) {
    let text = String::from_utf8_lossy(bytes);
    let mut scanner = IdentifierScanner::new();
    let identifiers = identifiers.filter(|set| !set.is_empty());
    let (mut with_identifiers, mut granted_values) = (0u64, 0u64);
    for (line, text) in text.lines().enumerate() {
        let found = scanner.text(text, identifiers);
        for kind in found.kinds() {
            report.finding(line, "bytes", ReviewRule::Content, kind.as_str());
        }
        with_identifiers += u64::from(found.kinds().next().is_some());
        if found.granted_value() {
            granted_values += 1;
            report.finding(line, "bytes", ReviewRule::Content, "value of an identifier column of the granted data");
        }
    }
    let scanned = grouped(bytes.len() as u64);
    if with_identifiers == 0 && granted_values == 0 {
        report.push(ReviewRule::Content, RuleOutcome::Pass, format!("{scanned} bytes scanned, no identifiers"));
    } else {
        report.push(
            ReviewRule::Content,
            RuleOutcome::Blocked,
            format!(
                "identifiers in {} lines and values of granted identifier columns in {} lines, of {scanned} bytes scanned",
                grouped(with_identifiers),
                grouped(granted_values)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BinaryArray, BinaryViewArray, Decimal128Array, Decimal256Array, DictionaryArray,
        FixedSizeBinaryArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array,
        IntervalMonthDayNanoArray, LargeBinaryArray, LargeListArray, LargeStringArray, ListArray, ListViewArray,
        MapBuilder, RunArray, StringArray, StringBuilder, StringViewArray, StructArray, TimestampNanosecondArray,
        UInt64Array, UnionArray,
    };
    use arrow::buffer::{OffsetBuffer, ScalarBuffer};
    use arrow::datatypes::{Field, IntervalMonthDayNano, Schema, UnionFields};

    use super::*;
    use crate::identifiers::{luhn_check_digit, resident_id_check_char, uscc_check_char};
    use crate::review::OutputKind;

    fn finds(array: &dyn Array, set: Option<&IdentifierSet>) -> Vec<Finds> {
        match Reader::new(set).read(array, 0) {
            Ok(finds) => finds,
            Err(Unreadable(data_type)) => panic!("{data_type} could not be read"),
        }
    }

    fn kinds(found: Finds) -> Vec<IdentifierKind> {
        found.kinds().collect()
    }

    fn scan(columns: Vec<(&str, ArrayRef)>, set: Option<&IdentifierSet>) -> ReviewReport {
        let fields: Vec<Field> =
            columns.iter().map(|(name, array)| Field::new(*name, array.data_type().clone(), true)).collect();
        let table =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, array)| array).collect())
                .unwrap();
        let mut report = ReviewReport::new("t", OutputKind::Table);
        scan_table(&table, set, &mut report);
        report
    }

    /// SplitMix64: deterministic draws for the corpus.
    struct Draw(u64);

    impl Draw {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }

        fn digits(&mut self, count: usize) -> String {
            (0..count).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
        }
    }

    const REGIONS: &[&str] =
        &["110105", "330502", "330521", "440305", "510104", "650102", "210203", "370202", "500103"];

    fn resident_id(draw: &mut Draw) -> String {
        let year = 1940 + draw.below(70);
        let month = 1 + draw.below(12);
        let day = 1 + draw.below(28);
        let first17 = format!("{}{year}{month:02}{day:02}{}", draw.pick(REGIONS), draw.digits(3));
        format!("{first17}{}", char::from(resident_id_check_char(first17.as_bytes()).unwrap()))
    }

    fn uscc(draw: &mut Draw) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
        let organisation: String =
            (0..9).map(|_| char::from(ALPHABET[draw.below(ALPHABET.len() as u64) as usize])).collect();
        let first17 =
            format!("{}{}{organisation}", draw.pick(&["91", "92", "93", "12", "52", "Y1"]), draw.pick(REGIONS));
        format!("{first17}{}", char::from(uscc_check_char(first17.as_bytes()).unwrap()))
    }

    fn mobile(draw: &mut Draw) -> String {
        format!(
            "1{}{}",
            draw.pick(&["34", "35", "38", "39", "50", "58", "86", "87", "77", "89", "98", "66"]),
            draw.digits(8)
        )
    }

    fn bank_card(draw: &mut Draw) -> String {
        let bin = draw.pick(&["621700", "622848", "622202", "621226", "436742", "524094", "356833"]);
        let length = if draw.below(2) == 0 { 16 } else { 19 };
        let payload = format!("{bin}{}", draw.digits(length - 7));
        format!("{payload}{}", char::from(luhn_check_digit(&payload).unwrap()))
    }

    fn email(draw: &mut Draw) -> String {
        let local = format!(
            "{}{}.{}",
            draw.pick(&["zhang", "li", "wang", "chen"]),
            draw.digits(3),
            draw.pick(&["san", "si", "wu"])
        );
        format!("{local}@{}", draw.pick(&["example.com", "163.com", "qq.com", "zj.gov.cn"]))
    }

    /// One labelled identifier.
    struct Labelled {
        kind: IdentifierKind,
        text: String,
    }

    fn labelled_identifiers() -> Vec<Labelled> {
        let mut draw = Draw(24);
        let mut all = Vec::new();
        for index in 0..300 {
            let (kind, text) = match index % 5 {
                0 => (IdentifierKind::ResidentId, resident_id(&mut draw)),
                1 => (IdentifierKind::Uscc, uscc(&mut draw)),
                2 => (IdentifierKind::Mobile, mobile(&mut draw)),
                3 => (IdentifierKind::BankCard, bank_card(&mut draw)),
                _ => (IdentifierKind::Email, email(&mut draw)),
            };
            all.push(Labelled { kind, text });
        }
        all
    }

    /// Cells that hold no identifier but look like one, and ordinary output cells.
    fn clean_cells() -> Vec<String> {
        let mut draw = Draw(7);
        let mut cells = Vec::new();
        for index in 0..1_200 {
            let cell = match index % 12 {
                // A resident ID with a wrong check digit.
                0 => {
                    let id = resident_id(&mut draw);
                    let check = id.as_bytes()[17];
                    let wrong = if check == b'X' || check == b'9' { '0' } else { char::from(check + 1) };
                    format!("{}{wrong}", &id[..17])
                }
                // Too short: an ID without its check character, a 10-digit mobile.
                1 => resident_id(&mut draw)[..17].to_string(),
                2 => mobile(&mut draw)[..10].to_string(),
                // A card with a wrong Luhn digit.
                3 => {
                    let card = bank_card(&mut draw);
                    let last = card.as_bytes()[card.len() - 1];
                    format!("{}{}", &card[..card.len() - 1], char::from(b'0' + (last - b'0' + 1) % 10))
                }
                // A credit code with a wrong check character.
                4 => {
                    let code = uscc(&mut draw);
                    let wrong = if code.ends_with('0') { '1' } else { '0' };
                    format!("{}{wrong}", &code[..17])
                }
                // Random digits, 8 to 20 of them.
                5 | 6 => {
                    let length = 8 + draw.below(13) as usize;
                    draw.digits(length)
                }
                7 => draw.pick(&["吴兴区", "南浔区", "纺织业", "批发和零售业", "2025-01", "合计", "其他"]).to_string(),
                8 => format!("order-{}-{}", draw.below(1_000_000), draw.below(1_000)),
                9 => format!("{}.{:02}", draw.below(100_000_000), draw.below(100)),
                10 => format!(
                    "note {}: energy audit passed on 2025-0{}-1{}",
                    draw.below(10_000),
                    1 + draw.below(9),
                    draw.below(10)
                ),
                _ => draw.pick(&["zhang@localhost", "li@", "@example.com", "wang at example dot com"]).to_string(),
            };
            cells.push(cell);
        }
        cells
    }

    fn full_width(text: &str) -> String {
        text.chars()
            .map(|c| if c.is_ascii_graphic() { char::from_u32(c as u32 + 0xFEE0).unwrap() } else { c })
            .collect()
    }

    fn dashed(text: &str, every: usize) -> String {
        let mut out = String::new();
        for (index, c) in text.chars().enumerate() {
            if index > 0 && index % every == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    fn letters(text: &str, base: u8) -> String {
        text.chars().map(|c| c.to_digit(10).map_or(c, |digit| char::from(base + digit as u8))).collect()
    }

    fn strings(cells: &[String]) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(cells))
    }

    /// The presentations of string cells a module can choose, by name.
    fn text_presentations(identifier: &Labelled) -> Vec<(&'static str, String)> {
        let text = &identifier.text;
        let digits_only = identifier.kind != IdentifierKind::Uscc && identifier.kind != IdentifierKind::Email;
        let mut all = vec![
            ("plain", text.clone()),
            ("full-width", full_width(text)),
            ("concatenated", format!("name:张三;id:{text}x")),
            ("embedded in text", format!("编号{text}号")),
            ("case", if identifier.kind == IdentifierKind::Email { text.to_uppercase() } else { text.to_lowercase() }),
        ];
        if identifier.kind != IdentifierKind::Email {
            all.push(("dash-split", dashed(text, 4)));
            all.push(("spaced", dashed(text, 6).replace('-', " ")));
            all.push(("dotted and slashed", dashed(text, 5).replacen('-', ".", 1).replace('-', "/")));
        }
        if digits_only {
            all.push(("letter-encoded", letters(text, b'a')));
            all.push(("letter-encoded upper", letters(text, b'A')));
            all.push(("look-alikes", text.replace('0', "O").replace('1', "l")));
        }
        all
    }

    /// Every presentation of the corpus as one array per presentation: (name, array, label
    /// per cell — the kind a cell must be found as, or None for a clean cell).
    fn corpus() -> Vec<(String, ArrayRef, Vec<Option<IdentifierKind>>)> {
        let identifiers = labelled_identifiers();
        let clean = clean_cells();
        let mut presentations: Vec<(String, ArrayRef, Vec<Option<IdentifierKind>>)> = Vec::new();
        let mut labels: Vec<Option<IdentifierKind>> = identifiers.iter().map(|one| Some(one.kind)).collect();
        labels.extend(clean.iter().map(|_| None));

        // Strings, in every disguise; clean cells as they are.
        let names: Vec<&str> = text_presentations(&identifiers[0]).iter().map(|(name, _)| *name).collect();
        for name in [
            "plain",
            "full-width",
            "concatenated",
            "embedded in text",
            "case",
            "dash-split",
            "spaced",
            "dotted and slashed",
            "letter-encoded",
            "letter-encoded upper",
            "look-alikes",
        ] {
            assert!(
                names.contains(&name)
                    || name.starts_with("letter")
                    || name == "look-alikes"
                    || name.contains("dash")
                    || name.contains("spaced")
                    || name.contains("dotted")
            );
            let mut cells = Vec::new();
            let mut cell_labels = Vec::new();
            for identifier in &identifiers {
                if let Some((_, text)) = text_presentations(identifier).into_iter().find(|(shown, _)| *shown == name) {
                    cells.push(text);
                    cell_labels.push(Some(identifier.kind));
                }
            }
            cells.extend(clean.iter().cloned());
            cell_labels.extend(clean.iter().map(|_| None));
            presentations.push((format!("string, {name}"), strings(&cells), cell_labels));
        }

        // Numbers: the identifiers made of digits, and clean digit strings that fit.
        let numeric: Vec<(u64, Option<IdentifierKind>)> = identifiers
            .iter()
            .filter_map(|one| one.text.parse::<u64>().ok().map(|value| (value, Some(one.kind))))
            .chain(clean.iter().filter_map(|cell| {
                cell.parse::<u64>().ok().filter(|&value| value < i64::MAX as u64).map(|value| (value, None))
            }))
            .collect();
        let numeric_labels: Vec<_> = numeric.iter().map(|(_, label)| *label).collect();
        let values = || numeric.iter().map(|(value, _)| *value);
        presentations.push((
            "Int64".into(),
            Arc::new(Int64Array::from_iter_values(values().map(|value| value as i64))),
            numeric_labels.clone(),
        ));
        presentations.push((
            "UInt64".into(),
            Arc::new(UInt64Array::from_iter_values(values())),
            numeric_labels.clone(),
        ));
        let decimal = |scale: i8| -> ArrayRef {
            let factor = 10i128.pow(scale as u32);
            Arc::new(
                Decimal128Array::from_iter_values(values().map(|value| i128::from(value) * factor))
                    .with_precision_and_scale(38, scale)
                    .unwrap(),
            )
        };
        presentations.push(("Decimal128(38,0)".into(), decimal(0), numeric_labels.clone()));
        presentations.push(("Decimal128(38,2)".into(), decimal(2), numeric_labels.clone()));
        presentations.push((
            "Float64".into(),
            Arc::new(Float64Array::from_iter_values(values().map(|value| value as f64))),
            numeric_labels.clone(),
        ));
        let list_of_numbers = ListArray::from_iter_primitive::<Int64Type, _, _>(
            values().map(|value| Some(vec![Some(12_345), Some(value as i64), None])),
        );
        presentations.push(("list of Int64".into(), Arc::new(list_of_numbers), numeric_labels.clone()));

        // Every cell (identifier or clean) in nested and binary presentations.
        let cells: Vec<String> = identifiers.iter().map(|one| one.text.clone()).chain(clean.iter().cloned()).collect();
        let mut list = arrow::array::ListBuilder::new(StringBuilder::new());
        for cell in &cells {
            list.values().append_value("吴兴区");
            list.values().append_value(cell);
            list.values().append_null();
            list.append(true);
        }
        presentations.push(("list of strings (array_agg)".into(), Arc::new(list.finish()), labels.clone()));
        let large: LargeListArray = LargeListArray::new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            OffsetBuffer::from_lengths(cells.iter().map(|_| 1)),
            strings(&cells),
            None,
        );
        presentations.push(("large list".into(), Arc::new(large), labels.clone()));
        let pairs: Vec<String> = cells.iter().flat_map(|cell| ["合计".to_string(), cell.clone()]).collect();
        let fixed =
            FixedSizeListArray::new(Arc::new(Field::new_list_field(DataType::Utf8, true)), 2, strings(&pairs), None);
        presentations.push(("fixed-size list".into(), Arc::new(fixed), labels.clone()));
        let structs = StructArray::from(vec![
            (Arc::new(Field::new("district", DataType::Utf8, true)), strings(&vec!["吴兴区".to_string(); cells.len()])),
            (Arc::new(Field::new("id", DataType::Utf8, true)), strings(&cells)),
        ]);
        presentations.push(("struct".into(), Arc::new(structs), labels.clone()));
        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for cell in &cells {
            map.keys().append_value("id");
            map.values().append_value(cell);
            map.append(true).unwrap();
        }
        presentations.push(("map".into(), Arc::new(map.finish()), labels.clone()));
        presentations.push((
            "Binary".into(),
            Arc::new(BinaryArray::from_iter_values(cells.iter().map(String::as_bytes))),
            labels.clone(),
        ));
        presentations.push((
            "BinaryView".into(),
            Arc::new(BinaryViewArray::from_iter_values(cells.iter().map(String::as_bytes))),
            labels.clone(),
        ));
        let dictionary: DictionaryArray<Int32Type> = cells.iter().map(String::as_str).collect();
        presentations.push(("dictionary".into(), Arc::new(dictionary), labels));
        presentations
    }

    #[test]
    fn a_labelled_corpus_is_found_in_every_presentation_with_few_false_positives() {
        let (mut cells, mut clean) = (0usize, 0usize);
        let mut missed = Vec::new();
        // Clean cells flagged, per presentation.
        let mut flagged: Vec<(String, Vec<String>)> = Vec::new();
        for (name, array, labels) in corpus() {
            assert_eq!(array.len(), labels.len(), "{name}");
            let found = finds(array.as_ref(), None);
            let shown = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).unwrap();
            let mut here = Vec::new();
            for (row, (found, label)) in found.iter().zip(&labels).enumerate() {
                cells += 1;
                match label {
                    Some(kind) if !found.has(*kind) => missed.push(format!("{name}: {} as {kind:?}", shown.value(row))),
                    Some(_) => {}
                    None => {
                        clean += 1;
                        if !found.is_empty() {
                            here.push(format!("{} as {:?}", shown.value(row), kinds(*found)));
                        }
                    }
                }
            }
            flagged.push((name, here));
        }
        assert!(cells >= 2_000, "{cells} cells");
        assert!(missed.is_empty(), "{} identifiers missed, e.g. {:#?}", missed.len(), &missed[..missed.len().min(10)]);
        let total: usize = flagged.iter().map(|(_, cells)| cells.len()).sum();
        let rate = total as f64 / clean as f64;
        println!("content corpus: {cells} cells, every identifier found in every presentation");
        println!("{total} of {clean} clean cells flagged ({:.2}%):", rate * 100.0);
        for (name, cells) in &flagged {
            println!("  {name}: {} — {}", cells.len(), cells.iter().take(4).cloned().collect::<Vec<_>>().join("; "));
        }
        // Among the clean cells are random 8–20 digit strings: an 11-digit one opens with a
        // mobile prefix one time in eighteen, a 16–19 digit one passes Luhn with a banking
        // issuer digit one time in twenty, and such strings are mobiles and cards as far as
        // anyone can tell — about 4 of the 1,200 clean values. In a float, 18 and 19 digit
        // look-alikes (a wrong check digit) cannot be told from the identifiers they round to
        // and are flagged by design. Everything else should be quiet: 3% leaves room for these
        // and no more.
        assert!(rate < 0.03, "false-positive rate {rate:.4}");
        let (_, plain) = &flagged[0];
        assert!(plain.len() * 200 < clean / flagged.len(), "plain strings: {plain:#?}");
    }

    #[test]
    fn strings_of_every_encoding_are_scanned() {
        let id = "11010519491231002X";
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("吴兴区"), None, Some(id)])),
            Arc::new(LargeStringArray::from(vec![Some("吴兴区"), None, Some(id)])),
            Arc::new(StringViewArray::from(vec![Some("吴兴区"), None, Some(id)])),
        ];
        for array in arrays {
            let found = finds(array.as_ref(), None);
            assert_eq!(found[..2], [Finds::default(), Finds::default()], "{}", array.data_type());
            assert_eq!(kinds(found[2]), vec![IdentifierKind::ResidentId], "{}", array.data_type());
        }
    }

    #[test]
    fn integers_decimals_and_floats_are_scanned_by_their_digits() {
        let id = 330_502_198_001_011_230i64;
        let id = id + i64::from(resident_id_check_char(b"33050219800101123").unwrap() - b'0');
        let int64: ArrayRef =
            Arc::new(Int64Array::from(vec![Some(12), Some(13_812_345_678), None, Some(id), Some(-id)]));
        let found = finds(int64.as_ref(), None);
        assert!(found[0].is_empty() && found[2].is_empty());
        assert_eq!(kinds(found[1]), vec![IdentifierKind::Mobile]);
        assert_eq!(kinds(found[3]), vec![IdentifierKind::ResidentId]);
        assert_eq!(kinds(found[4]), vec![IdentifierKind::ResidentId], "negated");
        let decimal: ArrayRef = Arc::new(
            Decimal128Array::from(vec![1_381_234_567_800, 1_381_234_567_899]).with_precision_and_scale(20, 2).unwrap(),
        );
        let found = finds(decimal.as_ref(), None);
        assert_eq!(kinds(found[0]), vec![IdentifierKind::Mobile], "13812345678.00");
        assert!(found[1].is_empty(), "13812345678.99 has a fraction");
        let wide: ArrayRef = Arc::new(
            Decimal256Array::from(vec![arrow::datatypes::i256::from_i128(i128::from(id))])
                .with_precision_and_scale(40, 0)
                .unwrap(),
        );
        assert_eq!(kinds(finds(wide.as_ref(), None)[0]), vec![IdentifierKind::ResidentId]);
        let floats: ArrayRef =
            Arc::new(Float64Array::from(vec![13_812_345_678.0, id as f64, 1_234.5, 1.3812345678e10]));
        let found = finds(floats.as_ref(), None);
        assert_eq!(kinds(found[0]), vec![IdentifierKind::Mobile]);
        assert_eq!(kinds(found[1]), vec![IdentifierKind::ResidentId], "18 digits in a float");
        assert!(found[2].is_empty());
        assert_eq!(kinds(found[3]), vec![IdentifierKind::Mobile], "exponent form is the same number");
        let single: ArrayRef = Arc::new(Float32Array::from(vec![1.5e10f32]));
        assert_eq!(
            kinds(finds(single.as_ref(), None)[0]),
            vec![IdentifierKind::Mobile],
            "an 11-digit integral float32"
        );
        let unsigned: ArrayRef = Arc::new(UInt64Array::from(vec![id as u64]));
        assert_eq!(kinds(finds(unsigned.as_ref(), None)[0]), vec![IdentifierKind::ResidentId]);
        let timestamps: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![id, 1_735_689_600_000_000_000]));
        let found = finds(timestamps.as_ref(), None);
        assert_eq!(kinds(found[0]), vec![IdentifierKind::ResidentId], "an ID cast to a timestamp");
        assert!(found[1].is_empty(), "2025-01-01 is a time");
        let small: ArrayRef = Arc::new(Int32Array::from(vec![7, 123_456_789]));
        let set = IdentifierSet::from_values(["123456789"]);
        let found = finds(small.as_ref(), Some(&set));
        assert!(found[0].is_empty() && found[1].granted_value(), "a granted value as a number");
    }

    #[test]
    fn binary_cells_are_read_as_text() {
        let id = b"11010519491231002X";
        let mut invalid = vec![0xff, 0xfe];
        invalid.extend_from_slice(id);
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from_vec(vec![b"abc", id, &invalid])),
            Arc::new(LargeBinaryArray::from_vec(vec![b"abc", id, &invalid])),
            Arc::new(BinaryViewArray::from_iter_values([&b"abc"[..], id, &invalid])),
            Arc::new(FixedSizeBinaryArray::try_from_iter([&[0u8; 20][..], &invalid, &invalid].into_iter()).unwrap()),
        ];
        for array in arrays {
            let found = finds(array.as_ref(), None);
            assert!(found[0].is_empty(), "{}", array.data_type());
            assert_eq!(kinds(found[1]), vec![IdentifierKind::ResidentId], "{}", array.data_type());
            assert_eq!(
                kinds(found[2]),
                vec![IdentifierKind::ResidentId],
                "{}: invalid UTF-8 around it",
                array.data_type()
            );
        }
    }

    #[test]
    fn nested_cells_hold_what_their_values_hold() {
        let id = "11010519491231002X";
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            Some(vec![Some(3), Some(13_812_345_678)]),
            None,
        ]);
        let found = finds(&list, None);
        assert!(found[0].is_empty() && found[2].is_empty());
        assert_eq!(kinds(found[1]), vec![IdentifierKind::Mobile]);

        let strings_field = Arc::new(Field::new_list_field(DataType::Utf8, true));
        let view = ListViewArray::try_new(
            strings_field.clone(),
            ScalarBuffer::from(vec![1, 0]),
            ScalarBuffer::from(vec![1, 1]),
            Arc::new(StringArray::from(vec!["吴兴区", id])),
            None,
        )
        .unwrap();
        let found = finds(&view, None);
        assert_eq!(kinds(found[0]), vec![IdentifierKind::ResidentId]);
        assert!(found[1].is_empty(), "views select their values");

        let inner = StructArray::from(vec![
            (
                Arc::new(Field::new("name", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("id", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec![Some("c"), Some(id)])) as ArrayRef,
            ),
        ]);
        let found = finds(&inner, None);
        assert!(found[0].is_empty());
        assert_eq!(kinds(found[1]), vec![IdentifierKind::ResidentId]);
        let nested = ListArray::new(
            Arc::new(Field::new_list_field(inner.data_type().clone(), true)),
            OffsetBuffer::from_lengths([1, 1]),
            Arc::new(inner),
            None,
        );
        assert_eq!(kinds(finds(&nested, None)[1]), vec![IdentifierKind::ResidentId], "a list of structs");

        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        map.keys().append_value(id);
        map.values().append_value("v");
        map.append(true).unwrap();
        map.keys().append_value("k");
        map.values().append_value("v");
        map.append(true).unwrap();
        let found = finds(&map.finish(), None);
        assert_eq!(kinds(found[0]), vec![IdentifierKind::ResidentId], "map keys are read too");
        assert!(found[1].is_empty());

        let dictionary: DictionaryArray<Int32Type> =
            vec![Some("吴兴区"), Some(id), None, Some(id)].into_iter().collect();
        let found = finds(&dictionary, None);
        assert_eq!(found.iter().map(|found| !found.is_empty()).collect::<Vec<_>>(), vec![false, true, false, true]);

        let runs = RunArray::try_new(&Int32Array::from(vec![2, 3]), &StringArray::from(vec!["吴兴区", id])).unwrap();
        let found = finds(&runs, None);
        assert_eq!(found.iter().map(|found| !found.is_empty()).collect::<Vec<_>>(), vec![false, false, true]);

        let union = UnionArray::try_new(
            UnionFields::try_new(
                [0, 1],
                [Field::new("n", DataType::Int64, true), Field::new("s", DataType::Utf8, true)],
            )
            .unwrap(),
            ScalarBuffer::from(vec![0i8, 1, 1]),
            Some(ScalarBuffer::from(vec![0, 0, 1])),
            vec![Arc::new(Int64Array::from(vec![13_812_345_678])), Arc::new(StringArray::from(vec!["x", id]))],
        )
        .unwrap();
        let found = finds(&union, None);
        assert_eq!(kinds(found[0]), vec![IdentifierKind::Mobile]);
        assert!(found[1].is_empty());
        assert_eq!(kinds(found[2]), vec![IdentifierKind::ResidentId]);
    }

    #[test]
    fn other_types_are_scanned_in_their_display_form() {
        let interval: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(vec![
            IntervalMonthDayNano::new(0, 13_812_345, 0),
            IntervalMonthDayNano::new(1, 2, 3),
        ]));
        let found = finds(interval.as_ref(), None);
        assert!(found.iter().all(|found| found.is_empty()), "a short interval holds no identifier");
        let report = scan(vec![("interval", interval)], None);
        assert_eq!(report.rule("content").unwrap().figure, "2 other cells scanned, no identifiers");
    }

    #[test]
    fn granted_values_are_found_inside_strings_numbers_and_nested_cells() {
        let set = IdentifierSet::from_values(["P00000042", "王建国", "13900001111"]);
        let texts: ArrayRef = Arc::new(StringArray::from(vec![
            "联系人王建国，电话见后",
            "ref:P00000042;",
            "p-0000-0042",
            "paaaaaaec",
            "吴兴区",
        ]));
        let found = finds(texts.as_ref(), Some(&set));
        assert_eq!(
            found.iter().map(|found| found.granted_value()).collect::<Vec<_>>(),
            vec![true, true, true, true, false]
        );
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![13_900_001_111, 1_000]));
        let found = finds(numbers.as_ref(), Some(&set));
        assert!(found[0].granted_value() && found[0].has(IdentifierKind::Mobile));
        assert!(found[1].is_empty());
        let list =
            arrow::array::ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(13_900_001_111)])]);
        assert!(finds(&list, Some(&set))[0].granted_value(), "array_agg of a granted value");
    }

    #[test]
    fn the_figure_counts_cells_by_kind_and_never_shows_a_value() {
        let id = "11010519491231002X";
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1), Some(2), Some(3)])]);
        let report = scan(
            vec![
                ("district", Arc::new(StringArray::from(vec!["吴兴区"])) as ArrayRef),
                ("n", Arc::new(Int64Array::from(vec![12]))),
                ("list", Arc::new(list)),
            ],
            None,
        );
        let content = report.rule("content").unwrap();
        assert_eq!(content.outcome, RuleOutcome::Pass);
        assert_eq!(content.figure, "1 string, 1 numeric, 1 nested cells (3 values inside) scanned, no identifiers");
        let many: Vec<String> =
            (0..1_200).map(|index| if index == 7 { id.to_string() } else { format!("{index}") }).collect();
        let report =
            scan(vec![("text", strings(&many)), ("n", Arc::new(Int64Array::from(vec![13_812_345_678; 1_200])))], None);
        let content = report.rule("content").unwrap();
        assert_eq!(content.outcome, RuleOutcome::Blocked);
        assert_eq!(
            content.figure,
            "identifiers in 1,201 cells (resident_id 1, mobile 1,200) and values of granted identifier columns in 0 cells, of 1,200 string, 1,200 numeric cells scanned"
        );
        assert_eq!(report.findings[0].column, "text");
        assert!(!format!("{report:?}").contains(id) && !format!("{report:?}").contains("13812345678"));
    }

    #[test]
    fn nesting_deeper_than_the_scan_reads_blocks() {
        let mut array: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        for _ in 0..=MAX_DEPTH + 1 {
            array = Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(array.data_type().clone(), true)),
                OffsetBuffer::from_lengths([1]),
                array,
                None,
            ));
        }
        let report = scan(vec![("deep", array)], None);
        let content = report.rule("content").unwrap();
        assert_eq!(content.outcome, RuleOutcome::Blocked);
        assert!(content.figure.starts_with("column \"deep\" (List("), "{}", content.figure);
    }
}
