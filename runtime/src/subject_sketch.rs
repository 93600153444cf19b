//! The host's subject sketch: per group, which subjects (and how many of their rows) it holds,
//! as a [`SubjectSketch`] the differencing rule compares with other released groups.
//!
//! A group with few subjects keeps an exact list of (subject key, rows); past
//! [`EXACT_SUBJECTS`] it becomes a sketch of fixed size (`3 × 2k` cells). States and results
//! are bytes: the list form (tag [`LIST_FORMAT`]) or the sketch's own encoding, so a GROUP BY
//! with a million small groups costs a few bytes per group, not a sketch each. Subjects
//! arrive as their keys (the [`crate::subject_key`] column: `subject_key` of the stored
//! value's text, stable across builds, because sketches are kept with releases and compared
//! with later ones). Rows without a subject are one unknown subject. Added by the host only
//! when the grant checks differencing; not in the SQL registry.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use unseen_policy::sketch::{SubjectSketch, width_for_threshold};

use crate::subject_key::{key_argument, unknown_subject_key};

/// The name of the function in plans.
pub const SKETCH_FUNCTION: &str = "unseen_subject_sketch";
/// Distinct subjects a group lists exactly before it becomes a sketch.
pub const EXACT_SUBJECTS: usize = 16;
/// Tag of the list form (the sketch's own encoding starts with a different byte).
pub const LIST_FORMAT: u8 = 0xA5;

/// `unseen_subject_sketch(subject_key)`: the subjects of a group as bytes (list or sketch form).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SubjectSketcher {
    signature: Signature,
    width: usize,
}

impl SubjectSketcher {
    /// The function for a grant with threshold `k` (which fixes the sketch width).
    pub fn udaf(k: u64) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(Self {
            signature: Signature::exact(vec![DataType::UInt64], Volatility::Immutable),
            width: width_for_threshold(k),
        }))
    }
}

impl AggregateUDFImpl for SubjectSketcher {
    fn name(&self) -> &str {
        SKETCH_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format!("{}_subjects", args.name), DataType::Binary, false))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneGroup { group: Subjects::default(), width: self.width }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(AllGroups::new(self.width)))
    }
}

/// One group's subjects: an exact list while small, then a sketch.
#[derive(Debug, Clone, Default)]
struct Subjects {
    list: Vec<(u64, i64)>,
    sketch: Option<Box<SubjectSketch>>,
}

impl Subjects {
    #[inline]
    fn add(&mut self, key: u64, rows: i64, width: usize) {
        if let Some(sketch) = &mut self.sketch {
            sketch.insert(key, rows);
        } else if let Some(entry) = self.list.iter_mut().find(|(listed, _)| *listed == key) {
            entry.1 += rows;
        } else if self.list.len() < EXACT_SUBJECTS {
            self.list.push((key, rows));
        } else {
            let mut sketch = SubjectSketch::new(width);
            for (listed, listed_rows) in self.list.drain(..) {
                sketch.insert(listed, listed_rows);
            }
            sketch.insert(key, rows);
            self.sketch = Some(Box::new(sketch));
        }
    }

