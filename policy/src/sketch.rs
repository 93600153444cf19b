//! Subject sketches: a compact, mergeable summary of which subjects (and how many of their
//! rows) make up one group, from which the difference between two groups can be read back
//! when it is small.
//!
//! Differencing is the attack where two released aggregates differ by a few subjects, say
//! "district A" and "district A except one company": their difference is that company's value.
//! To catch it, the reviewer needs, for two groups released at different times, the number of
//! distinct subjects in their difference — exactly when it is below k, and a guarantee when it
//! is not. Keeping every group's subject list would cost as much as the data. A sketch is an
//! invertible Bloom lookup table with counts: `3 × width` cells, each subject hashed to one cell
//! in each of three sub-tables, each cell holding (rows, Σ rows·key, Σ rows·check(key)).
//! Sketches add and subtract cell by cell, so the sketch of a group's rows is assembled across
//! partitions and the difference of two groups is the difference of their sketches.
//!
//! Reading a difference back: a subject in the difference touches exactly three cells, so `d`
//! subjects leave at most `3d` non-zero cells — at least `3k` non-zero cells prove `d ≥ k`
//! without decoding. Otherwise cells holding a single subject are peeled off one at a time
//! (the check sum confirms a cell is pure); when peeling empties the sketch the difference is
//! known exactly. When it does not (rare with `width = 2k`), the difference cannot be bounded
//! and is treated as small: the reviewer errs towards withholding.
//!
//! Keys are 64-bit hashes of the stored subject value computed with [`subject_key`], which is
//! defined here (FNV-1a and a fixed mixer) so that sketches stored with one release compare
//! with sketches made years later by another build.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PolicyError;

/// Bytes of one cell in the encoded form.
const CELL_BYTES: usize = 8 + 16 + 8;
/// Format tag of the encoded form.
const FORMAT: u8 = 1;

/// The stable 64-bit key of a subject value given as bytes (a UTF-8 string's bytes, or an
/// integer's little-endian bytes): eight bytes at a time, multiplied in, then mixed with the
/// length. Defined here, not borrowed from a hashing crate, so it never changes under us.
pub fn subject_key(value: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        hash = (hash ^ le_word(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    // The last 1–7 bytes as a little-endian word padded with zeros. When the value is at least
    // one word long they are the top bytes of its last eight, shifted down (no copy).
    let tail = match words.remainder().len() {
        0 => 0,
        rest if value.len() >= 8 => le_word(&value[value.len() - 8..]) >> (8 * (8 - rest)),
        _ => value.iter().rev().fold(0, |word, &byte| (word << 8) | u64::from(byte)),
    };
    hash = (hash ^ tail).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mix(hash ^ value.len() as u64)
}

/// Eight bytes (a slice of exactly eight) as a little-endian word.
#[inline]
fn le_word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or_default())
}

/// The splitmix64 finaliser: spreads every input bit over the output.
fn mix(mut value: u64) -> u64 {
    value ^= value >> 30;
    value = value.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value ^= value >> 27;
    value = value.wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// The sketch width (cells per sub-table) for threshold `k`: wide enough that differences of
/// up to several k subjects decode, and `3 × width ≥ 3k` cells so that large differences
/// prove themselves large.
pub fn width_for_threshold(k: u64) -> usize {
    usize::try_from(k.clamp(2, 1_000)).unwrap_or(1_000) * 2
}

/// Sums wrap rather than overflow: sums of real groups stay far inside i128, and a corrupt
/// stored sketch then reads back as `Unknown` (withheld) instead of panicking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cell {
    /// Rows (signed in differences).
    rows: i64,
    /// Σ rows × key, an i128 kept as its low and high words: with 8-byte alignment a cell is
    /// 32 bytes, two to a cache line, where an `i128` field would make it 48.
    key_sum: [u64; 2],
    /// Σ rows × check(key), wrapping.
    check_sum: u64,
}

impl Cell {
    #[inline]
    fn key_sum(&self) -> i128 {
        (i128::from(self.key_sum[1] as i64) << 64) | i128::from(self.key_sum[0])
    }

