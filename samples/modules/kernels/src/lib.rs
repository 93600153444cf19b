//! Kernels an analysis module runs over Arrow batches, compiled for the guest and natively so
//! that the benchmarks compare the same code on both sides.

use std::collections::HashMap;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch};

/// Sum, count and group-by: per distinct key of the Int64 column `key`, the sum and count of
/// the Float64 column `value`; nulls skipped. Sorted by key. `None` when the columns are not
/// of those types.
pub fn group_sum(batches: &[RecordBatch], key: usize, value: usize) -> Option<Vec<(i64, f64, u64)>> {
    let mut groups: HashMap<i64, (f64, u64)> = HashMap::new();
    for batch in batches {
        let keys = batch.column(key).as_any().downcast_ref::<Int64Array>()?;
        let values = batch.column(value).as_any().downcast_ref::<Float64Array>()?;
        if keys.null_count() == 0 && values.null_count() == 0 {
            for (key, value) in keys.values().iter().zip(values.values().iter()) {
                let group = groups.entry(*key).or_insert((0.0, 0));
                group.0 += value;
                group.1 += 1;
            }
        } else {
            for (key, value) in keys.iter().zip(values.iter()) {
                if let (Some(key), Some(value)) = (key, value) {
                    let group = groups.entry(key).or_insert((0.0, 0));
                    group.0 += value;
                    group.1 += 1;
                }
            }
        }
    }
    let mut sums: Vec<(i64, f64, u64)> = groups.into_iter().map(|(key, (sum, count))| (key, sum, count)).collect();
    sums.sort_by_key(|&(key, _, _)| key);
    Some(sums)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::ArrayRef;

    use super::*;

    #[test]
    fn sums_and_counts_per_key_skipping_nulls() {
        let keys: ArrayRef = Arc::new(Int64Array::from(vec![Some(2), Some(1), Some(2), None]));
        let values: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), Some(4.0), None, Some(9.0)]));
        let batch = RecordBatch::try_from_iter([("k", keys), ("v", values)]).unwrap();
        assert_eq!(group_sum(&[batch], 0, 1), Some(vec![(1, 4.0, 1), (2, 1.5, 1)]));
    }
}
