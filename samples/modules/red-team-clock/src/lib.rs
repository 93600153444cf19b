//! Red team: reads a fine-grained clock, the raw material of timing side channels (WASI
//! `clock_time_get`). Refused at upload: clocks are not in the guest contract.

use unseen_sdk::{Context, Error};

fn time(ctx: &mut Context) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let result = ctx.sql("SELECT COUNT(*) AS n FROM population")?;
    let elapsed = started.elapsed();
    ctx.log(&format!("{} rows in {elapsed:?}", result.rows));
    Ok(())
}

unseen_sdk::entry!(time);