    #[inline]
    fn set_key_sum(&mut self, sum: i128) {
        self.key_sum = [sum as u64, (sum >> 64) as u64];
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    #[inline]
    fn add(&mut self, key: u64, check: u64, rows: i64) {
        self.rows = self.rows.wrapping_add(rows);
        self.set_key_sum(self.key_sum().wrapping_add(i128::from(key) * i128::from(rows)));
        self.check_sum = self.check_sum.wrapping_add(check.wrapping_mul(rows as u64));
    }

    /// The one subject in this cell, if it holds exactly one.
    fn pure(&self) -> Option<u64> {
        if self.rows == 0 {
            return None;
        }
        let rows = i128::from(self.rows);
        let key_sum = self.key_sum();
        if key_sum.checked_rem(rows)? != 0 {
            return None;
        }
        let key = u64::try_from(key_sum.checked_div(rows)?).ok()?;
        (self.check_sum == check(key).wrapping_mul(self.rows as u64)).then_some(key)
    }
}

fn check(key: u64) -> u64 {
    mix(key ^ 0x5555_5555_5555_5555)
}

/// The subjects of one group, as an invertible sketch (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSketch {
    width: usize,
    cells: Vec<Cell>,
}

/// The number of distinct subjects in the difference of two sketches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// Exactly this many subjects differ (in rows held).
    Exact(usize),
    /// At least this many subjects differ.
    AtLeast(usize),
    /// The sketch could not be read back; the difference may be small.
    Unknown,
}

impl SubjectSketch {
    /// An empty sketch with `width` cells per sub-table.
    pub fn new(width: usize) -> Self {
        let width = width.clamp(1, 1 << 21);
        Self { width, cells: vec![Cell::default(); 3 * width] }
    }

    /// Cells per sub-table.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The subject's cell in each sub-table: three 21-bit slices of one mixed word, each
    /// scaled to the width (the width is at most 2^21).
    #[inline]
    fn positions(&self, key: u64) -> [usize; 3] {
        let spread = mix(key ^ 0x2545_f491_4f6c_dd1d);
        let width = self.width as u64;
        [0u64, 1, 2].map(|table| (table * width + ((((spread >> (21 * table)) & 0x1f_ffff) * width) >> 21)) as usize)
    }

    /// Adds `rows` rows of the subject with `key`.
    #[inline]
    pub fn insert(&mut self, key: u64, rows: i64) {
        let check = check(key);
        for position in self.positions(key) {
            self.cells[position].add(key, check, rows);
        }
    }

    /// Adds another sketch of the same width (another partition of the same group).
    pub fn merge(&mut self, other: &Self) -> Result<(), PolicyError> {
        self.same_width(other)?;
        for (mine, theirs) in self.cells.iter_mut().zip(&other.cells) {
            mine.rows = mine.rows.wrapping_add(theirs.rows);
            mine.set_key_sum(mine.key_sum().wrapping_add(theirs.key_sum()));
            mine.check_sum = mine.check_sum.wrapping_add(theirs.check_sum);
        }
        Ok(())
    }

    fn same_width(&self, other: &Self) -> Result<(), PolicyError> {
        if self.width == other.width {
            Ok(())
        } else {
            Err(PolicyError::invalid(
                "subject sketch",
                format!(
                    "widths differ ({} and {}); sketches of different thresholds do not compare",
                    self.width, other.width
                ),
            ))
        }
    }

    /// How many distinct subjects the two groups differ by (a subject whose row count differs
    /// counts too: its rows' values would follow from the difference). `k` is the figure that
    /// matters: a difference proved to hold at least `k` subjects is not decoded further.
    pub fn difference(&self, other: &Self, k: usize) -> Result<Difference, PolicyError> {
        self.same_width(other)?;
        // Most pairs of groups differ in many subjects: count the cells that differ first,
        // without building the difference (a cell of the difference is empty exactly when
        // the two cells are equal).
        let nonzero = self.cells.iter().zip(&other.cells).filter(|(mine, theirs)| mine != theirs).count();
        if nonzero == 0 {
            return Ok(Difference::Exact(0));
        }
        if nonzero >= 3 * k {
            return Ok(Difference::AtLeast(nonzero.div_ceil(3)));
        }
        let mut cells: Vec<Cell> = self
            .cells
            .iter()
            .zip(&other.cells)
            .map(|(mine, theirs)| {
                let mut cell = Cell {
                    rows: mine.rows.wrapping_sub(theirs.rows),
                    key_sum: [0; 2],
                    check_sum: mine.check_sum.wrapping_sub(theirs.check_sum),
                };
                cell.set_key_sum(mine.key_sum().wrapping_sub(theirs.key_sum()));
                cell
            })
            .collect();
        let mut found = BTreeSet::new();
        let mut pending: Vec<usize> = (0..cells.len()).collect();
        while let Some(position) = pending.pop() {
            let cell = cells[position];
            let Some(key) = cell.pure() else { continue };
            let positions = self.positions(key);
            if !positions.contains(&position) {
                continue;
            }
            found.insert(key);
            let key_check = check(key);
            for other in positions {
                cells[other].add(key, key_check, cell.rows.wrapping_neg());
                pending.push(other);
            }
        }
        if cells.iter().all(Cell::is_empty) { Ok(Difference::Exact(found.len())) } else { Ok(Difference::Unknown) }
    }

