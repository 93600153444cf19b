//! The host's largest-contributions summary: for a magnitude aggregate (SUM, AVG), how much
//! the biggest contributing subjects put into each group, which dominance rules need.
//!
//! A p%-rule or (n,k)-rule asks whether the top one or two subjects make up most of a cell's
//! total: if one company is 95% of a district's electricity, the published sum is that
//! company's consumption. Per group the summary keeps the exact total of |value| and, while
//! the group has at most [`EXACT_SUBJECTS`] subjects — the small groups where dominance bites —
//! each subject's exact total. A group with more subjects is folded into [`BUCKETS`] buckets by
//! subject key, and every later row costs one addition. A bucket's sum is at least the
//! contribution of any subject in it, and the i largest subjects lie in at most i buckets, so
//! the sum of the i largest reported amounts is never below the sum of the i largest true
//! contributions. Dominance rules need only the largest and such prefix sums, so judged on
//! these amounts they err towards suppression, never towards release.
//!
//! Contributions are absolute values so that negative rows cannot hide a dominant subject.
//! Subjects arrive as their keys (the [`crate::subject_key`] column). Rows without a subject
//! count as one unknown subject (more suppression, never less); rows without a value
//! contribute nothing. Like the contributor counter this function is added by
//! the host and is not in the SQL function registry.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, StructArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, TypeSignature, Volatility,
};

use crate::subject_key::{key_argument, unknown_subject_key};

/// The name of the summary in plans.
pub const LARGEST_FUNCTION: &str = "unseen_largest_contributions";
/// Subjects tracked exactly per group; larger groups are folded into buckets.
pub const EXACT_SUBJECTS: usize = 16;
/// Buckets of a folded group.
pub const BUCKETS: usize = 32;
/// How many of the largest contributions each group reports (the n of an (n,k)-rule is at
/// most this).
pub const REPORTED_LARGEST: usize = unseen_policy::MAX_DOMINANCE_N;

/// `unseen_largest_contributions(subject_key, value)`: per group, the exact total of |value| and
/// the largest per-subject totals (exact, or bucket sums whose prefix sums bound the true
/// ones from above), as a struct `{total, largest}`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LargestContributions {
    signature: Signature,
}

impl LargestContributions {
    /// The summary as an aggregate function a plan can call with (subject key, Float64 value).
    pub fn udaf() -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(Self {
            signature: Signature::new(
                TypeSignature::Exact(vec![DataType::UInt64, DataType::Float64]),
                Volatility::Immutable,
            ),
        }))
    }

    /// The struct the function returns.
    pub fn return_fields() -> Fields {
        Fields::from(vec![
            Field::new("total", DataType::Float64, false),
            Field::new_list("largest", Field::new_list_field(DataType::Float64, false), false),
            Field::new("bucketed", DataType::Boolean, false),
        ])
    }
}

impl AggregateUDFImpl for LargestContributions {
    fn name(&self) -> &str {
        LARGEST_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(Self::return_fields()))
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new_list(
                format!("{}_subjects", args.name),
                Field::new_list_field(DataType::UInt64, false),
                false,
            )),
            Arc::new(Field::new_list(
                format!("{}_amounts", args.name),
                Field::new_list_field(DataType::Float64, false),
                false,
            )),
            Arc::new(Field::new(format!("{}_bucketed", args.name), DataType::Boolean, false)),
            Arc::new(Field::new(format!("{}_total", args.name), DataType::Float64, false)),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneGroup { summary: Summary::default() }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(AllGroups { groups: Vec::new() }))
    }
}

/// One group's contributions: exact per subject, or folded into buckets.
#[derive(Debug, Clone, Default, PartialEq)]
struct Summary {
    /// Subject keys while exact (at most [`EXACT_SUBJECTS`]); empty once bucketed.
    subjects: Vec<u64>,
    /// Each subject's total |value| (parallel to `subjects`), or the [`BUCKETS`] bucket sums.
    amounts: Vec<f64>,
    /// True once the group had more than [`EXACT_SUBJECTS`] subjects.
    bucketed: bool,
    /// Exact total of |value| over the group's rows.
    total: f64,
}

/// A subject's bucket: high bits of its key.
#[inline]
fn bucket(subject: u64) -> usize {
    (subject >> 40) as usize % BUCKETS
}

impl Summary {
    /// Adds one row; a folded group's row is one addition to its bucket, inlined into the
    /// caller's loop, the exact form's search is not.
    #[inline]
    fn add(&mut self, subject: u64, amount: f64) {
        self.total += amount;
        if self.bucketed {
            self.amounts[bucket(subject)] += amount;
        } else {
            self.add_exact(subject, amount);
        }
    }