    /// Appends the encoded form: the sketch's own, or the list form.
    fn write_bytes(&self, bytes: &mut Vec<u8>) {
        match &self.sketch {
            Some(sketch) => sketch.write_bytes(bytes),
            None => {
                bytes.push(LIST_FORMAT);
                for (key, rows) in &self.list {
                    bytes.extend_from_slice(&key.to_le_bytes());
                    bytes.extend_from_slice(&rows.to_le_bytes());
                }
            }
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_bytes(&mut bytes);
        bytes
    }

    fn merge_bytes(&mut self, bytes: &[u8], width: usize) -> Result<()> {
        match bytes.split_first() {
            Some((&LIST_FORMAT, pairs)) if pairs.len() % 16 == 0 => {
                for pair in pairs.chunks_exact(16) {
                    let (key, rows) = pair.split_at(8);
                    let key = u64::from_le_bytes(key.try_into().unwrap_or_default());
                    let rows = i64::from_le_bytes(rows.try_into().unwrap_or_default());
                    self.add(key, rows, width);
                }
                Ok(())
            }
            _ => {
                let theirs = SubjectSketch::from_bytes(bytes)
                    .or_else(|error| internal_err!("{SKETCH_FUNCTION} state: {error}"))?;
                let mine = self.sketch.get_or_insert_with(|| {
                    let mut sketch = SubjectSketch::new(width);
                    for (listed, listed_rows) in self.list.drain(..) {
                        sketch.insert(listed, listed_rows);
                    }
                    Box::new(sketch)
                });
                mine.merge(&theirs).or_else(|error| internal_err!("{SKETCH_FUNCTION} state: {error}"))
            }
        }
    }

    fn size(&self) -> usize {
        self.list.capacity() * 16 + self.sketch.as_ref().map_or(0, |sketch| sketch.width() * 96)
    }
}

/// Decodes a result of the function into the sketch the reviewer compares.
pub fn decode(bytes: &[u8], k: u64) -> Result<SubjectSketch> {
    let width = width_for_threshold(k);
    let mut subjects = Subjects::default();
    subjects.merge_bytes(bytes, width)?;
    Ok(match subjects.sketch {
        Some(sketch) => *sketch,
        None => {
            let mut sketch = SubjectSketch::new(width);
            for (key, rows) in subjects.list {
                sketch.insert(key, rows);
            }
            sketch
        }
    })
}

/// Each row's subject key, the unknown subject's for a null.
fn subject_keys(values: &[ArrayRef]) -> Result<impl Iterator<Item = u64> + '_> {
    let keys = key_argument(values, SKETCH_FUNCTION)?;
    let unknown = unknown_subject_key();
    Ok(keys.values().iter().enumerate().map(move |(row, &key)| if keys.is_valid(row) { key } else { unknown }))
}

/// Every group's encoded form in one buffer (a sketch is a few kilobytes; thousands of groups
/// are written without a buffer of their own each).
fn to_binary(groups: Vec<Subjects>) -> Result<ArrayRef> {
    let mut values = Vec::new();
    let mut lengths = Vec::with_capacity(groups.len());
    for group in &groups {
        let start = values.len();
        group.write_bytes(&mut values);
        lengths.push(values.len() - start);
    }
    if i32::try_from(values.len()).is_err() {
        return internal_err!("{SKETCH_FUNCTION} state of {} groups exceeds 2 GiB in one batch", groups.len());
    }
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
    let array = BinaryArray::try_new(offsets, values.into(), None)
        .or_else(|error| internal_err!("{SKETCH_FUNCTION} state: {error}"))?;
    Ok(Arc::new(array))
}

fn for_each_state(states: &[ArrayRef], mut merge: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
    let [state] = states else { return internal_err!("{SKETCH_FUNCTION} state is malformed") };
    let Some(state) = state.as_binary_opt::<i32>() else {
        return internal_err!("{SKETCH_FUNCTION} state is not binary");
    };
    for row in (0..state.len()).filter(|&row| state.is_valid(row)) {
        merge(row, state.value(row))?;
    }
    Ok(())
}

/// The function without GROUP BY.
#[derive(Debug)]
struct OneGroup {
    group: Subjects,
    width: usize,
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for key in subject_keys(values)? {
            self.group.add(key, 1, self.width);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.group.to_bytes())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.group.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.group.to_bytes()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let width = self.width;
        for_each_state(states, |_, bytes| self.group.merge_bytes(bytes, width))
    }
}

/// Rows a sketched group gathers before adding them to its sketch together. A subject touches
/// three cells scattered over its group's sketch, and with hundreds of groups the sketches do
/// not stay in the cache: a row added at once costs three misses, a gathered batch finds the
/// cells already loaded after its first few rows. Sums are order-free, so the sketch is the
/// same either way.
const GATHERED_ROWS: usize = 64;

