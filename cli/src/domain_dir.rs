//! `unseen init`, `unseen serve` and `unseen identity issue`: an operator's commands for the
//! domain directory itself.
//!
//! A domain directory holds `domain.json` (name, listen address, store, worker limits), `pki/`
//! (the CA, the server certificate, the client identities and `domain.pub`) and `state/` (the
//! domain's keys, data, modules, outputs, releases, audit log and, by default, the SQLite
//! metadata store).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use unseen_gateway::identity::{CertificateAuthority, Principal, Role, write_client_identity, write_domain_pki};
use unseen_gateway::{Domain, DomainOptions, TlsMaterial};

use crate::client::{DEFAULT_SERVER, emit};

/// The file in a domain directory that says how to serve it.
const CONFIG_FILE: &str = "domain.json";

/// How a domain is served; written by `unseen init`, read by `unseen serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainConfig {
    /// The domain's name: the audit log's origin and the checkpoint key name.
    pub name: String,
    /// The address the gateway listens on.
    pub listen: String,
    /// A PostgreSQL URL for the metadata store; absent keeps it in `state/metadata.sqlite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_url: Option<String>,
    /// Jobs running at once in the domain (0: the default).
    #[serde(default)]
    pub workers: usize,
    /// Jobs one organisation may run at once (0: the default).
    #[serde(default)]
    pub jobs_per_organisation: usize,
    /// Days audit entries are kept after what they describe is gone before `unseen audit
    /// prune` may drop their bodies (0: 183, six months, the least allowed).
    #[serde(default)]
    pub audit_retention_days: u32,
    /// How `unseen serve` writes its log to standard error: `human` (the default) or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// The log level or filter (`info`, `debug`, `unseen=debug,info`) when `RUST_LOG` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Where Prometheus scrapes `/metrics` over plain HTTP (e.g. `127.0.0.1:9464`); absent:
    /// no metrics endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
}

/// How the server's log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Create a domain directory: a CA (or your own), the server certificate, the domain signing
/// key and one client identity per `--principal`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    unseen init ./domain --name huzhou.unseen \\\n    \
    --principal provider:huzhou-data-bureau:registrar \\\n    \
    --principal developer:greenfin-analytics:analyst \\\n    \
    --principal operator:huzhou-data-group:reviewer \\\n    \
    --principal regulator:zhejiang-cac:inspector\n  \
    unseen serve ./domain")]
