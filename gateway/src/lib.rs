//! The gateway: the only way into a domain. It authenticates callers by client certificate,
//! keeps the workflow's state in the metadata store, schedules jobs on the runtime, runs the
//! egress review, signs releases and records every step in the audit log.

pub mod domain;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod server;
pub mod service;
pub mod states;
pub mod store;
pub mod telemetry;

pub use domain::{Domain, DomainOptions, ReleaseManifest, SystemBits, verify_release};
pub use error::GatewayError;
pub use metrics::{Metrics, MetricsHandle, serve_metrics};
pub use server::{ServerHandle, TlsMaterial, connect, serve};
