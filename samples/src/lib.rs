//! Synthetic public datasets, the demo's catalog and scenarios, and the sample analysis
//! modules, shared by the demo, the tests and the benchmarks.

pub mod data;
pub mod modules;
pub mod scenarios;
