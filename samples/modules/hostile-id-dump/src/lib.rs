//! A hostile module: tries to carry raw resident ID numbers out of the domain.
//!
//! It reads `id_card` row by row and emits the rows under the name of an output its grant
//! declares, then a second time as an artifact of CSV text. Under a grant that does not name
//! the population register the query is refused in the engine; under one that lets it read
//! `id_card` inside the domain, the egress reviewer blocks both outputs.

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
        let cards = unseen_sdk::strings(batch.column(0)).unwrap_or_default();
        let names = unseen_sdk::strings(batch.column(1)).unwrap_or_default();
        for (card, name) in cards.iter().zip(&names).take(1_000) {
            notes.push_str(&format!("{},{}\n", card.unwrap_or_default(), name.unwrap_or_default()));
        }
    }
    ctx.emit("verification_result", &result)?;
    ctx.emit_artifact("verification_notes", notes.as_bytes())
}

unseen_sdk::entry!(exfiltrate);
