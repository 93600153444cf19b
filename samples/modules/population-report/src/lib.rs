//! Population statistics report (统计分析报告): residents by district, sex and ten-year age
//! band, from the population register.
//!
//! Birth years are generalised into bands inside the query; every cell is a count of residents
//! with at least k of them, and the domain withholds the rest and says how many.

use unseen_sdk::{Context, Error};

const QUERY: &str = "SELECT district, sex, (2025 - birth_year) / 10 * 10 AS age_band, COUNT(*) AS residents \
                     FROM population GROUP BY district, sex, (2025 - birth_year) / 10 * 10 \
                     ORDER BY district, sex, age_band";

fn report(ctx: &mut Context) -> Result<(), Error> {
    let result = ctx.sql(QUERY)?;
    ctx.log(&format!(
        "{} district × sex × age-band cells; {} withheld ({})",
        result.rows, result.suppressed_groups, result.suppression_rule
    ));
    ctx.emit("residents_by_district_sex_age", &result)
}

unseen_sdk::entry!(report);
