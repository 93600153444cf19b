//! The benchmark probe: does one measured thing per job, chosen by `key=value` parameters.
//!
//! - `calls=N`: N host-call round trips (`unseen.last_error` with no error pending)
//! - `sql=…`: runs the query and streams every batch through guest memory
//! - `emit=NAME` (with `sql`): emits the query's result as output NAME instead
//! - `kernel=R` (R > 0): keeps the batches instead and runs the group-sum kernel R times over
//!   them (columns 0 and 1)
//!
//! The host meters host time and guest time separately; the benchmark reads them.

use std::hint::black_box;

use unseen_sdk::arrow_array::RecordBatch;
use unseen_sdk::{Context, Error, ErrorCode};

#[link(wasm_import_module = "unseen")]
unsafe extern "C" {
    fn last_error() -> i64;
}

fn number(ctx: &Context, name: &str) -> Result<u64, Error> {
    match ctx.param(name)? {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| Error { code: ErrorCode::InvalidArgument, message: format!("{name}={text} is not a number") }),
    }
}

#[allow(unsafe_code)]
fn probe(ctx: &mut Context) -> Result<(), Error> {
    for _ in 0..number(ctx, "calls")? {
        // SAFETY: a contract import without arguments; nothing is pending, so it returns 0.
        black_box(unsafe { last_error() });
    }
    let Some(sql) = ctx.param("sql")? else { return Ok(()) };
    let result = ctx.sql(&sql)?;
    if let Some(output) = ctx.param("emit")? {
        return ctx.emit(&output, &result);
    }
    let repeats = number(ctx, "kernel")?;
    if repeats == 0 {
        // Streaming, as most modules read: each batch is dropped before the next arrives, so
        // the guest's allocator hands the same memory back for the next one.
        let mut rows = 0;
        for batch in result.batches() {
            rows += black_box(batch?).num_rows();
        }
        ctx.log(&format!("{rows} rows streamed"));
        return Ok(());
    }
    let batches: Vec<RecordBatch> = result.batches().collect::<Result<_, _>>()?;
    let mut checksum = 0.0;
    for _ in 0..repeats {
        let sums = unseen_kernels::group_sum(black_box(&batches), 0, 1).unwrap_or_default();
        checksum += sums.iter().map(|(_, sum, _)| sum).sum::<f64>();
    }
    ctx.log(&format!("{} rows, checksum {checksum}", batches.iter().map(RecordBatch::num_rows).sum::<usize>()));
    Ok(())
}

unseen_sdk::entry!(probe);