    /// Adds one row to a group still tracked per subject (folding it past [`EXACT_SUBJECTS`]).
    #[inline(never)]
    fn add_exact(&mut self, subject: u64, amount: f64) {
        if let Some(slot) = self.subjects.iter().position(|&tracked| tracked == subject) {
            self.amounts[slot] += amount;
        } else if self.subjects.len() < EXACT_SUBJECTS {
            self.subjects.push(subject);
            self.amounts.push(amount);
        } else {
            self.fold();
            self.amounts[bucket(subject)] += amount;
        }
    }

    /// Folds the exact per-subject amounts into buckets.
    fn fold(&mut self) {
        if self.bucketed {
            return;
        }
        let mut buckets = vec![0.0; BUCKETS];
        for (&subject, &amount) in self.subjects.iter().zip(&self.amounts) {
            buckets[bucket(subject)] += amount;
        }
        self.subjects = Vec::new();
        self.amounts = buckets;
        self.bucketed = true;
    }

    /// Combines another partition's summary of the same group.
    fn merge(&mut self, subjects: &[u64], amounts: &[f64], bucketed: bool, total: f64) {
        if !bucketed {
            let total_before = self.total;
            for (&subject, &amount) in subjects.iter().zip(amounts) {
                self.add(subject, amount);
            }
            self.total = total_before + total;
            return;
        }
        self.fold();
        for (mine, theirs) in self.amounts.iter_mut().zip(amounts) {
            *mine += theirs;
        }
        self.total += total;
    }

    /// The largest amounts, biggest first, at most [`REPORTED_LARGEST`].
    fn largest(&self) -> Vec<f64> {
        let mut amounts: Vec<f64> = self.amounts.iter().copied().filter(|amount| *amount > 0.0).collect();
        amounts.sort_by(|left, right| right.total_cmp(left));
        amounts.truncate(REPORTED_LARGEST);
        amounts
    }
}

/// Each row's subject key (the unknown subject's for a null) and its value.
fn arguments(values: &[ArrayRef]) -> Result<(impl Iterator<Item = u64> + '_, &Float64Array)> {
    let [_, amounts] = values else { return internal_err!("{LARGEST_FUNCTION} takes (subject key, value)") };
    let keys = key_argument(values, LARGEST_FUNCTION)?;
    let Some(amounts) = amounts.as_primitive_opt::<Float64Type>() else {
        return internal_err!("{LARGEST_FUNCTION} takes a Float64 value, got {}", amounts.data_type());
    };
    let unknown = unknown_subject_key();
    let keys = keys.values().iter().enumerate().map(move |(row, &key)| if keys.is_valid(row) { key } else { unknown });
    Ok((keys, amounts))
}

fn list<T>(rows: impl Iterator<Item = Vec<T>>, item: DataType, values: impl Fn(Vec<T>) -> ArrayRef) -> ArrayRef {
    let rows: Vec<Vec<T>> = rows.collect();
    let offsets = OffsetBuffer::from_lengths(rows.iter().map(Vec::len));
    let flat = values(rows.into_iter().flatten().collect());
    Arc::new(ListArray::new(Arc::new(Field::new_list_field(item, false)), offsets, flat, None))
}

fn float_list(rows: impl Iterator<Item = Vec<f64>>) -> ArrayRef {
    list(rows, DataType::Float64, |flat| Arc::new(Float64Array::from(flat)))
}

/// The final value: `{total, largest}` per group.
fn to_result(summaries: &[Summary]) -> ArrayRef {
    let totals: ArrayRef = Arc::new(Float64Array::from_iter_values(summaries.iter().map(|summary| summary.total)));
    let largest = float_list(summaries.iter().map(Summary::largest));
    let bucketed: ArrayRef =
        Arc::new(BooleanArray::from(summaries.iter().map(|summary| summary.bucketed).collect::<Vec<_>>()));
    Arc::new(StructArray::new(LargestContributions::return_fields(), vec![totals, largest, bucketed], None))
}

/// The intermediate state: the whole table per group, so partitions merge.
fn to_state(summaries: Vec<Summary>) -> Vec<ArrayRef> {
    let bucketed = BooleanArray::from(summaries.iter().map(|summary| summary.bucketed).collect::<Vec<_>>());
    let totals = Float64Array::from_iter_values(summaries.iter().map(|summary| summary.total));
    let subjects = list(summaries.iter().map(|summary| summary.subjects.clone()), DataType::UInt64, |flat| {
        Arc::new(UInt64Array::from(flat))
    });
    let amounts = float_list(summaries.into_iter().map(|summary| summary.amounts));
    vec![subjects, amounts, Arc::new(bucketed), Arc::new(totals)]
}

