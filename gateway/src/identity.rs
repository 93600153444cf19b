//! Who is calling, and the certificates that say so.
//!
//! A domain knows its callers only by mTLS. Every client certificate is issued by the domain's
//! certificate authority and names the caller in its subject: CN is the principal's name, O its
//! organisation and OU its role (provider, developer, operator or regulator, design brief §1).
//! No header or token can claim an identity, so this module is the one place that writes an
//! identity into a certificate and the one place that reads it back.
//!
//! The authority is either generated fresh (demos, tests, a first domain) or loaded from an
//! operator's own CA, so that a production domain's identities chain into the operator's PKI.

mod authority;
mod files;

pub use authority::{CertificateAuthority, Pem};
pub use files::{DomainPkiPaths, PemPaths, write_client_identity, write_domain_pki};

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use x509_parser::x509::AttributeTypeAndValue;

/// Host names every domain's server certificate is valid for, besides those an operator adds, so
/// that clients on the domain's own machine can always connect.
pub const LOCAL_SERVER_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];
/// The accepted role names, for error messages.
const ROLE_NAMES: &str = "provider, developer, operator, regulator";

/// What a caller may do in a domain; every gateway operation is allowed to exactly one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Registers datasets (数据提供单位).
    Provider,
    /// Applies for scenarios, runs modules and requests egress (开发主体).
    Developer,
    /// Runs the domain and reviews scenarios and egress (运营主体).
    Operator,
    /// Reads and verifies the audit log (数据主管部门).
    Regulator,
}

impl Role {
    /// Every role, for listings and exhaustive tests.
    pub const ALL: [Role; 4] = [Role::Provider, Role::Developer, Role::Operator, Role::Regulator];

    /// The name used in certificates (OU), configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Developer => "developer",
            Role::Operator => "operator",
            Role::Regulator => "regulator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    /// Case-insensitive, so an OU written by an operator's own PKI as "Developer" still counts.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|role| role.as_str().eq_ignore_ascii_case(text)).ok_or_else(|| {
            IdentityError::InvalidInput(format!("unknown role \"{text}\": expected one of {ROLE_NAMES}"))
        })
    }
}

/// The authenticated caller of a request: what permission checks, ownership checks and audit
/// entries refer to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The organisation the caller acts for (certificate O); developers own what their
    /// organisation submitted.
    pub organisation: String,
    /// The person or system within the organisation (certificate CN).
    pub name: String,
    /// What the caller may do (certificate OU).
    pub role: Role,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.organisation, self.name, self.role)
    }
}

/// Reads who is calling from the leaf certificate of an mTLS connection.
///
/// The TLS layer has already checked that the certificate chains to the domain CA; this decides
/// which principal it names and refuses certificates that name none.
pub fn principal_from_certificate(der: &[u8]) -> Result<Principal, IdentityError> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).map_err(|error| {
        IdentityError::Unauthenticated(format!("client certificate is not a valid X.509 certificate: {error}"))
    })?;
    let extended_key_usage = certificate.extended_key_usage().map_err(|error| {
        IdentityError::Unauthenticated(format!("client certificate has a malformed extended key usage: {error}"))
    })?;
    if let Some(usage) = extended_key_usage
        && !(usage.value.client_auth || usage.value.any)
    {
        return Err(IdentityError::Unauthenticated(
            "certificate is not for client authentication (its extended key usage lacks clientAuth)".into(),
        ));
    }
    let subject = certificate.subject();
    let name = single_subject_value(subject.iter_common_name(), "CN (principal name)")?;
    let organisation = single_subject_value(subject.iter_organization(), "O (organisation)")?;
    let role_name = single_subject_value(subject.iter_organizational_unit(), "OU (role)")?;
    let role = role_name.parse::<Role>().map_err(|_| {
        IdentityError::Unauthenticated(format!(
            "client certificate OU (role) \"{role_name}\" is not a role: expected one of {ROLE_NAMES}"
        ))
    })?;
    Ok(Principal { organisation, name, role })
}

/// The one value of a subject attribute that must appear exactly once.
fn single_subject_value<'a, 'b: 'a>(
    values: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>,
    what: &str,
) -> Result<String, IdentityError> {
    let values: Vec<_> = values.collect();
    let value = match values.as_slice() {
        [] => return Err(IdentityError::Unauthenticated(format!("client certificate has no {what}"))),
        [value] => value,
        more => {
            return Err(IdentityError::Unauthenticated(format!(
                "client certificate has {} {what} values; exactly one is expected",
                more.len()
            )));
        }
    };
    let text = value.as_str().map_err(|error| {
        IdentityError::Unauthenticated(format!("client certificate {what} is not a string: {error}"))
    })?;
    if text.trim().is_empty() {
        return Err(IdentityError::Unauthenticated(format!("client certificate has an empty {what}")));
    }
    Ok(text.to_string())
}

