//! Green energy (绿色能源, Huzhou): electricity use by industry and district.
//!
//! The legitimate analysis of the demo. Enterprise keys are join-only and kWh aggregate-only
//! under its grant, so the only thing it can do with them is the aggregate below; the domain
//! withholds groups with fewer than k enterprises and says how many.

use unseen_sdk::arrow_array::RecordBatch;
use unseen_sdk::{Context, Error};

const QUERY: &str = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh \
                     FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
                     GROUP BY e.industry, e.district ORDER BY e.industry, e.district";

fn analyse(ctx: &mut Context) -> Result<(), Error> {
    let columns = ctx.tables()?;
    let granted: Vec<String> =
        columns.iter().map(|column| format!("{}.{} ({})", column.table, column.column, column.mode)).collect();
    ctx.log(&format!("granted columns: {}", granted.join(", ")));

    let result = ctx.sql(QUERY)?;
    let mut rows = 0;
    let mut total_kwh = 0.0;
    for batch in result.batches() {
        let batch: RecordBatch = batch?;
        rows += batch.num_rows();
        if let Some(kwh) = batch.column(2).as_any().downcast_ref::<unseen_sdk::arrow_array::Float64Array>() {
            total_kwh += kwh.iter().flatten().sum::<f64>();
        }
    }
    ctx.log(&format!(
        "read {rows} industry×district groups totalling {total_kwh:.0} kWh; {} groups withheld ({})",
        result.suppressed_groups, result.suppression_rule
    ));
    ctx.emit("kwh_by_industry_district", &result)
}

unseen_sdk::entry!(analyse);
