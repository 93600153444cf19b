//! What every client command shares: where the gateway is, who is calling, how a refusal is
//! explained, and how progress and results are shown.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;
use tonic::transport::Channel;
use unseen_gateway::identity::{Principal, Role, issued_by, principal_from_pem, utc_text, validity_of_pem};
use unseen_gateway::server::TlsFailure;
use unseen_gateway::{GatewayError, TlsMaterial};

/// The gateway an address defaults to: `unseen serve` on the same machine.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7443";

/// How a client command reaches the domain; every option may come from the environment.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The gateway, `host:port`; the server certificate must name the host.
    #[arg(long, env = "UNSEEN_SERVER", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// Your identity: the certificate path without its extension (`pki/greenfin-analytics-developer-analyst`
    /// reads `.pem` and `.key`), as `unseen init` or `unseen identity issue` wrote it.
    #[arg(long, env = "UNSEEN_IDENTITY", global = true)]
    pub identity: Option<PathBuf>,
    /// The domain's CA certificate [default: `ca.pem` beside the identity].
    #[arg(long, env = "UNSEEN_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// The domain's Ed25519 public key (hex, or a file holding it) that releases and audit
    /// checkpoints must verify under [default: `domain.pub` beside the CA certificate].
    #[arg(long, env = "UNSEEN_DOMAIN_KEY", global = true)]
    pub domain_key: Option<String>,
    /// Print JSON instead of text, for programs.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A connection to the gateway as one principal.
pub struct Client {
    /// The channel the role clients are built on.
    pub channel: Channel,
    /// Who the certificate says the caller is.
    pub principal: Principal,
    /// The address dialled.
    pub server: String,
    /// Where the CA certificate was read from (a domain key may sit beside it).
    ca_path: PathBuf,
    /// Where the identity's certificate was read from, and its PEM and the CA's, to explain a
    /// refused handshake.
    cert_path: PathBuf,
    cert_pem: String,
    ca_pem: String,
    /// The `--domain-key` option, if given.
    domain_key: Option<String>,
    /// JSON output was asked for.
    pub json: bool,
}

impl ClientArgs {
    fn identity_paths(&self) -> Result<(PathBuf, PathBuf, PathBuf)> {
        let stem = self.identity.as_ref().ok_or_else(|| {
            anyhow!(
                "no identity: pass --identity PATH (or set UNSEEN_IDENTITY) to the certificate `unseen init` wrote \
                 for you, without its extension: DOMAIN/pki/ORGANISATION-ROLE-NAME (list DOMAIN/pki to see them)"
            )
        })?;
        let stem = match stem.extension().and_then(|extension| extension.to_str()) {
            Some("pem" | "key") => stem.with_extension(""),
            _ => stem.clone(),
        };
        let cert = with_suffix(&stem, "pem");
        let key = with_suffix(&stem, "key");
        let ca = match &self.ca {
            Some(ca) => ca.clone(),
            None => stem.parent().unwrap_or(Path::new(".")).join("ca.pem"),
        };
        Ok((cert, key, ca))
    }
}

impl ClientArgs {
    /// The domain key releases and checkpoints must verify under: `--domain-key` (hex or a
    /// file), else `domain.pub` beside the CA certificate. None when neither is there.
    pub fn trusted_domain_key(&self) -> Result<Option<[u8; 32]>> {
        let ca = match &self.ca {
            Some(ca) => Some(ca.clone()),
            None => self.identity_paths().ok().map(|(_, _, ca)| ca),
        };
        trusted_key(self.domain_key.as_deref(), ca.as_deref())
    }
}

fn trusted_key(option: Option<&str>, ca_path: Option<&Path>) -> Result<Option<[u8; 32]>> {
    let text = match option {
        Some(value) if Path::new(value).is_file() => read_text(Path::new(value), "the domain key")?,
        Some(value) => value.to_string(),
        None => {
            let Some(ca_path) = ca_path else { return Ok(None) };
            let beside = ca_path.parent().unwrap_or(Path::new(".")).join("domain.pub");
            if !beside.is_file() {
                return Ok(None);
            }
            read_text(&beside, "the domain key")?
        }
    };
    Ok(Some(crate::verify::public_key(&text).context("the domain key")?))
}

/// `path` with `.suffix` appended (not replacing a dot already in a file name like `acme.cn-…`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut text = path.as_os_str().to_owned();
    text.push(".");
    text.push(suffix);
    PathBuf::from(text)
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

impl Client {
    /// Reads the identity and connects; the caller's role must be `role` (a client-side check
    /// that gives a clearer message than the gateway's PERMISSION_DENIED).
    pub async fn connect(args: &ClientArgs, role: Role, command: &str) -> Result<Self> {
        Self::connect_as(args, &[role], command).await
    }

