//! The sample modules, compiled from `samples/modules/` for `wasm32-wasip1` by `build.rs` and
//! embedded here, so they travel with every binary.

macro_rules! module {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file, ".wasm"))
    };
}

/// Green energy (绿色能源): electricity use by industry and district — the legitimate analysis.
pub const GREEN_ENERGY: &[u8] = module!("green_energy");

/// Population statistics report (统计分析报告): residents by district, sex and age band.
pub const POPULATION_REPORT: &[u8] = module!("population_report");

/// A fitted model (kWh against staff over industry × district groups) emitted as an artifact,
/// which always takes the operator-review path.
pub const ENERGY_MODEL: &[u8] = module!("energy_model");

/// Enterprise verification (数据核验): claims from the job's parameters, answered by the domain
/// into a verification output; the module reads no column of the register.
pub const ENTERPRISE_VERIFICATION: &[u8] = module!("enterprise_verification");

/// A hostile module that tries to emit raw resident ID numbers, as a table and as an artifact.
pub const HOSTILE_ID_DUMP: &[u8] = module!("hostile_id_dump");

/// The benchmark probe: host calls, batch transfer and a guest kernel, chosen by parameters.
pub const BENCH_PROBE: &[u8] = module!("bench_probe");

/// Attacks on the domain's limits (loop, memory, recursion, floods, a trap), chosen by the
/// parameter `attack=<name>`.
pub const RED_TEAM: &[u8] = module!("red_team");

/// Tries to read the machine's files (WASI `path_open`): refused at upload.
pub const RED_TEAM_FILES: &[u8] = module!("red_team_files");

/// Tries to use sockets (WASI `sock_*`): refused at upload.
pub const RED_TEAM_SOCKETS: &[u8] = module!("red_team_sockets");

/// Tries to read the environment and arguments (WASI `environ_*`, `args_*`): refused at upload.
pub const RED_TEAM_ENV: &[u8] = module!("red_team_env");

/// Tries to read a fine-grained clock (WASI `clock_time_get`): refused at upload.
pub const RED_TEAM_CLOCK: &[u8] = module!("red_team_clock");

/// Every sample module by name.
pub fn all() -> &'static [(&'static str, &'static [u8])] {
    &[
        ("green-energy", GREEN_ENERGY),
        ("population-report", POPULATION_REPORT),
        ("energy-model", ENERGY_MODEL),
        ("enterprise-verification", ENTERPRISE_VERIFICATION),
        ("hostile-id-dump", HOSTILE_ID_DUMP),
        ("bench-probe", BENCH_PROBE),
        ("red-team", RED_TEAM),
        ("red-team-files", RED_TEAM_FILES),
        ("red-team-sockets", RED_TEAM_SOCKETS),
        ("red-team-env", RED_TEAM_ENV),
        ("red-team-clock", RED_TEAM_CLOCK),
    ]
}
