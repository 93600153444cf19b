//! `unseen identity list` and `unseen identity revoke`: the client identities in a domain
//! directory's `pki/`, and their revocation.
//!
//! `pki/revoked.json` is the source of truth for revocations; `pki/crl.pem` is the revocation
//! list the domain CA signs from it, which `unseen serve` reads when it starts (a running server
//! refuses a newly revoked identity once restarted). Revocations are not in the domain's audit
//! log yet: `logged` in `revoked.json` is kept for the start that will write them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use unseen_gateway::identity::{
    CertificateAuthority, Principal, principal_from_pem, serial_of_pem, utc_text, validity_of_pem,
};

use crate::client::emit;
use crate::domain_dir::{parse_principal, read_config};

/// The revocations of a domain, in `pki/`.
pub const REVOKED_FILE: &str = "revoked.json";
/// The revocation list the domain CA signs, in `pki/`.
pub const CRL_FILE: &str = "crl.pem";
/// Files in `pki/` that are not client identities.
const NOT_IDENTITIES: [&str; 3] = ["ca.pem", "server.pem", CRL_FILE];

/// List the client identities in a domain directory's `pki/`.
#[derive(Debug, Args)]
pub struct IdentityListArgs {
    /// The domain directory.
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Revoke a client identity: the domain CA signs a new revocation list (`pki/crl.pem`) that
/// `unseen serve` checks at every handshake once (re)started.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    unseen identity revoke ./domain developer:greenfin-analytics:analyst --reason \"left the company\"\n  \
    (restart `unseen serve ./domain` for a running server to refuse it)")]
pub struct IdentityRevokeArgs {
    /// The domain directory.
    dir: PathBuf,
    /// The identity: `ROLE:ORGANISATION:NAME`, or its certificate file.
    identity: String,
    /// Why it is revoked (kept in pki/revoked.json).
    #[arg(long)]
    reason: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `pki/revoked.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Revocations {
    /// The number of the last revocation list signed.
    pub crl_number: u64,
    /// Every revoked identity, oldest first.
    pub revoked: Vec<Revocation>,
}

/// One revoked identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revocation {
    /// `role:organisation:name`.
    pub principal: String,
    /// The certificate's serial, hex.
    pub serial: String,
    /// The certificate file, relative to the domain directory.
    pub file: String,
    /// When it was revoked, Unix seconds.
    pub revoked_at: i64,
    /// Why.
    pub reason: String,
    /// Whether the domain's audit log has its `identity.revoke` entry yet (always false so far).
    #[serde(default)]
    pub logged: bool,
}

impl Revocations {
    /// Reads `pki/revoked.json` in `dir`; none yet is an empty list.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("pki").join(REVOKED_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not a revocation list", path.display()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes `pki/revoked.json` in `dir` (through a temporary file, so it is never half written).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("pki").join(REVOKED_FILE);
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))
    }
}

#[derive(Debug, Serialize)]
struct IdentityEntry {
    principal: String,
    role: String,
    organisation: String,
    name: String,
    file: String,
    serial: String,
    not_before: String,
    not_after: String,
    expired: bool,
    revoked: bool,
}

/// `role:organisation:name`, as `--principal` and this command take it.
fn principal_text(principal: &Principal) -> String {
    format!("{}:{}:{}", principal.role.as_str(), principal.organisation, principal.name)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or(0)
}

/// Every client identity in `dir/pki`, by file name.
fn identities(dir: &Path, revocations: &Revocations) -> Result<Vec<IdentityEntry>> {
    let pki = dir.join("pki");
    let mut files = std::fs::read_dir(&pki)
        .with_context(|| format!("reading {}", pki.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "pem"))
        .filter(|path| !path.file_name().is_some_and(|name| NOT_IDENTITIES.iter().any(|skip| name == *skip)))
        .collect::<Vec<_>>();
    files.sort();
    let now = now();
    let mut entries = Vec::new();
    for path in files {
        let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let principal = principal_from_pem(&pem).with_context(|| format!("reading {}", path.display()))?;
        let (not_before, not_after) = validity_of_pem(&pem).with_context(|| format!("reading {}", path.display()))?;
        let serial = hex::encode(serial_of_pem(&pem)?);
        entries.push(IdentityEntry {
            principal: principal_text(&principal),
            role: principal.role.as_str().into(),
            organisation: principal.organisation.clone(),
            name: principal.name.clone(),
            file: format!("pki/{}", path.file_name().unwrap_or_default().to_string_lossy()),
            revoked: revocations.revoked.iter().any(|revoked| revoked.serial == serial),
            serial,
            not_before: utc_text(not_before),
            not_after: utc_text(not_after),
            expired: now > not_after,
        });
    }
    Ok(entries)
}

/// Runs `unseen identity list`.
pub fn list(args: IdentityListArgs) -> Result<ExitCode> {
    read_config(&args.dir)?;
    let entries = identities(&args.dir, &Revocations::read(&args.dir)?)?;
    emit(args.json, &entries, || {
        entries
            .iter()
            .map(|entry| {
                let state = match (entry.revoked, entry.expired) {
                    (true, _) => "revoked",
                    (false, true) => "expired",
                    (false, false) => "valid",
                };
                format!(
                    "{:<44} {:<8} until {}  serial {}  {}\n",
                    entry.principal, state, entry.not_after, entry.serial, entry.file
                )
            })
            .collect()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The certificate file `identity` names: a file, or the principal of one in `pki/`.
fn identity_file(dir: &Path, identity: &str) -> Result<PathBuf> {
    let pki = dir.join("pki");
    let as_path = Path::new(identity);
    if as_path.is_file() {
        let name = as_path.file_name().unwrap_or_default();
        if name == "server.pem" || name == "ca.pem" {
            bail!(
                "{identity} is the domain's {} certificate, not a client identity: it cannot be revoked here",
                if name == "ca.pem" { "CA" } else { "server" }
            );
        }
        return Ok(as_path.to_path_buf());
    }
    let principal: Principal = parse_principal(identity)
        .with_context(|| format!("\"{identity}\" is neither a certificate file nor a principal"))?;
    let entries = identities(dir, &Revocations::default())?;
    match entries.iter().find(|entry| entry.principal == principal_text(&principal)) {
        Some(entry) => Ok(dir.join(&entry.file)),
        None => {
            bail!(
                "no identity {} in {} (`unseen identity list {}` shows them)",
                principal_text(&principal),
                pki.display(),
                dir.display()
            )
        }
    }
}

/// Runs `unseen identity revoke`.
pub fn revoke(args: IdentityRevokeArgs) -> Result<ExitCode> {
    read_config(&args.dir)?;
    if args.reason.trim().is_empty() {
        bail!("--reason must say why the identity is revoked");
    }
    let pki = args.dir.join("pki");
    let key_path = pki.join("ca.key");
    if !key_path.exists() {
        bail!(
            "{} is absent: this domain uses your own CA; revoke the certificate with it and place its CRL at {}",
            key_path.display(),
            pki.join(CRL_FILE).display()
        );
    }
    let path = identity_file(&args.dir, &args.identity)?;
    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let ca_pem = std::fs::read_to_string(pki.join("ca.pem"))
        .with_context(|| format!("reading {}", pki.join("ca.pem").display()))?;
    let server_pem = std::fs::read_to_string(pki.join("server.pem")).unwrap_or_default();
    let serial = serial_of_pem(&pem).with_context(|| format!("reading {}", path.display()))?;
    if !server_pem.is_empty() && serial_of_pem(&server_pem).ok().as_ref() == Some(&serial) {
        bail!(
            "{} is the domain's server certificate, not a client identity: it cannot be revoked here",
            path.display()
        );
    }
    let principal = principal_from_pem(&pem).with_context(|| format!("reading {}", path.display()))?;
    if !unseen_gateway::identity::issued_by(&pem, &ca_pem)? {
        bail!("{} ({principal}) was not issued by this domain's CA: the gateway refuses it already", path.display());
    }
    let serial_hex = hex::encode(&serial);
    let mut revocations = Revocations::read(&args.dir)?;
    if let Some(earlier) = revocations.revoked.iter().find(|revoked| revoked.serial == serial_hex) {
        bail!(
            "the identity {} ({}) is already revoked, since {} ({})",
            principal_text(&principal),
            path.display(),
            utc_text(earlier.revoked_at),
            earlier.reason
        );
    }
    let file = path
        .strip_prefix(&args.dir)
        .map(|relative| relative.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.display().to_string());
    let revocation = Revocation {
        principal: principal_text(&principal),
        serial: serial_hex,
        file,
        revoked_at: now(),
        reason: args.reason.trim().to_string(),
        logged: false,
    };
    revocations.revoked.push(revocation.clone());
    revocations.crl_number += 1;
    let authority = CertificateAuthority::from_pem(&ca_pem, &std::fs::read_to_string(&key_path)?)?;
    let crl = sign(&authority, &revocations)?;
    revocations.write(&args.dir)?;
    let crl_path = pki.join(CRL_FILE);
    std::fs::write(&crl_path, crl).with_context(|| format!("writing {}", crl_path.display()))?;
    emit(args.json, &revocation, || {
        format!(
            "revoked {} (serial {}); {} lists it: restart `unseen serve {}` for a running server to refuse it\n",
            revocation.principal,
            revocation.serial,
            crl_path.display(),
            args.dir.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn sign(authority: &CertificateAuthority, revocations: &Revocations) -> Result<String> {
    let revoked = revocations
        .revoked
        .iter()
        .map(|revoked| Ok((hex::decode(&revoked.serial)?, revoked.revoked_at)))
        .collect::<Result<Vec<_>>>()?;
    Ok(authority.sign_crl(&revoked, revocations.crl_number)?)
}
