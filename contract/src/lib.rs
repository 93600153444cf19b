//! The guest contract, ABI v1 (`docs/guest-abi.md`), as the values both sides compile against:
//! the host (`unseen-runtime`) checks uploads and answers calls with them, the SDK
//! (`unseen-sdk`) makes the calls and reads the answers with them. Written once here, the two
//! sides cannot drift apart; a change to anything in this crate is a change to the contract.
//!
//! No dependencies and no `std`: the SDK brings this crate into every module built for
//! `wasm32-wasip1`, and a module should get nothing else with it.

#![cfg_attr(not(test), no_std)]

/// The ABI version of this contract. A module's `unseen_abi_version` export returns it; the
/// host runs no module that answers another.
pub const ABI_VERSION: i32 = 1;

/// The import module of the contract's own calls.
pub const UNSEEN_MODULE: &str = "unseen";

/// The import module of the WASI shim.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// The calls of [`UNSEEN_MODULE`]: everything a module may ask of the domain.
pub const UNSEEN_IMPORTS: &[&str] =
    &["tables", "params", "query", "result_info", "next_batch", "emit", "emit_artifact", "verify", "log", "last_error"];

/// The functions of [`WASI_MODULE`] the host answers, with a shim that grants nothing: those
/// every Rust module for `wasm32-wasip1` imports (std and wasi-libc's start-up code). Every
/// other WASI function (files, sockets, arguments, clocks) is refused at upload.
pub const WASI_SHIM: &[&str] = &["fd_write", "random_get", "environ_get", "environ_sizes_get", "proc_exit"];

/// Whether `module.name` is an import the contract provides; a module importing anything else
/// is refused at upload.
pub fn is_contract_import(module: &str, name: &str) -> bool {
    match module {
        UNSEEN_MODULE => UNSEEN_IMPORTS.contains(&name),
        WASI_MODULE => WASI_SHIM.contains(&name),
        _ => false,
    }
}

/// The export holding the module's linear memory, where the host reads arguments and writes
/// replies.
pub const EXPORT_MEMORY: &str = "memory";

/// The export that returns the [`ABI_VERSION`] the module was built for.
pub const EXPORT_ABI_VERSION: &str = "unseen_abi_version";

/// The export `(len: i32) -> i32` that gives the host `len` writable bytes (align 8) to write a
/// reply into; the guest owns them afterwards.
pub const EXPORT_ALLOC: &str = "unseen_alloc";

/// The module's entry point `() -> i32`: `0` is success, anything else means the module gave up.
pub const EXPORT_RUN: &str = "unseen_run";

/// The exports a module must have, in the order the host checks them at upload.
pub const REQUIRED_EXPORTS: &[&str] = &[EXPORT_MEMORY, EXPORT_RUN, EXPORT_ALLOC, EXPORT_ABI_VERSION];

/// A call answered with this was refused by the grant's policy; the message names the rule.
pub const ERR_REFUSED: i64 = -1;

/// A call answered with this had a malformed argument (SQL that does not plan, a bad output
/// name, an oversized buffer).
pub const ERR_INVALID: i64 = -2;

/// Reserved for a future soft limit: today a limit reached inside a call ends the job instead of
/// returning, so the host never answers this.
pub const ERR_LIMIT_EXCEEDED: i64 = -3;

/// A call answered with this named a query result the job does not have.
pub const ERR_NOT_FOUND: i64 = -4;

/// A call answered with this failed inside the domain; the module did nothing wrong.
pub const ERR_INTERNAL: i64 = -5;

/// The WASI errno (`badf`) the shim answers a call it will not serve with: a descriptor other than
/// stdout or stderr, or a buffer outside guest memory.
pub const WASI_EBADF: i32 = 8;

/// Largest module accepted at upload, in bytes.
pub const MAX_MODULE_BYTES: usize = 32 * 1024 * 1024;

/// Largest job parameter text, in bytes; a job with more does not start.
pub const MAX_PARAMS_BYTES: usize = 4096;

/// Largest SQL text one `query` call may send, in bytes.
pub const MAX_SQL_BYTES: usize = 1024 * 1024;

/// Longest output name, in bytes (see [`is_valid_output_name`]).
pub const MAX_OUTPUT_NAME_BYTES: usize = 64;

/// Largest batch of claims one `verify` call may send (Arrow IPC bytes).
pub const MAX_CLAIMS_BYTES: usize = 4 * 1024 * 1024;

/// Most I/O vectors in one `fd_write`.
pub const MAX_IOVS: usize = 1024;

/// Most linear memories a module may declare: it has exactly one.
pub const MAX_MEMORIES_PER_MODULE: u32 = 1;

/// Most wasm tables a module may declare (Rust modules declare one).
pub const MAX_TABLES_PER_MODULE: u32 = 4;

/// Whether `name` may name an output: 1 to [`MAX_OUTPUT_NAME_BYTES`] of `[a-z0-9_]`, so it is
/// safe as a file name and in a report.
pub fn is_valid_output_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_OUTPUT_NAME_BYTES
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

/// The `i64` a call returns for `len` bytes the host wrote at `ptr` in guest memory:
/// `(ptr << 32) | len`. Never negative for pointers below 2 GiB, so it cannot be read as an error.
pub fn pack_reply(ptr: u32, len: u32) -> i64 {
    (i64::from(ptr) << 32) | i64::from(len)
}

/// The pointer and length of a reply packed by [`pack_reply`].
pub fn unpack_reply(packed: i64) -> (u32, u32) {
    ((packed >> 32) as u32, (packed & 0xFFFF_FFFF) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR_CODES: [i64; 5] = [ERR_REFUSED, ERR_INVALID, ERR_LIMIT_EXCEEDED, ERR_NOT_FOUND, ERR_INTERNAL];

    #[test]
    fn error_codes_are_negative_and_distinct() {
        for (index, code) in ERROR_CODES.iter().enumerate() {
            assert!(*code < 0, "{code} would read as a reply");
            assert!(!ERROR_CODES[index + 1..].contains(code), "{code} is used twice");
        }
    }

    #[test]
    fn a_packed_reply_is_never_an_error_and_unpacks_to_itself() {
        for (ptr, len) in [(0, 1), (8, 0), (1 << 16, 12_345), (0x7FFF_FFFF, u32::MAX)] {
            let packed = pack_reply(ptr, len);
            assert!(packed >= 0);
            assert_eq!(unpack_reply(packed), (ptr, len));
        }
    }

    #[test]
    fn only_the_contract_imports_are_accepted() {
        assert!(UNSEEN_IMPORTS.iter().all(|name| is_contract_import(UNSEEN_MODULE, name)));
        assert!(WASI_SHIM.iter().all(|name| is_contract_import(WASI_MODULE, name)));
        assert!(!is_contract_import(WASI_MODULE, "path_open"));
        assert!(!is_contract_import(UNSEEN_MODULE, "fd_write"));
        assert!(!is_contract_import("env", "query"));
    }

    #[test]
    fn output_names_are_short_lowercase_words() {
        assert!(is_valid_output_name("by_district_2026"));
        assert!(is_valid_output_name(&"a".repeat(MAX_OUTPUT_NAME_BYTES)));
        assert!(!is_valid_output_name(&"a".repeat(MAX_OUTPUT_NAME_BYTES + 1)));
        for name in ["", "By_district", "by-district", "../etc", "名"] {
            assert!(!is_valid_output_name(name), "{name:?}");
        }
    }
}
