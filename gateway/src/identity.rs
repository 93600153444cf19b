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

use std::collections::BTreeMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::AttributeTypeAndValue;

/// How long a generated CA stays valid: about ten years, the lifetime of a domain.
const CA_VALIDITY: Duration = Duration::days(3652);
/// How long a server or client certificate stays valid: one year, so identities are renewed.
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Certificates start slightly in the past so a peer whose clock runs behind still accepts them.
const CLOCK_SKEW: Duration = Duration::minutes(5);
/// X.520 upper bound for CN, O and OU values.
const MAX_NAME_CHARS: usize = 64;
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

/// A certificate and its private key, as the PEM text TLS stacks and files take.
#[derive(Clone)]
pub struct Pem {
    /// The certificate (PEM "CERTIFICATE").
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM "PRIVATE KEY"); a secret.
    pub key_pem: String,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pem").field("cert_pem", &self.cert_pem).field("key_pem", &"[secret]").finish()
    }
}

/// The domain's certificate authority: the root of every identity the gateway accepts and of the
/// server certificate callers check.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    subject: String,
    not_after: OffsetDateTime,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA with an ECDSA P-256 key (accepted by every TLS stack), valid for ten
    /// years, for a domain that has no PKI of its own yet.
    pub fn generate(domain_name: &str) -> Result<Self, IdentityError> {
        check_name_value("domain name", domain_name)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, domain_name);
        // Path length 0: the CA issues identities, never further CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let key = new_key()?;
        let certificate =
            params.self_signed(&key).map_err(|error| IdentityError::internal("signing the CA certificate", error))?;
        Ok(Self {
            cert_pem: certificate.pem(),
            subject: format!("CN={domain_name}"),
            not_after: params.not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads an operator's existing CA, so domain identities chain into the operator's PKI.
    ///
    /// `cert_pem` holds exactly the issuing CA certificate; `key_pem` its unencrypted PKCS#8
    /// key. Both are checked before use: the certificate must be a current CA, the key must be
    /// its key, and a certificate issued with them must chain back to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let (rest, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|error| IdentityError::InvalidInput(format!("CA certificate is not PEM: {error}")))?;
        if block.label != "CERTIFICATE" {
            return Err(IdentityError::InvalidInput(format!(
                "CA certificate PEM holds a \"{}\" block, not a CERTIFICATE",
                block.label
            )));
        }
        if String::from_utf8_lossy(rest).contains("-----BEGIN") {
            return Err(IdentityError::InvalidInput(
                "CA certificate PEM holds more than one block; pass only the issuing CA certificate".into(),
            ));
        }
        let ca = block.parse_x509().map_err(|error| {
            IdentityError::InvalidInput(format!("CA certificate is not a valid X.509 certificate: {error}"))
        })?;
        let subject = ca.subject().to_string();
        check_can_issue(&ca, &subject)?;

        let key = KeyPair::from_pem(key_pem).map_err(|error| {
            IdentityError::InvalidInput(format!(
                "CA key is not an unencrypted PKCS#8 private key (PEM \"PRIVATE KEY\"; convert with \
                 `openssl pkcs8 -topk8 -nocrypt`): {error}"
            ))
        })?;
        if key.der_bytes() != &*ca.public_key().subject_public_key.data {
            return Err(IdentityError::InvalidInput(format!(
                "CA key does not belong to the CA certificate \"{subject}\" (the public keys differ)"
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&block.contents.as_slice().into(), key).map_err(|error| {
            IdentityError::InvalidInput(format!(
                "CA certificate \"{subject}\" cannot issue certificates here: {error} \
                 (its subject must have one attribute per RDN, in UTF-8, printable or IA5 strings)"
            ))
        })?;
        let authority = Self {
            issuer,
            cert_pem: first_certificate_block(cert_pem),
            not_after: ca.validity().not_after.to_datetime(),
            subject,
        };
        authority.check_issues_into_chain(&ca)?;
        Ok(authority)
    }

    /// The CA certificate, which both servers and clients of the domain trust as their root.
    pub fn ca_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// A server certificate for the gateway, valid for each of `hosts` (DNS names such as
    /// `localhost`, or IP addresses such as `127.0.0.1`), since clients check the address they
    /// dialled against it.
    pub fn issue_server(&self, hosts: &[&str]) -> Result<Pem, IdentityError> {
        let Some(first) = hosts.first() else {
            return Err(IdentityError::InvalidInput(
                "a server certificate needs at least one host name or IP address".into(),
            ));
        };
        let mut params = self.leaf_params()?;
        params.subject_alt_names = hosts.iter().map(|host| subject_alt_name(host)).collect::<Result<_, _>>()?;
        params.distinguished_name.push(DnType::CommonName, *first);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&params, "signing a server certificate")
    }

    /// A client certificate that [`principal_from_certificate`] reads back as `principal`.
    pub fn issue_client(&self, principal: &Principal) -> Result<Pem, IdentityError> {
        check_name_value("principal organisation", &principal.organisation)?;
        check_name_value("principal name", &principal.name)?;
        let mut params = self.leaf_params()?;
        params.distinguished_name.push(DnType::OrganizationName, principal.organisation.as_str());
        params.distinguished_name.push(DnType::OrganizationalUnitName, principal.role.as_str());
        params.distinguished_name.push(DnType::CommonName, principal.name.as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&params, "signing a client certificate")
    }

    /// The CA's private key, for persisting the CA next to its certificate.
    fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Leaf parameters shared by server and client certificates: one year, never past the CA.
    fn leaf_params(&self) -> Result<CertificateParams, IdentityError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = (now + LEAF_VALIDITY).min(self.not_after);
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    fn issue(&self, params: &CertificateParams, context: &str) -> Result<Pem, IdentityError> {
        let key = new_key()?;
        let certificate =
            params.signed_by(&key, &self.issuer).map_err(|error| IdentityError::internal(context, error))?;
        Ok(Pem { cert_pem: certificate.pem(), key_pem: key.serialize_pem() })
    }

    /// Issues a throwaway certificate and checks that it names and verifies against `ca`: rcgen
    /// re-encodes the CA subject, and a subject it cannot reproduce byte for byte would yield
    /// certificates no TLS stack chains.
    fn check_issues_into_chain(&self, ca: &X509Certificate<'_>) -> Result<(), IdentityError> {
        let probe = Principal { organisation: "unseen".into(), name: "chain probe".into(), role: Role::Regulator };
        let pem = self.issue_client(&probe)?;
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.cert_pem.as_bytes())
            .map_err(|error| IdentityError::internal("reading back a probe certificate", error))?;
        let issued =
            block.parse_x509().map_err(|error| IdentityError::internal("reading back a probe certificate", error))?;
        if issued.issuer().as_raw() != ca.subject().as_raw() {
            return Err(IdentityError::InvalidInput(format!(
                "CA certificate subject \"{}\" cannot be reproduced exactly in issued certificates, so they would \
                 not chain to it; use a CA whose subject has one attribute of each type",
                self.subject
            )));
        }
        issued.verify_signature(Some(ca.public_key())).map_err(|error| {
            IdentityError::InvalidInput(format!(
                "certificates signed with the CA key do not verify against CA certificate \"{}\": {error}",
                self.subject
            ))
        })
    }
}

/// Refuses a certificate that cannot act as a CA now.
fn check_can_issue(ca: &X509Certificate<'_>, subject: &str) -> Result<(), IdentityError> {
    let is_ca = ca
        .basic_constraints()
        .map_err(|error| {
            IdentityError::InvalidInput(format!(
                "CA certificate \"{subject}\" has malformed basic constraints: {error}"
            ))
        })?
        .is_some_and(|constraints| constraints.value.ca);
    if !is_ca {
        return Err(IdentityError::InvalidInput(format!(
            "certificate \"{subject}\" is not a CA (its basic constraints do not set cA)"
        )));
    }
    let key_usage = ca.key_usage().map_err(|error| {
        IdentityError::InvalidInput(format!("CA certificate \"{subject}\" has a malformed key usage: {error}"))
    })?;
    if let Some(usage) = key_usage
        && !usage.value.key_cert_sign()
    {
        return Err(IdentityError::InvalidInput(format!(
            "CA certificate \"{subject}\" may not sign certificates (its key usage lacks keyCertSign)"
        )));
    }
    let now = OffsetDateTime::now_utc();
    let validity = ca.validity();
    if validity.not_after.to_datetime() <= now {
        return Err(IdentityError::InvalidInput(format!(
            "CA certificate \"{subject}\" expired on {}",
            validity.not_after
        )));
    }
    if validity.not_before.to_datetime() > now + CLOCK_SKEW {
        return Err(IdentityError::InvalidInput(format!(
            "CA certificate \"{subject}\" is not valid before {}",
            validity.not_before
        )));
    }
    Ok(())
}

/// The text of the first PEM certificate block, so [`CertificateAuthority::ca_pem`] hands out the
/// CA alone, without any text that preceded it in the operator's file.
fn first_certificate_block(pem: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN).unwrap_or(0);
    let end = pem[start..].find(END).map_or(pem.len(), |offset| start + offset + END.len());
    format!("{}\n", &pem[start..end])
}

