//! End-to-end and red-team tests, one binary (STYLE.md, convention 6): every test binary
//! links wasmtime and DataFusion.

mod isolation;
mod policy_rules;
mod red_team;
mod sample_modules;