pub struct InitArgs {
    /// The directory to create (it must not hold a domain yet).
    dir: PathBuf,
    /// The domain's name, e.g. `huzhou.unseen`: the origin of its audit checkpoints.
    #[arg(long)]
    name: String,
    /// A client identity to issue, `ROLE:ORGANISATION:NAME` (role: provider, developer,
    /// operator or regulator); repeat for more.
    #[arg(long = "principal", value_name = "ROLE:ORGANISATION:NAME")]
    principals: Vec<String>,
    /// A host name or IP address the server certificate is also valid for (it always is for
    /// `localhost` and `127.0.0.1`); repeat for more.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// The address `unseen serve` listens on.
    #[arg(long, default_value = DEFAULT_SERVER)]
    listen: String,
    /// Keep the metadata in PostgreSQL (`postgres://user:password@host/db`) instead of SQLite.
    #[arg(long)]
    metadata_url: Option<String>,
    /// Your own CA certificate (PEM) to issue from, instead of a new CA; needs --ca-key.
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The private key (unencrypted PKCS#8 PEM) of --ca-cert.
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Serve a domain directory's gateway (mTLS) until interrupted (Ctrl-C or SIGTERM).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The domain directory `unseen init` created.
    dir: PathBuf,
    /// Listen here instead of the address in `domain.json` (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Use this metadata store instead of the one in `domain.json`.
    #[arg(long, env = "UNSEEN_METADATA_URL")]
    metadata_url: Option<String>,
    /// Jobs running at once in the domain.
    #[arg(long)]
    workers: Option<usize>,
    /// Jobs one organisation may run at once.
    #[arg(long)]
    jobs_per_organisation: Option<usize>,
    /// Announce the address as one JSON line (for programs that start the server).
    #[arg(long)]
    json: bool,
    /// The log on standard error: `human` or `json` (one object per line) [default: the
    /// `log_format` in `domain.json`, else human]. The level comes from `RUST_LOG` (default
    /// `info`).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Serve Prometheus metrics on this address over plain HTTP (`GET /metrics`), e.g.
    /// `127.0.0.1:9464`; keep it on loopback or a monitoring network [default: the
    /// `metrics_listen` in `domain.json`, else off].
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
}

/// Issue a client identity from the domain's CA (needs `pki/ca.key`).
#[derive(Debug, Args)]
pub struct IdentityIssueArgs {
    /// The domain directory.
    dir: PathBuf,
    /// `ROLE:ORGANISATION:NAME`, e.g. `developer:greenfin-analytics:analyst`.
    #[arg(long = "principal", value_name = "ROLE:ORGANISATION:NAME", required = true)]
    principals: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct IdentityFile {
    principal: String,
    role: String,
    cert: String,
    key: String,
}

#[derive(Debug, Serialize)]
struct InitReport {
    dir: String,
    name: String,
    listen: String,
    ca_cert: String,
    /// Absent when the operator brought their own CA.
    ca_key: Option<String>,
    server_cert: String,
    domain_public_key: String,
    identities: Vec<IdentityFile>,
}

/// `ROLE:ORGANISATION:NAME` → a principal.
pub(crate) fn parse_principal(text: &str) -> Result<Principal> {
    let mut parts = text.splitn(3, ':');
    let (Some(role), Some(organisation), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("--principal \"{text}\" is not ROLE:ORGANISATION:NAME, e.g. developer:greenfin-analytics:analyst");
    };
    let role: Role = role.trim().parse().map_err(|_| {
        anyhow!("--principal \"{text}\": \"{role}\" is not a role; use provider, developer, operator or regulator")
    })?;
    if organisation.trim().is_empty() || name.trim().is_empty() {
        bail!("--principal \"{text}\": the organisation and the name must not be empty");
    }
    Ok(Principal { organisation: organisation.trim().into(), name: name.trim().into(), role })
}

fn identity_file(principal: &Principal, paths: &unseen_gateway::identity::PemPaths) -> IdentityFile {
    IdentityFile {
        principal: principal.to_string(),
        role: principal.role.as_str().into(),
        cert: paths.cert.display().to_string(),
        key: paths.key.display().to_string(),
    }
}

/// Whether a database URL carries a password (`scheme://user:password@host/…`).
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').is_some_and(|(user_info, _)| user_info.contains(':'))
}

/// Writes a file readable by its owner only (0600): `domain.json` may name the metadata store.
fn write_owner_only(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// What a domain directory held before `unseen init` wrote to it.
struct WrittenByInit {
    dir: PathBuf,
    /// Whether the directory existed (an empty one, e.g. a mounted volume, is initialised in place).
    existed: bool,
    /// The entries init writes that were already there (left alone when init fails).
    present: Vec<&'static str>,
}

impl WrittenByInit {
    const ENTRIES: [&'static str; 3] = ["pki", "state", CONFIG_FILE];

    fn before(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            existed: dir.exists(),
            present: Self::ENTRIES.into_iter().filter(|entry| dir.join(entry).exists()).collect(),
        }
    }

    /// Best effort: the error that brought us here is the one to report.
    fn remove_what_init_wrote(&self) {
        if !self.existed {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        for entry in Self::ENTRIES.into_iter().filter(|entry| !self.present.contains(entry)) {
            let path = self.dir.join(entry);
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
}

/// Writes a domain's PKI, state and `domain.json`; returns the PKI's paths, whether the CA is
/// the operator's own, and the domain's public key (hex).
fn create_domain(
    args: &InitArgs,
    principals: &[Principal],
) -> Result<(unseen_gateway::identity::DomainPkiPaths, bool, String)> {
    let (authority, own_ca) = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => {
            let read =
                |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
            (CertificateAuthority::from_pem(&read(cert)?, &read(key)?)?, true)
        }
        _ => (CertificateAuthority::generate(&format!("{} domain CA", args.name))?, false),
    };
    let hosts: Vec<&str> = args.hosts.iter().map(String::as_str).collect();
    let pki_dir = args.dir.join("pki");
    let pki = write_domain_pki(&pki_dir, &authority, &hosts, principals)?;
    if own_ca {
        // The operator keeps their CA key; the domain directory holds only the certificate.
        std::fs::remove_file(&pki.ca_key).with_context(|| format!("removing {}", pki.ca_key.display()))?;
    }

    // Opening the domain once creates its signing key, metadata store and audit log.
    let state = args.dir.join("state");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let options = DomainOptions { metadata_url: args.metadata_url.clone(), ..DomainOptions::default() };
    let public_key = runtime.block_on(async {
        let domain = Domain::open_with(&state, &args.name, &options).await?;
        Ok::<_, anyhow::Error>(hex::encode(domain.public_key()))
    })?;
    std::fs::write(pki_dir.join("domain.pub"), format!("{public_key}\n"))?;
    let config = DomainConfig {
        name: args.name.clone(),
        listen: args.listen.clone(),
        metadata_url: args.metadata_url.clone(),
        workers: 0,
        jobs_per_organisation: 0,
        audit_retention_days: unseen_gateway::domain::MIN_AUDIT_RETENTION_DAYS,
        log_format: None,
        log_level: None,
        metrics_listen: None,
    };
    write_owner_only(&args.dir.join(CONFIG_FILE), &serde_json::to_vec_pretty(&config)?)?;
    Ok((pki, own_ca, public_key))
}

/// Runs `unseen init`.
pub fn init(args: InitArgs) -> Result<ExitCode> {
    let principals = args.principals.iter().map(|text| parse_principal(text)).collect::<Result<Vec<_>>>()?;
    if let Some(url) = &args.metadata_url
        && url_has_password(url)
    {
        bail!(
            "--metadata-url holds a password, which {CONFIG_FILE} would keep in clear text; give the URL \
             without it (postgres://USER@HOST:PORT/DATABASE) and the password in PGPASSWORD or a file named by \
             PGPASSFILE (see deploy/README.md), or pass the whole URL to `unseen serve` in UNSEEN_METADATA_URL"
        );
    }
    if args.dir.join(CONFIG_FILE).exists() {
        bail!("{} already holds a domain ({CONFIG_FILE} exists); choose an empty directory", args.dir.display());
    }
    if args.name.trim().is_empty() || args.name.chars().any(char::is_whitespace) {
        bail!("--name \"{}\" must be one word without spaces, e.g. huzhou.unseen", args.name);
    }
    // All or nothing: a failure part way (an unreachable store, a full disk) removes what this
    // init wrote, so the directory can be initialised again.
    let before = WrittenByInit::before(&args.dir);
    let (pki, own_ca, public_key) = match create_domain(&args, &principals) {
        Ok(created) => created,
        Err(error) => {
            before.remove_what_init_wrote();
            return Err(error);
        }
    };

    let report = InitReport {
        dir: args.dir.display().to_string(),
        name: args.name.clone(),
        listen: args.listen.clone(),
        ca_cert: pki.ca_cert.display().to_string(),
        ca_key: (!own_ca).then(|| pki.ca_key.display().to_string()),
        server_cert: pki.server.cert.display().to_string(),
        domain_public_key: public_key,
        identities: pki.identities.iter().map(|(principal, paths)| identity_file(principal, paths)).collect(),
    };
    emit(args.json, &report, || {
        let mut text = format!("created domain \"{}\" in {}\n", report.name, report.dir);
        text += &format!("  CA certificate   {}\n", report.ca_cert);
        match &report.ca_key {
            Some(key) => text += &format!("  CA key           {key}  (keep it offline: it mints identities)\n"),
            None => text += "  CA key           kept by you (your own CA)\n",
        }
        text += &format!("  server cert      {}\n", report.server_cert);
        text +=
            &format!("  domain key       {}  (releases and checkpoints verify under it)\n", report.domain_public_key);
        for identity in &report.identities {
            text += &format!("  identity         {:<44} {}\n", identity.principal, identity.cert);
        }
        text += &format!("\nnext: unseen serve {}", report.dir);
        if report.identities.is_empty() {
            text += &format!("\n      unseen identity issue {} --principal developer:ORGANISATION:NAME", report.dir);
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_config(dir: &Path) -> Result<DomainConfig> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!("reading {}: is {} a domain directory made by `unseen init`?", path.display(), dir.display())
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a domain configuration", path.display()))
}

fn read_pem(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// How long a stopping server waits, in all, for running guests to stop and requests in
/// flight to be answered before it exits anyway.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);
/// Of that, how long running guests have to stop once cancelled (they check every 50 ms).
const JOB_STOP_BOUND: Duration = Duration::from_secs(5);

/// Runs `unseen serve` until Ctrl-C or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let config = read_config(&args.dir)?;
    let listen = args.listen.clone().unwrap_or(config.listen.clone());
    let address: std::net::SocketAddr =
        listen.parse().with_context(|| format!("listen address \"{listen}\" is not host:port with an IP address"))?;
    let metrics_address = match args.metrics_listen.as_ref().or(config.metrics_listen.as_ref()) {
        Some(text) => Some(text.parse::<std::net::SocketAddr>().with_context(|| {
            format!("metrics address \"{text}\" is not host:port with an IP address, e.g. 127.0.0.1:9464")
        })?),
        None => None,
    };
    install_log(args.log_format.or(config.log_format).unwrap_or_default(), config.log_level.as_deref())?;
    let pki = args.dir.join("pki");
    let tls = TlsMaterial {
        ca_pem: read_pem(&pki.join("ca.pem"))?,
        cert_pem: read_pem(&pki.join("server.pem"))?,
        key_pem: read_pem(&pki.join("server.key"))?,
        // Revocations made while the server runs are refused from its next start.
        crl_pem: match pki.join(crate::identities::CRL_FILE) {
            path if path.exists() => Some(read_pem(&path)?),
            _ => None,
        },
    };
    let options = DomainOptions {
        metadata_url: args.metadata_url.clone().or(config.metadata_url.clone()),
        workers: args.workers.unwrap_or(config.workers),
        jobs_per_organisation: args.jobs_per_organisation.unwrap_or(config.jobs_per_organisation),
        audit_retention_days: config.audit_retention_days,
        hold_jobs: false,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let domain = Arc::new(
            Domain::open_with(&args.dir.join("state"), &config.name, &options)
                .await
                .with_context(|| format!("opening the domain in {}", args.dir.join("state").display()))?,
        );
        let mut server = unseen_gateway::serve(domain.clone(), address, &tls).await?;
        let metrics = match metrics_address {
            Some(address) => {
                if !address.ip().is_loopback() {
                    tracing::warn!(
                        "metrics on {address} are plain HTTP without authentication: keep that network private"
                    );
                }
                let metrics = unseen_gateway::serve_metrics(Arc::clone(domain.metrics()), address).await?;
                tracing::info!("metrics on http://{}/metrics", metrics.address);
                Some(metrics)
            }
            None => None,
        };
        let store = if options.metadata_url.is_some() { "PostgreSQL" } else { "SQLite" };
        tracing::info!(domain = %config.name, address = %server.address, metadata = store, "serving");
        if args.json {
            let mut announcement = serde_json::json!({
                "domain": config.name,
                "address": server.address.to_string(),
                "domain_public_key": hex::encode(domain.public_key()),
                "metadata": store,
            });
            if let Some(metrics) = &metrics {
                announcement["metrics"] = serde_json::Value::String(metrics.address.to_string());
            }
            println!("{announcement}");
        } else {
            println!(
                "unseen: domain \"{}\" serving on {} (mTLS; metadata in {store}); Ctrl-C stops it",
                config.name, server.address
            );
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        shutdown_signal().await?;

        // Stop admitting (health NOT_SERVING, no new connections or jobs), cancel the running
        // guests (marked interrupted and logged), then let requests in flight finish.
        let started = Instant::now();
        tracing::info!("stopping: running jobs are cancelled and marked interrupted; requests in flight finish first");
        server.stop_admitting().await;
        if let Err(error) = domain.stop(JOB_STOP_BOUND).await {
            tracing::error!(cause = %error, "marking the stopped jobs interrupted failed; the next start does it");
        }
        if !server.shutdown_within(SHUTDOWN_BOUND.saturating_sub(started.elapsed())).await? {
            tracing::warn!("requests still in flight after {} s were dropped", SHUTDOWN_BOUND.as_secs());
        }
        if let Some(metrics) = metrics {
            metrics.shutdown().await?;
        }
        tracing::info!("stopped in {:.1} s", started.elapsed().as_secs_f64());
        Ok::<_, anyhow::Error>(())
    })?;
    // A guest thread that ignored its cancellation is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(ExitCode::SUCCESS)
}

/// Installs the server's log: `format` on standard error, at the level `RUST_LOG` names, else
/// `level` from `domain.json`, else `info`.
fn install_log(format: LogFormat, level: Option<&str>) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => {
            EnvFilter::try_new(&filter).with_context(|| format!("RUST_LOG \"{filter}\" is not a log filter"))?
        }
        _ => {
            let level = level.unwrap_or("info");
            EnvFilter::try_new(level)
                .with_context(|| format!("log_level \"{level}\" in {CONFIG_FILE} is not a log filter"))?
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
    installed.map_err(|error| anyhow!("installing the log: {error}"))
}

async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Runs `unseen identity issue`.
pub fn issue(args: IdentityIssueArgs) -> Result<ExitCode> {
    let principals = args.principals.iter().map(|text| parse_principal(text)).collect::<Result<Vec<_>>>()?;
    read_config(&args.dir)?;
    let pki = args.dir.join("pki");
    let key_path = pki.join("ca.key");
    if !key_path.exists() {
        bail!(
            "{} is absent: this domain uses your own CA; issue identities with it (the client certificate's \
             O is the organisation, OU the role, CN the name)",
            key_path.display()
        );
    }
    let authority = CertificateAuthority::from_pem(&read_pem(&pki.join("ca.pem"))?, &read_pem(&key_path)?)?;
    let mut issued = Vec::new();
    for principal in &principals {
        let paths = write_client_identity(&pki, &authority, principal)?;
        issued.push(identity_file(principal, &paths));
    }
    emit(args.json, &issued, || {
        issued.iter().map(|identity| format!("issued {:<44} {}\n", identity.principal, identity.cert)).collect()
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{parse_principal, url_has_password};
    use unseen_gateway::identity::Role;

    #[test]
    fn principals_are_role_organisation_name_and_bad_ones_say_what_is_wrong() {
        let principal = parse_principal("developer:greenfin-analytics:analyst:2").expect("parses");
        assert_eq!(principal.role, Role::Developer);
        assert_eq!(principal.organisation, "greenfin-analytics");
        assert_eq!(principal.name, "analyst:2");
        let error = parse_principal("auditor:x:y").expect_err("no such role").to_string();
        assert!(error.contains("\"auditor\" is not a role"), "{error}");
        assert!(
            parse_principal("developer:acme").expect_err("two parts").to_string().contains("ROLE:ORGANISATION:NAME")
        );
        assert!(parse_principal("developer: :y").is_err());
    }

    #[test]
    fn a_url_has_a_password_only_when_its_user_info_holds_a_colon() {
        assert!(url_has_password("postgres://unseen:secret@db:5432/unseen"));
        assert!(url_has_password("postgresql://u:@db/unseen"));
        assert!(!url_has_password("postgres://unseen@db:5432/unseen"));
        assert!(!url_has_password("postgres://db:5432/unseen"));
        assert!(!url_has_password("postgres://unseen@db/unseen?options=a:b@c"));
    }
}