fn subject_alt_name(host: &str) -> Result<SanType, IdentityError> {
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(address));
    }
    let is_dns_name = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '*')
        && !host.starts_with(['.', '-']);
    if !is_dns_name {
        return Err(IdentityError::InvalidInput(format!(
            "server host \"{host}\" is neither an IP address nor a DNS name"
        )));
    }
    let name = Ia5String::try_from(host)
        .map_err(|error| IdentityError::InvalidInput(format!("server host \"{host}\" is not a DNS name: {error}")))?;
    Ok(SanType::DnsName(name))
}

/// Refuses a CN or O value that TLS stacks or the X.520 bounds would reject.
fn check_name_value(what: &str, value: &str) -> Result<(), IdentityError> {
    if value.trim().is_empty() {
        return Err(IdentityError::InvalidInput(format!("{what} is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(IdentityError::InvalidInput(format!("{what} {value:?} contains control characters")));
    }
    let length = value.chars().count();
    if length > MAX_NAME_CHARS {
        return Err(IdentityError::InvalidInput(format!(
            "{what} \"{value}\" is {length} characters long; certificates allow at most {MAX_NAME_CHARS}"
        )));
    }
    Ok(())
}

fn new_key() -> Result<KeyPair, IdentityError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|error| IdentityError::internal("generating a key", error))
}

/// A random positive 16-byte serial, so no two certificates of a domain share one.
fn random_serial() -> Result<SerialNumber, IdentityError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IdentityError::Internal("the system random number generator failed".into()))?;
    // Clear the sign bit (serials are positive) and set the next one (no leading zero byte).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

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
fn file_name_part(text: &str) -> String {
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
mod tests {
    use super::*;

    fn der_of(pem: &str) -> Vec<u8> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
        block.contents
    }

    fn developer() -> Principal {
        Principal { organisation: "greenfin-analytics".into(), name: "analyst".into(), role: Role::Developer }
    }

    /// A client certificate from `ca` with exactly the given subject, for malformed identities.
    fn client_with_subject(ca: &CertificateAuthority, subject: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = ca.leaf_params().expect("params");
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        der_of(&ca.issue(&params, "test").expect("issue").cert_pem)
    }

    fn unauthenticated_message(result: Result<Principal, IdentityError>) -> String {
        match result {
            Err(IdentityError::Unauthenticated(message)) => message,
            other => panic!("expected Unauthenticated, got {other:?}"),
        }
    }

    #[test]
    fn roles_round_trip_through_text_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().expect("parse"), role);
            assert_eq!(serde_json::to_string(&role).expect("json"), format!("\"{role}\""));
        }
        assert_eq!("Developer".parse::<Role>().expect("parse"), Role::Developer);
        let error = "admin".parse::<Role>().expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "unknown role \"admin\": expected one of provider, developer, operator, regulator"
        );
    }

    #[test]
    fn client_certificate_names_its_principal() {
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        for role in Role::ALL {
            let principal = Principal { role, ..developer() };
            let pem = ca.issue_client(&principal).expect("client");
            assert_eq!(principal_from_certificate(&der_of(&pem.cert_pem)).expect("principal"), principal);
        }
        let chinese =
            Principal { organisation: "湖州市数据局".into(), name: "登记员".into(), role: Role::Provider };
        let pem = ca.issue_client(&chinese).expect("client");
        assert_eq!(principal_from_certificate(&der_of(&pem.cert_pem)).expect("principal"), chinese);
    }

    #[test]
    fn certificate_without_role_is_refused() {
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        let der = client_with_subject(&ca, &[(DnType::OrganizationName, "greenfin"), (DnType::CommonName, "analyst")]);
        assert_eq!(unauthenticated_message(principal_from_certificate(&der)), "client certificate has no OU (role)");
        let der =
            client_with_subject(&ca, &[(DnType::OrganizationalUnitName, "developer"), (DnType::CommonName, "analyst")]);
        assert_eq!(
            unauthenticated_message(principal_from_certificate(&der)),
            "client certificate has no O (organisation)"
        );
    }

    #[test]
    fn unknown_role_is_refused_by_name() {
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        let der = client_with_subject(
            &ca,
            &[
                (DnType::OrganizationName, "greenfin"),
                (DnType::OrganizationalUnitName, "admin"),
                (DnType::CommonName, "root"),
            ],
        );
        assert_eq!(
            unauthenticated_message(principal_from_certificate(&der)),
            "client certificate OU (role) \"admin\" is not a role: expected one of provider, developer, operator, regulator"
        );
    }

    #[test]
    fn garbage_and_server_certificates_name_no_principal() {
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        let message = unauthenticated_message(principal_from_certificate(b"not a certificate"));
        assert!(message.starts_with("client certificate is not a valid X.509 certificate"), "{message}");
        let server = ca.issue_server(&["localhost"]).expect("server");
        assert_eq!(
            unauthenticated_message(principal_from_certificate(&der_of(&server.cert_pem))),
            "certificate is not for client authentication (its extended key usage lacks clientAuth)"
        );
    }

    #[test]
    fn server_certificate_covers_names_and_addresses() {
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        let pem = ca.issue_server(&["localhost", "127.0.0.1", "::1"]).expect("server");
        let der = der_of(&pem.cert_pem);
        let (_, certificate) = x509_parser::parse_x509_certificate(&der).expect("parse");
        let names = certificate.subject_alternative_name().expect("SAN").expect("has SAN");
        use x509_parser::extensions::GeneralName;
        let names = &names.value.general_names;
        assert!(names.contains(&GeneralName::DNSName("localhost")), "{names:?}");
        assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])), "{names:?}");
        assert!(names.contains(&GeneralName::IPAddress(&std::net::Ipv6Addr::LOCALHOST.octets())), "{names:?}");
        let usage = certificate.extended_key_usage().expect("EKU").expect("has EKU");
        assert!(usage.value.server_auth && !usage.value.client_auth);
        assert!(!certificate.is_ca());

        assert!(matches!(ca.issue_server(&[]), Err(IdentityError::InvalidInput(_))));
        let error = ca.issue_server(&["bad host/name"]).expect_err("invalid host");
        assert_eq!(error.to_string(), "server host \"bad host/name\" is neither an IP address nor a DNS name");
    }

    #[test]
    fn validity_is_ten_years_for_the_ca_and_one_for_leaves() {
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        let ca_der = der_of(&ca.ca_pem());
        let (_, ca_certificate) = x509_parser::parse_x509_certificate(&ca_der).expect("parse");
        let days = |validity: &x509_parser::certificate::Validity| {
            (validity.not_after.to_datetime() - validity.not_before.to_datetime()).whole_days()
        };
        assert_eq!(days(ca_certificate.validity()), 3652);
        assert!(ca_certificate.is_ca());
        let leaf_der = der_of(&ca.issue_client(&developer()).expect("client").cert_pem);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("parse");
        assert_eq!(days(leaf.validity()), 365);
    }

    #[test]
    fn loaded_ca_issues_certificates_that_chain_to_it() {
        let generated = CertificateAuthority::generate("operator root").expect("CA");
        let loaded = CertificateAuthority::from_pem(&generated.ca_pem(), &generated.key_pem()).expect("load");
        assert_eq!(loaded.ca_pem(), generated.ca_pem());
        let ca_der = der_of(&loaded.ca_pem());
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("parse CA");
        let client = loaded.issue_client(&developer()).expect("client");
        let server = loaded.issue_server(&["localhost", "127.0.0.1"]).expect("server");
        for pem in [client.cert_pem, server.cert_pem] {
            let der = der_of(&pem);
            let (_, leaf) = x509_parser::parse_x509_certificate(&der).expect("parse leaf");
            assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
            leaf.verify_signature(Some(ca.public_key())).expect("signed by the CA");
        }
    }

    #[test]
    fn loading_refuses_mismatched_or_non_ca_material() {
        let first = CertificateAuthority::generate("first").expect("CA");
        let second = CertificateAuthority::generate("second").expect("CA");
        let error = CertificateAuthority::from_pem(&first.ca_pem(), &second.key_pem()).expect_err("wrong key");
        assert_eq!(
            error.to_string(),
            "CA key does not belong to the CA certificate \"CN=first\" (the public keys differ)"
        );

        let leaf = first.issue_client(&developer()).expect("client");
        let error = CertificateAuthority::from_pem(&leaf.cert_pem, &leaf.key_pem).expect_err("not a CA");
        let message = error.to_string();
        for part in
            ["O=greenfin-analytics", "OU=developer", "CN=analyst", "is not a CA (its basic constraints do not set cA)"]
        {
            assert!(message.contains(part), "{message}");
        }

        let bundle = format!("{}{}", first.ca_pem(), second.ca_pem());
        let error = CertificateAuthority::from_pem(&bundle, &first.key_pem()).expect_err("two certificates");
        assert!(error.to_string().contains("more than one block"), "{error}");
        let error = CertificateAuthority::from_pem(&first.ca_pem(), "not a key").expect_err("no key");
        assert!(error.to_string().starts_with("CA key is not an unencrypted PKCS#8 private key"), "{error}");
    }

    #[test]
    fn invalid_principals_are_not_issued() {
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        let empty = Principal { name: " ".into(), ..developer() };
        assert_eq!(ca.issue_client(&empty).expect_err("empty").to_string(), "principal name is empty");
        let long = Principal { organisation: "o".repeat(65), ..developer() };
        assert!(matches!(ca.issue_client(&long), Err(IdentityError::InvalidInput(_))));
    }

    #[test]
    fn file_names_are_reduced_to_safe_characters() {
        assert_eq!(file_name_part("Greenfin Analytics, Ltd."), "greenfin-analytics-ltd");
        assert_eq!(file_name_part("../../etc/passwd"), "etc-passwd");
        let chinese = file_name_part("湖州市数据局");
        assert!(chinese.starts_with('x') && chinese.len() == 13, "{chinese}");
        assert_ne!(chinese, file_name_part("浙江省网信办"));
    }

    #[test]
    fn domain_pki_is_written_with_private_keys_kept_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        let regulator =
            Principal { organisation: "Zhejiang CAC".into(), name: "inspector".into(), role: Role::Regulator };
        let paths = write_domain_pki(dir.path(), &ca, &[], &[developer(), regulator.clone()]).expect("write");

        assert_eq!(paths.ca_cert, dir.path().join("ca.pem"));
        assert_eq!(std::fs::read_to_string(&paths.ca_cert).expect("read"), ca.ca_pem());
        assert_eq!(paths.server.cert, dir.path().join("server.pem"));
        let names: Vec<_> = paths.identities.iter().map(|(_, files)| files.cert.clone()).collect();
        assert_eq!(
            names,
            [
                dir.path().join("greenfin-analytics-developer-analyst.pem"),
                dir.path().join("zhejiang-cac-regulator-inspector.pem")
            ]
        );
        let (principal, files) = &paths.identities[1];
        assert_eq!(principal, &regulator);
        let cert = std::fs::read_to_string(&files.cert).expect("read");
        assert_eq!(principal_from_certificate(&der_of(&cert)).expect("principal"), regulator);
        let reloaded = CertificateAuthority::from_pem(
            &std::fs::read_to_string(&paths.ca_cert).expect("read"),
            &std::fs::read_to_string(&paths.ca_key).expect("read"),
        );
        assert!(reloaded.is_ok(), "{reloaded:?}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(&paths.ca_key), 0o600);
            assert_eq!(mode(&paths.server.key), 0o600);
            assert_eq!(mode(&files.key), 0o600);
        }
    }

    #[test]
    fn clashing_identity_file_names_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let ca = CertificateAuthority::generate("test domain CA").expect("CA");
        let twin = Principal { organisation: "Greenfin Analytics".into(), ..developer() };
        let error = write_domain_pki(&pki, &ca, &[], &[developer(), twin]).expect_err("clash");
        assert_eq!(
            error.to_string(),
            "principals greenfin-analytics/analyst (developer) and Greenfin Analytics/analyst (developer) would both be \
             written to greenfin-analytics-developer-analyst.pem; give them distinct names"
        );
        assert!(!pki.exists());
    }
}
