//! The host side of the guest contract, ABI v1 (`docs/guest-abi.md`): the only things a
//! module can ask of the domain, and the per-job state they act on.
//!
//! A module gets no WASI capabilities. The WASI functions every Rust module imports (wasi-libc's
//! start-up code and std) are answered by a shim that grants nothing: writes to stdout and
//! stderr become guest log lines, randomness is deterministic from the job's seed, the
//! environment is empty, exit ends the run. Files, sockets, arguments and clocks are not in the
//! contract, so a module that imports them is refused at upload.
//!
//! The contract's names, error codes and bounds are `unseen_contract`'s, the crate the SDK
//! compiles against too. What a call records about the job (outputs, queries, metering) is
//! [`crate::job`]'s; this file never names the host that runs it.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use unseen_contract::{
    ERR_INTERNAL, ERR_INVALID, ERR_NOT_FOUND, ERR_REFUSED, MAX_CLAIMS_BYTES, MAX_IOVS, MAX_MEMORIES_PER_MODULE,
    MAX_OUTPUT_NAME_BYTES, MAX_SQL_BYTES, MAX_TABLES_PER_MODULE, UNSEEN_MODULE as UNSEEN, WASI_EBADF,
    WASI_MODULE as WASI,
};
use unseen_policy::{JobLimits, OutputKind, OutputLineage};
use wasmtime::{Caller, Linker, Memory, ResourceLimiter, TypedFunc};

use crate::RuntimeError;
use crate::governed::{GovernedResult, GovernedSession, Mode};
use crate::job::{CancelFlag, JobOutput, JobSpec, Metering, QueryRecord};
use crate::verification::ClaimsRefused;

/// A limit reached inside a host call; the limit itself is kept in [`HostState::limit_hit`].
#[derive(Debug)]
pub(crate) struct LimitTrap;

impl std::fmt::Display for LimitTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("limit exceeded")
    }
}

impl std::error::Error for LimitTrap {}

