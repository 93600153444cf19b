//! The states of the workflow's objects, one spelling each. The store keeps them as text (a
//! `CHECK` constraint admits only these spellings, `gateway/migrations/0006_states.sql`), the
//! API sends them as text, and the domain reads them back through [`FromStr`](std::str::FromStr),
//! so a stored value no state names is an error that names it, never a panic.

use crate::GatewayError;

/// Defines a state enum with its one spelling per state, the list of them all, conversions
/// and comparisons with text (so a view's state compares with `"succeeded"` as before).
macro_rules! states {
    ($(#[$meta:meta])* $name:ident, $object:literal { $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$variant_meta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every state, in the order of the workflow.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The spelling the store, the API and the audit log use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// Every spelling, for a list filter's validation and its message.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|state| state.as_str()).collect()
            }
        }

        impl std::str::FromStr for $name {
            type Err = GatewayError;

            fn from_str(text: &str) -> Result<Self, GatewayError> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(GatewayError::Internal(format!(
                        "{} state {other:?} is not one of {}",
                        $object,
                        Self::names().join(", ")
                    ))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }
    };
}

states! {
    /// A scenario application (场景申请).
    ScenarioState, "scenario" {
        /// Waiting for an operator.
        Submitted => "submitted",
        /// Approved into a grant.
        Approved => "approved",
        /// Refused, with the operator's reason.
        Rejected => "rejected",
    }
}

states! {
    /// A grant (授权).
    GrantState, "grant" {
        /// Jobs may run and outputs may leave.
        Active => "active",
        /// Paused by an operator; may be resumed.
        Suspended => "suspended",
        /// Past its validity (computed when read; stored rows stay `active`).
        Expired => "expired",
        /// Ended for good; its held outputs are deleted.
        Terminated => "terminated",
    }
}

states! {
    /// A job.
    JobState, "job" {
        /// Accepted, waiting for a worker.
        Queued => "queued",
        /// Claimed by a worker, running on the runtime.
        Running => "running",
        /// Ran to its end.
        Succeeded => "succeeded",
        /// The module or the domain failed it.
        Failed => "failed",
        /// The domain stopped while it ran.
        Interrupted => "interrupted",
        /// Cancelled by its developer or an operator.
        Cancelled => "cancelled",
    }
}

impl JobState {
    /// Whether the job has ended and will not change again.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Interrupted | Self::Cancelled)
    }
}

states! {
    /// An egress request (出域申请).
    EgressState, "egress" {
        /// The review released it on its own (the grant allows automatic release).
        AutoReleased => "auto_released",
        /// Waiting for an operator's decision.
        AwaitingOperator => "awaiting_operator",
        /// Approved by an operator and released.
        Approved => "approved",
        /// Refused by an operator.
        Rejected => "rejected",
        /// Blocked by the review; nothing leaves.
        Blocked => "blocked",
    }
}

impl EgressState {
    /// Whether what it holds may leave or has left (so later outputs are reviewed against it).
    pub fn may_leave(self) -> bool {
        !matches!(self, Self::Blocked | Self::Rejected)
    }
}

states! {
    /// A developer's imported table (社会数据).
    ImportState, "import" {
        /// Waiting for an operator.
        Submitted => "submitted",
        /// Jobs of its grant may read it.
        Approved => "approved",
        /// Refused, with the operator's reason.
        Rejected => "rejected",
        /// Its key and encrypted table are gone.
        Destroyed => "destroyed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_spelling_and_serialises_as_it() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), *state);
            assert_eq!(serde_json::to_string(state).unwrap(), format!("\"{}\"", state.as_str()));
        }
        for state in EgressState::ALL {
            assert_eq!(state.as_str().parse::<EgressState>().unwrap(), *state);
        }
        assert_eq!(EgressState::AwaitingOperator, "awaiting_operator");
        let error = "finished".parse::<JobState>().unwrap_err().to_string();
        assert!(error.contains("job state \"finished\"") && error.contains("queued, running"), "{error}");
    }
}
