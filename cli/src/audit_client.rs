//! `unseen audit …`: the audit log (行为留痕、责任可究) as a regulator works with it. Every
//! checkpoint is verified under the domain key before anything is shown as proved, and every
//! proof is checked here, on the regulator's side, not taken from the gateway's word.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use unseen_audit::merkle::{self, Hash};
use unseen_audit::{Checkpoint, Entry};
use unseen_gateway::identity::Role;
use unseen_proto::v1 as pb;
use unseen_proto::v1::regulator_client::RegulatorClient;

use crate::client::{Client, ClientArgs, emit};

/// The audit log, online (regulator) and offline.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// The latest signed checkpoint (C2SP signed note), verified under the domain key.
    Checkpoint {
        /// Also save it here, to prove later that the log only grew (`audit prove --since`).
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// The newest entries.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        count: u64,
    },
    /// Entries about one object (a job, grant, egress request, release…), or an index range.
    Show {
        /// The object's id, e.g. `r-1`.
        #[arg(required_unless_present = "range", conflicts_with = "range")]
        object: Option<String>,
        /// Entries `START..END` (END excluded), e.g. `0..50`.
        #[arg(long)]
        range: Option<String>,
    },
    /// Prove that an entry is in the log (inclusion), or that the log extends a checkpoint
    /// saved earlier (consistency). Proofs are checked here against the signed checkpoint.
    Prove {
        /// The entry's index.
        #[arg(required_unless_present = "since", conflicts_with = "since")]
        index: Option<u64>,
        /// A checkpoint saved earlier (`audit checkpoint --save`).
        #[arg(long)]
        since: Option<PathBuf>,
    },
    /// Export the log (or a range of it) with a signed checkpoint, for offline verification.
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Only entries `START..END` (END excluded), e.g. `100..200`; the export still proves
        /// where they sit in the whole log.
        #[arg(long)]
        range: Option<String>,
    },
    /// Prune the bodies of the oldest entries past the retention period (operators; at least
    /// six months after what they describe is gone). Leaf hashes stay, so every checkpoint and
    /// proof still verifies; the prune is itself logged.
    Prune {
        /// Prune only entries older than this day, `YYYY-MM-DD` (UTC) [default: as far as the
        /// retention period allows].
        #[arg(long)]
        before: Option<String>,
        /// Why; recorded in the log.
        #[arg(long)]
        reason: String,
    },
    /// Verify an export offline (docs/audit-format.md); needs only the file and the domain key.
    Verify {
        /// The export file.
        export: PathBuf,
        /// The domain's Ed25519 public key, hex [default: --domain-key, or `domain.pub` beside
        /// the CA certificate].
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// Runs `unseen audit …`.
pub fn run(args: AuditArgs) -> Result<ExitCode> {
    if let AuditCommand::Verify { export, public_key } = &args.command {
        let key = match public_key {
            Some(key) => key.clone(),
            None => hex::encode(
                args.client.trusted_domain_key()?.ok_or_else(|| anyhow!("give the domain key with --public-key"))?,
            ),
        };
        return crate::verify::run(crate::verify::VerifyCommand::Audit {
            export: export.clone(),
            public_key: key,
            json: args.client.json,
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let AuditCommand::Prune { before, reason } = &args.command {
        let before = before.as_deref().map(day_start_unix_ms).transpose()?;
        return runtime.block_on(prune(&args.client, before, reason));
    }
    runtime.block_on(online(args))
}

async fn prune(args: &ClientArgs, before_unix_ms: Option<i64>, reason: &str) -> Result<ExitCode> {
    let client = Client::connect(args, Role::Operator, "audit prune").await?;
    let mut rpc = unseen_proto::v1::operator_client::OperatorClient::new(client.channel.clone());
    let reply = rpc
        .prune_audit(pb::PruneAuditRequest { before_unix_ms: before_unix_ms.unwrap_or(0), reason: reason.into() })
        .await
        .map_err(|status| client.refused("pruning the audit log", status))?
        .into_inner();
    let value = json!({
        "pruned": reply.pruned, "newly_pruned": reply.newly_pruned, "cutoff_unix_ms": reply.cutoff_unix_ms,
        "retention_days": reply.retention_days, "stopped_at": reply.stopped_at,
    });
    emit(client.json, &value, || {
        format!(
            "pruned {} entries (entries before #{} now keep only their leaf hashes); cutoff {}, retention {} days; stopped at {}",
            reply.newly_pruned,
            reply.pruned,
            utc(reply.cutoff_unix_ms),
            reply.retention_days,
            reply.stopped_at
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Milliseconds since the Unix epoch at 00:00 UTC of `YYYY-MM-DD`.
fn day_start_unix_ms(text: &str) -> Result<i64> {
    let invalid = || anyhow!("--before \"{text}\" is not a day as YYYY-MM-DD");
    let mut parts = text.split('-').map(|part| part.parse::<i64>().map_err(|_| invalid()));
    let (year, month, day) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(year), Some(month), Some(day), None) => (year?, month?, day?),
        _ => return Err(invalid()),
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(invalid());
    }
    // Days from a civil date (Howard Hinnant's algorithm), the inverse of `utc`.
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Ok((era * 146_097 + day_of_era - 719_468) * 86_400_000)
}

struct Regulator {
    client: Client,
    rpc: RegulatorClient<tonic::transport::Channel>,
    key: [u8; 32],
}

impl Regulator {
    async fn checkpoint(&mut self) -> Result<(String, Checkpoint)> {
        let reply = self
            .rpc
            .latest_checkpoint(pb::CheckpointRequest {})
            .await
            .map_err(|status| self.client.refused("the checkpoint", status))?
            .into_inner();
        let checkpoint = verify_note(&reply.checkpoint, &self.key)?;
        Ok((reply.checkpoint, checkpoint))
    }

    async fn entries(&mut self, request: pb::AuditEntriesRequest) -> Result<Vec<pb::AuditEntry>> {
        Ok(self
            .rpc
            .audit_entries(request)
            .await
            .map_err(|status| self.client.refused("the entries", status))?
            .into_inner()
            .entries)
    }

    async fn inclusion(&mut self, index: u64, size: u64) -> Result<Vec<Hash>> {
        let reply = self
            .rpc
            .inclusion_proof(pb::InclusionProofRequest { index, size })
            .await
            .map_err(|status| self.client.refused(&format!("the inclusion proof of entry {index}"), status))?;
        hashes(reply.into_inner())
    }
}

/// A checkpoint note verified under `key`; its signer's name is its origin (the domain name).
fn verify_note(note: &str, key: &[u8; 32]) -> Result<Checkpoint> {
    let origin = note.lines().next().unwrap_or_default();
    unseen_audit::verify_checkpoint(note, origin, key)
        .with_context(|| "the checkpoint does not verify under the domain key: do not trust this log")
}

fn hashes(reply: pb::ProofReply) -> Result<Vec<Hash>> {
    reply
        .hashes
        .into_iter()
        .map(|hash| <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| anyhow!("a proof hash is not 32 bytes")))
        .collect()
}

async fn online(args: AuditArgs) -> Result<ExitCode> {
    let client = Client::connect(&args.client, Role::Regulator, "audit").await?;
    let key = client.domain_key()?.ok_or_else(|| {
        anyhow!("the domain key is needed to check checkpoints: pass --domain-key (hex or a file with it)")
    })?;
    let rpc = RegulatorClient::new(client.channel.clone())
        .max_decoding_message_size(unseen_gateway::server::MAX_MESSAGE_BYTES);
    let mut regulator = Regulator { client, rpc, key };
    let json = regulator.client.json;
    match args.command {
        AuditCommand::Checkpoint { save } => {
            let (note, checkpoint) = regulator.checkpoint().await?;
            if let Some(path) = &save {
                std::fs::write(path, &note).with_context(|| format!("writing {}", path.display()))?;
            }
            let value = json!({
                "origin": checkpoint.origin, "size": checkpoint.size, "root": hex::encode(checkpoint.root),
                "note": note, "verified": true,
            });
            emit(json, &value, || {
                let saved = save.as_ref().map(|path| format!("\nsaved to {}", path.display())).unwrap_or_default();
                format!("{}verified under the domain key: {} entries{saved}", note, checkpoint.size)
            })?;
        }
        AuditCommand::Tail { count } => {
            let (_, checkpoint) = regulator.checkpoint().await?;
            let start = checkpoint.size.saturating_sub(count);
            let entries = regulator
                .entries(pb::AuditEntriesRequest { start, end: checkpoint.size, object_id: String::new() })
                .await?;
            show_entries(json, &entries)?;
        }
        AuditCommand::Show { object, range } => {
            let request = match (object, range) {
                (Some(object), _) => pb::AuditEntriesRequest { start: 0, end: 0, object_id: object },
                (None, Some(range)) => {
                    let (start, end) = parse_range(&range)?;
                    pb::AuditEntriesRequest { start, end, object_id: String::new() }
                }
                (None, None) => bail!("name an object id or a --range"),
            };
            let entries = regulator.entries(request).await?;
            show_entries(json, &entries)?;
        }
        AuditCommand::Prove { index: Some(index), .. } => {
            let (_, checkpoint) = regulator.checkpoint().await?;
            if index >= checkpoint.size {
                bail!("entry {index} is not in the log: the latest checkpoint has {} entries", checkpoint.size);
            }
            let entry = regulator
                .entries(pb::AuditEntriesRequest { start: index, end: index + 1, object_id: String::new() })
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("the gateway returned no entry {index}"))?;
            let leaf = merkle::leaf_hash(entry.canonical_json.as_bytes());
            let proof = regulator.inclusion(index, checkpoint.size).await?;
            if !merkle::verify_inclusion(index, checkpoint.size, &leaf, &proof, &checkpoint.root) {
                bail!("entry {index} is NOT proved included in the signed log of {} entries", checkpoint.size);
            }
            let value = json!({
                "index": index, "size": checkpoint.size, "root": hex::encode(checkpoint.root),
                "leaf_hash": hex::encode(leaf), "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                "entry": serde_json::from_str::<Value>(&entry.canonical_json)?, "verified": true,
            });
            emit(json, &value, || {
                format!(
                    "entry {index} is included in the signed log of {} entries (root {}; proof of {} hashes checked)\n{}",
                    checkpoint.size,
                    hex::encode(checkpoint.root),
                    proof.len(),
                    entry_line(index, &entry.canonical_json)
                )
            })?;
        }
        AuditCommand::Prove { since: Some(path), .. } => {
            let old_note = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let old = verify_note(&old_note, &regulator.key).with_context(|| format!("{}", path.display()))?;
            let (_, new) = regulator.checkpoint().await?;
            if new.size < old.size {
                bail!("the log shrank: {} entries now, {} at the saved checkpoint", new.size, old.size);
            }
            let proof = hashes(
                regulator
                    .rpc
                    .consistency_proof(pb::ConsistencyProofRequest { old_size: old.size, new_size: new.size })
                    .await
                    .map_err(|status| regulator.client.refused("the consistency proof", status))?
                    .into_inner(),
            )?;
            if !merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof) {
                bail!(
                    "the log of {} entries does NOT extend the saved checkpoint of {}: history was rewritten",
                    new.size,
                    old.size
                );
            }
            let value = json!({
                "old_size": old.size, "new_size": new.size, "old_root": hex::encode(old.root),
                "new_root": hex::encode(new.root), "verified": true,
            });
            emit(json, &value, || {
                format!(
                    "the log of {} entries extends the saved checkpoint of {} entries: nothing before it changed",
                    new.size, old.size
                )
            })?;
        }
        AuditCommand::Prove { .. } => bail!("name an entry index or --since CHECKPOINT"),
        AuditCommand::Export { out, range } => {
            let (start, end) = range.as_deref().map(parse_range).transpose()?.unwrap_or((0, 0));
            let reply = regulator
                .rpc
                .export_audit(pb::ExportAuditRequest { start, end })
                .await
                .map_err(|status| regulator.client.refused("the export", status))?
                .into_inner();
            let export: unseen_audit::Export =
                serde_json::from_str(&reply.export_json).context("the gateway's export is not an audit export")?;
            let verified = unseen_audit::verify_export(&export, &regulator.key)?;
            write_file(&out, reply.export_json.as_bytes())?;
            let value = json!({
                "file": out.display().to_string(), "size": verified.size, "root": verified.root_hex,
                "first": verified.first, "entries": verified.entries,
            });
            emit(json, &value, || {
                format!(
                    "exported entries #{}..#{} of {} to {} (verified: root {})\ncheck it anywhere: unseen audit verify {} --public-key {}",
                    verified.first,
                    verified.first + verified.entries,
                    verified.size,
                    out.display(),
                    verified.root_hex,
                    out.display(),
                    hex::encode(regulator.key)
                )
            })?;
        }
        AuditCommand::Verify { .. } | AuditCommand::Prune { .. } => unreachable!("handled before connecting"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so an interrupted export
/// never leaves a half-written file under the final name.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))
}

fn parse_range(text: &str) -> Result<(u64, u64)> {
    let (start, end) =
        text.split_once("..").ok_or_else(|| anyhow!("--range \"{text}\" is not START..END, e.g. 0..50"))?;
    let number =
        |part: &str| part.trim().parse::<u64>().map_err(|_| anyhow!("--range \"{text}\": \"{part}\" is not a number"));
    let (start, end) = (number(start)?, number(end)?);
    if end <= start {
        bail!("--range \"{text}\" is empty: END must be greater than START");
    }
    Ok((start, end))
}

fn show_entries(json: bool, entries: &[pb::AuditEntry]) -> Result<()> {
    let value: Vec<Value> = entries
        .iter()
        .map(|entry| {
            json!({
                "index": entry.index, "leaf_hash": entry.leaf_hash_hex,
                "entry": serde_json::from_str::<Value>(&entry.canonical_json).unwrap_or(Value::Null),
            })
        })
        .collect();
    emit(json, &value, || {
        if entries.is_empty() {
            return "no entries".into();
        }
        entries.iter().map(|entry| entry_line(entry.index, &entry.canonical_json) + "\n").collect()
    })
}

/// One entry on one line: when, who, what, on what, the decision and why.
fn entry_line(index: u64, canonical_json: &str) -> String {
    match Entry::from_canonical_bytes(canonical_json.as_bytes()) {
        Ok(entry) => {
            let grant = entry.grant.map(|grant| format!(" [{grant}]")).unwrap_or_default();
            let reason = if entry.reason.is_empty() { String::new() } else { format!(" — {}", entry.reason) };
            format!(
                "#{index:<6} {} {}/{} ({}) {} {} {}{grant}: {}{reason}",
                utc(entry.time_unix_ms),
                entry.organisation,
                entry.principal,
                entry.role,
                entry.action,
                entry.object_kind,
                entry.object_id,
                entry.decision
            )
        }
        Err(_) => format!("#{index:<6} {canonical_json}"),
    }
}

/// `YYYY-MM-DD HH:MM:SSZ` for milliseconds since the Unix epoch (proleptic Gregorian, UTC).
pub(crate) fn utc(unix_ms: i64) -> String {
    let seconds = unix_ms.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::{day_start_unix_ms, parse_range, utc};

    #[test]
    fn times_are_shown_in_utc() {
        for day in ["1970-01-01", "2000-02-29", "2026-11-25", "2027-03-01"] {
            assert_eq!(utc(day_start_unix_ms(day).expect("a day")), format!("{day} 00:00:00Z"));
        }
        assert!(day_start_unix_ms("2026-13-01").is_err() && day_start_unix_ms("26-11").is_err());
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_795_651_199_000), "2026-11-25 23:59:59Z");
    }

    #[test]
    fn ranges_are_start_dot_dot_end() {
        assert_eq!(parse_range("0..50").expect("range"), (0, 50));
        assert!(parse_range("5..5").is_err());
        assert!(parse_range("x..5").expect_err("not a number").to_string().contains("\"x\""));
    }
}
