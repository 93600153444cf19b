//! The wasmtime host: validates modules at upload, runs them with fuel and memory limits, and
//! implements the guest contract of `docs/guest-abi.md` (ABI v1).
//!
//! A module gets no WASI capabilities: the few WASI functions Rust's standard library imports
//! are answered by a shim that grants nothing (no files, sockets, environment, arguments or
//! clock). Everything else it can do is one of the `unseen` imports below.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};
use unseen_policy::{Grant, OutputKind, OutputLineage, sha256_hex};
use wasmtime::{Caller, Config, Engine, Extern, Linker, Module, ResourceLimiter, Store, Trap};

use crate::RuntimeError;
use crate::governed::{DomainTable, GovernedResult, GovernedSession, Mode};

/// Largest module accepted at upload.
pub const MAX_MODULE_BYTES: usize = 32 * 1024 * 1024;
/// The ABI version this host implements.
pub const ABI_VERSION: i32 = 1;

const ERR_REFUSED: i64 = -1;
const ERR_INVALID: i64 = -2;
const ERR_NOT_FOUND: i64 = -4;
const ERR_INTERNAL: i64 = -5;
const WASI_EBADF: i32 = 8;
const WASI_ENOSYS: i32 = 52;

/// The WASI functions the shim answers; any other import from any module is refused.
const WASI_SHIM: &[&str] = &[
    "fd_write",
    "random_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "proc_exit",
    "sched_yield",
    "clock_time_get",
    "fd_close",
    "fd_seek",
    "fd_fdstat_get",
];
const UNSEEN_IMPORTS: &[&str] =
    &["tables", "query", "result_info", "next_batch", "emit", "emit_artifact", "log", "last_error"];

/// Per-job limits, from the grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel units (about one per wasm instruction).
    pub fuel: u64,
    /// Largest linear memory, bytes.
    pub memory_bytes: usize,
    /// Queries a job may run.
    pub max_queries: u32,
    /// Outputs a job may emit.
    pub max_outputs: u32,
    /// Total bytes of emitted artifacts and result rows handed to the guest.
    pub max_output_bytes: usize,
    /// Total guest log bytes.
    pub max_log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 2_000_000_000,
            memory_bytes: 256 * 1024 * 1024,
            max_queries: 64,
            max_outputs: 16,
            max_output_bytes: 64 * 1024 * 1024,
            max_log_bytes: 64 * 1024,
        }
    }
}

/// What upload-time validation learned about a module.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// Hex SHA-256 of the bytes: the module's name in the domain.
    pub hash: String,
    /// Size in bytes.
    pub size: usize,
    /// Every import, `module.name`.
    pub imports: Vec<String>,
}

/// One output a module emitted.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The name it was emitted under.
    pub name: String,
    /// Table or artifact.
    pub kind: OutputKind,
    /// The governed result, for tables.
    pub table: Option<RecordBatch>,
    /// The bytes, for artifacts.
    pub artifact: Option<Vec<u8>>,
    /// Host-held lineage, for tables.
    pub lineage: OutputLineage,
}

/// One query a module ran and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryRecord {
    /// The SQL as given.
    pub sql: String,
    /// `allowed`, or the refusing rule.
    pub outcome: String,
    /// The refusal or error message, if any (data-free for refusals).
    pub message: Option<String>,
    /// Rows handed to the module.
    pub rows: u64,
    /// Groups withheld by the threshold.
    pub suppressed_groups: u64,
}

/// What a job cost, so an operator can price by use (seed 001 art. 17).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metering {
    /// Fuel consumed.
    pub fuel: u64,
    /// Largest linear memory the guest reached, bytes.
    pub peak_memory_bytes: u64,
    /// Queries run.
    pub queries: u32,
    /// Rows handed to the guest.
    pub rows_returned: u64,
    /// Bytes emitted.
    pub output_bytes: u64,
    /// Wall time, milliseconds.
    pub wall_ms: u64,
}

