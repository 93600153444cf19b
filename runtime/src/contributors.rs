//! The host's contributor counter: an aggregate function that counts the distinct subjects of
//! a group, but only up to a cap.
//!
//! A threshold rule needs to know whether a group has at least k distinct subjects, never how
//! many more. Counting up to k is far cheaper than an exact COUNT(DISTINCT): once a group holds
//! k distinct subjects its state is frozen and later rows cost one comparison. Subjects arrive
//! as their 64-bit keys (the [`crate::subject_key`] column), so partial states from different
//! partitions merge. A key collision can only make two subjects count as one, which errs
//! towards suppression. Null keys (rows without a subject) are not counted.
//!
//! The function is registered under [`CONTRIBUTORS_FUNCTION`] by the governed session only as
//! a plan node the host adds; modules cannot call it by name because it is not in the SQL
//! function registry.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, UInt64Array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The name of the contributor counter in plans.
pub const CONTRIBUTORS_FUNCTION: &str = "unseen_contributors";

use crate::subject_key::key_argument;

/// `unseen_contributors(subject_key)`: distinct non-null subjects of a group, counted up to `cap`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CappedContributors {
    signature: Signature,
    cap: usize,
}

impl CappedContributors {
    /// A counter that stops at `cap` (the grant's threshold k). A cap below 1 counts to 1.
    pub fn new(cap: u64) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX).max(1);
        Self { signature: Signature::exact(vec![DataType::UInt64], Volatility::Immutable), cap }
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
            format!("{}_subject_keys", args.name),
            Field::new_list_field(DataType::UInt64, false),
            false,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(GroupCounter { subjects: Vec::new(), cap: self.cap }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(GroupsCounter { groups: Vec::new(), cap: self.cap }))
    }
}

/// Adds `hash` to a group's subjects unless it is there already or the group is full.
#[inline]
fn insert(subjects: &mut Vec<u64>, hash: u64, cap: usize) {
    if subjects.len() < cap && !subjects.contains(&hash) {
        subjects.push(hash);
    }
}

/// The subject keys of each group as a list array, the function's intermediate state.
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
}

impl Accumulator for GroupCounter {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let keys = key_argument(values, CONTRIBUTORS_FUNCTION)?;
        for (row, &key) in keys.values().iter().enumerate() {
            if self.subjects.len() >= self.cap {
                break;
            }
            if keys.is_valid(row) {
                insert(&mut self.subjects, key, self.cap);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(count(&self.subjects))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.subjects.capacity() * 8
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
        let keys = key_argument(values, CONTRIBUTORS_FUNCTION)?;
        self.groups.resize_with(total_num_groups, Vec::new);
        // Once every group a batch touches is full, the batch costs one pass over its indices.
        if !self.has_room(group_indices, opt_filter) {
            return Ok(());
        }
        for (row, (&group, &key)) in group_indices.iter().zip(keys.values()).enumerate() {
            let selected = opt_filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row));
            if selected && keys.is_valid(row) {
                insert(&mut self.groups[group], key, self.cap);
            }
        }
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
        let keys = key_argument(values, CONTRIBUTORS_FUNCTION)?;
        let groups = keys
            .values()
            .iter()
            .enumerate()
            .map(|(row, &key)| {
                let selected = opt_filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row));
                if selected && keys.is_valid(row) { vec![key] } else { Vec::new() }
            })
            .collect();
        Ok(vec![to_state(groups)])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<Vec<u64>>()
            + self.groups.iter().map(|subjects| subjects.capacity() * 8).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;
    use crate::subject_key::subject_keys;

    /// The key column the host computes for these subjects.
    fn strings(values: &[Option<&str>]) -> ArrayRef {
        let subjects: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        Arc::new(subject_keys(&subjects).expect("keys"))
    }

    #[test]
    fn counts_distinct_subjects_per_group_up_to_the_cap() {
        let mut counter = GroupsCounter { groups: Vec::new(), cap: 3 };
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
        let mut left = GroupsCounter { groups: Vec::new(), cap: 10 };
        let mut right = GroupsCounter { groups: Vec::new(), cap: 10 };
        let ids = |values: Vec<i64>| -> ArrayRef {
            let ids: ArrayRef = Arc::new(Int64Array::from(values));
            Arc::new(subject_keys(&ids).expect("keys"))
        };
        left.update_batch(&[ids(vec![1, 2, 3])], &[0, 0, 0], None, 1).unwrap();
        right.update_batch(&[ids(vec![3, 4])], &[0, 0], None, 1).unwrap();
        let mut merged = GroupsCounter { groups: Vec::new(), cap: 10 };
        merged.merge_batch(&left.state(EmitTo::All).unwrap(), &[0], 1).unwrap();
        merged.merge_batch(&right.state(EmitTo::All).unwrap(), &[0], 1).unwrap();
        let counts = merged.evaluate(EmitTo::All).unwrap();
        assert_eq!(counts.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0), 4);
    }

    #[test]
    fn filtered_rows_do_not_count() {
        let mut counter = GroupsCounter { groups: Vec::new(), cap: 10 };
        let filter = BooleanArray::from(vec![Some(true), Some(false), None]);
        counter.update_batch(&[strings(&[Some("a"), Some("b"), Some("c")])], &[0, 0, 0], Some(&filter), 1).unwrap();
        let counts = counter.evaluate(EmitTo::All).unwrap();
        assert_eq!(counts.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0), 1);
    }

    #[test]
    fn one_group_counter_states_round_trip() {
        let mut counter = GroupCounter { subjects: Vec::new(), cap: 5 };
        counter.update_batch(&[strings(&[Some("a"), Some("b"), Some("a")])]).unwrap();
        let ScalarValue::List(state) = counter.state().unwrap().remove(0) else { panic!("a list state") };
        let mut merged = GroupCounter { subjects: Vec::new(), cap: 5 };
        merged.merge_batch(&[state as ArrayRef]).unwrap();
        merged.update_batch(&[strings(&[Some("c")])]).unwrap();
        assert_eq!(merged.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
    }
}
