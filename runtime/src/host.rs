//! The wasmtime host: validates modules at upload, keeps them compiled (in memory as
//! `InstancePre`, on disk as precompiled code), and runs jobs under the limits of their grant.
//!
//! Speed comes from the pooling allocator (instance slots and memories are reused, not
//! mapped per job), `InstancePre` (imports are resolved once per module) and the disk cache
//! (a restarted domain loads machine code instead of compiling). Isolation comes from the
//! contract in [`crate::abi`]: a guest can do nothing that is not one of its imports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use unseen_contract::{
    ABI_VERSION, EXPORT_ABI_VERSION, EXPORT_ALLOC, EXPORT_MEMORY, EXPORT_RUN, MAX_MEMORIES_PER_MODULE,
    MAX_TABLES_PER_MODULE, REQUIRED_EXPORTS,
};
pub use unseen_contract::{MAX_MODULE_BYTES, MAX_PARAMS_BYTES};
use unseen_policy::{JobLimits, limits::MAX_MEMORY_BYTES, sha256_hex};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig, Store, Trap,
};

use crate::RuntimeError;
use crate::abi::{self, HostState, LimitTrap, ProcExit};
use crate::cache::ModuleCache;
use crate::governed::GovernedSession;
use crate::job::{JobReport, JobSpec, Metering};

/// How often the engine's epoch advances; the granularity of wall-clock deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Epoch ticks between two checks of the cancel flag and the wall-clock deadline (50 ms).
pub const CANCEL_CHECK_TICKS: u64 = 5;
/// Guest memory a reused instance slot keeps resident (zeroed with memset instead of returned
/// to the kernel), so the next job on it does not fault in fresh pages.
const KEEP_RESIDENT_BYTES: usize = 64 * 1024 * 1024;

/// How a domain's runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where precompiled modules are kept across restarts; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Jobs that may hold an instance at the same time (pooling allocator slots).
    pub instance_slots: u32,
    /// Count fuel (the `cpu` limit and the fuel figure of metering). Off only to measure what
    /// fuel costs: without it the `cpu` limit is not enforced (the wall clock still is).
    pub fuel_metering: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { cache_dir: None, instance_slots: 64, fuel_metering: true }
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
    /// Whether its compiled code came from a cache (memory or disk) rather than a compilation.
    #[serde(default)]
    pub cached: bool,
}

