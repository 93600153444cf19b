//! Suite `accumulators`: the host's aggregate functions alone, beside DataFusion's own SUM
//! (and SUM with COUNT) fed the same groups and rows.
//!
//! The query suite measures the whole governed query, where Parquet decoding and grouping
//! dominate and a shared machine moves every figure by tens of percent. This suite feeds the
//! accumulators of `GROUP BY district, industry, month` over the readings table directly (its
//! group of each row, subject key and kWh, in batches of 8,192 rows, on one thread), as the
//! aggregate operator would, asking each for its size after every batch as the operator does.
//! The ratio to DataFusion's SUM is what one host function costs per row in units of the
//! cheapest aggregate; `host_all` is everything the host adds to the query (contributors,
//! largest contributions, subject sketch) beside what the plain query runs (SUM and COUNT).
//! The `*_12_groups` figures fold the same rows into their twelve months (`GROUP BY month`),
//! where every group's state stays in the cache: the difference to the 1,200 groups is what
//! cache misses cost, the rest is the functions' arithmetic.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{AggregateUDF, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use unseen_runtime::contributors::CappedContributors;
use unseen_runtime::largest::LargestContributions;
use unseen_runtime::subject_key::subject_keys;
use unseen_runtime::subject_sketch::SubjectSketcher;

use crate::query_suite::{READING_GROUPS, Reading, Readings, scaled};
use crate::{Args, Measurement, median};

/// Rows per batch, as DataFusion's scan hands them on.
const BATCH_ROWS: usize = 8_192;
/// The grant's threshold k in the query suite.
const THRESHOLD: u64 = 10;

/// One batch of the aggregate's input.
struct Batch {
    groups: Vec<usize>,
    keys: ArrayRef,
    kwh: ArrayRef,
}

/// Which arguments an accumulator takes.
enum Input {
    Kwh,
    Key,
    KeyAndKwh,
}

/// An aggregate function, the arguments it is called with and what it returns.
struct Function {
    udaf: Arc<AggregateUDF>,
    input: Input,
    returns: DataType,
}

impl Function {
    fn new(udaf: Arc<AggregateUDF>, input: Input, returns: DataType) -> Self {
        Self { udaf, input, returns }
    }

    fn accumulator(&self, schema: &Schema) -> Result<Box<dyn GroupsAccumulator>> {
        let arguments: &[&str] = match self.input {
            Input::Kwh => &["kwh"],
            Input::Key => &["key"],
            Input::KeyAndKwh => &["key", "kwh"],
        };
        let exprs: Vec<Arc<dyn PhysicalExpr>> = arguments
            .iter()
            .map(|name| Ok(Arc::new(Column::new_with_schema(name, schema)?) as Arc<dyn PhysicalExpr>))
            .collect::<Result<_>>()?;
        let expr_fields: Vec<_> =
            arguments.iter().map(|name| Ok(Arc::new(schema.field_with_name(name)?.clone()))).collect::<Result<_>>()?;
        let args = AccumulatorArgs {
            return_field: Arc::new(Field::new(self.udaf.name(), self.returns.clone(), true)),
            schema,
            ignore_nulls: false,
            order_bys: &[],
            is_reversed: false,
            name: self.udaf.name(),
            is_distinct: false,
            exprs: &exprs,
            expr_fields: &expr_fields,
        };
        Ok(self.udaf.create_groups_accumulator(args)?)
    }

    fn values(&self, batch: &Batch) -> Vec<ArrayRef> {
        match self.input {
            Input::Kwh => vec![Arc::clone(&batch.kwh)],
            Input::Key => vec![Arc::clone(&batch.keys)],
            Input::KeyAndKwh => vec![Arc::clone(&batch.keys), Arc::clone(&batch.kwh)],
        }
    }
}

pub fn run(args: &Args) -> Result<Vec<Measurement>> {
    let rows = scaled(1_000_000, args.query_scale);
    eprintln!("accumulators: generating {rows} readings and their subject keys…");
    let by_group = batches(rows, Reading::group)?;
    let schema =
        Schema::new(vec![Field::new("key", DataType::UInt64, false), Field::new("kwh", DataType::Float64, false)]);
    let sum = || Function::new(sum_udaf(), Input::Kwh, DataType::Float64);
    let count = || Function::new(count_udaf(), Input::Kwh, DataType::Int64);
    let contributors = || Function::new(CappedContributors::udaf(THRESHOLD), Input::Key, DataType::Int64);
    let largest = || {
        Function::new(
            LargestContributions::udaf(),
            Input::KeyAndKwh,
            DataType::Struct(LargestContributions::return_fields()),
        )
    };
    let sketch = || Function::new(SubjectSketcher::udaf(THRESHOLD), Input::Key, DataType::Binary);
    let per_row = |functions: &[Function], batches: &[Batch], groups: usize| -> Result<f64> {
        let mut times = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            let start = Instant::now();
            let mut accumulators =
                functions.iter().map(|function| function.accumulator(&schema)).collect::<Result<Vec<_>>>()?;
            for batch in batches {
                for (function, accumulator) in functions.iter().zip(&mut accumulators) {
                    accumulator.update_batch(&function.values(batch), &batch.groups, None, groups)?;
                    std::hint::black_box(accumulator.size());
                }
            }
            for accumulator in &mut accumulators {
                std::hint::black_box(accumulator.evaluate(EmitTo::All)?);
            }
            times.push(start.elapsed());
        }
        Ok(median(times) * 1e6 / rows as f64)
    };
    let name = |what: &str, suffix: &str| format!("{what}_1m{suffix}");
    let mut measurements = Vec::new();
    let by_month = batches(rows, |reading: &Reading| reading.month)?;
    for (batches, groups, suffix) in [(&by_group, READING_GROUPS, ""), (&by_month, 12, "_12_groups")] {
        let df_sum = per_row(&[sum()], batches, groups)?;
        for (what, function) in [("contributors", contributors()), ("largest", largest()), ("sketch", sketch())] {
            let host = per_row(&[function], batches, groups)?;
            measurements.push(Measurement::new("accumulators", &name(what, suffix), "ns/row", host, "df_sum", df_sum));
        }
        let plain = per_row(&[sum(), count()], batches, groups)?;
        let host = per_row(&[contributors(), largest(), sketch()], batches, groups)?;
        let all = name("host_all", suffix);
        measurements.push(Measurement::new("accumulators", &all, "ns/row", host, "df_sum+count", plain));
    }
    Ok(measurements)
}

/// The readings' rows as the aggregate sees them: group (by `group_of`), subject key and kWh.
fn batches(rows: usize, group_of: fn(&Reading) -> usize) -> Result<Vec<Batch>> {
    let mut readings = Readings::new();
    let mut batches = Vec::with_capacity(rows.div_ceil(BATCH_ROWS));
    let mut start = 0;
    while start < rows {
        let size = BATCH_ROWS.min(rows - start);
        let batch: Vec<_> = readings.by_ref().take(size).collect();
        let subjects: ArrayRef = Arc::new(StringArray::from_iter_values(batch.iter().map(|reading| reading.uscc())));
        batches.push(Batch {
            groups: batch.iter().map(group_of).collect(),
            keys: Arc::new(subject_keys(&subjects)?),
            kwh: Arc::new(Float64Array::from_iter_values(batch.iter().map(|reading| reading.kwh))),
        });
        start += size;
    }
    Ok(batches)
}