/// The guest called `proc_exit`.
#[derive(Debug)]
pub(crate) struct ProcExit(pub(crate) i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "module exited with code {}", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// One job's state, owned by its wasmtime store.
pub(crate) struct HostState {
    session: Arc<GovernedSession>,
    tokio: tokio::runtime::Handle,
    pub(crate) limits: JobLimits,
    mode: Mode,
    params: String,
    deadline: Instant,
    pub(crate) cancel: CancelFlag,
    memory: Option<Memory>,
    alloc: Option<TypedFunc<i32, i32>>,
    results: Vec<(GovernedResult, usize)>,
    pub(crate) outputs: Vec<JobOutput>,
    pub(crate) log: Vec<String>,
    pub(crate) queries: Vec<QueryRecord>,
    last_error: String,
    random_state: u64,
    pub(crate) memory_refused: bool,
    pub(crate) table_refused: bool,
    pub(crate) limit_hit: Option<RuntimeError>,
    /// What the job has cost so far, counted where it is spent; the host adds fuel and wall
    /// time when the job ends.
    pub(crate) metering: Metering,
}

impl HostState {
    /// The state of `job` running against `session` until `deadline`.
    pub(crate) fn new(
        session: Arc<GovernedSession>,
        tokio: tokio::runtime::Handle,
        job: &JobSpec<'_>,
        deadline: Instant,
    ) -> Self {
        Self {
            session,
            tokio,
            limits: job.grant.application.limits,
            mode: job.mode,
            params: job.params.to_string(),
            deadline,
            cancel: job.cancel.clone(),
            memory: None,
            alloc: None,
            results: Vec::new(),
            outputs: Vec::new(),
            log: Vec::new(),
            queries: Vec::new(),
            last_error: String::new(),
            random_state: job.seed,
            memory_refused: false,
            table_refused: false,
            limit_hit: None,
            metering: Metering::default(),
        }
    }

    /// Records the instance's memory and allocator once it exists.
    pub(crate) fn attach(&mut self, memory: Option<Memory>, alloc: Option<TypedFunc<i32, i32>>, instantiate_ns: u64) {
        self.memory = memory;
        self.alloc = alloc;
        self.metering.instantiate_ns = instantiate_ns;
    }

    /// Keeps a query the module ran, allowed or refused, and counts it.
    fn record_query(&mut self, query: QueryRecord) {
        self.metering.queries = self.metering.queries.saturating_add(1);
        self.metering.rows_returned += query.rows;
        self.queries.push(query);
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.limits.memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        self.metering.peak_memory_bytes = self.metering.peak_memory_bytes.max(desired as u64);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > u64::from(self.limits.table_elements) {
            self.table_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES_PER_MODULE as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_MODULE as usize
    }
}

type HostCaller<'a> = Caller<'a, HostState>;

/// Runs a host call and adds its duration to the job's host time.
fn timed<T>(caller: &mut HostCaller<'_>, call: impl FnOnce(&mut HostCaller<'_>) -> T) -> T {
    let started = Instant::now();
    let result = call(caller);
    caller.data_mut().metering.host_ns += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    result
}

fn fail(caller: &mut HostCaller<'_>, code: i64, message: String) -> i64 {
    caller.data_mut().last_error = message;
    code
}

/// Resolves with the reason once `cancel` is set; polled while a query runs.
async fn cancelled(cancel: &CancelFlag) -> String {
    loop {
        if let Some(reason) = cancel.reason() {
            return reason;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn hit_limit(caller: &mut HostCaller<'_>, limit: &'static str, detail: String) -> wasmtime::Error {
    caller.data_mut().limit_hit = Some(RuntimeError::LimitExceeded { limit, detail });
    wasmtime::Error::new(LimitTrap)
}

/// Copies `len` bytes at `ptr` out of guest memory, refusing before any copy when `len` is
/// above `max`: a guest cannot make the host allocate more than the call can use.
fn guest_bytes(caller: &mut HostCaller<'_>, ptr: i32, len: i32, max: usize) -> Result<Vec<u8>, String> {
    let memory = caller.data().memory.ok_or("module exports no memory")?;
    let start = usize::try_from(ptr).map_err(|_| "negative pointer")?;
    let len = usize::try_from(len).map_err(|_| "negative length")?;
    if len > max {
        return Err(format!("{len} bytes exceeds the {max}-byte maximum of this call"));
    }
    let end = start.checked_add(len).ok_or("pointer overflow")?;
    memory.data(&*caller).get(start..end).map(<[u8]>::to_vec).ok_or_else(|| "buffer outside guest memory".into())
}

fn guest_text(caller: &mut HostCaller<'_>, ptr: i32, len: i32, max: usize) -> Result<String, String> {
    String::from_utf8(guest_bytes(caller, ptr, len, max)?).map_err(|_| "text is not UTF-8".to_string())
}

/// The rest of the log budget; asking for more ends the job with the `log_bytes` limit.
fn log_budget(caller: &mut HostCaller<'_>, wanted: u64) -> wasmtime::Result<usize> {
    let state = caller.data();
    let left = state.limits.max_log_bytes.saturating_sub(state.metering.log_bytes);
    if wanted > left {
        let detail = format!("guest log exceeded {} bytes", state.limits.max_log_bytes);
        return Err(hit_limit(caller, "log_bytes", detail));
    }
    Ok(usize::try_from(left).unwrap_or(usize::MAX))
}

/// Copies `bytes` into memory the guest allocates, returning the packed pointer and length.
/// This is the one copy between host and guest.
fn give_to_guest(caller: &mut HostCaller<'_>, bytes: &[u8]) -> wasmtime::Result<i64> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let len = i32::try_from(bytes.len()).map_err(|_| wasmtime::Error::msg("reply larger than 2 GiB"))?;
    let state = caller.data();
    let (alloc, memory) = match (state.alloc.clone(), state.memory) {
        (Some(alloc), Some(memory)) => (alloc, memory),
        _ => return Err(wasmtime::Error::msg("module exports no unseen_alloc or memory")),
    };
    let ptr = alloc.call(&mut *caller, len)?;
    let start = usize::try_from(ptr).map_err(|_| wasmtime::Error::msg("unseen_alloc returned a negative pointer"))?;
    memory.write(&mut *caller, start, bytes)?;
    Ok(unseen_contract::pack_reply(ptr as u32, len as u32))
}

fn count_output_bytes(caller: &mut HostCaller<'_>, bytes: usize) -> wasmtime::Result<()> {
    let state = caller.data_mut();
    state.metering.output_bytes += bytes as u64;
    if state.metering.output_bytes > state.limits.max_output_bytes {
        let detail = format!("more than {} bytes handed to or emitted by the module", state.limits.max_output_bytes);
        return Err(hit_limit(caller, "output_bytes", detail));
    }
    Ok(())
}

fn push_log(caller: &mut HostCaller<'_>, line: String) -> wasmtime::Result<()> {
    let state = caller.data_mut();
    state.metering.log_bytes += line.len() as u64;
    if state.metering.log_bytes > state.limits.max_log_bytes {
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

fn result_index(caller: &HostCaller<'_>, handle: i32) -> Option<usize> {
    usize::try_from(handle).ok().filter(|&index| index < caller.data().results.len())
}

fn tables(caller: &mut HostCaller<'_>) -> wasmtime::Result<i64> {
    let state = caller.data();
    let columns = state.tokio.block_on(state.session.describe());
    let mut text = String::new();
    for (table, column, data_type, mode, tag) in columns {
        text.push_str(&format!("{table}\t{column}\t{data_type}\t{}\t{}\n", mode.as_str(), tag.as_str()));
    }
    give_to_guest(caller, text.as_bytes())
}

fn params(caller: &mut HostCaller<'_>) -> wasmtime::Result<i64> {
    let params = caller.data().params.clone();
    give_to_guest(caller, params.as_bytes())
}

fn query(caller: &mut HostCaller<'_>, ptr: i32, len: i32) -> wasmtime::Result<i64> {
    let sql = match guest_text(caller, ptr, len, MAX_SQL_BYTES) {
        Ok(sql) => sql,
        Err(message) => return Ok(fail(caller, ERR_INVALID, message)),
    };
    let state = caller.data();
    if state.queries.len() as u32 >= state.limits.max_queries {
        let detail = format!("more than {} queries", state.limits.max_queries);
        return Err(hit_limit(caller, "queries", detail));
    }
    let (session, tokio, mode) = (state.session.clone(), state.tokio.clone(), state.mode);
    let remaining = state.deadline.saturating_duration_since(Instant::now());
    let wall_clock_ms = state.limits.wall_clock_ms;
    let cancel = state.cancel.clone();
    let stopped = tokio.block_on(async {
        tokio::select! {
            outcome = tokio::time::timeout(remaining, session.query(&sql)) => outcome.map_err(|_| None),
            reason = cancelled(&cancel) => Err(Some(reason)),
        }
    });
    let outcome = match stopped {
        Ok(outcome) => outcome,
        Err(None) => {
            let detail = format!("deadline of {wall_clock_ms} ms passed during a query");
            return Err(hit_limit(caller, "wall_clock", detail));
        }
        Err(Some(reason)) => {
            caller.data_mut().limit_hit = Some(RuntimeError::Cancelled(reason));
            return Err(wasmtime::Error::new(LimitTrap));
        }
    };
    let state = caller.data_mut();
    match outcome {
        Ok(result) => {
            state.metering.rows_scanned += result.rows_scanned;
            state.metering.bytes_scanned += result.bytes_scanned;
            state.record_query(QueryRecord {
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
            state.record_query(QueryRecord {
                sql,
                outcome,
                message: Some(message.clone()),
                rows: 0,
                suppressed_groups: 0,
            });
            Ok(fail(caller, code, message))
        }
    }
}

fn result_info(caller: &mut HostCaller<'_>, handle: i32) -> wasmtime::Result<i64> {
    let Some(index) = result_index(caller, handle) else {
        return Ok(fail(caller, ERR_NOT_FOUND, format!("no query result {handle}")));
    };
    let (result, _) = &caller.data().results[index];
    let text = format!(
        "rows={}\nbatches={}\nsuppressed_groups={}\nsuppression_rule={}\n",
        result.rows,
        result.batches.len(),
        result.lineage.suppressed_groups,
        result.lineage.suppression_rule.clone().unwrap_or_default()
    );
    give_to_guest(caller, text.as_bytes())
}

fn next_batch(caller: &mut HostCaller<'_>, handle: i32) -> wasmtime::Result<i64> {
    let Some(index) = result_index(caller, handle) else {
        return Ok(fail(caller, ERR_NOT_FOUND, format!("no query result {handle}")));
    };
    let (result, cursor) = &mut caller.data_mut().results[index];
    let Some(batch) = result.batches.get(*cursor).cloned() else { return Ok(0) };
    *cursor += 1;
    let started = Instant::now();
    let bytes = match encode_ipc(&batch) {
        Ok(bytes) => bytes,
        Err(message) => return Ok(fail(caller, ERR_INTERNAL, message)),
    };
    count_output_bytes(caller, bytes.len())?;
    let packed = give_to_guest(caller, &bytes)?;
    let state = caller.data_mut();
    state.metering.transfer_bytes += bytes.len() as u64;
    state.metering.transfer_ns += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    Ok(packed)
}

fn check_outputs(caller: &mut HostCaller<'_>) -> wasmtime::Result<()> {
    let state = caller.data();
    if state.outputs.len() as u32 >= state.limits.max_outputs {
        let detail = format!("more than {} outputs", state.limits.max_outputs);
        return Err(hit_limit(caller, "outputs", detail));
    }
    Ok(())
}

/// Reads an output name from guest memory and checks its form.
fn output_name(caller: &mut HostCaller<'_>, ptr: i32, len: i32) -> Result<String, String> {
    let name = guest_text(caller, ptr, len, MAX_OUTPUT_NAME_BYTES)?;
    if unseen_contract::is_valid_output_name(&name) {
        Ok(name)
    } else {
        Err(format!("output name \"{name}\" must be 1-{MAX_OUTPUT_NAME_BYTES} of [a-z0-9_]"))
    }
}

/// The name of an output the module writes itself (`emit`, `emit_artifact`): never one the
/// grant declares as a verification output, which only the host writes.
fn module_output_name(caller: &mut HostCaller<'_>, ptr: i32, len: i32) -> Result<String, String> {
    let name = output_name(caller, ptr, len)?;
    let grant = &caller.data().session.grant;
    match grant.output(&name) {
        Some(spec) if spec.verification.is_some() => Err(format!(
            "output \"{name}\" is a verification output in grant {}; submit claims to it with verify",
            grant.id
        )),
        _ => Ok(name),
    }
}

fn emit(caller: &mut HostCaller<'_>, name_ptr: i32, name_len: i32, handle: i32) -> wasmtime::Result<i32> {
    let name = match module_output_name(caller, name_ptr, name_len) {
        Ok(name) => name,
        Err(message) => return Ok(fail(caller, ERR_INVALID, message) as i32),
    };
    let Some(index) = result_index(caller, handle) else {
        return Ok(fail(caller, ERR_NOT_FOUND, format!("no query result {handle}")) as i32);
    };
    let (result, _) = &caller.data().results[index];
    let schema = match result.batches.first() {
        Some(batch) => batch.schema(),
        None => Arc::new(datafusion::arrow::datatypes::Schema::empty()),
    };
    let table = match concat_batches(&schema, &result.batches) {
        Ok(table) => table,
        Err(error) => return Ok(fail(caller, ERR_INTERNAL, error.to_string()) as i32),
    };
    let lineage = result.lineage.clone();
    check_outputs(caller)?;
    let state = caller.data_mut();
    state.metering.output_rows += table.num_rows() as u64;
    if state.metering.output_rows > state.limits.max_output_rows {
        let detail = format!("more than {} rows in emitted tables", state.limits.max_output_rows);
        return Err(hit_limit(caller, "output_rows", detail));
    }
    state.outputs.push(JobOutput { name, kind: OutputKind::Table, table: Some(table), artifact: None, lineage });
    Ok(0)
}

fn emit_artifact(
    caller: &mut HostCaller<'_>,
    name_ptr: i32,
    name_len: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let name = match module_output_name(caller, name_ptr, name_len) {
        Ok(name) => name,
        Err(message) => return Ok(fail(caller, ERR_INVALID, message) as i32),
    };
    // Counted before the copy, so an oversized artifact ends the job without being copied.
    count_output_bytes(caller, usize::try_from(len).unwrap_or(0))?;
    check_outputs(caller)?;
    let bytes = match guest_bytes(caller, ptr, len, usize::MAX) {
        Ok(bytes) => bytes,
        Err(message) => return Ok(fail(caller, ERR_INVALID, message) as i32),
    };
    caller.data_mut().outputs.push(JobOutput {
        name,
        kind: OutputKind::Artifact,
        table: None,
        artifact: Some(bytes),
        lineage: OutputLineage::default(),
    });
    Ok(0)
}

/// Answers a batch of claims under a verification output; returns how many were answered.
/// The answers go straight to the output: the module never reads them.
fn verify(caller: &mut HostCaller<'_>, name_ptr: i32, name_len: i32, ptr: i32, len: i32) -> wasmtime::Result<i64> {
    let name = match output_name(caller, name_ptr, name_len) {
        Ok(name) => name,
        Err(message) => return Ok(fail(caller, ERR_INVALID, message)),
    };
    let session = caller.data().session.clone();
    let Some((spec, max_rows)) =
        session.grant.output(&name).and_then(|output| output.verification.clone().map(|spec| (spec, output.max_rows)))
    else {
        let message =
            format!("output \"{name}\" is not declared as a verification output in grant {}", session.grant.id);
        return Ok(fail(caller, ERR_INVALID, message));
    };
    if caller.data().outputs.iter().any(|output| output.name == name) {
        return Ok(fail(caller, ERR_INVALID, format!("output \"{name}\" was already written in this job")));
    }
    let claims = match guest_bytes(caller, ptr, len, MAX_CLAIMS_BYTES).and_then(|bytes| decode_ipc(&bytes)) {
        Ok(claims) => claims,
        Err(message) => return Ok(fail(caller, ERR_INVALID, format!("claims: {message}"))),
    };
    if claims.num_rows() == 0 || claims.num_rows() as u64 > max_rows {
        let message = format!("{} claims; output \"{name}\" answers 1 to {max_rows} per job", claims.num_rows());
        return Ok(fail(caller, ERR_INVALID, message));
    }
    check_outputs(caller)?;
    let state = caller.data();
    let remaining = state.deadline.saturating_duration_since(Instant::now());
    let wall_clock_ms = state.limits.wall_clock_ms;
    let answered = state.tokio.block_on(tokio::time::timeout(remaining, session.verify(&spec, &claims)));
    let answers = match answered {
        Err(_) => {
            let detail = format!("deadline of {wall_clock_ms} ms passed while claims were checked");
            return Err(hit_limit(caller, "wall_clock", detail));
        }
        Ok(Err(ClaimsRefused(message))) => return Ok(fail(caller, ERR_INVALID, message)),
        Ok(Ok(answers)) => answers,
    };
    let rows = answers.table.num_rows() as u64;
    let state = caller.data_mut();
    state.metering.output_rows += rows;
    if state.metering.output_rows > state.limits.max_output_rows {
        let detail = format!("more than {} rows in emitted tables", state.limits.max_output_rows);
        return Err(hit_limit(caller, "output_rows", detail));
    }
    let lineage = OutputLineage { verification: Some(answers.lineage), ..OutputLineage::default() };
    state.outputs.push(JobOutput {
        name,
        kind: OutputKind::Verification,
        table: Some(answers.table),
        artifact: None,
        lineage,
    });
    Ok(rows as i64)
}

/// One Arrow IPC stream from the guest, its batches joined.
fn decode_ipc(bytes: &[u8]) -> Result<RecordBatch, String> {
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(|error| error.to_string())?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|error| error.to_string())?;
    concat_batches(&schema, &batches).map_err(|error| error.to_string())
}

fn log(caller: &mut HostCaller<'_>, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    let budget = log_budget(caller, u64::try_from(len).unwrap_or(0))?;
    match guest_bytes(caller, ptr, len, budget) {
        Ok(bytes) => {
            push_log(caller, String::from_utf8_lossy(&bytes).into_owned())?;
            Ok(0)
        }
        Err(message) => Ok(fail(caller, ERR_INVALID, message) as i32),
    }
}

fn last_error(caller: &mut HostCaller<'_>) -> wasmtime::Result<i64> {
    let message = std::mem::take(&mut caller.data_mut().last_error);
    give_to_guest(caller, message.as_bytes())
}

/// `fd_write`: stdout and stderr become guest log lines; every other descriptor is `EBADF`.
fn fd_write(caller: &mut HostCaller<'_>, fd: i32, iovs: i32, iovs_len: i32, written_ptr: i32) -> wasmtime::Result<i32> {
    if fd != 1 && fd != 2 {
        return Ok(WASI_EBADF);
    }
    let Ok(vectors) = guest_bytes(caller, iovs, iovs_len.saturating_mul(8), MAX_IOVS * 8) else {
        return Ok(WASI_EBADF);
    };
    let pieces: Vec<(i32, i32)> = vectors
        .chunks_exact(8)
        .map(|vector| {
            let ptr = i32::from_le_bytes([vector[0], vector[1], vector[2], vector[3]]);
            let len = i32::from_le_bytes([vector[4], vector[5], vector[6], vector[7]]);
            (ptr, len)
        })
        .collect();
    let wanted = pieces.iter().map(|&(_, len)| u64::try_from(len).unwrap_or(0)).sum();
    let budget = log_budget(caller, wanted)?;
    let mut text = Vec::new();
    for (ptr, len) in pieces {
        let Ok(bytes) = guest_bytes(caller, ptr, len, budget) else { return Ok(WASI_EBADF) };
        text.extend_from_slice(&bytes);
    }
    let written = text.len() as u32;
    let line = String::from_utf8_lossy(&text).trim_end().to_string();
    if !line.is_empty() {
        push_log(caller, line)?;
    }
    let (Some(memory), Ok(offset)) = (caller.data().memory, usize::try_from(written_ptr)) else {
        return Ok(WASI_EBADF);
    };
    Ok(if memory.write(&mut *caller, offset, &written.to_le_bytes()).is_ok() { 0 } else { WASI_EBADF })
}

/// `random_get`: deterministic bytes from the job's seed; no entropy source is a capability.
fn random_get(caller: &mut HostCaller<'_>, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    let (Ok(start), Ok(len), Some(memory)) = (usize::try_from(ptr), usize::try_from(len), caller.data().memory) else {
        return Ok(WASI_EBADF);
    };
    // Checked before allocating: a guest cannot make the host allocate past its own memory.
    if start.checked_add(len).is_none_or(|end| end > memory.data_size(&*caller)) {
        return Ok(WASI_EBADF);
    }
    let mut bytes = vec![0u8; len];
    let state = caller.data_mut();
    for chunk in bytes.chunks_mut(8) {
        state.random_state = state.random_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = state.random_state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^= mixed >> 31;
        chunk.copy_from_slice(&mixed.to_le_bytes()[..chunk.len()]);
    }
    Ok(if memory.write(&mut *caller, start, &bytes).is_ok() { 0 } else { WASI_EBADF })
}

/// Writes a zero `u32` at each pointer (the sizes of an empty environment).
fn write_zeros(caller: &mut HostCaller<'_>, pointers: &[i32]) -> wasmtime::Result<i32> {
    let Some(memory) = caller.data().memory else { return Ok(WASI_EBADF) };
    for &ptr in pointers {
        let Ok(offset) = usize::try_from(ptr) else { return Ok(WASI_EBADF) };
        if memory.write(&mut *caller, offset, &0u32.to_le_bytes()).is_err() {
            return Ok(WASI_EBADF);
        }
    }
    Ok(0)
}

/// Defines every import of the contract on `linker`, each timed into the job's host time.
pub(crate) fn define_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(UNSEEN, "tables", |mut caller: HostCaller<'_>| timed(&mut caller, tables))?;
    linker.func_wrap(UNSEEN, "params", |mut caller: HostCaller<'_>| timed(&mut caller, params))?;
    linker.func_wrap(UNSEEN, "query", |mut caller: HostCaller<'_>, ptr: i32, len: i32| {
        timed(&mut caller, |caller| query(caller, ptr, len))
    })?;
    linker.func_wrap(UNSEEN, "result_info", |mut caller: HostCaller<'_>, handle: i32| {
        timed(&mut caller, |caller| result_info(caller, handle))
    })?;
    linker.func_wrap(UNSEEN, "next_batch", |mut caller: HostCaller<'_>, handle: i32| {
        timed(&mut caller, |caller| next_batch(caller, handle))
    })?;
    linker.func_wrap(UNSEEN, "emit", |mut caller: HostCaller<'_>, name_ptr: i32, name_len: i32, handle: i32| {
        timed(&mut caller, |caller| emit(caller, name_ptr, name_len, handle))
    })?;
    linker.func_wrap(
        UNSEEN,
        "emit_artifact",
        |mut caller: HostCaller<'_>, name_ptr: i32, name_len: i32, ptr: i32, len: i32| {
            timed(&mut caller, |caller| emit_artifact(caller, name_ptr, name_len, ptr, len))
        },
    )?;
    linker.func_wrap(
        UNSEEN,
        "verify",
        |mut caller: HostCaller<'_>, name_ptr: i32, name_len: i32, ptr: i32, len: i32| {
            timed(&mut caller, |caller| verify(caller, name_ptr, name_len, ptr, len))
        },
    )?;
    linker.func_wrap(UNSEEN, "log", |mut caller: HostCaller<'_>, ptr: i32, len: i32| {
        timed(&mut caller, |caller| log(caller, ptr, len))
    })?;
    linker.func_wrap(UNSEEN, "last_error", |mut caller: HostCaller<'_>| timed(&mut caller, last_error))?;
    linker.func_wrap(WASI, "fd_write", |mut caller: HostCaller<'_>, fd: i32, iovs: i32, len: i32, written: i32| {
        timed(&mut caller, |caller| fd_write(caller, fd, iovs, len, written))
    })?;
    linker.func_wrap(WASI, "random_get", |mut caller: HostCaller<'_>, ptr: i32, len: i32| {
        timed(&mut caller, |caller| random_get(caller, ptr, len))
    })?;
    // An empty environment: no variables, so `environ_get` has nothing to write.
    linker.func_wrap(WASI, "environ_sizes_get", |mut caller: HostCaller<'_>, count_ptr: i32, size_ptr: i32| {
        timed(&mut caller, |caller| write_zeros(caller, &[count_ptr, size_ptr]))
    })?;
    linker.func_wrap(WASI, "environ_get", |_: HostCaller<'_>, _: i32, _: i32| -> i32 { 0 })?;
    linker.func_wrap(WASI, "proc_exit", |_: HostCaller<'_>, code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(ProcExit(code)))
    })?;
    Ok(())
}
