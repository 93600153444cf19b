//! A model, not a table (绿色能源 planning): electricity use explained by head count. The module
//! reads governed aggregates per industry and district — total kWh and total staff-months —
//! fits `kwh = intercept + slope × staff` over those groups by least squares, and emits the
//! coefficients as an artifact. Bytes a module computed always go to an operator, who sees the
//! review report and decides.

use unseen_sdk::arrow_array::{Array, Float64Array, Int64Array};
use unseen_sdk::{Context, Error, ErrorCode};

const QUERY: &str = "SELECT e.industry, e.district, SUM(u.kwh) AS kwh, SUM(e.employees) AS staff_months \
                     FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";

/// Least squares of `y` on `x`: (intercept, slope).
fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let (mean_x, mean_y) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let spread: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if points.len() < 2 || spread == 0.0 {
        return None;
    }
    let slope = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum::<f64>() / spread;
    Some((mean_y - slope * mean_x, slope))
}

fn model(ctx: &mut Context) -> Result<(), Error> {
    let result = ctx.sql(QUERY)?;
    let mut points = Vec::new();
    for batch in result.batches() {
        let batch = batch?;
        let kwh = batch.column(2).as_any().downcast_ref::<Float64Array>();
        let staff = batch.column(3).as_any().downcast_ref::<Int64Array>();
        let (Some(kwh), Some(staff)) = (kwh, staff) else {
            return Err(Error { code: ErrorCode::Internal, message: "unexpected column types".into() });
        };
        for row in 0..batch.num_rows() {
            if !kwh.is_null(row) && !staff.is_null(row) {
                points.push((staff.value(row) as f64, kwh.value(row)));
            }
        }
    }
    let Some((intercept, slope)) = fit(&points) else {
        return Err(Error { code: ErrorCode::InvalidArgument, message: "too few groups to fit a line".into() });
    };
    ctx.log(&format!("fitted over {} groups ({} withheld)", points.len(), result.suppressed_groups));
    let coefficients = format!(
        "{{\"model\":\"kwh = intercept + slope * staff_months\",\"intercept\":{intercept:.3},\"slope\":{slope:.3},\"groups\":{}}}",
        points.len()
    );
    ctx.emit_artifact("kwh_model", coefficients.as_bytes())
}

unseen_sdk::entry!(model);