/// Calls `merge` with each row of a state batch.
fn for_each_state(states: &[ArrayRef], mut merge: impl FnMut(usize, &[u64], &[f64], bool, f64)) -> Result<()> {
    let [subjects, amounts, bucketed, totals] = states else {
        return internal_err!("{LARGEST_FUNCTION} state is malformed");
    };
    let (subjects, amounts) = (subjects.as_list::<i32>(), amounts.as_list::<i32>());
    let (bucketed, totals) = (bucketed.as_boolean(), totals.as_primitive::<Float64Type>());
    for row in 0..subjects.len() {
        if subjects.is_null(row) {
            continue;
        }
        let row_subjects = subjects.value(row);
        let row_amounts = amounts.value(row);
        merge(
            row,
            row_subjects.as_primitive::<UInt64Type>().values(),
            row_amounts.as_primitive::<Float64Type>().values(),
            bucketed.value(row),
            totals.value(row),
        );
    }
    Ok(())
}

/// The summary of a single group (an aggregate without GROUP BY).
#[derive(Debug)]
struct OneGroup {
    summary: Summary,
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (keys, amounts) = arguments(values)?;
        for (row, key) in keys.enumerate() {
            if amounts.is_valid(row) {
                self.summary.add(key, amounts.value(row).abs());
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let result = to_result(std::slice::from_ref(&self.summary));
        ScalarValue::try_from_array(&result, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.summary.subjects.capacity() * 16
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        to_state(vec![std::mem::take(&mut self.summary)])
            .iter()
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for_each_state(states, |_, subjects, amounts, bucketed, total| {
            self.summary.merge(subjects, amounts, bucketed, total)
        })
    }
}

/// The summaries of every group of a GROUP BY.
struct AllGroups {
    groups: Vec<Summary>,
}

impl GroupsAccumulator for AllGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let (keys, amounts) = arguments(values)?;
        self.groups.resize_with(total_num_groups, Summary::default);
        // Most batches have no filter and no nulls: one pass over the three columns' values.
        let raw_keys = key_argument(values, LARGEST_FUNCTION)?;
        if opt_filter.is_none() && raw_keys.null_count() == 0 && amounts.null_count() == 0 {
            for ((&group, &key), &amount) in group_indices.iter().zip(raw_keys.values()).zip(amounts.values()) {
                self.groups[group].add(key, amount.abs());
            }
            return Ok(());
        }
        for (row, (&group, key)) in group_indices.iter().zip(keys).enumerate() {
            let selected = opt_filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row));
            if selected && amounts.is_valid(row) {
                self.groups[group].add(key, amounts.value(row).abs());
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(to_result(&emit_to.take_needed(&mut self.groups)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(to_state(emit_to.take_needed(&mut self.groups)))
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.groups.resize_with(total_num_groups, Summary::default);
        for_each_state(values, |row, subjects, amounts, bucketed, total| {
            self.groups[group_indices[row]].merge(subjects, amounts, bucketed, total);
        })
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let (keys, amounts) = arguments(values)?;
        let summaries = keys
            .enumerate()
            .map(|(row, key)| {
                let mut summary = Summary::default();
                let selected = opt_filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row));
                if selected && amounts.is_valid(row) {
                    summary.add(key, amounts.value(row).abs());
                }
                summary
            })
            .collect();
        Ok(to_state(summaries))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<Summary>()
            + self.groups.iter().map(|summary| summary.subjects.capacity() * 16).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use datafusion::arrow::array::StringArray;

    use super::*;
    use crate::subject_key::subject_keys;

    /// The key column the host computes for these subjects.
    fn subjects(values: &[&str]) -> ArrayRef {
        let subjects: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        Arc::new(subject_keys(&subjects).expect("keys"))
    }

    fn amounts(values: &[Option<f64>]) -> ArrayRef {
        Arc::new(Float64Array::from(values.to_vec()))
    }

    fn totals_and_largest(result: &ArrayRef) -> Vec<(f64, Vec<f64>)> {
        let result = result.as_struct();
        let totals = result.column(0).as_primitive::<Float64Type>();
        let largest = result.column(1).as_list::<i32>();
        (0..result.len())
            .map(|row| (totals.value(row), largest.value(row).as_primitive::<Float64Type>().values().to_vec()))
            .collect()
    }

    #[test]
    fn small_groups_are_exact_per_subject_not_per_row() {
        let mut groups = AllGroups { groups: Vec::new() };
        // Group 0: company a has three monthly rows (one negative), b one, c none (null value).
        let values = [
            subjects(&["a", "a", "b", "a", "c", "x"]),
            amounts(&[Some(5.0), Some(-2.0), Some(4.0), Some(1.0), None, Some(7.0)]),
        ];
        groups.update_batch(&values, &[0, 0, 0, 0, 0, 1], None, 2).unwrap();
        let result = totals_and_largest(&groups.evaluate(EmitTo::All).unwrap());
        assert_eq!(result[0], (12.0, vec![8.0, 4.0]), "a = |5|+|-2|+|1| = 8, b = 4");
        assert_eq!(result[1], (7.0, vec![7.0]));
    }

    /// A deterministic stream with a few heavy subjects among many light ones.
    fn stream(rows: usize) -> Vec<(String, f64)> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..rows)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let subject = if state % 10 < 3 { state % 3 } else { 3 + state % 500 };
                (format!("s{subject}"), (state % 100) as f64 + if subject < 3 { 50.0 } else { 0.0 })
            })
            .collect()
    }

    fn exact_largest(rows: &[(String, f64)]) -> (f64, Vec<f64>) {
        let mut per_subject: HashMap<&str, f64> = HashMap::new();
        for (subject, amount) in rows {
            *per_subject.entry(subject).or_default() += amount.abs();
        }
        let mut largest: Vec<f64> = per_subject.into_values().collect();
        largest.sort_by(|left, right| right.total_cmp(left));
        largest.truncate(REPORTED_LARGEST);
        (rows.iter().map(|(_, amount)| amount.abs()).sum(), largest)
    }

    fn summarise(rows: &[(String, f64)]) -> AllGroups {
        let mut groups = AllGroups { groups: Vec::new() };
        let names: Vec<&str> = rows.iter().map(|(subject, _)| subject.as_str()).collect();
        let values: Vec<Option<f64>> = rows.iter().map(|(_, amount)| Some(*amount)).collect();
        groups.update_batch(&[subjects(&names), amounts(&values)], &vec![0; rows.len()], None, 1).unwrap();
        groups
    }

    /// The sum of the i largest reported amounts is never below the sum of the i largest
    /// true contributions.
    fn assert_prefix_sums_bound(reported: &[f64], exact: &[f64]) {
        let (mut reported_sum, mut exact_sum) = (0.0, 0.0);
        for (index, truth) in exact.iter().enumerate() {
            reported_sum += reported.get(index).copied().unwrap_or(0.0);
            exact_sum += truth;
            assert!(reported_sum >= exact_sum * (1.0 - 1e-12), "top {}: {reported_sum} below {exact_sum}", index + 1);
        }
    }

    #[test]
    fn large_groups_never_underestimate_the_largest_contributions() {
        let rows = stream(20_000);
        let (total, exact) = exact_largest(&rows);
        let result = totals_and_largest(&summarise(&rows).evaluate(EmitTo::All).unwrap());
        assert!((result[0].0 - total).abs() < 1e-6 * total, "the total is exact");
        assert_prefix_sums_bound(&result[0].1, &exact);
        // Folded into buckets, the heavy subjects still stand out and nothing is wildly high.
        assert!(result[0].1[0] < 0.5 * total, "largest bucket {} of {total}", result[0].1[0]);
    }

    #[test]
    fn merged_partitions_never_underestimate() {
        let rows = stream(30_000);
        let (total, exact) = exact_largest(&rows);
        let mut merged = AllGroups { groups: Vec::new() };
        for part in rows.chunks(7_000) {
            let state = summarise(part).state(EmitTo::All).unwrap();
            merged.merge_batch(&state, &[0], 1).unwrap();
        }
        let result = totals_and_largest(&merged.evaluate(EmitTo::All).unwrap());
        assert!((result[0].0 - total).abs() < 1e-6 * total);
        assert_prefix_sums_bound(&result[0].1, &exact);
    }

    #[test]
    fn one_group_state_round_trips_and_rows_become_states() {
        let mut one = OneGroup { summary: Summary::default() };
        one.update_batch(&[subjects(&["a", "b", "a"]), amounts(&[Some(1.0), Some(2.0), Some(3.0)])]).unwrap();
        let state: Vec<ArrayRef> = one.state().unwrap().into_iter().map(|scalar| scalar.to_array().unwrap()).collect();
        let mut merged = OneGroup { summary: Summary::default() };
        merged.merge_batch(&state).unwrap();
        let result = totals_and_largest(&merged.evaluate().unwrap().to_array().unwrap());
        assert_eq!(result[0], (6.0, vec![4.0, 2.0]));

        let groups = AllGroups { groups: Vec::new() };
        let states = groups.convert_to_state(&[subjects(&["a", "b"]), amounts(&[Some(-1.5), None])], None).unwrap();
        let mut merged = AllGroups { groups: Vec::new() };
        merged.merge_batch(&states, &[0, 0], 1).unwrap();
        let result = totals_and_largest(&merged.evaluate(EmitTo::All).unwrap());
        assert_eq!(result[0], (1.5, vec![1.5]));
    }
}
