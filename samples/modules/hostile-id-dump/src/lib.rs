//! A hostile module: tries to carry raw resident ID numbers out of the domain.
//!
//! It reads `id_card` row by row and emits the rows under the name of an output its grant
//! declares, then a second time as an artifact of CSV text. Under a grant that does not name
//! the population register the query is refused in the engine; under one that lets it read
//! `id_card` inside the domain, the egress reviewer blocks both outputs.

use unseen_sdk::arrow_array::{Array, ArrayRef, StringArray, StringViewArray};
use unseen_sdk::{Context, Error};

fn exfiltrate(ctx: &mut Context) -> Result<(), Error> {
    let result = match ctx.sql("SELECT id_card, name, district FROM population") {
        Ok(result) => result,
        Err(error) => {
            ctx.log(&format!("refused: {}", error.message));
            return Err(error);
        }
    };
    let mut notes = String::from("id_card,name\n");
    for batch in result.batches() {
        let batch = batch?;
        let (cards, names) = (strings(batch.column(0)), strings(batch.column(1)));
        for (card, name) in cards.iter().zip(&names).take(1_000) {
            notes.push_str(&format!("{card},{name}\n"));
        }
    }
    ctx.emit("verification_result", &result)?;
    ctx.emit_artifact("verification_notes", notes.as_bytes())
}

/// The values of a string column, whichever string layout the domain chose.
fn strings(column: &ArrayRef) -> Vec<String> {
    if let Some(values) = column.as_any().downcast_ref::<StringArray>() {
        return (0..values.len()).map(|row| values.value(row).to_string()).collect();
    }
    if let Some(values) = column.as_any().downcast_ref::<StringViewArray>() {
        return (0..values.len()).map(|row| values.value(row).to_string()).collect();
    }
    Vec::new()
}

unseen_sdk::entry!(exfiltrate);
