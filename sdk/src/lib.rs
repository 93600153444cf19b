//! # unseen-sdk: writing an analysis module
//!
//! A module is a `cdylib` built for `wasm32-wasip1`. It brings its analysis to the data: it asks
//! the domain which tables its grant covers, runs SQL that the domain checks against the grant,
//! reads the results as Arrow record batches, and emits outputs for egress review. It cannot
//! open files, sockets or clocks; everything goes through the [`Context`].
//!
//! ```ignore
//! use unseen_sdk::{Context, Error};
//!
//! fn analyse(ctx: &mut Context) -> Result<(), Error> {
//!     let result = ctx.sql("SELECT district, COUNT(*) AS n FROM population GROUP BY district")?;
//!     ctx.log(&format!("{} groups, {} withheld below the threshold", result.rows, result.suppressed_groups));
//!     ctx.emit("by_district", &result)
//! }
//!
//! unseen_sdk::entry!(analyse);
//! ```
//!
//! The contract underneath is `docs/guest-abi.md` (ABI v1).

pub use arrow_array;
pub use arrow_schema;

use arrow_array::{Array, LargeStringArray, RecordBatch, StringArray, StringViewArray};

/// The guest ABI version this SDK speaks.
pub use unseen_contract::ABI_VERSION;

/// What a host call can answer besides success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The grant's policy refused (the message names the rule and the column).
    Refused,
    /// An argument was malformed (bad SQL, bad output name).
    InvalidArgument,
    /// A per-grant limit was reached.
    LimitExceeded,
    /// A handle or name does not exist.
    NotFound,
    /// Something failed inside the domain.
    Internal,
    /// The module is not running inside an unseen domain, or decoding failed in the guest.
    Guest,
}

/// An error from the domain or from this SDK, with the domain's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure.
    pub code: ErrorCode,
    /// The domain's message (for refusals: rule, column, dataset and grant).
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// One granted column, as the domain describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Table (dataset) name, as used in SQL.
    pub table: String,
    /// Column name.
    pub column: String,
    /// Arrow data type, as text.
    pub data_type: String,
    /// Access mode granted: `visible`, `aggregate_only`, `join_only`, `filter_only`, …
    pub mode: String,
    /// The provider's tag: `subject`, `identifier`, `quasi`, `sensitive`, `public`.
    pub tag: String,
}

/// The result of a governed query: counts now, batches on demand.
#[derive(Debug, Clone)]
pub struct QueryResult {
    handle: i32,
    /// Rows the module may read (suppressed groups excluded).
    pub rows: u64,
    /// Groups the domain withheld because too few subjects contributed to them.
    pub suppressed_groups: u64,
    /// The rule that withheld them, e.g. `threshold k=10 distinct subjects`.
    pub suppression_rule: String,
}

impl QueryResult {
    /// The result's record batches, read from the domain one at a time.
    pub fn batches(&self) -> impl Iterator<Item = Result<RecordBatch, Error>> + '_ {
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            match abi::next_batch(self.handle) {
                Ok(None) => {
                    done = true;
                    None
                }
                Ok(Some(bytes)) => Some(decode_batch(bytes)),
                Err(error) => {
                    done = true;
                    Some(Err(error))
                }
            }
        })
    }
}

/// Decodes one IPC stream without copying: the arrays point into the buffer the host wrote.
fn decode_batch(bytes: Vec<u8>) -> Result<RecordBatch, Error> {
    let guest = |message: String| Error { code: ErrorCode::Guest, message };
    let mut buffer = arrow_buffer::Buffer::from_vec(bytes);
    let mut decoder = arrow_ipc::reader::StreamDecoder::new();
    let mut batch = None;
    while !buffer.is_empty() {
        let decoded = decoder.decode(&mut buffer).map_err(|error| guest(format!("decoding Arrow IPC: {error}")))?;
        if decoded.is_some() {
            batch = decoded;
        }
    }
    batch.ok_or_else(|| guest("an Arrow IPC stream without a batch".into()))
}

/// The values of a string column, whichever layout the domain chose (`Utf8`, `LargeUtf8` or
/// `Utf8View`; DataFusion produces views for many string expressions). `None` for other types.
pub fn strings(column: &dyn Array) -> Option<Vec<Option<&str>>> {
    let any = column.as_any();
    if let Some(values) = any.downcast_ref::<StringArray>() {
        return Some(values.iter().collect());
    }
    if let Some(values) = any.downcast_ref::<StringViewArray>() {
        return Some(values.iter().collect());
    }
    any.downcast_ref::<LargeStringArray>().map(|values| values.iter().collect())
}

/// The module's handle on the domain.
#[derive(Debug, Default)]
pub struct Context {
    _private: (),
}

impl Context {
    #[doc(hidden)]
    pub fn new() -> Self {
        Self { _private: () }
    }

