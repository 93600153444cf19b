//! `unseen`: the command line of an unseen domain.
//!
//! `main` parses, dispatches and prints; errors are printed once, here, with their chain.

mod check;
mod demo;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// unseen — a secure data sandbox for public-data operation domains (原始数据不出域、数据可用不可见).
#[derive(Debug, Parser)]
#[command(name = "unseen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole flow on synthetic data in a temporary domain: register, apply, approve,
    /// run on the sample and on the real data, review, release, verify the audit log.
    Demo(demo::DemoArgs),
    /// Check a query or a computed table against a grant offline, with the egress reviewer's
    /// own rules (出域审核), before asking a domain.
    Check(check::CheckArgs),
    /// Verify things offline, with nothing but the files and the domain's public key.
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// The audit log: verify an export offline.
    #[command(subcommand)]
    Audit(verify::AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Verify(command) => verify::run(command),
        Command::Audit(command) => verify::run_audit(command),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
