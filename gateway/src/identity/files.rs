//! The PKI on disk: where a domain's CA, server certificate and client identities are written,
//! with private keys readable by their owner only.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{CertificateAuthority, IdentityError, LOCAL_SERVER_HOSTS, Pem, Principal};

/// Where [`write_domain_pki`] put a certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPaths {
    /// The certificate (`.pem`).
    pub cert: PathBuf,
    /// Its private key (`.key`, readable by the owner only).
    pub key: PathBuf,
}

/// The files of a domain's PKI, so a caller can print them or point a server and clients at them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPkiPaths {
    /// The CA certificate every party trusts (`ca.pem`).
    pub ca_cert: PathBuf,
    /// The CA private key (`ca.key`, readable by the owner only); whoever holds it can mint
    /// identities.
    pub ca_key: PathBuf,
    /// The gateway's certificate (`server.pem`, `server.key`).
    pub server: PemPaths,
    /// One client identity per principal, in the order given.
    pub identities: Vec<(Principal, PemPaths)>,
}

/// Writes a domain's PKI into `dir`: the CA, a server certificate valid for `localhost`,
/// `127.0.0.1` and every host in `extra_hosts`, and one client identity per principal, named
/// `<organisation>-<role>-<name>`.
///
/// Every certificate is issued before anything is written, so invalid principals or clashing
/// file names leave `dir` untouched. Private keys are created readable by the owner only;
/// existing files of the same name are overwritten.
pub fn write_domain_pki(
    dir: &Path,
    ca: &CertificateAuthority,
    extra_hosts: &[&str],
    identities: &[Principal],
) -> Result<DomainPkiPaths, IdentityError> {
    let mut stems: BTreeMap<String, &Principal> = BTreeMap::new();
    let mut issued = Vec::with_capacity(identities.len());
    for principal in identities {
        let stem = identity_file_stem(principal);
        if let Some(other) = stems.insert(stem.clone(), principal) {
            return Err(IdentityError::InvalidInput(format!(
                "principals {other} and {principal} would both be written to {stem}.pem; give them distinct names"
            )));
        }
        issued.push((principal, stem, ca.issue_client(principal)?));
    }
    let mut hosts: Vec<&str> = LOCAL_SERVER_HOSTS.to_vec();
    for host in extra_hosts {
        if !hosts.contains(host) {
            hosts.push(host);
        }
    }
    let server = ca.issue_server(&hosts)?;

    std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
        action: "creating the PKI directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    write_file(&ca_cert, &ca.ca_pem(), Secrecy::Public)?;
    write_file(&ca_key, &ca.key_pem(), Secrecy::Secret)?;
    let server = write_pem(dir, "server", &server)?;
    let identities = issued
        .into_iter()
        .map(|(principal, stem, pem)| Ok((principal.clone(), write_pem(dir, &stem, &pem)?)))
        .collect::<Result<_, IdentityError>>()?;
    Ok(DomainPkiPaths { ca_cert, ca_key, server, identities })
}

/// Issues one more client identity from `ca` into `dir`, named `<organisation>-<role>-<name>`
/// as [`write_domain_pki`] names them. An identity of the same name is not overwritten: its
/// holder may be using it, and a new one would not revoke the old.
pub fn write_client_identity(
    dir: &Path,
    ca: &CertificateAuthority,
    principal: &Principal,
) -> Result<PemPaths, IdentityError> {
    let stem = identity_file_stem(principal);
    if dir.join(format!("{stem}.pem")).exists() {
        return Err(IdentityError::InvalidInput(format!(
            "an identity {stem}.pem already exists in {}; choose another principal name",
            dir.display()
        )));
    }
    let pem = ca.issue_client(principal)?;
    write_pem(dir, &stem, &pem)
}

/// `<organisation>-<role>-<name>`, each part reduced to `[a-z0-9-]`.
fn identity_file_stem(principal: &Principal) -> String {
    format!(
        "{}-{}-{}",
        file_name_part(&principal.organisation),
        principal.role.as_str(),
        file_name_part(&principal.name)
    )
}

/// Lowercase ASCII letters and digits, every other run of characters one `-`. A name with no
/// ASCII letter or digit at all (say 湖州市数据局) becomes `x` and a digest prefix, so it still
/// gets a stable file of its own.
pub(super) fn file_name_part(text: &str) -> String {
    let mut part = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            part.push(c);
        } else if !part.is_empty() && !part.ends_with('-') {
            part.push('-');
        }
    }
    while part.ends_with('-') {
        part.pop();
    }
    if part.is_empty() {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        part = format!("x{}", hex::encode(&digest.as_ref()[..6]));
    }
    part
}

fn write_pem(dir: &Path, stem: &str, pem: &Pem) -> Result<PemPaths, IdentityError> {
    let paths = PemPaths { cert: dir.join(format!("{stem}.pem")), key: dir.join(format!("{stem}.key")) };
    write_file(&paths.cert, &pem.cert_pem, Secrecy::Public)?;
    write_file(&paths.key, &pem.key_pem, Secrecy::Secret)?;
    Ok(paths)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Secrecy {
    Public,
    Secret,
}

fn write_file(path: &Path, contents: &str, secrecy: Secrecy) -> Result<(), IdentityError> {
    let io_error = |source| IdentityError::Io { action: "writing", path: path.to_path_buf(), source };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secrecy == Secrecy::Secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_error)?;
    // `mode` only applies to new files: tighten an existing one before the secret goes in.
    #[cfg(unix)]
    if secrecy == Secrecy::Secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_error)?;
    }
    file.write_all(contents.as_bytes()).map_err(io_error)
}
