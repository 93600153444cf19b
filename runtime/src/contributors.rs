//! The host's contributor counter: an aggregate function that counts the distinct subjects of
//! a group, but only up to a cap.
//!
//! A threshold rule needs to know whether a group has at least k distinct subjects, never how
//! many more. Counting up to k is far cheaper than an exact COUNT(DISTINCT): once a group holds
//! k distinct subjects its state is frozen and later rows cost one comparison. Subjects are kept
//! as 64-bit hashes under a fixed seed, so partial states from different partitions merge. A
//! hash collision can only make two subjects count as one, which errs towards suppression.
//!
//! The function is registered under [`CONTRIBUTORS_FUNCTION`] by the governed session only as
//! a plan node the host adds; modules cannot call it by name because it is not in the SQL
//! function registry.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, UInt64Array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The name of the contributor counter in plans.
pub const CONTRIBUTORS_FUNCTION: &str = "unseen_contributors";

/// Fixed so that every partition hashes a subject to the same value.
const SUBJECT_HASH_SEED: u64 = 0x756e_7365_656e_2d6b;

/// `unseen_contributors(subject)`: distinct non-null subjects of a group, counted up to `cap`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CappedContributors {
    signature: Signature,
    cap: usize,
}

impl CappedContributors {
    /// A counter that stops at `cap` (the grant's threshold k). A cap below 1 counts to 1.
    pub fn new(cap: u64) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX).max(1);
        Self { signature: Signature::any(1, Volatility::Immutable), cap }
    }

    /// The counter as an aggregate function a plan can call.
    pub fn udaf(cap: u64) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(Self::new(cap)))
    }
}

impl AggregateUDFImpl for CappedContributors {
    fn name(&self) -> &str {
        CONTRIBUTORS_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new_list(
            format!("{}_subject_hashes", args.name),
            Field::new_list_field(DataType::UInt64, false),
            false,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(GroupCounter { subjects: Vec::new(), cap: self.cap, hashes: Vec::new() }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(GroupsCounter { groups: Vec::new(), cap: self.cap, hashes: Vec::new() }))
    }
}

/// Adds `hash` to a group's subjects unless it is there already or the group is full.
#[inline]
fn insert(subjects: &mut Vec<u64>, hash: u64, cap: usize) {
    if subjects.len() < cap && !subjects.contains(&hash) {
        subjects.push(hash);
    }
}

/// Hashes every row of `subjects` into `buffer`, reusing its allocation; the same subject
/// hashes the same in every partition and in every host function.
pub(crate) fn hash_subjects<'a>(subjects: &ArrayRef, buffer: &'a mut Vec<u64>) -> Result<&'a [u64]> {
    buffer.clear();
    buffer.resize(subjects.len(), 0);
    create_hashes([subjects], &RandomState::with_seed(SUBJECT_HASH_SEED), buffer)?;
    Ok(buffer)
}

/// The subject hashes of each group as a list array, the function's intermediate state.
fn to_state(groups: Vec<Vec<u64>>) -> ArrayRef {
    let lengths = groups.iter().map(Vec::len);
    let offsets = OffsetBuffer::from_lengths(lengths);
    let values = UInt64Array::from_iter_values(groups.into_iter().flatten());
    Arc::new(ListArray::new(Arc::new(Field::new_list_field(DataType::UInt64, false)), offsets, Arc::new(values), None))
}

fn count(subjects: &[u64]) -> i64 {
    i64::try_from(subjects.len()).unwrap_or(i64::MAX)
}

/// The counter for one group (used without GROUP BY).
#[derive(Debug)]
struct GroupCounter {
    subjects: Vec<u64>,
    cap: usize,
    hashes: Vec<u64>,
}

