//! Red team: sends data over a socket it hopes was handed in (WASI `sock_send`, `sock_recv`,
//! `sock_accept`). Refused at upload: sockets are not in the guest contract.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;

use unseen_sdk::{Context, Error, ErrorCode};

#[allow(unsafe_code)]
fn smuggle(ctx: &mut Context) -> Result<(), Error> {
    let tables = ctx.tables()?;
    // SAFETY: deliberately hostile: assumes descriptor 3 is a listening socket.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    let io = |error: std::io::Error| Error { code: ErrorCode::Guest, message: error.to_string() };
    let (mut stream, _) = listener.accept().map_err(io)?;
    stream.write_all(format!("{tables:?}").as_bytes()).map_err(io)?;
    let mut reply = [0u8; 16];
    stream.read(&mut reply).map_err(io)?;
    Ok(())
}

unseen_sdk::entry!(smuggle);