    /// [`Client::connect`] for a command more than one role may run.
    pub async fn connect_as(args: &ClientArgs, roles: &[Role], command: &str) -> Result<Self> {
        let (cert_path, key_path, ca_path) = args.identity_paths()?;
        let cert_pem = read_text(&cert_path, "the identity certificate")?;
        let key_pem = read_text(&key_path, "the identity key")?;
        let ca_pem = read_text(&ca_path, "the domain CA certificate (set it with --ca)")?;
        let principal = principal_from_pem(&cert_pem).with_context(|| format!("reading {}", cert_path.display()))?;
        if !roles.contains(&principal.role) {
            let needed: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
            bail!(
                "`unseen {command}` is for the {} role; your identity {} holds the {} role. \
                 Use an identity of that role (--identity).",
                needed.join(" or "),
                principal,
                principal.role
            );
        }
        check_validity(&cert_pem, &principal, &cert_path)?;
        let tls = TlsMaterial { ca_pem, cert_pem, key_pem, crl_pem: None };
        let channel = match unseen_gateway::connect(&args.server, &tls).await {
            Ok(channel) => channel,
            Err(GatewayError::Unauthenticated(why)) => {
                let refused = not_issued_by(&tls, &principal, &cert_path, &ca_path).unwrap_or_else(|| {
                    format!(
                        "{why}. The CA you trust is {}: are it and your identity from this domain?",
                        ca_path.display()
                    )
                });
                bail!("cannot connect to the gateway at {}: {refused}", args.server)
            }
            Err(error) => bail!(
                "cannot reach the gateway at {}: {error:#}. Is `unseen serve` running there, and is --server right?",
                args.server
            ),
        };
        let TlsMaterial { ca_pem, cert_pem, .. } = tls;
        Ok(Self {
            channel,
            principal,
            server: args.server.clone(),
            ca_path,
            cert_path,
            cert_pem,
            ca_pem,
            domain_key: args.domain_key.clone(),
            json: args.json,
        })
    }

    /// The domain key releases and checkpoints must verify under (see
    /// [`ClientArgs::trusted_domain_key`]).
    pub fn domain_key(&self) -> Result<Option<[u8; 32]>> {
        trusted_key(self.domain_key.as_deref(), Some(&self.ca_path))
    }

    /// Explains a refusal from the gateway: what it said, and what to do about it.
    pub fn refused(&self, what: &str, status: tonic::Status) -> anyhow::Error {
        use tonic::Code;
        // With TLS 1.3 the gateway judges the client's certificate after the client thinks the
        // handshake is done, so its refusal arrives with the first call, mostly as a
        // connection that ended ("operation was canceled") without the TLS alert.
        if let Some(failure) = unseen_gateway::server::tls_failure(&status) {
            return anyhow!("{what} failed: {}", self.handshake_refused(failure));
        }
        if matches!(status.code(), Code::Cancelled | Code::Unknown | Code::Unavailable)
            && let Some(foreign) = self.not_issued_by_the_ca()
        {
            return anyhow!("{what} failed: {foreign}");
        }
        let message = status.message();
        let hint = match status.code() {
            Code::PermissionDenied => format!(" (you are {})", self.principal),
            Code::Unauthenticated => {
                " (the gateway did not accept your certificate: check --identity and that it was issued by this \
                 domain's CA)"
                    .to_string()
            }
            Code::Unavailable => {
                format!(" (the gateway at {} is not answering: is `unseen serve` running?)", self.server)
            }
            Code::DeadlineExceeded => " (the gateway took too long; try again)".to_string(),
            // The gateway refusing the certificate mid-connection surfaces as either.
            code if code == Code::Cancelled || (code == Code::Unknown && message == "transport error") => format!(
                " (the connection to {} ended before an answer: the gateway stopped, or refused your identity {} — \
                 it may have been revoked; the gateway's log says which)",
                self.server, self.principal
            ),
            _ => String::new(),
        };
        anyhow!("{what} refused: {message}{hint}")
    }
}

impl Client {
    /// Whether this identity was issued by another CA than the one `--ca` names, and so why.
    fn not_issued_by_the_ca(&self) -> Option<String> {
        let tls = TlsMaterial {
            ca_pem: self.ca_pem.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pem: String::new(),
            crl_pem: None,
        };
        not_issued_by(&tls, &self.principal, &self.cert_path, &self.ca_path)
    }