/// Everything a finished job produced. Whether any of it reaches the developer depends on
/// the mode; the gateway decides.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Outputs emitted.
    pub outputs: Vec<JobOutput>,
    /// Guest log lines.
    pub guest_log: Vec<String>,
    /// Queries run.
    pub queries: Vec<QueryRecord>,
    /// Cost.
    pub metering: Metering,
    /// Why the job failed, if it did.
    pub failure: Option<RuntimeError>,
}

/// What to run: a module, under a grant, over the grant's tables, in a mode, within limits.
#[derive(Debug, Clone, Copy)]
pub struct JobSpec<'a> {
    /// The module's bytes (validated at upload).
    pub module: &'a [u8],
    /// The grant it runs under.
    pub grant: &'a Grant,
    /// The domain's tables; only those the grant names are registered.
    pub tables: &'a [DomainTable],
    /// Sample or production data.
    pub mode: Mode,
    /// Per-job limits.
    pub limits: &'a Limits,
    /// Seed of the deterministic randomness the guest sees.
    pub seed: u64,
}

/// The host: one wasmtime engine and a cache of compiled modules.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    compiled: Mutex<HashMap<String, Module>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

struct HostState {
    session: Arc<GovernedSession>,
    tokio: tokio::runtime::Handle,
    limits: Limits,
    mode: Mode,
    results: Vec<(GovernedResult, usize)>,
    outputs: Vec<JobOutput>,
    log: Vec<String>,
    log_bytes: usize,
    queries: Vec<QueryRecord>,
    last_error: String,
    random_state: u64,
    peak_memory: usize,
    memory_refused: bool,
    output_bytes: usize,
    limit_hit: Option<RuntimeError>,
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl Runtime {
    /// Builds the engine (fuel metering on) and the linker with the contract's imports.
    pub fn new() -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|error| RuntimeError::Internal(error.to_string()))?;
        let mut linker = Linker::new(&engine);
        define_imports(&mut linker).map_err(|error| RuntimeError::Internal(error.to_string()))?;
        Ok(Self { engine, linker, compiled: Mutex::new(HashMap::new()) })
    }

    /// Upload-time validation: size, well-formed wasm, imports inside the contract, the
    /// exports the contract needs. Refusals list every offending import.
    pub fn validate(&self, bytes: &[u8]) -> Result<ModuleInfo, RuntimeError> {
        if bytes.is_empty() {
            return Err(RuntimeError::InvalidModule("the module is empty (0 bytes)".into()));
        }
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(RuntimeError::InvalidModule(format!(
                "{} bytes exceeds the {MAX_MODULE_BYTES}-byte limit",
                bytes.len()
            )));
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(RuntimeError::InvalidModule("not a WebAssembly binary (missing the \\0asm header)".into()));
        }
        let hash = sha256_hex(bytes);
        let module = self.compile(&hash, bytes)?;
        let imports: Vec<String> =
            module.imports().map(|import| format!("{}.{}", import.module(), import.name())).collect();
        let offending: Vec<&String> = imports
            .iter()
            .filter(|name| {
                let (module, function) = name.split_once('.').unwrap_or(("", name));
                !match module {
                    "unseen" => UNSEEN_IMPORTS.contains(&function),
                    "wasi_snapshot_preview1" => WASI_SHIM.contains(&function),
                    _ => false,
                }
            })
            .collect();
        if !offending.is_empty() {
            let list: Vec<&str> = offending.iter().map(|name| name.as_str()).collect();
            return Err(RuntimeError::InvalidModule(format!(
                "imports outside the guest contract: {}",
                list.join(", ")
            )));
        }
        for export in ["memory", "unseen_run", "unseen_alloc", "unseen_abi_version"] {
            if module.get_export(export).is_none() {
                return Err(RuntimeError::InvalidModule(format!(
                    "missing export \"{export}\" (build it with unseen-sdk's entry! macro)"
                )));
            }
        }
        self.linker
            .instantiate_pre(&module)
            .map_err(|error| RuntimeError::InvalidModule(format!("imports do not match the contract: {error}")))?;
        Ok(ModuleInfo { hash, size: bytes.len(), imports })
    }

    fn compile(&self, hash: &str, bytes: &[u8]) -> Result<Module, RuntimeError> {
        let mut compiled = self.compiled.lock().map_err(|_| RuntimeError::Internal("module cache poisoned".into()))?;
        if let Some(module) = compiled.get(hash) {
            return Ok(module.clone());
        }
        let module = Module::new(&self.engine, bytes)
            .map_err(|error| RuntimeError::InvalidModule(format!("not valid WebAssembly: {error:#}")))?;
        compiled.insert(hash.to_string(), module.clone());
        Ok(module)
    }

    /// Runs a validated module as `job` describes. Blocking: call it from a blocking thread;
    /// `tokio` runs the queries.
    pub fn run_job(&self, job: &JobSpec<'_>, tokio: tokio::runtime::Handle) -> JobReport {
        let JobSpec { module: module_bytes, grant, tables, mode, limits, seed } = *job;
        let started = Instant::now();
        let mut report = JobReport {
            outputs: Vec::new(),
            guest_log: Vec::new(),
            queries: Vec::new(),
            metering: Metering::default(),
            failure: None,
        };
        let session = match tokio.block_on(GovernedSession::new(grant, tables, mode)) {
            Ok(session) => Arc::new(session),
            Err(error) => {
                report.failure = Some(error);
                return report;
            }
        };
        let state = HostState {
            session,
            tokio,
            limits: limits.clone(),
            mode,
            results: Vec::new(),
            outputs: Vec::new(),
            log: Vec::new(),
            log_bytes: 0,
            queries: Vec::new(),
            last_error: String::new(),
            random_state: seed,
            peak_memory: 0,
            memory_refused: false,
            output_bytes: 0,
            limit_hit: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        let outcome = self.instantiate_and_run(&mut store, module_bytes, limits);
        let remaining = store.get_fuel().unwrap_or(0);
        let state = store.into_data();
        report.failure = outcome.err().map(|error| state.limit_hit.clone().unwrap_or(error));
        report.metering = Metering {
            fuel: limits.fuel.saturating_sub(remaining),
            peak_memory_bytes: state.peak_memory as u64,
            queries: state.queries.len() as u32,
            rows_returned: state.queries.iter().map(|query| query.rows).sum(),
            output_bytes: state.output_bytes as u64,
            wall_ms: started.elapsed().as_millis() as u64,
        };
        report.outputs = state.outputs;
        report.guest_log = state.log;
        report.queries = state.queries;
        report
    }

    fn instantiate_and_run(
        &self,
        store: &mut Store<HostState>,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<(), RuntimeError> {
        let module = self.compile(&sha256_hex(bytes), bytes)?;
        store.set_fuel(limits.fuel).map_err(|error| RuntimeError::Internal(error.to_string()))?;
        let instance = self.linker.instantiate(&mut *store, &module).map_err(|error| trap_to_error(store, error))?;
        let version = instance
            .get_typed_func::<(), i32>(&mut *store, "unseen_abi_version")
            .map_err(|_| RuntimeError::InvalidModule("missing export \"unseen_abi_version\"".into()))?
            .call(&mut *store, ())
            .map_err(|error| trap_to_error(store, error))?;
        if version != ABI_VERSION {
            return Err(RuntimeError::InvalidModule(format!(
                "module speaks guest ABI v{version}; this domain speaks v{ABI_VERSION}"
            )));
        }
        let run = instance
            .get_typed_func::<(), i32>(&mut *store, "unseen_run")
            .map_err(|_| RuntimeError::InvalidModule("missing export \"unseen_run\"".into()))?;
        match run.call(&mut *store, ()) {
            Ok(0) => Ok(()),
            Ok(code) => Err(RuntimeError::ModuleFailed(format!("module returned {code}"))),
            Err(error) => Err(trap_to_error(store, error)),
        }
    }
}

/// A limit reached inside a host call; carried through the trap and recovered afterwards.
#[derive(Debug)]
struct LimitTrap;

impl std::fmt::Display for LimitTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("limit exceeded")
    }
}

