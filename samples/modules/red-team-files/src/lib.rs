//! Red team: reads files of the machine it runs on (WASI `path_open`, `fd_read`, …).
//! Refused at upload: files are not in the guest contract.

use unseen_sdk::{Context, Error, ErrorCode};

fn steal(ctx: &mut Context) -> Result<(), Error> {
    let secrets = std::fs::read_to_string("/etc/unseen/domain-key.pem")
        .map_err(|error| Error { code: ErrorCode::Guest, message: error.to_string() })?;
    ctx.emit_artifact("model", secrets.as_bytes())
}

unseen_sdk::entry!(steal);
