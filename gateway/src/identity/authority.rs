//! The domain's certificate authority: generated or loaded, and the certificates it issues.

use std::fmt;
use std::net::IpAddr;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams,
    SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;

use super::{IdentityError, Principal, Role};

/// How long a generated CA stays valid: about ten years, the lifetime of a domain.
const CA_VALIDITY: Duration = Duration::days(3652);
/// How long a server or client certificate stays valid: one year, so identities are renewed.
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Certificates start slightly in the past so a peer whose clock runs behind still accepts them.
const CLOCK_SKEW: Duration = Duration::minutes(5);
/// X.520 upper bound for CN, O and OU values.
const MAX_NAME_CHARS: usize = 64;
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

    /// A certificate revocation list (PEM "X509 CRL") signed by this CA, naming each revoked
    /// certificate by its serial (big-endian bytes) and when it was revoked (Unix seconds).
    /// `number` grows with every new list. The gateway refuses a listed client at the handshake.
    pub fn sign_crl(&self, revoked: &[(Vec<u8>, i64)], number: u64) -> Result<String, IdentityError> {
        let now = OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .map(|(serial, at)| {
                let revocation_time = OffsetDateTime::from_unix_timestamp(*at)
                    .map_err(|error| IdentityError::InvalidInput(format!("revocation time {at}: {error}")))?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, IdentityError>>()?;
        let params = CertificateRevocationListParams {
            this_update: now - CLOCK_SKEW,
            // The gateway does not enforce it; a list is replaced whenever an identity is revoked.
            next_update: now + LEAF_VALIDITY,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(|error| IdentityError::internal("signing the revocation list", error))?;
        crl.pem().map_err(|error| IdentityError::internal("encoding the revocation list", error))
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
    pub(super) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Leaf parameters shared by server and client certificates: one year, never past the CA.
    pub(super) fn leaf_params(&self) -> Result<CertificateParams, IdentityError> {
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

    pub(super) fn issue(&self, params: &CertificateParams, context: &str) -> Result<Pem, IdentityError> {
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