impl std::error::Error for LimitTrap {}

/// The guest called `proc_exit`.
#[derive(Debug)]
struct ProcExit(i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "module exited with code {}", self.0)
    }
}

impl std::error::Error for ProcExit {}

fn trap_to_error(store: &Store<HostState>, error: wasmtime::Error) -> RuntimeError {
    if let Some(limit) = &store.data().limit_hit {
        return limit.clone();
    }
    if let Some(exit) = error.downcast_ref::<ProcExit>() {
        return if exit.0 == 0 {
            RuntimeError::ModuleFailed("module exited early with code 0".into())
        } else {
            RuntimeError::ModuleFailed(exit.to_string())
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => RuntimeError::LimitExceeded {
            limit: "cpu",
            detail: format!("fuel of {} units used up", store.data().limits.fuel),
        },
        Some(Trap::StackOverflow) => RuntimeError::ModuleFailed("stack overflow (deep recursion)".into()),
        Some(trap) if store.data().memory_refused => RuntimeError::LimitExceeded {
            limit: "memory",
            detail: format!("linear memory capped at {} bytes ({trap})", store.data().limits.memory_bytes),
        },
        Some(trap) => RuntimeError::ModuleFailed(format!("trap: {trap}")),
        None => RuntimeError::ModuleFailed(format!("{error:#}")),
    }
}

fn guest_bytes(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, String> {
    let memory = caller.get_export("memory").and_then(Extern::into_memory).ok_or("module exports no memory")?;
    let data = memory.data(&*caller);
    let start = usize::try_from(ptr).map_err(|_| "negative pointer")?;
    let len = usize::try_from(len).map_err(|_| "negative length")?;
    let end = start.checked_add(len).ok_or("pointer overflow")?;
    data.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| "buffer outside guest memory".to_string())
}

fn guest_text(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<String, String> {
    String::from_utf8(guest_bytes(caller, ptr, len)?).map_err(|_| "text is not UTF-8".to_string())
}

/// Copies `bytes` into memory the guest allocates, returning the packed pointer and length.
fn give_to_guest(caller: &mut Caller<'_, HostState>, bytes: &[u8]) -> wasmtime::Result<i64> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let len = i32::try_from(bytes.len()).map_err(|_| wasmtime::Error::msg("reply larger than 2 GiB"))?;
    let alloc = caller
        .get_export("unseen_alloc")
        .and_then(Extern::into_func)
        .ok_or_else(|| wasmtime::Error::msg("module exports no unseen_alloc"))?
        .typed::<i32, i32>(&*caller)?;
    let ptr = alloc.call(&mut *caller, len)?;
    let memory =
        caller.get_export("memory").and_then(Extern::into_memory).ok_or_else(|| wasmtime::Error::msg("no memory"))?;
    let start = usize::try_from(ptr).map_err(|_| wasmtime::Error::msg("unseen_alloc returned a negative pointer"))?;
    memory.write(&mut *caller, start, bytes)?;
    Ok((i64::from(ptr as u32) << 32) | i64::from(len as u32))
}

fn fail(caller: &mut Caller<'_, HostState>, code: i64, message: String) -> i64 {
    caller.data_mut().last_error = message;
    code
}

fn hit_limit(caller: &mut Caller<'_, HostState>, limit: &'static str, detail: String) -> wasmtime::Error {
    caller.data_mut().limit_hit = Some(RuntimeError::LimitExceeded { limit, detail });
    wasmtime::Error::new(LimitTrap)
}

fn push_log(caller: &mut Caller<'_, HostState>, line: String) -> wasmtime::Result<()> {
    let state = caller.data_mut();
    state.log_bytes += line.len();
    if state.log_bytes > state.limits.max_log_bytes {
        let detail = format!("guest log exceeded {} bytes", state.limits.max_log_bytes);
        return Err(hit_limit(caller, "log_bytes", detail));
    }
    state.log.push(line);
    Ok(())
}

fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut buffer = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut writer = StreamWriter::try_new(&mut buffer, &batch.schema()).map_err(|error| error.to_string())?;
    writer.write(batch).map_err(|error| error.to_string())?;
    writer.finish().map_err(|error| error.to_string())?;
    drop(writer);
    Ok(buffer)
}

fn define_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("unseen", "tables", |mut caller: Caller<'_, HostState>| -> wasmtime::Result<i64> {
        let state = caller.data();
        let columns = state.tokio.block_on(state.session.describe());
        let mut text = String::new();
        for (table, column, data_type, mode, tag) in columns {
            text.push_str(&format!("{table}\t{column}\t{data_type}\t{}\t{}\n", mode.as_str(), tag.as_str()));
        }
        give_to_guest(&mut caller, text.as_bytes())
    })?;

    linker.func_wrap(
        "unseen",
        "query",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i64> {
            let sql = match guest_text(&mut caller, ptr, len) {
                Ok(sql) => sql,
                Err(message) => return Ok(fail(&mut caller, ERR_INVALID, message)),
            };
            let state = caller.data();
            if state.queries.len() as u32 >= state.limits.max_queries {
                let detail = format!("more than {} queries", state.limits.max_queries);
                return Err(hit_limit(&mut caller, "queries", detail));
            }
            let (session, tokio, mode) = (state.session.clone(), state.tokio.clone(), state.mode);
            let outcome = tokio.block_on(session.query(&sql));
            let state = caller.data_mut();
            match outcome {
                Ok(result) => {
                    state.queries.push(QueryRecord {
                        sql,
                        outcome: "allowed".into(),
                        message: None,
                        rows: result.rows,
                        suppressed_groups: result.lineage.suppressed_groups,
                    });
                    state.results.push((result, 0));
                    Ok((state.results.len() - 1) as i64)
                }
                Err(error) => {
                    let (outcome, code) = match &error {
                        RuntimeError::Refused(refusal) => (refusal.rule.clone(), ERR_REFUSED),
                        RuntimeError::InvalidQuery(_) => ("invalid_query".to_string(), ERR_INVALID),
                        _ => ("failed".to_string(), ERR_INTERNAL),
                    };
                    let message = error.developer_message(mode);
                    state.queries.push(QueryRecord {
                        sql,
                        outcome,
                        message: Some(message.clone()),
                        rows: 0,
                        suppressed_groups: 0,
                    });
                    Ok(fail(&mut caller, code, message))
                }
            }
        },
    )?;

    linker.func_wrap(
        "unseen",
        "result_info",
        |mut caller: Caller<'_, HostState>, handle: i32| -> wasmtime::Result<i64> {
            let Some((result, _)) = usize::try_from(handle).ok().and_then(|index| caller.data().results.get(index))
            else {
                return Ok(fail(&mut caller, ERR_NOT_FOUND, format!("no query result {handle}")));
            };
            let text = format!(
                "rows={}\nbatches={}\nsuppressed_groups={}\nsuppression_rule={}\n",
                result.rows,
                result.batches.len(),
                result.lineage.suppressed_groups,
                result.lineage.suppression_rule.clone().unwrap_or_default()
            );
            give_to_guest(&mut caller, text.as_bytes())
        },
    )?;

    linker.func_wrap(
        "unseen",
        "next_batch",
        |mut caller: Caller<'_, HostState>, handle: i32| -> wasmtime::Result<i64> {
            let Some(index) = usize::try_from(handle).ok().filter(|&index| index < caller.data().results.len()) else {
                return Ok(fail(&mut caller, ERR_NOT_FOUND, format!("no query result {handle}")));
            };
            let (result, cursor) = &mut caller.data_mut().results[index];
            let Some(batch) = result.batches.get(*cursor).cloned() else { return Ok(0) };
            *cursor += 1;
            let bytes = match encode_ipc(&batch) {
                Ok(bytes) => bytes,
                Err(message) => return Ok(fail(&mut caller, ERR_INTERNAL, message)),
            };
            let state = caller.data_mut();
            state.output_bytes += bytes.len();
            if state.output_bytes > state.limits.max_output_bytes {
                let detail =
                    format!("more than {} bytes handed to or emitted by the module", state.limits.max_output_bytes);
                return Err(hit_limit(&mut caller, "output_bytes", detail));
            }
            give_to_guest(&mut caller, &bytes)
        },
    )?;

    linker.func_wrap(
        "unseen",
        "emit",
        |mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32, handle: i32| -> wasmtime::Result<i32> {
            let name = match output_name(&mut caller, name_ptr, name_len) {
                Ok(name) => name,
                Err(message) => return Ok(fail(&mut caller, ERR_INVALID, message) as i32),
            };
            let Some((result, _)) = usize::try_from(handle).ok().and_then(|index| caller.data().results.get(index))
            else {
                return Ok(fail(&mut caller, ERR_NOT_FOUND, format!("no query result {handle}")) as i32);
            };
            let schema = match result.batches.first() {
                Some(batch) => batch.schema(),
                None => Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            };
            let table = match concat_batches(&schema, &result.batches) {
                Ok(table) => table,
                Err(error) => return Ok(fail(&mut caller, ERR_INTERNAL, error.to_string()) as i32),
            };
            let lineage = result.lineage.clone();
            check_outputs(&mut caller)?;
            caller.data_mut().outputs.push(JobOutput {
                name,
                kind: OutputKind::Table,
                table: Some(table),
                artifact: None,
                lineage,
            });
            Ok(0)
        },
    )?;

    linker.func_wrap(
        "unseen",
        "emit_artifact",
        |mut caller: Caller<'_, HostState>,
         name_ptr: i32,
         name_len: i32,
         data_ptr: i32,
         data_len: i32|
         -> wasmtime::Result<i32> {
            let name = match output_name(&mut caller, name_ptr, name_len) {
                Ok(name) => name,
                Err(message) => return Ok(fail(&mut caller, ERR_INVALID, message) as i32),
            };
            let bytes = match guest_bytes(&mut caller, data_ptr, data_len) {
                Ok(bytes) => bytes,
                Err(message) => return Ok(fail(&mut caller, ERR_INVALID, message) as i32),
            };
            let state = caller.data_mut();
            state.output_bytes += bytes.len();
            if state.output_bytes > state.limits.max_output_bytes {
                let detail =
                    format!("more than {} bytes handed to or emitted by the module", state.limits.max_output_bytes);
                return Err(hit_limit(&mut caller, "output_bytes", detail));
            }
            check_outputs(&mut caller)?;
            caller.data_mut().outputs.push(JobOutput {
                name,
                kind: OutputKind::Artifact,
                table: None,
                artifact: Some(bytes),
                lineage: OutputLineage::default(),
            });
            Ok(0)
        },
    )?;

    linker.func_wrap(
        "unseen",
        "log",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            match guest_bytes(&mut caller, ptr, len) {
                Ok(bytes) => {
                    push_log(&mut caller, String::from_utf8_lossy(&bytes).into_owned())?;
                    Ok(0)
                }
                Err(message) => Ok(fail(&mut caller, ERR_INVALID, message) as i32),
            }
        },
    )?;

    linker.func_wrap("unseen", "last_error", |mut caller: Caller<'_, HostState>| -> wasmtime::Result<i64> {
        let message = std::mem::take(&mut caller.data_mut().last_error);
        give_to_guest(&mut caller, message.as_bytes())
    })?;

    define_wasi_shim(linker)
}