    /// The granted columns of every granted table (denied columns are not listed).
    pub fn tables(&self) -> Result<Vec<ColumnInfo>, Error> {
        let text = abi::tables()?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                Some(ColumnInfo {
                    table: fields.next()?.to_string(),
                    column: fields.next()?.to_string(),
                    data_type: fields.next()?.to_string(),
                    mode: fields.next()?.to_string(),
                    tag: fields.next()?.to_string(),
                })
            })
            .collect())
    }

    /// The parameters the developer passed with this job (free text, at most 4 KiB), e.g. the
    /// month to analyse. They are recorded in the audit log with the job.
    pub fn params(&self) -> Result<String, Error> {
        abi::params().map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The value of `name` when the parameters are `name=value` lines.
    pub fn param(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self.params()?.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_string())
        }))
    }

    /// Runs SQL under the grant. A refusal names the rule and the column it is about.
    pub fn sql(&mut self, sql: &str) -> Result<QueryResult, Error> {
        let handle = abi::query(sql)?;
        let info = abi::result_info(handle)?;
        let mut result = QueryResult { handle, rows: 0, suppressed_groups: 0, suppression_rule: String::new() };
        for line in info.lines() {
            match line.split_once('=') {
                Some(("rows", value)) => result.rows = value.parse().unwrap_or(0),
                Some(("suppressed_groups", value)) => result.suppressed_groups = value.parse().unwrap_or(0),
                Some(("suppression_rule", value)) => result.suppression_rule = value.to_string(),
                _ => {}
            }
        }
        Ok(result)
    }

    /// Emits a query result as the named output; it goes to egress review in production.
    pub fn emit(&mut self, output: &str, result: &QueryResult) -> Result<(), Error> {
        abi::emit(output, result.handle)
    }

    /// Emits bytes the module computed itself (a model, a chart). Artifacts always need an
    /// operator's decision before they leave.
    pub fn emit_artifact(&mut self, output: &str, bytes: &[u8]) -> Result<(), Error> {
        abi::emit_artifact(output, bytes)
    }

    /// Submits claims to a verification output (数据核验) and returns how many the domain
    /// answered. `claims` has a text column named as the output's key (e.g. `uscc`) and text
    /// columns for some of its declared fields; the domain compares each stated value with the
    /// granted data and writes the answers to the output itself — `claim` (1, 2, … in the
    /// order of these rows), `found`, and one true/false per field — for egress review. The
    /// module does not see the answers.
    pub fn verify(&mut self, output: &str, claims: &RecordBatch) -> Result<u64, Error> {
        let guest = |message: String| Error { code: ErrorCode::Guest, message };
        let mut bytes = Vec::new();
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &claims.schema())
            .map_err(|error| guest(format!("encoding claims: {error}")))?;
        writer.write(claims).map_err(|error| guest(format!("encoding claims: {error}")))?;
        writer.finish().map_err(|error| guest(format!("encoding claims: {error}")))?;
        drop(writer);
        abi::verify(output, &bytes)
    }

    /// Writes a line to the guest log: shown at once in sample mode, kept in the domain in
    /// production mode.
    pub fn log(&mut self, message: &str) {
        abi::log(message);
    }
}

/// Defines the module's exports around an entry function `fn(&mut Context) -> Result<(), Error>`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn unseen_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn unseen_alloc(len: i32) -> i32 {
            $crate::__alloc(len)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn unseen_run() -> i32 {
            let mut context = $crate::Context::new();
            match $main(&mut context) {
                Ok(()) => 0,
                Err(error) => {
                    context.log(&format!("module failed: {error}"));
                    1
                }
            }
        }
    };
}

/// Allocation the host writes replies into; reclaimed by `abi::take`. Not for module code.
/// The bytes are left uninitialised: the host fills all of them before the guest reads any.
#[doc(hidden)]
pub fn __alloc(len: i32) -> i32 {
    let len = usize::try_from(len).unwrap_or(0).max(1);
    let mut buffer = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(len));
    buffer.as_mut_ptr() as usize as i32
}

#[allow(unsafe_code)]
mod abi {
    use unseen_contract::{ERR_INTERNAL, ERR_INVALID, ERR_LIMIT_EXCEEDED, ERR_NOT_FOUND, ERR_REFUSED};

    use super::{Error, ErrorCode};

