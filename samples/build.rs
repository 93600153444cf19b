//! Compiles the sample modules in `samples/modules/` (their own cargo workspace) for
//! `wasm32-wasip1` and copies the `.wasm` files into `OUT_DIR`, where `src/modules.rs` embeds
//! them: the modules travel inside every binary that uses this crate, so `unseen demo` works
//! from any directory and compiles nothing at run time.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The module crates in `samples/modules/` (each a `cdylib`; `kernels` is a library they use).
const MODULES: &[&str] = &[
    "green-energy",
    "population-report",
    "energy-model",
    "enterprise-verification",
    "hostile-id-dump",
    "bench-probe",
    "red-team",
    "red-team-files",
    "red-team-sockets",
    "red-team-env",
    "red-team-clock",
];
const TARGET: &str = "wasm32-wasip1";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let modules = manifest_dir.join("modules");
    let sdk = manifest_dir.join("../sdk");
    // The SDK's own dependency: the guest contract it shares with the host.
    let contract = manifest_dir.join("../contract");
    for path in [
        modules.join("Cargo.toml"),
        modules.join("Cargo.lock"),
        sdk.join("Cargo.toml"),
        sdk.join("src"),
        contract.join("Cargo.toml"),
        contract.join("src"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for module in MODULES.iter().chain(&["kernels"]) {
        println!("cargo:rerun-if-changed={}", modules.join(module).display());
    }

    // A target directory of its own, beside the outer one: sharing the outer build's would
    // deadlock on its lock; keeping it out of OUT_DIR lets clean builds reuse it.
    let target_dir = guest_target_dir(&out_dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", TARGET, "--manifest-path"])
        .arg(modules.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings (flags, wrappers such as clippy, jobserver) must not leak in.
    command.env_clear();
    for key in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "TMPDIR"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    let output =
        command.output().unwrap_or_else(|error| panic!("could not start cargo to build the sample modules: {error}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("may not be installed")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
        {
            "\nThe wasm32-wasip1 target is missing. Run: rustup target add wasm32-wasip1\n"
        } else {
            ""
        };
        panic!("building the sample modules for {TARGET} failed:{hint}\n{stderr}");
    }
    for module in MODULES {
        let file = format!("{}.wasm", module.replace('-', "_"));
        let built = target_dir.join(TARGET).join("release").join(&file);
        let copy = out_dir.join(&file);
        std::fs::copy(&built, &copy).unwrap_or_else(|error| panic!("copying {}: {error}", built.display()));
    }
}

fn guest_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out.
    out_dir.ancestors().nth(4).map(|target| target.join("wasm-samples")).unwrap_or_else(|| out_dir.join("wasm-samples"))
}