    /// The encoded form: a format byte, the width (u32 LE), then each cell.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_bytes(&mut bytes);
        bytes
    }

    /// Appends [`Self::to_bytes`] to `bytes`.
    pub fn write_bytes(&self, bytes: &mut Vec<u8>) {
        bytes.reserve(5 + self.cells.len() * CELL_BYTES);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&(self.width as u32).to_le_bytes());
        for cell in &self.cells {
            bytes.extend_from_slice(&cell.rows.to_le_bytes());
            bytes.extend_from_slice(&cell.key_sum().to_le_bytes());
            bytes.extend_from_slice(&cell.check_sum.to_le_bytes());
        }
    }

    /// Decodes [`Self::to_bytes`]; anything else is refused with what was wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let invalid = |why: String| PolicyError::invalid("subject sketch", why);
        let (&format, rest) = bytes.split_first().ok_or_else(|| invalid("empty".into()))?;
        if format != FORMAT {
            return Err(invalid(format!("unknown format {format}")));
        }
        let (width, cells) = rest.split_at_checked(4).ok_or_else(|| invalid("truncated header".into()))?;
        let width = u32::from_le_bytes(width.try_into().map_err(|_| invalid("truncated header".into()))?) as usize;
        if width == 0 || width > 1 << 21 || cells.len() != 3 * width * CELL_BYTES {
            return Err(invalid(format!("{} cell bytes for width {width}", cells.len())));
        }
        let cells = cells
            .chunks_exact(CELL_BYTES)
            .map(|cell| {
                let (rows, rest) = cell.split_at(8);
                let (key_sum, check_sum) = rest.split_at(16);
                let mut cell = Cell {
                    rows: i64::from_le_bytes(rows.try_into().unwrap_or_default()),
                    key_sum: [0; 2],
                    check_sum: u64::from_le_bytes(check_sum.try_into().unwrap_or_default()),
                };
                cell.set_key_sum(i128::from_le_bytes(key_sum.try_into().unwrap_or_default()));
                cell
            })
            .collect();
        Ok(Self { width, cells })
    }
}

