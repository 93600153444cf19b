//! The sample modules, compiled from `samples/modules/` for `wasm32-wasip1` by `build.rs` and
//! embedded here, so they travel with every binary.

/// Green energy (绿色能源): electricity use by industry and district — the legitimate analysis.
pub const GREEN_ENERGY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/green_energy.wasm"));

/// A hostile module that tries to emit raw resident ID numbers, as a table and as an artifact.
pub const HOSTILE_ID_DUMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile_id_dump.wasm"));

/// Every sample module by name.
pub fn all() -> &'static [(&'static str, &'static [u8])] {
    &[("green-energy", GREEN_ENERGY), ("hostile-id-dump", HOSTILE_ID_DUMP)]
}