    /// Why the gateway refused the handshake, with what this side can tell about its own
    /// identity.
    fn handshake_refused(&self, failure: TlsFailure) -> String {
        if let Some(foreign) = self.not_issued_by_the_ca() {
            return foreign;
        }
        match failure {
            TlsFailure::GatewayCertificate(why) => format!(
                "the gateway's certificate is not one the domain CA in {} issued for {}: {why}",
                self.ca_path.display(),
                self.server
            ),
            TlsFailure::CertificateRefused(alert) if alert == "CertificateRevoked" => format!(
                "the gateway at {} refused your identity {} ({}): it was revoked (TLS alert {alert}); \
                 ask the domain's operator for a new one",
                self.server,
                self.principal,
                self.cert_path.display()
            ),
            TlsFailure::CertificateRefused(alert) => format!(
                "the gateway at {} refused your identity {} ({}; TLS alert {alert}): it may have been revoked, \
                 or the gateway's clock disagrees with its validity; ask the domain's operator",
                self.server,
                self.principal,
                self.cert_path.display()
            ),
        }
    }
}

/// Refuses an identity outside its validity period before connecting: the gateway would refuse
/// the handshake, and the client would only see the connection fail.
fn check_validity(cert_pem: &str, principal: &Principal, cert_path: &Path) -> Result<()> {
    let (not_before, not_after) =
        validity_of_pem(cert_pem).with_context(|| format!("reading {}", cert_path.display()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or(0);
    if now > not_after {
        bail!(
            "your identity {principal} ({}) expired on {}; ask the domain's operator for a new one \
             (`unseen identity issue DOMAIN --principal ...`)",
            cert_path.display(),
            utc_text(not_after)
        );
    }
    if now < not_before {
        bail!(
            "your identity {principal} ({}) is not valid until {}; check this machine's clock",
            cert_path.display(),
            utc_text(not_before)
        );
    }
    Ok(())
}

/// The explanation when the identity was not issued by the CA the client trusts as the
/// domain's (so the gateway, which trusts only that CA, refuses it); None when it was.
fn not_issued_by(tls: &TlsMaterial, principal: &Principal, cert_path: &Path, ca_path: &Path) -> Option<String> {
    match issued_by(&tls.cert_pem, &tls.ca_pem) {
        Ok(false) => Some(format!(
            "your identity {principal} ({}) was not issued by this domain's CA ({}); the gateway accepts only \
             identities its CA issued: use one from this domain's pki/, or check --ca",
            cert_path.display(),
            ca_path.display()
        )),
        _ => None,
    }
}

/// Something a command prints: its text for people, its JSON for programs.
pub fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        let text = text();
        if !text.is_empty() {
            println!("{}", text.trim_end());
        }
    }
    Ok(())
}

/// A one-line progress display on standard error, shown only to a person at a terminal (never
/// with `--json`, never into a pipe or a log).
pub struct Progress {
    enabled: bool,
    started: Instant,
    shown: bool,
}

impl Progress {
    pub fn new(json: bool) -> Self {
        Self { enabled: !json && std::io::stderr().is_terminal(), started: Instant::now(), shown: false }
    }

    /// Replaces the line with `text` and the time since the start.
    pub fn show(&mut self, text: &str) {
        if self.enabled {
            let seconds = self.started.elapsed().as_secs_f64();
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{text} ({seconds:.1} s)");
            let _ = stderr.flush();
            self.shown = true;
        }
    }

    /// A bar for `done` of `total` bytes.
    pub fn bytes(&mut self, label: &str, done: u64, total: u64) {
        if self.enabled {
            const WIDTH: u64 = 24;
            let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
            let bar = format!("{}{}", "█".repeat(filled), "·".repeat(WIDTH as usize - filled));
            self.show(&format!("{label} {bar} {} / {}", mebibytes(done), mebibytes(total)));
        }
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.shown {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// The name an enum has on the wire: its serde name (`important`, `person`, `subject`).
pub fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|value| value.as_str().map(str::to_string)).unwrap_or_default()
}

/// A JSON field that holds JSON text, embedded as a value (or as the text if it does not parse).
pub fn embedded_json(text: &str) -> serde_json::Value {
    if text.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["analyst".into()]).expect("params");
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().expect("a key");
        params.self_signed(&key).expect("a certificate").pem()
    }

    #[test]
    fn an_identity_outside_its_validity_is_named_before_connecting() {
        let principal = Principal { organisation: "acme".into(), name: "ann".into(), role: Role::Developer };
        let path = Path::new("pki/acme-developer-ann.pem");
        let expired = check_validity(&certificate((2020, 1, 1), (2021, 1, 1)), &principal, path).expect_err("expired");
        assert!(
            expired.to_string().contains(
                "your identity acme/ann (developer) (pki/acme-developer-ann.pem) expired on 2021-01-01 00:00:00 UTC"
            ),
            "{expired}"
        );
        let early = check_validity(&certificate((2999, 1, 1), (3000, 1, 1)), &principal, path).expect_err("early");
        assert!(early.to_string().contains("is not valid until 2999-01-01 00:00:00 UTC"), "{early}");
        check_validity(&certificate((2020, 1, 1), (2999, 1, 1)), &principal, path).expect("valid now");
    }
}