    #[cfg(target_arch = "wasm32")]
    mod imports {
        #[link(wasm_import_module = "unseen")]
        unsafe extern "C" {
            pub fn tables() -> i64;
            pub fn params() -> i64;
            pub fn query(sql_ptr: i32, sql_len: i32) -> i64;
            pub fn result_info(handle: i32) -> i64;
            pub fn next_batch(handle: i32) -> i64;
            pub fn emit(name_ptr: i32, name_len: i32, handle: i32) -> i32;
            pub fn emit_artifact(name_ptr: i32, name_len: i32, data_ptr: i32, data_len: i32) -> i32;
            pub fn verify(name_ptr: i32, name_len: i32, claims_ptr: i32, claims_len: i32) -> i64;
            pub fn log(ptr: i32, len: i32) -> i32;
            pub fn last_error() -> i64;
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[allow(clippy::missing_safety_doc)]
    mod imports {
        pub unsafe fn tables() -> i64 {
            -6
        }
        pub unsafe fn params() -> i64 {
            -6
        }
        pub unsafe fn query(_: i32, _: i32) -> i64 {
            -6
        }
        pub unsafe fn result_info(_: i32) -> i64 {
            -6
        }
        pub unsafe fn next_batch(_: i32) -> i64 {
            -6
        }
        pub unsafe fn emit(_: i32, _: i32, _: i32) -> i32 {
            -6
        }
        pub unsafe fn emit_artifact(_: i32, _: i32, _: i32, _: i32) -> i32 {
            -6
        }
        pub unsafe fn verify(_: i32, _: i32, _: i32, _: i32) -> i64 {
            -6
        }
        pub unsafe fn log(_: i32, _: i32) -> i32 {
            -6
        }
        pub unsafe fn last_error() -> i64 {
            0
        }
    }

    /// Takes ownership of a packed buffer the host filled through `unseen_alloc`.
    fn take(packed: i64) -> Vec<u8> {
        if packed <= 0 {
            return Vec::new();
        }
        let (ptr, len) = unseen_contract::unpack_reply(packed);
        let (ptr, len) = (ptr as usize, len as usize);
        // SAFETY: the host wrote all `len` bytes into a buffer of capacity max(len, 1) that
        // `__alloc` leaked from a Vec<u8>; ownership returns to us exactly once.
        unsafe { Vec::from_raw_parts(ptr as *mut u8, len, len.max(1)) }
    }

    fn error(code: i64) -> Error {
        let code = match code {
            ERR_REFUSED => ErrorCode::Refused,
            ERR_INVALID => ErrorCode::InvalidArgument,
            ERR_LIMIT_EXCEEDED => ErrorCode::LimitExceeded,
            ERR_NOT_FOUND => ErrorCode::NotFound,
            ERR_INTERNAL => ErrorCode::Internal,
            _ => return Error { code: ErrorCode::Guest, message: "not running inside an unseen domain".into() },
        };
        // SAFETY: a host import with no arguments.
        let message = String::from_utf8_lossy(&take(unsafe { imports::last_error() })).into_owned();
        Error { code, message }
    }

    fn reply(packed: i64) -> Result<Vec<u8>, Error> {
        if packed < 0 { Err(error(packed)) } else { Ok(take(packed)) }
    }

    pub fn tables() -> Result<String, Error> {
        // SAFETY: a host import with no arguments.
        reply(unsafe { imports::tables() }).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn params() -> Result<Vec<u8>, Error> {
        // SAFETY: a host import with no arguments.
        reply(unsafe { imports::params() })
    }

    pub fn query(sql: &str) -> Result<i32, Error> {
        // SAFETY: the pointer and length describe `sql`, alive for the call.
        let handle = unsafe { imports::query(sql.as_ptr() as usize as i32, sql.len() as i32) };
        if handle < 0 { Err(error(handle)) } else { Ok(handle as i32) }
    }

    pub fn result_info(handle: i32) -> Result<String, Error> {
        // SAFETY: plain integer argument.
        reply(unsafe { imports::result_info(handle) }).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn next_batch(handle: i32) -> Result<Option<Vec<u8>>, Error> {
        // SAFETY: plain integer argument.
        let packed = unsafe { imports::next_batch(handle) };
        if packed == 0 { Ok(None) } else { reply(packed).map(Some) }
    }

    pub fn emit(name: &str, handle: i32) -> Result<(), Error> {
        // SAFETY: the pointer and length describe `name`, alive for the call.
        let code = unsafe { imports::emit(name.as_ptr() as usize as i32, name.len() as i32, handle) };
        if code < 0 { Err(error(i64::from(code))) } else { Ok(()) }
    }

    pub fn emit_artifact(name: &str, bytes: &[u8]) -> Result<(), Error> {
        // SAFETY: pointers and lengths describe `name` and `bytes`, alive for the call.
        let code = unsafe {
            imports::emit_artifact(
                name.as_ptr() as usize as i32,
                name.len() as i32,
                bytes.as_ptr() as usize as i32,
                bytes.len() as i32,
            )
        };
        if code < 0 { Err(error(i64::from(code))) } else { Ok(()) }
    }

    pub fn verify(name: &str, claims: &[u8]) -> Result<u64, Error> {
        // SAFETY: pointers and lengths describe `name` and `claims`, alive for the call.
        let answered = unsafe {
            imports::verify(
                name.as_ptr() as usize as i32,
                name.len() as i32,
                claims.as_ptr() as usize as i32,
                claims.len() as i32,
            )
        };
        if answered < 0 { Err(error(answered)) } else { Ok(answered as u64) }
    }

    pub fn log(message: &str) {
        // SAFETY: the pointer and length describe `message`, alive for the call.
        unsafe {
            imports::log(message.as_ptr() as usize as i32, message.len() as i32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_domain_every_call_says_so() {
        let mut context = Context::new();
        let error = context.sql("SELECT 1").unwrap_err();
        assert_eq!(error.code, ErrorCode::Guest);
        assert!(error.message.contains("not running inside an unseen domain"));
        assert!(context.tables().is_err());
    }
}
