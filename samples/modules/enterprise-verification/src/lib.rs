//! Enterprise verification (数据核验): answers whether an enterprise's registered facts match
//! what a customer claimed, without revealing the register.
//!
//! The claims arrive as the job's parameters, comma-separated with a header line naming the
//! key and the fields stated (an empty cell states nothing):
//!
//! ```text
//! uscc,name,district
//! 91330502MA2B3C4D5E,湖州青山纺织有限公司,吴兴区
//! ```
//!
//! The module hands them to the domain, which compares them with the enterprise register and
//! writes the answers — found, and match or mismatch per field — to the verification output
//! itself. The grant lets this module read no column of the register at all.

use std::sync::Arc;

use unseen_sdk::arrow_array::{ArrayRef, RecordBatch, StringArray};
use unseen_sdk::arrow_schema::{DataType, Field, Schema};
use unseen_sdk::{Context, Error, ErrorCode};

const OUTPUT: &str = "enterprise_checks";

fn invalid(message: String) -> Error {
    Error { code: ErrorCode::InvalidArgument, message }
}

/// The claims in the parameters as a table of text columns.
fn claims(params: &str) -> Result<RecordBatch, Error> {
    let mut lines = params.lines().map(str::trim).filter(|line| !line.is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| invalid("no claims: the parameters start with a header line such as uscc,name".into()))?
        .split(',')
        .map(str::trim)
        .collect();
    let mut columns: Vec<Vec<Option<&str>>> = vec![Vec::new(); header.len()];
    for (number, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(invalid(format!(
                "claim {} has {} cells; the header names {}",
                number + 1,
                cells.len(),
                header.len()
            )));
        }
        for (column, cell) in columns.iter_mut().zip(cells) {
            column.push((!cell.is_empty()).then_some(cell));
        }
    }
    let fields: Vec<Field> = header.iter().map(|name| Field::new(*name, DataType::Utf8, true)).collect();
    let arrays: Vec<ArrayRef> =
        columns.into_iter().map(|values| Arc::new(StringArray::from(values)) as ArrayRef).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|error| invalid(error.to_string()))
}

fn verify(ctx: &mut Context) -> Result<(), Error> {
    let claims = claims(&ctx.params()?)?;
    let answered = ctx.verify(OUTPUT, &claims)?;
    ctx.log(&format!("{answered} claims answered into \"{OUTPUT}\""));
    Ok(())
}

unseen_sdk::entry!(verify);
