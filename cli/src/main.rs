//! `unseen`: the command line of an unseen domain.
//!
//! `main` parses, dispatches and prints; errors are printed once, here, with their chain.

mod audit_client;
mod check;
mod client;
mod demo;
mod documents;
mod domain_dir;
mod draft;
mod health;
mod identities;
mod import_data;
mod verify;
mod workflow;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// unseen — a secure data sandbox for public-data operation domains (原始数据不出域、数据可用不可见).
#[derive(Debug, Parser)]
#[command(name = "unseen", version, about, long_about = None)]
#[command(after_help = "Client commands reach a domain's gateway over mTLS with your identity:\n  \
    --server HOST:PORT (UNSEEN_SERVER), --identity PATH (UNSEEN_IDENTITY), --ca FILE (UNSEEN_CA),\n  \
    --domain-key HEX|FILE (UNSEEN_DOMAIN_KEY); `--json` prints one document for programs.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole flow on synthetic data in a temporary domain: register, apply, approve,
    /// run on the sample and on the real data, review, release, verify the audit log.
    Demo(demo::DemoArgs),
    /// Create a domain directory: CA, server certificate, domain key, client identities.
    Init(domain_dir::InitArgs),
    /// Serve a domain directory's gateway until interrupted.
    Serve(domain_dir::ServeArgs),
    /// Client identities (mTLS certificates) of a domain.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Datasets: a provider registers a version (数据资源登记).
    Dataset(workflow::DatasetArgs),
    /// Scenarios: apply, list, approve or reject (应用场景).
    Scenario(workflow::ScenarioArgs),
    /// Grants: list, suspend, resume or terminate (授权).
    Grant(workflow::GrantArgs),
    /// Imported tables: a developer's own data for its grant, approved by an operator (社会数据).
    Import(import_data::ImportArgs),
    /// Modules: upload WebAssembly bound to a grant.
    Module(workflow::ModuleArgs),
    /// Jobs: run a module on the sample or the real data, follow, cancel.
    Job(workflow::JobArgs),
    /// Egress requests: ask, follow, approve or reject (出域审核).
    Egress(workflow::EgressArgs),
    /// Releases: download and verify signed bundles.
    Release(workflow::ReleaseArgs),
    /// The audit log: checkpoints, entries, proofs, export and offline verification.
    Audit(audit_client::AuditArgs),
    /// Check a query or a computed table against a grant offline, with the egress reviewer's
    /// own rules (出域审核), before asking a domain.
    Check(check::CheckArgs),
    /// Verify things offline, with nothing but the files and the domain's public key.
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// Ask the gateway whether it is serving (grpc.health.v1), with any identity of the domain.
    Health(health::HealthArgs),
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Issue client identities from the domain's CA.
    Issue(domain_dir::IdentityIssueArgs),
    /// List the client identities in a domain directory: principal, serial, validity, revoked.
    List(identities::IdentityListArgs),
    /// Revoke a client identity: the domain CA signs a new revocation list that `unseen serve`
    /// checks at the handshake once (re)started.
    Revoke(identities::IdentityRevokeArgs),
}

/// A reader who closes the pipe early (`unseen audit tail | head`) ends the command quietly,
/// with the status a shell gives a process SIGPIPE stopped (141), as other Unix tools do,
/// instead of a panic from `println!`.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Init(args) => domain_dir::init(args),
        Command::Serve(args) => domain_dir::serve(args),
        Command::Identity(IdentityCommand::Issue(args)) => domain_dir::issue(args),
        Command::Identity(IdentityCommand::List(args)) => identities::list(args),
        Command::Identity(IdentityCommand::Revoke(args)) => identities::revoke(args),
        Command::Dataset(args) => workflow::dataset(args),
        Command::Scenario(args) => workflow::scenario(args),
        Command::Grant(args) => workflow::grant(args),
        Command::Import(args) => import_data::run(args),
        Command::Module(args) => workflow::module(args),
        Command::Job(args) => workflow::job(args),
        Command::Egress(args) => workflow::egress(args),
        Command::Release(args) => workflow::release(args),
        Command::Audit(args) => audit_client::run(args),
        Command::Check(args) => check::run(args),
        Command::Verify(command) => verify::run(command),
        Command::Health(args) => health::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
