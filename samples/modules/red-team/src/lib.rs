//! Red team: a module that attacks the domain's limits, one attack per job, chosen by the job
//! parameter `attack=<name>`. Every attack must end in its own typed error and leave the
//! domain serving the next job; the tests in `tests/red_team.rs` check each one.
//!
//! - `loop`: spins forever (stopped by fuel, or by the wall-clock deadline)
//! - `memory`: allocates until memory runs out (stopped by the memory limit)
//! - `recursion`: recurses without end on the wasm stack (stopped by the stack limit)
//! - `recursion_in_memory`: recurses with frames in linear memory (Rust's shadow stack); it
//!   runs off the bottom of memory (stopped by the out-of-bounds trap)
//! - `huge_output`: emits an artifact larger than the grant allows (output bytes)
//! - `output_rows`: emits one result many times (output rows)
//! - `query_flood`: runs queries without end (query count)
//! - `log_flood`: logs without end (log bytes)
//! - `trap_mid_query`: reads one batch of a query result, then traps
//! - `forge_answers`: emits its own table, then its own bytes, under the name of a
//!   verification output (`output=<name>`), whose answers only the domain may write

use std::hint::black_box;

use unseen_sdk::{Context, Error};

fn attack(ctx: &mut Context) -> Result<(), Error> {
    let attack = ctx.param("attack")?.unwrap_or_default();
    ctx.log(&format!("attack: {attack}"));
    match attack.as_str() {
        "loop" => {
            let mut counter: u64 = 0;
            loop {
                counter = black_box(counter.wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = vec![0u8; 16 * 1024 * 1024];
                block[0] = 1;
                hoard.push(black_box(block));
            }
        }
        "recursion" => {
            ctx.log(&format!("depth {}", descend(black_box(0))));
            Ok(())
        }
        "recursion_in_memory" => {
            ctx.log(&format!("depth {}", descend_in_memory(black_box(0))));
            Ok(())
        }
        "huge_output" => {
            let payload = vec![b'x'; 8 * 1024 * 1024];
            for round in 0.. {
                ctx.log(&format!("round {round}"));
                ctx.emit_artifact("model", &payload)?;
            }
            Ok(())
        }
        "output_rows" => {
            let result = ctx.sql(&ctx.param("sql")?.unwrap_or_default())?;
            for _ in 0..1_000 {
                ctx.emit("by_district", &result)?;
            }
            Ok(())
        }
        "query_flood" => {
            let sql = ctx.param("sql")?.unwrap_or_default();
            loop {
                ctx.sql(&sql)?;
            }
        }
        "log_flood" => {
            let line = "y".repeat(1024);
            loop {
                ctx.log(&line);
            }
        }
        "trap_mid_query" => {
            let result = ctx.sql(&ctx.param("sql")?.unwrap_or_default())?;
            let first = result.batches().next();
            ctx.log(&format!("read a first batch: {}", first.is_some()));
            std::process::abort()
        }
        "forge_answers" => {
            let output = ctx.param("output")?.unwrap_or_default();
            let forged = ctx.sql("SELECT CAST(1 AS BIGINT) AS claim, true AS found, true AS name")?;
            if let Err(error) = ctx.emit(&output, &forged) {
                ctx.log(&format!("table refused: {error}"));
            }
            ctx.emit_artifact(&output, b"claim,found\n1,true\n")
        }
        other => Err(Error { code: unseen_sdk::ErrorCode::InvalidArgument, message: format!("no attack {other:?}") }),
    }
}

/// Recursion the optimiser cannot turn into a loop: the result passes through `black_box`
/// before it is used, so no call is in tail position.
#[allow(unconditional_recursion)]
#[inline(never)]
fn descend(depth: u64) -> u64 {
    black_box(descend(black_box(depth + 1))).wrapping_add(1)
}

/// The same, with an array whose address escapes in every frame, so each frame lives on the
/// shadow stack in linear memory.
#[allow(unconditional_recursion)]
#[inline(never)]
fn descend_in_memory(depth: u64) -> u64 {
    let frame = [depth; 256];
    black_box(&frame);
    black_box(descend_in_memory(black_box(depth + 1))).wrapping_add(frame[3])
}

unseen_sdk::entry!(attack);
