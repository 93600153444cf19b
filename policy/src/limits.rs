//! The resources one job may use, approved with the scenario and frozen into its grant.
//!
//! The operator prices and schedules by these (docs/policy-basis.md, cost-based pricing); the
//! runtime enforces each of them and names the one that stopped a job.

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// Largest linear memory any grant may allow: wasm32 addresses 4 GiB, the domain allows 1 GiB.
pub const MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;
/// Longest wall-clock deadline any grant may allow: one hour.
pub const MAX_WALL_CLOCK_MS: u64 = 60 * 60 * 1000;

/// Per-job limits, part of the grant. Every field is enforced by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobLimits {
    /// CPU: fuel units, about one per wasm instruction executed by the guest.
    pub fuel: u64,
    /// Wall-clock deadline of the whole job (guest and its queries), milliseconds.
    pub wall_clock_ms: u64,
    /// Largest linear memory of the guest, bytes.
    pub memory_bytes: u64,
    /// Largest wasm table (function references), elements.
    pub table_elements: u32,
    /// Queries a job may run.
    pub max_queries: u32,
    /// Outputs a job may emit.
    pub max_outputs: u32,
    /// Rows of all emitted table outputs together.
    pub max_output_rows: u64,
    /// Bytes handed to the guest plus bytes it emits.
    pub max_output_bytes: u64,
    /// Guest log bytes.
    pub max_log_bytes: u64,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            fuel: 20_000_000_000,
            wall_clock_ms: 60_000,
            memory_bytes: 256 * 1024 * 1024,
            table_elements: 100_000,
            max_queries: 64,
            max_outputs: 16,
            max_output_rows: 100_000,
            max_output_bytes: 256 * 1024 * 1024,
            max_log_bytes: 64 * 1024,
        }
    }
}

impl JobLimits {
    /// Checks that every limit is positive and within what a domain allows at all.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let positive = [
            ("limits.fuel", self.fuel),
            ("limits.wall_clock_ms", self.wall_clock_ms),
            ("limits.memory_bytes", self.memory_bytes),
            ("limits.table_elements", u64::from(self.table_elements)),
            ("limits.max_queries", u64::from(self.max_queries)),
            ("limits.max_outputs", u64::from(self.max_outputs)),
            ("limits.max_output_rows", self.max_output_rows),
            ("limits.max_output_bytes", self.max_output_bytes),
            ("limits.max_log_bytes", self.max_log_bytes),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(PolicyError::invalid(*field, "must be greater than zero"));
        }
        if self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(PolicyError::invalid(
                "limits.memory_bytes",
                format!("{} exceeds the domain's {MAX_MEMORY_BYTES}-byte maximum", self.memory_bytes),
            ));
        }
        if self.wall_clock_ms > MAX_WALL_CLOCK_MS {
            return Err(PolicyError::invalid(
                "limits.wall_clock_ms",
                format!("{} exceeds the domain's {MAX_WALL_CLOCK_MS} ms maximum", self.wall_clock_ms),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_must_be_positive_and_within_the_domain_maxima() {
        assert_eq!(JobLimits::default().validate(), Ok(()));
        let zero = JobLimits { max_queries: 0, ..JobLimits::default() };
        assert!(zero.validate().unwrap_err().to_string().contains("limits.max_queries"));
        let huge = JobLimits { memory_bytes: 4 * MAX_MEMORY_BYTES, ..JobLimits::default() };
        assert!(huge.validate().unwrap_err().to_string().contains("limits.memory_bytes"));
        let forever = JobLimits { wall_clock_ms: MAX_WALL_CLOCK_MS + 1, ..JobLimits::default() };
        assert!(forever.validate().unwrap_err().to_string().contains("limits.wall_clock_ms"));
    }

    #[test]
    fn an_application_without_limits_gets_the_defaults() {
        let limits: JobLimits = serde_json::from_str(r#"{"max_queries": 3}"#).unwrap();
        assert_eq!(limits, JobLimits { max_queries: 3, ..JobLimits::default() });
    }
}
