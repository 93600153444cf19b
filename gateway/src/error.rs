//! The gateway's one error type and its single mapping to gRPC status codes.

use unseen_policy::PolicyError;
use unseen_runtime::RuntimeError;

/// Why a gateway operation failed. Variants are what the caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The caller may not do this, or a policy rule refused it.
    #[error("{0}")]
    Denied(String),
    /// The request is malformed; the message names what was wrong.
    #[error("{0}")]
    InvalidInput(String),
    /// A named object does not exist (or is not the caller's to see).
    #[error("{0}")]
    NotFound(String),
    /// The object is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No caller identity could be established.
    #[error("{0}")]
    Unauthenticated(String),
    /// A service the domain depends on (the metadata database) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an environment problem (disk, database).
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// Wraps an I/O-like failure with what was being done.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {error}"))
    }
}

impl From<PolicyError> for GatewayError {
    fn from(error: PolicyError) -> Self {
        match error {
            PolicyError::Denied(message) => Self::Denied(message),
            PolicyError::InvalidInput { .. } => Self::InvalidInput(error.to_string()),
            PolicyError::NotFound { .. } => Self::NotFound(error.to_string()),
            PolicyError::RandomnessFailed(_) => Self::Internal(error.to_string()),
        }
    }
}

impl From<RuntimeError> for GatewayError {
    fn from(error: RuntimeError) -> Self {
        match error {
            RuntimeError::Refused(_) => Self::Denied(error.to_string()),
            RuntimeError::InvalidModule(_) | RuntimeError::InvalidQuery(_) => Self::InvalidInput(error.to_string()),
            RuntimeError::LimitExceeded { .. }
            | RuntimeError::ModuleFailed(_)
            | RuntimeError::Trapped(_)
            | RuntimeError::Query(_)
            | RuntimeError::Cancelled(_) => Self::FailedPrecondition(error.to_string()),
            RuntimeError::Internal(_) => Self::Internal(error.to_string()),
        }
    }
}

impl From<sqlx::Error> for GatewayError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal("metadata store", error)
    }
}

impl From<unseen_audit::AuditError> for GatewayError {
    fn from(error: unseen_audit::AuditError) -> Self {
        match error {
            // A range or proof the log cannot give (beyond its size, an empty range).
            unseen_audit::AuditError::InvalidInput(_) => Self::InvalidInput(format!("audit log: {error}")),
            // Asked for an entry whose body the retention period let go.
            unseen_audit::AuditError::Pruned { .. } => Self::FailedPrecondition(format!("audit log: {error}")),
            _ => Self::internal("audit log", error),
        }
    }
}

impl From<GatewayError> for tonic::Status {
    /// Every error a client is told about passes here, so this is where it is logged, inside
    /// the request's span (RPC and caller): a refusal with its reason, an internal error with
    /// its cause.
    fn from(error: GatewayError) -> Self {
        let message = error.to_string();
        match &error {
            GatewayError::Internal(_) => tracing::error!(target: "unseen::error", cause = %message, "internal error"),
            GatewayError::Unavailable(_) => tracing::warn!(target: "unseen::error", reason = %message, "unavailable"),
            GatewayError::Denied(_) | GatewayError::Unauthenticated(_) => {
                tracing::warn!(target: "unseen::refusal", reason = %message, "refused")
            }
            GatewayError::InvalidInput(_) | GatewayError::NotFound(_) | GatewayError::FailedPrecondition(_) => {
                tracing::info!(target: "unseen::refusal", reason = %message, "refused")
            }
        }
        match error {
            GatewayError::Denied(_) => tonic::Status::permission_denied(message),
            GatewayError::InvalidInput(_) => tonic::Status::invalid_argument(message),
            GatewayError::NotFound(_) => tonic::Status::not_found(message),
            GatewayError::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            GatewayError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            GatewayError::Unavailable(_) => tonic::Status::unavailable(message),
            GatewayError::Internal(_) => tonic::Status::internal(message),
        }
    }
}
