//! Who is calling: principals from client certificates, and the domain's certificate authority.
//!
//! Identity is never a request field. A client certificate issued by the domain CA carries the
//! principal's name (CN), organisation (O) and role (OU); the TLS layer has already checked
//! that the CA issued it, so reading these fields is all that is left.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use serde::{Deserialize, Serialize};

/// What a principal may do in a domain (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 数据提供单位: registers datasets.
    Provider,
    /// 开发主体: applies for scenarios, runs modules, requests egress.
    Developer,
    /// 运营主体: approves scenarios and releases.
    Operator,
    /// 数据主管部门: reads and verifies the audit log.
    Regulator,
}

impl Role {
    /// The role's name as written in certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Developer => "developer",
            Self::Operator => "operator",
            Self::Regulator => "regulator",
        }
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "provider" => Ok(Self::Provider),
            "developer" => Ok(Self::Developer),
            "operator" => Ok(Self::Operator),
            "regulator" => Ok(Self::Regulator),
            other => Err(IdentityError::InvalidCertificate(format!(
                "unknown role \"{other}\" in the certificate's OU; expected provider, developer, operator or regulator"
            ))),
        }
    }
}

/// A caller: a named person or system of an organisation, acting in one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Organisation (certificate O).
    pub organisation: String,
    /// Principal name (certificate CN).
    pub name: String,
    /// Role (certificate OU).
    pub role: Role,
}

/// Why an identity could not be established or issued.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The certificate lacks a field or has a bad value; the message names it.
    #[error("{0}")]
    InvalidCertificate(String),
    /// Issuing a certificate failed.
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// Writing identity files failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Reads the principal from a DER client certificate.
pub fn principal_from_certificate(der: &[u8]) -> Result<Principal, IdentityError> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| IdentityError::InvalidCertificate(format!("client certificate is not valid X.509: {error}")))?;
    let subject = certificate.subject();
    let first = |values: Vec<&x509_parser::x509::AttributeTypeAndValue<'_>>, what: &str| -> Result<String, IdentityError> {
        values
            .first()
            .and_then(|value| value.as_str().ok())
            .map(str::to_string)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| IdentityError::InvalidCertificate(format!("client certificate has no {what}")))
    };
    let name = first(subject.iter_common_name().collect(), "CN (principal name)")?;
    let organisation = first(subject.iter_organization().collect(), "O (organisation)")?;
    let role = first(subject.iter_organizational_unit().collect(), "OU (role)")?.parse()?;
    Ok(Principal { organisation, name, role })
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// The domain's certificate authority: issues the server certificate and client identities.
pub struct CertificateAuthority {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").finish_non_exhaustive()
    }
}

fn this_year() -> i32 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    1970 + (seconds / 31_556_952) as i32
}

fn validity(params: &mut CertificateParams, years: i32) {
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

impl CertificateAuthority {
    /// A fresh CA (ECDSA P-256) named `domain_name`, valid for ten years.
    pub fn generate(domain_name: &str) -> Result<Self, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, domain_name);
        name.push(DnType::OrganizationName, "unseen domain");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, 10);
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Self { params, key, cert_pem })
    }

    /// The CA certificate, PEM: what both ends of every connection trust.
    pub fn ca_pem(&self) -> String {
        self.cert_pem.clone()
    }

    fn issue(&self, mut params: CertificateParams) -> Result<Pem, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        validity(&mut params, 1);
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let certificate = params.signed_by(&key, &issuer)?;
        Ok(Pem { cert_pem: certificate.pem(), key_pem: key.serialize_pem() })
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), valid for one year.
    pub fn issue_server(&self, hosts: &[&str]) -> Result<Pem, IdentityError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for host in hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(address) => SanType::IpAddress(address),
                Err(_) => SanType::DnsName((*host).try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        params.distinguished_name.push(DnType::CommonName, hosts.first().copied().unwrap_or("unseen gateway"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client identity for `principal`, valid for one year.
    pub fn issue_client(&self, principal: &Principal) -> Result<Pem, IdentityError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, principal.name.as_str());
        params.distinguished_name.push(DnType::OrganizationName, principal.organisation.as_str());
        params.distinguished_name.push(DnType::OrganizationalUnitName, principal.role.as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }
}

/// Where [`write_domain_pki`] put things.
#[derive(Debug, Clone)]
pub struct DomainPkiPaths {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate and key.
    pub server: (PathBuf, PathBuf),
    /// One certificate and key per principal.
    pub identities: Vec<(Principal, PathBuf, PathBuf)>,
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), IdentityError> {
    std::fs::write(path, text).map_err(|source| IdentityError::Io { path: path.display().to_string(), source })?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| IdentityError::Io { path: path.display().to_string(), source })?;
    }
    let _ = private;
    Ok(())
}

fn file_stem(principal: &Principal) -> String {
    let raw = format!("{}-{}-{}", principal.organisation, principal.role.as_str(), principal.name);
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// Writes the CA certificate, a server certificate for localhost and 127.0.0.1, and one
/// identity per principal into `dir` (keys readable by the owner only).
pub fn write_domain_pki(dir: &Path, ca: &CertificateAuthority, identities: &[Principal]) -> Result<DomainPkiPaths, IdentityError> {
    std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io { path: dir.display().to_string(), source })?;
    let ca_path = dir.join("ca.pem");
    write(&ca_path, &ca.ca_pem(), false)?;
    let server = ca.issue_server(&["localhost", "127.0.0.1"])?;
    let server_paths = (dir.join("server.pem"), dir.join("server.key"));
    write(&server_paths.0, &server.cert_pem, false)?;
    write(&server_paths.1, &server.key_pem, true)?;
    let mut written = Vec::new();
    for principal in identities {
        let pem = ca.issue_client(principal)?;
        let stem = file_stem(principal);
        let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
        write(&cert, &pem.cert_pem, false)?;
        write(&key, &pem.key_pem, true)?;
        written.push((principal.clone(), cert, key));
    }
    Ok(DomainPkiPaths { ca: ca_path, server: server_paths, identities: written })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        parsed.contents
    }

    #[test]
    fn a_client_certificate_carries_the_principal() {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let principal = Principal { organisation: "greenfin".into(), name: "analyst".into(), role: Role::Developer };
        let pem = ca.issue_client(&principal).unwrap();
        assert_eq!(principal_from_certificate(&der(&pem.cert_pem)).unwrap(), principal);
        let (_, certificate) = x509_parser::parse_x509_certificate(&der(&pem.cert_pem)).unwrap();
        let (_, authority) = x509_parser::parse_x509_certificate(&der(&ca.ca_pem())).unwrap();
        assert_eq!(certificate.issuer(), authority.subject(), "issued by the domain CA");
    }

    #[test]
    fn missing_or_unknown_roles_are_named() {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let error = principal_from_certificate(&der(&server.cert_pem)).unwrap_err().to_string();
        assert!(error.contains("has no O (organisation)"), "{error}");
        assert!("auditor".parse::<Role>().unwrap_err().to_string().contains("unknown role \"auditor\""));
    }

    #[test]
    fn the_server_certificate_names_the_loopback_address() {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let der = der(&server.cert_pem);
        let (_, certificate) = x509_parser::parse_x509_certificate(&der).unwrap();
        let names = certificate.subject_alternative_name().unwrap().unwrap().value.general_names.clone();
        assert!(names.iter().any(|name| matches!(name, x509_parser::extensions::GeneralName::IPAddress(ip) if *ip == [127, 0, 0, 1])));
    }
}
