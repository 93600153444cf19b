//! `unseen verify release|audit`: offline checks that need only the files and a public key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

/// What to verify.
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Check a release bundle directory (manifest.json, manifest.sig, data.csv) against the
    /// domain's public key.
    Release {
        /// The bundle directory.
        dir: PathBuf,
        /// The domain's Ed25519 public key, hex.
        #[arg(long)]
        public_key: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Check an audit-log export (JSON) against the domain's public key.
    Audit {
        /// The export file.
        export: PathBuf,
        /// The domain's Ed25519 public key, hex.
        #[arg(long)]
        public_key: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

pub fn public_key(hex_key: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_key.trim()).context("the public key must be hex")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("the public key must be 32 bytes (64 hex digits)"))
}

pub fn run(command: VerifyCommand) -> Result<ExitCode> {
    match command {
        VerifyCommand::Release { dir, public_key: key, json } => {
            let read = |name: &str| {
                std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
            };
            let manifest = unseen_gateway::verify_release(
                &read("manifest.json")?,
                &read("manifest.sig")?,
                &read("data.csv")?,
                &public_key(&key)?,
            )?;
            if json {
                println!("{}", serde_json::json!({ "verified": true, "manifest": manifest }));
            } else {
                println!(
                    "release {} verified: output \"{}\" of grant {} (module {}…), approved by {}",
                    manifest.release_id,
                    manifest.output,
                    manifest.grant_id,
                    &manifest.module_sha256[..12],
                    manifest.approver
                );
            }
        }
        VerifyCommand::Audit { export, public_key: key, json } => {
            let text = std::fs::read_to_string(&export).with_context(|| format!("reading {}", export.display()))?;
            let parsed: unseen_audit::Export =
                serde_json::from_str(&text).context("the file is not an audit export")?;
            let verified = unseen_audit::verify_export(&parsed, &public_key(&key)?)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "verified": true, "size": verified.size, "root": verified.root_hex,
                        "first": verified.first, "entries": verified.entries,
                    })
                );
            } else if verified.entries == verified.size {
                println!("audit export verified: {} entries, root {}", verified.size, verified.root_hex);
            } else {
                println!(
                    "audit export verified: entries #{}..#{} of a log of {} (every leaf hash checked), root {}",
                    verified.first,
                    verified.first + verified.entries,
                    verified.size,
                    verified.root_hex
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