fn check_outputs(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<()> {
    let state = caller.data();
    if state.outputs.len() as u32 >= state.limits.max_outputs {
        let detail = format!("more than {} outputs", state.limits.max_outputs);
        return Err(hit_limit(caller, "outputs", detail));
    }
    Ok(())
}

/// Reads an output name from guest memory and checks its form.
fn output_name(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<String, String> {
    let name = guest_text(caller, ptr, len)?;
    if valid_output_name(&name) { Ok(name) } else { Err(format!("output name \"{name}\" must be 1-64 of [a-z0-9_]")) }
}

fn valid_output_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

/// WASI functions Rust's standard library imports, answered without granting anything.
fn define_wasi_shim(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         written_ptr: i32|
         -> wasmtime::Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(WASI_EBADF);
            }
            let Ok(vectors) = guest_bytes(&mut caller, iovs, iovs_len.saturating_mul(8)) else { return Ok(WASI_EBADF) };
            let mut text = Vec::new();
            for vector in vectors.chunks_exact(8) {
                let ptr = i32::from_le_bytes([vector[0], vector[1], vector[2], vector[3]]);
                let len = i32::from_le_bytes([vector[4], vector[5], vector[6], vector[7]]);
                let Ok(bytes) = guest_bytes(&mut caller, ptr, len) else { return Ok(WASI_EBADF) };
                text.extend_from_slice(&bytes);
            }
            let written = text.len() as u32;
            let line = String::from_utf8_lossy(&text).trim_end().to_string();
            if !line.is_empty() {
                push_log(&mut caller, line)?;
            }
            let memory = caller
                .get_export("memory")
                .and_then(Extern::into_memory)
                .ok_or_else(|| wasmtime::Error::msg("no memory"))?;
            let Ok(offset) = usize::try_from(written_ptr) else { return Ok(WASI_EBADF) };
            if memory.write(&mut caller, offset, &written.to_le_bytes()).is_err() {
                return Ok(WASI_EBADF);
            }
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            // Deterministic bytes from the job's seed: no entropy source is a capability.
            let Ok(len) = usize::try_from(len) else { return Ok(WASI_EBADF) };
            let mut bytes = vec![0u8; len];
            for chunk in bytes.chunks_mut(8) {
                let state = caller.data_mut();
                state.random_state = state.random_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut mixed = state.random_state;
                mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                mixed ^= mixed >> 31;
                chunk.copy_from_slice(&mixed.to_le_bytes()[..chunk.len()]);
            }
            let memory = caller
                .get_export("memory")
                .and_then(Extern::into_memory)
                .ok_or_else(|| wasmtime::Error::msg("no memory"))?;
            let Ok(offset) = usize::try_from(ptr) else { return Ok(WASI_EBADF) };
            Ok(if memory.write(&mut caller, offset, &bytes).is_ok() { 0 } else { WASI_EBADF })
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            WASI,
            name,
            |mut caller: Caller<'_, HostState>, count_ptr: i32, size_ptr: i32| -> wasmtime::Result<i32> {
                let memory = caller
                    .get_export("memory")
                    .and_then(Extern::into_memory)
                    .ok_or_else(|| wasmtime::Error::msg("no memory"))?;
                for ptr in [count_ptr, size_ptr] {
                    let Ok(offset) = usize::try_from(ptr) else { return Ok(WASI_EBADF) };
                    if memory.write(&mut caller, offset, &0u32.to_le_bytes()).is_err() {
                        return Ok(WASI_EBADF);
                    }
                }
                Ok(0)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(WASI, name, |_: Caller<'_, HostState>, _: i32, _: i32| -> i32 { 0 })?;
    }
    linker.func_wrap(WASI, "proc_exit", |_: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(ProcExit(code)))
    })?;
    linker.func_wrap(WASI, "sched_yield", |_: Caller<'_, HostState>| -> i32 { 0 })?;
    linker
        .func_wrap(WASI, "clock_time_get", |_: Caller<'_, HostState>, _: i32, _: i64, _: i32| -> i32 { WASI_ENOSYS })?;
    linker.func_wrap(WASI, "fd_close", |_: Caller<'_, HostState>, _: i32| -> i32 { WASI_EBADF })?;
    linker
        .func_wrap(WASI, "fd_seek", |_: Caller<'_, HostState>, _: i32, _: i64, _: i32, _: i32| -> i32 { WASI_EBADF })?;
    linker.func_wrap(WASI, "fd_fdstat_get", |_: Caller<'_, HostState>, _: i32, _: i32| -> i32 { WASI_EBADF })?;
    Ok(())
}
