//! The one error type of the policy crate.

/// Why a policy operation could not be carried out. Variants are what the caller acts on.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The request breaks a rule; the message names the rule and the object.
    #[error("{0}")]
    Denied(String),
    /// The request is malformed; the message names the field and what was wrong.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field or object that was wrong.
        field: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A source of randomness the caller handed in failed; nothing was derived or released.
    #[error("randomness failed while {0}")]
    RandomnessFailed(String),
    /// A named object does not exist.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// What kind of object was looked up.
        kind: &'static str,
        /// The name that was looked up.
        name: String,
    },
}

impl PolicyError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidInput { field: field.into(), reason: reason.into() }
    }
}
