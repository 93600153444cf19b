//! The domain model of an unseen domain and the decisions made on it: which dataset versions
//! exist and how their columns are tagged, what a scenario asks for, what an approved grant
//! allows, whether a column may be used in a given way, and whether an output may leave.
//!
//! This crate is the functional core: it does no I/O, reads no clock and draws no randomness.
//! Time comes in as `now_unix_ms` arguments, randomness for noise as a [`noise::RandomBits`]
//! the caller hands in; everything else is plain data.

pub mod access;
pub mod catalog;
pub mod error;
pub mod grant;
pub mod identifiers;
pub mod input;
pub mod limits;
pub mod noise;
pub mod review;
pub mod sample;
pub mod sketch;

pub use access::{AccessMode, Argument, Refusal, Usage, least_mode};
pub use catalog::{ColumnSpec, ColumnTag, DatasetVersion, Grade, SubjectKind};
pub use error::PolicyError;
pub use grant::{
    CLAIM_COLUMN, DatasetRequest, DisclosureParams, FOUND_COLUMN, Grant, MAX_DOMINANCE_N, ModeRisk, NkRule, OutputSpec,
    PrivacyParams, ScenarioApplication, VerificationSpec, imported_column_mode,
};
pub use input::from_json_strict;
pub use limits::JobLimits;
pub use review::{
    ColumnLineage, Contributions, MagnitudeLineage, Outcome, OutputKind, OutputLineage, ReviewReport, RuleOutcome,
    RuleResult, SourceColumn, SubjectCounts, ValueClass, VerificationLineage,
};

/// Hex SHA-256 of `bytes`: the content hash every object in a domain is named by.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}