/// The host: one wasmtime engine, its linker, and the compiled modules.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    prepared: Mutex<HashMap<String, InstancePre<HostState>>>,
    disk: Option<ModuleCache>,
    ticker_stop: Arc<AtomicBool>,
    fuel_metering: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("disk_cache", &self.disk).finish_non_exhaustive()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// A runtime with the default configuration and no disk cache.
    pub fn new() -> Result<Self, RuntimeError> {
        Self::with_config(&RuntimeConfig::default())
    }

    /// Builds the engine (fuel, epochs, pooling allocator), the linker with the contract's
    /// imports, and the epoch ticker that enforces wall-clock deadlines.
    pub fn with_config(config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let internal = |error: wasmtime::Error| RuntimeError::Internal(format!("{error:#}"));
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_core_instances(config.instance_slots)
            .total_memories(config.instance_slots)
            .total_tables(config.instance_slots * MAX_TABLES_PER_MODULE)
            .max_memories_per_module(MAX_MEMORIES_PER_MODULE)
            .max_tables_per_module(MAX_TABLES_PER_MODULE)
            .max_memory_size(MAX_MEMORY_BYTES as usize)
            .table_elements(JobLimits::default().table_elements as usize * 10)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        let mut engine_config = Config::new();
        engine_config
            .consume_fuel(config.fuel_metering)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&engine_config).map_err(internal)?;
        let mut linker = Linker::new(&engine);
        abi::define_imports(&mut linker).map_err(internal)?;
        let disk = match &config.cache_dir {
            Some(dir) => Some(ModuleCache::open(dir, &engine).map_err(|error| {
                RuntimeError::Internal(format!("opening the module cache {}: {error}", dir.display()))
            })?),
            None => None,
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticking_engine, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("unseen-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking_engine.increment_epoch();
                }
            })
            .map_err(|error| RuntimeError::Internal(format!("starting the epoch ticker: {error}")))?;
        Ok(Self {
            engine,
            linker,
            prepared: Mutex::new(HashMap::new()),
            disk,
            ticker_stop,
            fuel_metering: config.fuel_metering,
        })
    }

    /// Upload-time validation: size, well-formed wasm, imports inside the contract, one
    /// memory and few tables, the exports the contract needs. Refusals list every offending
    /// import. A module that passes stays compiled (and, with a cache directory, on disk).
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
        let (pre, cached) = self.prepare(&hash, bytes)?;
        let imports: Vec<String> =
            pre.module().imports().map(|import| format!("{}.{}", import.module(), import.name())).collect();
        if !cached && let Some(disk) = &self.disk {
            disk.store(&hash, pre.module());
        }
        Ok(ModuleInfo { hash, size: bytes.len(), imports, cached })
    }

    /// The ready-to-instantiate module: from memory, from the disk cache, or compiled and
    /// checked now. The flag says whether it came from a cache.
    fn prepare(&self, hash: &str, bytes: &[u8]) -> Result<(InstancePre<HostState>, bool), RuntimeError> {
        let poisoned = || RuntimeError::Internal("module cache poisoned".into());
        if let Some(pre) = self.prepared.lock().map_err(|_| poisoned())?.get(hash) {
            return Ok((pre.clone(), true));
        }
        let cached = self.disk.as_ref().and_then(|disk| disk.load(&self.engine, hash));
        let from_disk = cached.is_some();
        let module = match cached {
            Some(module) => module,
            None => {
                Module::validate(&self.engine, bytes)
                    .map_err(|error| RuntimeError::InvalidModule(format!("not valid WebAssembly: {error:#}")))?;
                Module::new(&self.engine, bytes).map_err(|error| {
                    RuntimeError::InvalidModule(format!("does not fit the domain's instance limits: {error:#}"))
                })?
            }
        };
        check_contract(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|error| RuntimeError::InvalidModule(format!("imports do not match the contract: {error:#}")))?;
        self.prepared.lock().map_err(|_| poisoned())?.insert(hash.to_string(), pre.clone());
        Ok((pre, from_disk))
    }

    /// Runs a validated module as `job` describes. Blocking: call it from a blocking thread
    /// (each job has its own, so a busy guest never holds up another job); `tokio` runs the
    /// queries on the host's async runtime.
    pub fn run_job(&self, job: &JobSpec<'_>, tokio: tokio::runtime::Handle) -> JobReport {
        let started = Instant::now();
        let limits = job.grant.application.limits;
        let mut report = JobReport {
            outputs: Vec::new(),
            guest_log: Vec::new(),
            queries: Vec::new(),
            metering: Metering::default(),
            failure: None,
        };
        if job.params.len() > MAX_PARAMS_BYTES {
            report.failure = Some(RuntimeError::LimitExceeded {
                limit: "params",
                detail: format!("job parameters of {} bytes exceed {MAX_PARAMS_BYTES}", job.params.len()),
            });
            return report;
        }
        let session = match tokio.block_on(GovernedSession::new(job.grant, job.tables, job.mode)) {
            Ok(session) => Arc::new(session),
            Err(error) => {
                report.failure = Some(error);
                return report;
            }
        };
        let deadline = started + Duration::from_millis(limits.wall_clock_ms);
        let state = HostState::new(session, tokio, job, deadline);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        let outcome = self.instantiate_and_run(&mut store, job.module, &limits, deadline);
        let remaining = if self.fuel_metering { store.get_fuel().unwrap_or(0) } else { limits.fuel };
        let mut state = store.into_data();
        report.failure = outcome.err().map(|error| state.limit_hit.clone().unwrap_or(error));
        state.metering.fuel = limits.fuel.saturating_sub(remaining);
        state.metering.wall_ms = started.elapsed().as_millis() as u64;
        report.metering = state.metering;
        report.outputs = state.outputs;
        report.guest_log = state.log;
        report.queries = state.queries;
        report
    }

    fn instantiate_and_run(
        &self,
        store: &mut Store<HostState>,
        bytes: &[u8],
        limits: &JobLimits,
        deadline: Instant,
    ) -> Result<(), RuntimeError> {
        let (pre, _) = self.prepare(&sha256_hex(bytes), bytes)?;
        let internal = |error: wasmtime::Error| RuntimeError::Internal(format!("{error:#}"));
        if self.fuel_metering {
            store.set_fuel(limits.fuel).map_err(internal)?;
        }
        // The same deadline the queries run against, counted from the job's start; checked,
        // with the cancel flag, every few ticks.
        let ticks_left = move || {
            let left_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
            left_ms.div_ceil(EPOCH_TICK.as_millis() as u64)
        };
        store.set_epoch_deadline(ticks_left().clamp(1, CANCEL_CHECK_TICKS));
        store.epoch_deadline_callback(move |mut context| {
            let cancelled = context.data().cancel.reason();
            if let Some(reason) = cancelled {
                context.data_mut().limit_hit = Some(RuntimeError::Cancelled(reason));
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            match ticks_left() {
                0 => Ok(wasmtime::UpdateDeadline::Interrupt),
                left => Ok(wasmtime::UpdateDeadline::Continue(left.min(CANCEL_CHECK_TICKS))),
            }
        });
        let instantiating = Instant::now();
        let instance = pre.instantiate(&mut *store).map_err(|error| trap_to_error(store, error))?;
        let memory = instance.get_memory(&mut *store, EXPORT_MEMORY);
        let alloc = instance.get_typed_func::<i32, i32>(&mut *store, EXPORT_ALLOC).ok();
        store.data_mut().attach(memory, alloc, elapsed_ns(instantiating));
        let version = instance
            .get_typed_func::<(), i32>(&mut *store, EXPORT_ABI_VERSION)
            .map_err(|_| RuntimeError::InvalidModule(format!("missing export \"{EXPORT_ABI_VERSION}\"")))?
            .call(&mut *store, ())
            .map_err(|error| trap_to_error(store, error))?;
        if version != ABI_VERSION {
            return Err(RuntimeError::InvalidModule(format!(
                "module speaks guest ABI v{version}; this domain speaks v{ABI_VERSION}"
            )));
        }
        let run = instance
            .get_typed_func::<(), i32>(&mut *store, EXPORT_RUN)
            .map_err(|_| RuntimeError::InvalidModule(format!("missing export \"{EXPORT_RUN}\"")))?;
        let running = Instant::now();
        let result = run.call(&mut *store, ());
        let state = store.data_mut();
        state.metering.guest_ns = elapsed_ns(running).saturating_sub(state.metering.host_ns);
        match result {
            Ok(0) => Ok(()),
            Ok(code) => Err(RuntimeError::ModuleFailed(format!("module returned {code}"))),
            Err(error) => Err(trap_to_error(store, error)),
        }
    }
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The checks of a compiled module against the contract: imports, memories, tables, exports.
fn check_contract(module: &Module) -> Result<(), RuntimeError> {
    let offending: Vec<String> = module
        .imports()
        .filter(|import| !unseen_contract::is_contract_import(import.module(), import.name()))
        .map(|import| format!("{}.{}", import.module(), import.name()))
        .collect();
    if !offending.is_empty() {
        return Err(RuntimeError::InvalidModule(format!(
            "imports outside the guest contract: {} (the contract is docs/guest-abi.md: no files, sockets, environment, arguments or clocks)",
            offending.join(", ")
        )));
    }
    let resources = module.resources_required();
    if resources.num_memories > MAX_MEMORIES_PER_MODULE {
        return Err(RuntimeError::InvalidModule(format!(
            "declares {} linear memories; a module has exactly one",
            resources.num_memories
        )));
    }
    if resources.num_tables > MAX_TABLES_PER_MODULE {
        return Err(RuntimeError::InvalidModule(format!(
            "declares {} tables; at most {MAX_TABLES_PER_MODULE} are allowed",
            resources.num_tables
        )));
    }
    for &export in REQUIRED_EXPORTS {
        if module.get_export(export).is_none() {
            return Err(RuntimeError::InvalidModule(format!(
                "missing export \"{export}\" (build it with unseen-sdk's entry! macro)"
            )));
        }
    }
    Ok(())
}

/// Turns a wasmtime error into the typed error of the limit or fault behind it. The texts are
/// built from names and figures only: no guest data reaches them.
fn trap_to_error(store: &Store<HostState>, error: wasmtime::Error) -> RuntimeError {
    let state = store.data();
    if let Some(limit) = &state.limit_hit {
        return limit.clone();
    }
    if error.downcast_ref::<LimitTrap>().is_some() {
        return RuntimeError::Internal("a limit trap without its limit".into());
    }
    if let Some(exit) = error.downcast_ref::<ProcExit>() {
        return RuntimeError::ModuleFailed(format!("module exited with code {}", exit.0));
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            RuntimeError::LimitExceeded { limit: "cpu", detail: format!("fuel of {} units used up", state.limits.fuel) }
        }
        Some(Trap::Interrupt) => RuntimeError::LimitExceeded {
            limit: "wall_clock",
            detail: format!("deadline of {} ms passed", state.limits.wall_clock_ms),
        },
        Some(Trap::StackOverflow) => {
            RuntimeError::LimitExceeded { limit: "stack", detail: "call stack exhausted (recursion too deep)".into() }
        }
        Some(trap) if state.memory_refused => RuntimeError::LimitExceeded {
            limit: "memory",
            detail: format!("linear memory capped at {} bytes ({trap})", state.limits.memory_bytes),
        },
        Some(trap) if state.table_refused => RuntimeError::LimitExceeded {
            limit: "table_elements",
            detail: format!("tables capped at {} elements ({trap})", state.limits.table_elements),
        },
        Some(Trap::MemoryOutOfBounds) => RuntimeError::Trapped(format!(
            "{} (in a Rust module, often the shadow stack running off the bottom of memory: recursion too deep)",
            Trap::MemoryOutOfBounds
        )),
        Some(trap) => RuntimeError::Trapped(trap.to_string()),
        None if state.memory_refused => RuntimeError::LimitExceeded {
            limit: "memory",
            detail: format!("linear memory capped at {} bytes", state.limits.memory_bytes),
        },
        None => RuntimeError::ModuleFailed(format!("{error:#}")),
    }
}