/// The subject keys of rows gathered for groups in sketch form, in one arena: a group gets a
/// slot when it first gathers, so groups that stay in list form cost nothing.
#[derive(Default)]
struct Gathered {
    /// Each group's slot, or `NO_SLOT`.
    slot_of_group: Vec<u32>,
    /// Each slot's group and how many keys it holds.
    slots: Vec<(usize, usize)>,
    /// `GATHERED_ROWS` keys per slot.
    keys: Vec<u64>,
}

const NO_SLOT: u32 = u32::MAX;

impl Gathered {
    /// Gathers one row of `group`, adding the slot's rows to `sketch` once it is full.
    #[inline]
    fn push(&mut self, group: usize, key: u64, sketch: &mut SubjectSketch) {
        if self.slot_of_group.len() <= group {
            self.slot_of_group.resize(group + 1, NO_SLOT);
        }
        let slot = match self.slot_of_group[group] {
            NO_SLOT => {
                let slot = self.slots.len();
                self.slots.push((group, 0));
                self.keys.resize(self.keys.len() + GATHERED_ROWS, 0);
                self.slot_of_group[group] = u32::try_from(slot).unwrap_or(NO_SLOT);
                slot
            }
            slot => slot as usize,
        };
        let held = &mut self.slots[slot].1;
        let keys = &mut self.keys[slot * GATHERED_ROWS..(slot + 1) * GATHERED_ROWS];
        keys[*held] = key;
        *held += 1;
        if *held == GATHERED_ROWS {
            for &key in keys.iter() {
                sketch.insert(key, 1);
            }
            *held = 0;
        }
    }

    /// Adds every gathered row to its group's sketch and forgets the slots.
    fn add_to(&mut self, groups: &mut [Subjects]) {
        for (slot, &(group, held)) in self.slots.iter().enumerate() {
            if let Some(sketch) = groups.get_mut(group).and_then(|subjects| subjects.sketch.as_mut()) {
                for &key in &self.keys[slot * GATHERED_ROWS..slot * GATHERED_ROWS + held] {
                    sketch.insert(key, 1);
                }
            }
        }
        self.slot_of_group.clear();
        self.slots.clear();
        self.keys.clear();
    }

    fn size(&self) -> usize {
        self.slot_of_group.capacity() * 4 + self.slots.capacity() * 16 + self.keys.capacity() * 8
    }
}

/// The function for every group of a GROUP BY.
struct AllGroups {
    groups: Vec<Subjects>,
    width: usize,
    gathered: Gathered,
}

impl AllGroups {
    fn new(width: usize) -> Self {
        Self { groups: Vec::new(), width, gathered: Gathered::default() }
    }

    /// The groups `emit_to` names, every gathered row added.
    fn take(&mut self, emit_to: EmitTo) -> Vec<Subjects> {
        self.gathered.add_to(&mut self.groups);
        emit_to.take_needed(&mut self.groups)
    }
}

