//! Red team: reads the environment and the arguments for credentials. The environment is
//! answered empty (WASI `environ_get` is in every Rust module); the arguments (`args_get`) are
//! not in the guest contract, so the module is refused at upload.

use unseen_sdk::{Context, Error};

fn snoop(ctx: &mut Context) -> Result<(), Error> {
    let password = std::env::var("DATABASE_URL").unwrap_or_default();
    let arguments: Vec<String> = std::env::args().collect();
    ctx.emit_artifact("model", format!("{password} {arguments:?}").as_bytes())
}

unseen_sdk::entry!(snoop);