/// The principal a client certificate in PEM names, so that a client knows which role's service
/// to call before it connects. The gateway itself reads the certificate the TLS layer verified.
pub fn principal_from_pem(cert_pem: &str) -> Result<Principal, IdentityError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|error| IdentityError::InvalidInput(format!("certificate is not PEM: {error}")))?;
    if block.label != "CERTIFICATE" {
        return Err(IdentityError::InvalidInput(format!(
            "the PEM file holds a \"{}\" block, not a CERTIFICATE",
            block.label
        )));
    }
    principal_from_certificate(&block.contents).map_err(|error| IdentityError::InvalidInput(error.to_string()))
}

/// When a certificate (PEM) is valid: its not-before and not-after times, Unix seconds. A
/// client checks its own identity with it before it connects, so that an expired identity is
/// named as such instead of failing in the handshake.
pub fn validity_of_pem(cert_pem: &str) -> Result<(i64, i64), IdentityError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|error| IdentityError::InvalidInput(format!("certificate is not PEM: {error}")))?;
    let certificate = block
        .parse_x509()
        .map_err(|error| IdentityError::InvalidInput(format!("certificate is not valid X.509: {error}")))?;
    let validity = certificate.validity();
    Ok((validity.not_before.timestamp(), validity.not_after.timestamp()))
}

/// A certificate's (PEM) serial number, big-endian bytes as the certificate carries them: what
/// a revocation list names.
pub fn serial_of_pem(cert_pem: &str) -> Result<Vec<u8>, IdentityError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|error| IdentityError::InvalidInput(format!("certificate is not PEM: {error}")))?;
    let certificate = block
        .parse_x509()
        .map_err(|error| IdentityError::InvalidInput(format!("certificate is not valid X.509: {error}")))?;
    Ok(certificate.raw_serial().to_vec())
}

/// The serials (big-endian bytes) a revocation list (PEM "X509 CRL") names, once its signature
/// is checked against the CA certificate `ca_pem`.
pub fn revoked_serials_of_crl(crl_pem: &str, ca_pem: &str) -> Result<Vec<Vec<u8>>, IdentityError> {
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes())
        .map_err(|error| IdentityError::InvalidInput(format!("revocation list is not PEM: {error}")))?;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&block.contents)
        .map_err(|error| IdentityError::InvalidInput(format!("revocation list is not a valid CRL: {error}")))?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|error| IdentityError::InvalidInput(format!("the CA certificate is not PEM: {error}")))?;
    let ca = ca
        .parse_x509()
        .map_err(|error| IdentityError::InvalidInput(format!("the CA certificate is not valid X.509: {error}")))?;
    crl.verify_signature(ca.public_key()).map_err(|error| {
        IdentityError::InvalidInput(format!("the revocation list is not signed by the domain CA: {error}"))
    })?;
    Ok(crl.iter_revoked_certificates().map(|revoked| revoked.raw_serial().to_vec()).collect())
}

/// Whether the certificate `cert_pem` was issued (named and signed) by the CA certificate
/// `ca_pem`: what a client looks at when the gateway refuses its handshake.
pub fn issued_by(cert_pem: &str, ca_pem: &str) -> Result<bool, IdentityError> {
    let (_, leaf) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|error| IdentityError::InvalidInput(format!("the certificate is not PEM: {error}")))?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|error| IdentityError::InvalidInput(format!("the CA certificate is not PEM: {error}")))?;
    let leaf = leaf
        .parse_x509()
        .map_err(|error| IdentityError::InvalidInput(format!("the certificate is not valid X.509: {error}")))?;
    let ca = ca
        .parse_x509()
        .map_err(|error| IdentityError::InvalidInput(format!("the CA certificate is not valid X.509: {error}")))?;
    Ok(leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok())
}

/// A time as people read it in logs and messages: `2026-01-01 00:00:00 UTC`.
pub fn utc_text(unix_seconds: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_seconds) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        Err(_) => format!("{unix_seconds} s after 1970"),
    }
}

/// Why establishing or issuing an identity failed; variants are what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The presented certificate names no principal: refuse the call as unauthenticated.
    #[error("{0}")]
    Unauthenticated(String),
    /// An argument (role name, principal, host, CA material) is unusable; the message names it
    /// and the caller corrects it.
    #[error("{0}")]
    InvalidInput(String),
    /// Key material could not be written to disk.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// Key generation or signing failed where it cannot for valid input: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IdentityError {
    fn internal(context: &str, error: impl fmt::Display) -> Self {
        Self::Internal(format!("{context}: {error}"))
    }
}

#[cfg(test)]
mod tests;