impl GroupsAccumulator for AllGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Subjects::default);
        for (row, (&group, key)) in group_indices.iter().zip(subject_keys(values)?).enumerate() {
            if opt_filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row)) {
                let subjects = &mut self.groups[group];
                match &mut subjects.sketch {
                    Some(sketch) => self.gathered.push(group, key, sketch),
                    None => subjects.add(key, 1, self.width),
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        to_binary(self.take(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![to_binary(self.take(emit_to))?])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.groups.resize_with(total_num_groups, Subjects::default);
        let width = self.width;
        for_each_state(values, |row, bytes| self.groups[group_indices[row]].merge_bytes(bytes, width))
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let rows: Vec<Subjects> = subject_keys(values)?
            .enumerate()
            .map(|(row, key)| {
                let mut subjects = Subjects::default();
                if opt_filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row)) {
                    subjects.add(key, 1, self.width);
                }
                subjects
            })
            .collect();
        Ok(vec![to_binary(rows)?])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<Subjects>()
            + self.groups.iter().map(Subjects::size).sum::<usize>()
            + self.gathered.size()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use unseen_policy::sketch::Difference;

    use super::*;

    /// The key column the host computes for these subjects.
    fn subjects(values: &[&str]) -> ArrayRef {
        let subjects: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        Arc::new(crate::subject_key::subject_keys(&subjects).expect("keys"))
    }

    fn sketch_of(values: &[&str], partitions: usize) -> SubjectSketch {
        let udaf = SubjectSketcher {
            signature: Signature::exact(vec![DataType::UInt64], Volatility::Immutable),
            width: width_for_threshold(10),
        };
        let mut merged = AllGroups::new(udaf.width);
        for chunk in values.chunks(values.len().div_ceil(partitions).max(1)) {
            let mut partial = AllGroups::new(udaf.width);
            partial.update_batch(&[subjects(chunk)], &vec![0; chunk.len()], None, 1).expect("update");
            let state = partial.state(EmitTo::All).expect("state");
            merged.merge_batch(&state, &[0], 1).expect("merge");
        }
        let result = merged.evaluate(EmitTo::All).expect("evaluate");
        decode(result.as_binary::<i32>().value(0), 10).expect("decode")
    }

    #[test]
    fn partitions_and_forms_agree_and_small_differences_read_back() {
        let names: Vec<String> = (0..60).map(|i| format!("company-{i}")).collect();
        let all: Vec<&str> = names.iter().flat_map(|name| [name.as_str(); 3]).collect();
        let one_partition = sketch_of(&all, 1);
        assert_eq!(sketch_of(&all, 4), one_partition, "partitioned states merge to the same sketch");
        let fewer: Vec<&str> =
            all.iter().copied().filter(|name| *name != "company-7" && *name != "company-8").collect();
        assert_eq!(one_partition.difference(&sketch_of(&fewer, 3), 10).expect("same width"), Difference::Exact(2));
        // Small groups stay in list form and decode to the same sketch as a built one.
        let small = sketch_of(&all[..9], 2);
        assert_eq!(small.difference(&sketch_of(&all[..6], 1), 10).expect("same width"), Difference::Exact(1));
    }

    #[test]
    fn gathered_rows_reach_every_group_also_when_only_the_first_groups_are_emitted() {
        let width = width_for_threshold(10);
        let names: Vec<String> = (0..300).map(|i| format!("company-{i}")).collect();
        // Three groups, each far past the exact list and the gathered rows, over two batches.
        let rows: Vec<&str> = names.iter().map(String::as_str).collect();
        let groups: Vec<usize> = (0..rows.len()).map(|row| row % 3).collect();
        let mut accumulator = AllGroups::new(width);
        let (first, second) = rows.split_at(137);
        accumulator.update_batch(&[subjects(first)], &groups[..137], None, 3).expect("update");
        accumulator.update_batch(&[subjects(second)], &groups[137..], None, 3).expect("update");
        let expected = |group: usize| {
            let mut sketch = SubjectSketch::new(width);
            for (name, _) in rows.iter().zip(&groups).filter(|(_, of)| **of == group) {
                sketch.insert(unseen_policy::sketch::subject_key(name.as_bytes()), 1);
            }
            sketch
        };
        let head = accumulator.evaluate(EmitTo::First(1)).expect("evaluate");
        assert_eq!(decode(head.as_binary::<i32>().value(0), 10).expect("decode"), expected(0));
        // The remaining groups moved down by one and gather again before they are emitted.
        accumulator.update_batch(&[subjects(&rows[..3])], &[0, 1, 0], None, 2).expect("update");
        let rest = accumulator.evaluate(EmitTo::All).expect("evaluate");
        let mut group_1 = expected(1);
        group_1.insert(unseen_policy::sketch::subject_key(rows[0].as_bytes()), 1);
        group_1.insert(unseen_policy::sketch::subject_key(rows[2].as_bytes()), 1);
        let mut group_2 = expected(2);
        group_2.insert(unseen_policy::sketch::subject_key(rows[1].as_bytes()), 1);
        assert_eq!(decode(rest.as_binary::<i32>().value(0), 10).expect("decode"), group_1);
        assert_eq!(decode(rest.as_binary::<i32>().value(1), 10).expect("decode"), group_2);
    }
}
