//! `unseen health`: asks a gateway's `grpc.health.v1` service whether it is serving, as a
//! container's health check or a monitor does. The gateway takes no call without mTLS, so a
//! probe presents an identity the domain issued; any role's will do (the operator's, or one
//! issued for the monitor, e.g. `operator:huzhou-data-group:monitor`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use unseen_gateway::identity::Role;

use crate::client::{Client, ClientArgs, emit};
use crate::workflow::runtime;

/// Ask the gateway whether it is serving: exit 0 when SERVING, 1 otherwise.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    unseen health --identity domain/pki/huzhou-data-group-operator-reviewer")]
pub struct HealthArgs {
    /// One service to ask about (e.g. `unseen.v1.Developer`); the whole gateway by default.
    #[arg(long, default_value = "")]
    service: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Serialize)]
struct HealthReport {
    server: String,
    service: String,
    status: String,
}

/// Runs `unseen health`.
pub fn run(args: HealthArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = Client::connect_as(&args.client, &Role::ALL, "health").await?;
        let reply = HealthClient::new(client.channel.clone())
            .check(HealthCheckRequest { service: args.service.clone() })
            .await
            .map_err(|status| client.refused("the health check", status))?
            .into_inner();
        let status = ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown);
        let report = HealthReport {
            server: client.server.clone(),
            service: args.service.clone(),
            status: status.as_str_name().to_string(),
        };
        emit(client.json, &report, || match report.service.as_str() {
            "" => format!("{}: {}", report.server, report.status),
            service => format!("{} {service}: {}", report.server, report.status),
        })?;
        Ok(if status == ServingStatus::Serving { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}
