//! The content rule: string cells and artifact bytes scanned for personal identifiers —
//! checksum-valid resident ID numbers, credit codes, bank cards, mobiles, e-mails — and for
//! exact values of the grant's identifier columns.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;

use super::{ReviewReport, RuleOutcome};
use crate::identifiers::{IdentifierSet, find_identifiers};

/// What the scan found, without values.
#[derive(Default)]
struct Tally {
    scanned: u64,
    checksum_valid: u64,
    granted_values: u64,
}

impl Tally {
    fn scan(
        &mut self,
        row: usize,
        column: &str,
        text: &str,
        identifiers: Option<&IdentifierSet>,
        report: &mut ReviewReport,
    ) {
        self.scanned += 1;
        for found in find_identifiers(text) {
            self.checksum_valid += 1;
            report.finding(row, column, "content", found.kind.as_str());
        }
        if identifiers.is_some_and(|set| set.found_in(text)) {
            self.granted_values += 1;
            report.finding(row, column, "content", "value of an identifier column of the granted data");
        }
    }

    fn conclude(self, what: &str, report: &mut ReviewReport) {
        let Tally { scanned, checksum_valid, granted_values } = self;
        if checksum_valid == 0 && granted_values == 0 {
            report.push("content", RuleOutcome::Pass, format!("{scanned} {what} scanned, no identifiers"));
        } else {
            report.push(
                "content",
                RuleOutcome::Blocked,
                format!(
                    "{checksum_valid} checksum-valid identifiers and {granted_values} values of granted identifier columns in {scanned} {what}"
                ),
            );
        }
    }
}

pub(super) fn scan_table(table: &RecordBatch, identifiers: Option<&IdentifierSet>, report: &mut ReviewReport) {
    let mut tally = Tally::default();
    for (index, field) in table.schema().fields().iter().enumerate() {
        let column = table.column(index);
        let mut each = |row: usize, text: &str| tally.scan(row, field.name(), text, identifiers, report);
        match field.data_type() {
            DataType::Utf8 => {
                let strings = column.as_string::<i32>();
                (0..strings.len()).filter(|&row| strings.is_valid(row)).for_each(|row| each(row, strings.value(row)));
            }
            DataType::LargeUtf8 => {
                let strings = column.as_string::<i64>();
                (0..strings.len()).filter(|&row| strings.is_valid(row)).for_each(|row| each(row, strings.value(row)));
            }
            DataType::Utf8View => {
                let strings = column.as_string_view();
                (0..strings.len()).filter(|&row| strings.is_valid(row)).for_each(|row| each(row, strings.value(row)));
            }
            _ => {}
        }
    }
    tally.conclude("string cells", report);
}

pub(super) fn scan_bytes(bytes: &[u8], identifiers: Option<&IdentifierSet>, report: &mut ReviewReport) {
    let text = String::from_utf8_lossy(bytes);
    let mut tally = Tally::default();
    for (line, text) in text.lines().enumerate() {
        tally.scan(line, "bytes", text, identifiers, report);
        // Fields of delimited text are compared whole as well.
        if let Some(set) = identifiers {
            for field in text.split([',', '\t', ';', '|']).filter(|field| field.len() < text.len()) {
                if set.contains(field) {
                    tally.granted_values += 1;
                    report.finding(line, "bytes", "content", "value of an identifier column of the granted data");
                }
            }
        }
    }
    tally.scanned = bytes.len() as u64;
    tally.conclude("bytes", report);
}
