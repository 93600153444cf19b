//! The gateway's integration tests, one binary: each test binary links wasmtime and
//! DataFusion, so one per crate keeps builds and CI short (STYLE.md, convention 6).

mod common;

mod audit_access;
mod crash;
mod edge;
mod files;
mod grants;
mod imports;
mod jobs;
mod privacy_ledger;
mod restart;
mod retention;
mod roles;
mod scenarios;
mod store;
mod telemetry;
mod verification;