impl Serialize for SubjectSketch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for SubjectSketch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(subjects: impl IntoIterator<Item = (u64, i64)>) -> SubjectSketch {
        let mut sketch = SubjectSketch::new(width_for_threshold(10));
        for (subject, rows) in subjects {
            sketch.insert(subject_key(&subject.to_le_bytes()), rows);
        }
        sketch
    }

    /// The key as first defined (byte-wise tail copy); the fast form must never differ from it,
    /// because sketches kept with releases are compared with sketches later builds make.
    fn reference_key(value: &[u8]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut words = value.chunks_exact(8);
        for word in &mut words {
            hash = (hash ^ u64::from_le_bytes(word.try_into().expect("8 bytes")))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        hash = (hash ^ u64::from_le_bytes(tail)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        mix(hash ^ value.len() as u64)
    }

    #[test]
    fn subject_keys_never_change() {
        let bytes: Vec<u8> = (0..70u32).map(|i| (i * 37 + 11) as u8 ^ 0xa5).collect();
        for start in 0..3 {
            for end in start..bytes.len() {
                assert_eq!(subject_key(&bytes[start..end]), reference_key(&bytes[start..end]), "{start}..{end}");
            }
        }
        // Pinned: a change here would make every stored sketch incomparable.
        assert_eq!(subject_key(b""), GOLDEN[0]);
        assert_eq!(subject_key("91330500MA0000001".as_bytes()), GOLDEN[1]);
        assert_eq!(subject_key("浙江某某纺织有限公司".as_bytes()), GOLDEN[2]);
        assert_eq!(subject_key(&7u64.to_le_bytes()), GOLDEN[3]);
    }

    const GOLDEN: [u64; 4] =
        [577_409_809_830_185_139, 11_921_634_026_837_090_691, 13_129_751_372_362_775_403, 14_731_905_356_992_812_206];

    #[test]
    fn small_differences_are_read_back_exactly() {
        let everyone = sketch((0..500).map(|subject| (subject, 12)));
        for missing in 1..=25u64 {
            let fewer = sketch((missing..500).map(|subject| (subject, 12)));
            let difference = everyone.difference(&fewer, 10).expect("same width");
            match difference {
                Difference::Exact(d) => assert_eq!(d as u64, missing),
                Difference::AtLeast(d) => assert!(missing >= 10 && d >= 10, "{missing}: {difference:?}"),
                Difference::Unknown => panic!("{missing} missing subjects not decoded"),
            }
        }
    }

    #[test]
    fn fewer_rows_of_one_subject_is_a_difference_of_one() {
        let all_months = sketch((0..300).map(|subject| (subject, 12)));
        let mut one_month_less = all_months.clone();
        one_month_less.insert(subject_key(&7u64.to_le_bytes()), -1);
        assert_eq!(all_months.difference(&one_month_less, 10).expect("same width"), Difference::Exact(1));
        assert_eq!(all_months.difference(&all_months, 10).expect("same width"), Difference::Exact(0));
    }

    #[test]
    fn disjoint_groups_prove_large_differences_without_decoding() {
        let district_a = sketch((0..400).map(|subject| (subject, 3)));
        let district_b = sketch((1_000..1_400).map(|subject| (subject, 3)));
        assert!(
            matches!(district_a.difference(&district_b, 10).expect("same width"), Difference::AtLeast(d) if d >= 10)
        );
    }

    #[test]
    fn no_small_difference_is_ever_missed() {
        // Whatever the subjects, a difference of fewer than k subjects is either read back
        // exactly or reported unknown, never as large.
        for seed in 0..300u64 {
            let base: Vec<(u64, i64)> = (0..200).map(|i| (seed * 1_000 + i, 1 + (i % 5) as i64)).collect();
            let removed = 1 + (seed % 9) as usize;
            let left = sketch(base.iter().copied());
            let right = sketch(base.iter().copied().skip(removed));
            let difference = left.difference(&right, 10).expect("same width");
            assert!(
                matches!(difference, Difference::Exact(d) if d == removed) || difference == Difference::Unknown,
                "{seed}: {difference:?}"
            );
        }
    }

    #[test]
    fn partitions_merge_to_the_whole_and_bytes_round_trip() {
        let whole = sketch((0..100).map(|subject| (subject, 2)));
        let mut first = sketch((0..40).map(|subject| (subject, 2)));
        first.merge(&sketch((40..100).map(|subject| (subject, 2)))).expect("same width");
        assert_eq!(first, whole);
        assert_eq!(SubjectSketch::from_bytes(&whole.to_bytes()).expect("round trip"), whole);
        let json = serde_json::to_string(&whole).expect("serialise");
        assert_eq!(serde_json::from_str::<SubjectSketch>(&json).expect("deserialise"), whole);
        assert!(SubjectSketch::from_bytes(&whole.to_bytes()[..50]).is_err());
        assert!(SubjectSketch::new(3).difference(&SubjectSketch::new(4), 10).is_err());
        // Extreme cell values from a damaged file compare without panicking.
        let mut damaged = whole.to_bytes();
        for byte in &mut damaged[5..] {
            *byte = 0xff;
        }
        let damaged = SubjectSketch::from_bytes(&damaged).expect("well-formed bytes");
        let mut extreme = whole.to_bytes();
        for (index, byte) in extreme[5..].iter_mut().enumerate() {
            // rows = -1 and Σ rows·key = i128::MIN: the one division that overflows.
            *byte = match index % 32 {
                0..8 => 0xff,
                23 => 0x80,
                _ => 0,
            };
        }
        let extreme = SubjectSketch::from_bytes(&extreme).expect("well-formed bytes");
        for (left, right) in [(&damaged, &whole), (&whole, &damaged), (&extreme, &damaged), (&damaged, &extreme)] {
            left.difference(right, 10).expect("same width");
        }
    }
}
