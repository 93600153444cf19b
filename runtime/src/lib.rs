//! The isolated domain: runs untrusted analysis modules in wasmtime with no ambient authority,
//! against a governed DataFusion session over the tables their grant names.
//!
//! The guest contract is `docs/guest-abi.md` (its names, codes and bounds in `unseen_contract`);
//! its host side is [`host`], and what a job leaves behind is [`job`]. What a query may see
//! is decided in [`governed`]. Desensitised samples are derived in [`sample`].

mod abi;
mod cache;
pub mod contributors;
pub mod governed;
mod granted_table;
pub mod host;
pub mod identifier_index;
pub mod job;
pub mod largest;
pub mod pseudonym;
pub mod sample;
pub mod subject_key;
pub mod subject_sketch;
pub mod verification;

pub use governed::{DomainTable, GovernedResult, GovernedSession, Mode};
pub use host::{ModuleInfo, Runtime, RuntimeConfig};
pub use job::{CancelFlag, JobOutput, JobReport, JobSpec, Metering, QueryRecord};
pub use unseen_contract::ABI_VERSION;

use unseen_policy::Refusal;

/// Why something in the runtime did not happen. Variants are what the caller acts on.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// A policy rule refused; the refusal names the rule and the object.
    #[error("refused by {}: {}", .0.rule, .0.message)]
    Refused(Refusal),
    /// The module is not acceptable (not wasm, too large, imports outside the contract).
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The SQL could not be planned (syntax, unknown column or table).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The query failed while running.
    #[error("query failed: {0}")]
    Query(String),
    /// A per-grant limit was reached.
    #[error("limit exceeded: {limit}: {detail}")]
    LimitExceeded {
        /// Which limit: `cpu`, `wall_clock`, `memory`, `stack`, `table_elements`, `queries`, `outputs`,
        /// `output_rows`, `output_bytes`, `log_bytes`, `params`.
        limit: &'static str,
        /// The figure.
        detail: String,
    },
    /// The module hit a wasm trap (unreachable, out-of-bounds access, division by zero…).
    /// The text is wasmtime's fixed description of the trap kind, never guest data.
    #[error("module trapped: {0}")]
    Trapped(String),
    /// The module gave up (returned non-zero, exited) or failed in a way the host cannot type.
    #[error("module failed: {0}")]
    ModuleFailed(String),
    /// The job was stopped from outside (its developer cancelled it, or its grant was
    /// suspended or terminated); the text says by whom.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A bug or an environment problem in the domain itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RuntimeError {
    /// The message a developer may see about a production job: no data values, ever.
    /// Refusals and limits are built from names and figures only; everything else is reduced
    /// to its category and kept in the domain for the operator.
    pub fn developer_message(&self, mode: Mode) -> String {
        match (self, mode) {
            (_, Mode::Sample) => self.to_string(),
            // Planning reads no data: its errors are about the SQL the developer wrote; limits
            // and refusals are names and figures; trap texts are wasmtime's fixed descriptions.
            (
                Self::Refused(_)
                | Self::LimitExceeded { .. }
                | Self::InvalidModule(_)
                | Self::InvalidQuery(_)
                | Self::Trapped(_)
                | Self::Cancelled(_),
                Mode::Production,
            ) => self.to_string(),
            (Self::Query(_), Mode::Production) => {
                "query failed while running (details are held in the domain for the operator)".into()
            }
            (Self::ModuleFailed(_), Mode::Production) => {
                "module failed (details are held in the domain for the operator)".into()
            }
            (Self::Internal(_), Mode::Production) => "internal error in the domain".into(),
        }
    }
}