impl Accumulator for GroupCounter {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(subjects) = values.first() else { return internal_err!("{CONTRIBUTORS_FUNCTION} takes one argument") };
        if self.subjects.len() >= self.cap {
            return Ok(());
        }
        let hashes = hash_subjects(subjects, &mut self.hashes)?;
        for (row, &hash) in hashes.iter().enumerate() {
            if subjects.is_valid(row) {
                insert(&mut self.subjects, hash, self.cap);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(count(&self.subjects))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + (self.subjects.capacity() + self.hashes.capacity()) * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let state = to_state(vec![std::mem::take(&mut self.subjects)]);
        Ok(vec![ScalarValue::List(Arc::new(state.as_list::<i32>().clone()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(states) = states.first() else { return internal_err!("{CONTRIBUTORS_FUNCTION} state is missing") };
        for partial in states.as_list::<i32>().iter().flatten() {
            for hash in partial.as_primitive::<UInt64Type>().values() {
                insert(&mut self.subjects, *hash, self.cap);
            }
        }
        Ok(())
    }
}

/// The counter for every group of a GROUP BY at once.
struct GroupsCounter {
    groups: Vec<Vec<u64>>,
    cap: usize,
    hashes: Vec<u64>,
}

impl GroupsCounter {
    /// True when some row (passing the filter) belongs to a group that is not yet full.
    fn has_room(&self, group_indices: &[usize], filter: Option<&BooleanArray>) -> bool {
        group_indices.iter().enumerate().any(|(row, &group)| {
            self.groups[group].len() < self.cap && filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row))
        })
    }
}

impl GroupsAccumulator for GroupsCounter {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let Some(subjects) = values.first() else { return internal_err!("{CONTRIBUTORS_FUNCTION} takes one argument") };
        self.groups.resize_with(total_num_groups, Vec::new);
        // Once every group a batch touches is full, the batch costs one pass over its indices.
        if !self.has_room(group_indices, opt_filter) {
            return Ok(());
        }
        let mut hashes = std::mem::take(&mut self.hashes);
        let hashed = hash_subjects(subjects, &mut hashes)?;
        for (row, (&group, &hash)) in group_indices.iter().zip(hashed).enumerate() {
            let selected = opt_filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row));
            if selected && subjects.is_valid(row) {
                insert(&mut self.groups[group], hash, self.cap);
            }
        }
        self.hashes = hashes;
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let emitted = emit_to.take_needed(&mut self.groups);
        Ok(Arc::new(Int64Array::from_iter_values(emitted.iter().map(|subjects| count(subjects)))))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![to_state(emit_to.take_needed(&mut self.groups))])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        let Some(states) = values.first() else { return internal_err!("{CONTRIBUTORS_FUNCTION} state is missing") };
        self.groups.resize_with(total_num_groups, Vec::new);
        let states = states.as_list::<i32>();
        for (row, &group) in group_indices.iter().enumerate() {
            if self.groups[group].len() >= self.cap || states.is_null(row) {
                continue;
            }
            let partial = states.value(row);
            for hash in partial.as_primitive::<UInt64Type>().values() {
                insert(&mut self.groups[group], *hash, self.cap);
            }
        }
        Ok(())
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        // One row, one group: each row's state holds its own subject, unless filtered or null.
        let Some(subjects) = values.first() else { return internal_err!("{CONTRIBUTORS_FUNCTION} takes one argument") };
        let mut hashes = Vec::new();
        let hashed = hash_subjects(subjects, &mut hashes)?;
        let groups = hashed
            .iter()
            .enumerate()
            .map(|(row, &hash)| {
                let selected = opt_filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row));
                if selected && subjects.is_valid(row) { vec![hash] } else { Vec::new() }
            })
            .collect();
        Ok(vec![to_state(groups)])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<Vec<u64>>()
            + self.groups.iter().map(|subjects| subjects.capacity() * 8).sum::<usize>()
            + self.hashes.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn counts_distinct_subjects_per_group_up_to_the_cap() {
        let mut counter = GroupsCounter { groups: Vec::new(), cap: 3, hashes: Vec::new() };
        let subjects = strings(&[Some("a"), Some("a"), Some("b"), None, Some("c"), Some("d"), Some("e"), Some("x")]);
        counter.update_batch(&[subjects], &[0, 0, 0, 0, 1, 1, 1, 2], None, 3).unwrap();
        let more = strings(&[Some("f"), Some("b")]);
        counter.update_batch(&[more], &[1, 0], None, 3).unwrap();
        let counts = counter.evaluate(EmitTo::All).unwrap();
        // group 0: a, b (a twice, one null); group 1: c, d, e, f capped at 3; group 2: x
        assert_eq!(counts.as_primitive::<datafusion::arrow::datatypes::Int64Type>().values(), &[2, 3, 1]);
    }

    #[test]
    fn partial_states_merge_without_double_counting() {
        let mut left = GroupsCounter { groups: Vec::new(), cap: 10, hashes: Vec::new() };
        let mut right = GroupsCounter { groups: Vec::new(), cap: 10, hashes: Vec::new() };
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        left.update_batch(&[ids], &[0, 0, 0], None, 1).unwrap();
        right.update_batch(&[Arc::new(Int64Array::from(vec![3, 4])) as ArrayRef], &[0, 0], None, 1).unwrap();
        let mut merged = GroupsCounter { groups: Vec::new(), cap: 10, hashes: Vec::new() };
        merged.merge_batch(&left.state(EmitTo::All).unwrap(), &[0], 1).unwrap();
        merged.merge_batch(&right.state(EmitTo::All).unwrap(), &[0], 1).unwrap();
        let counts = merged.evaluate(EmitTo::All).unwrap();
        assert_eq!(counts.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0), 4);
    }

    #[test]
    fn filtered_rows_do_not_count() {
        let mut counter = GroupsCounter { groups: Vec::new(), cap: 10, hashes: Vec::new() };
        let filter = BooleanArray::from(vec![Some(true), Some(false), None]);
        counter.update_batch(&[strings(&[Some("a"), Some("b"), Some("c")])], &[0, 0, 0], Some(&filter), 1).unwrap();
        let counts = counter.evaluate(EmitTo::All).unwrap();
        assert_eq!(counts.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0), 1);
    }

    #[test]
    fn one_group_counter_states_round_trip() {
        let mut counter = GroupCounter { subjects: Vec::new(), cap: 5, hashes: Vec::new() };
        counter.update_batch(&[strings(&[Some("a"), Some("b"), Some("a")])]).unwrap();
        let ScalarValue::List(state) = counter.state().unwrap().remove(0) else { panic!("a list state") };
        let mut merged = GroupCounter { subjects: Vec::new(), cap: 5, hashes: Vec::new() };
        merged.merge_batch(&[state as ArrayRef]).unwrap();
        merged.update_batch(&[strings(&[Some("c")])]).unwrap();
        assert_eq!(merged.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
    }
}
