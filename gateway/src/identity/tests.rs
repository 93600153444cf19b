use std::path::Path;

use rcgen::{DnType, ExtendedKeyUsagePurpose};

use super::files::file_name_part;
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
    assert_eq!(error.to_string(), "unknown role \"admin\": expected one of provider, developer, operator, regulator");
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
    assert_eq!(unauthenticated_message(principal_from_certificate(&der)), "client certificate has no O (organisation)");
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
    assert_eq!(error.to_string(), "CA key does not belong to the CA certificate \"CN=first\" (the public keys differ)");

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
    let regulator = Principal { organisation: "Zhejiang CAC".into(), name: "inspector".into(), role: Role::Regulator };
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

#[test]
fn a_client_reads_its_own_validity_and_whether_the_domain_ca_issued_it() {
    let ca = CertificateAuthority::generate("test domain CA").expect("CA");
    let other = CertificateAuthority::generate("another domain CA").expect("CA");
    let identity = ca.issue_client(&developer()).expect("client");
    let (not_before, not_after) = validity_of_pem(&identity.cert_pem).expect("validity");
    assert_eq!((not_after - not_before) / 86_400, 365);
    assert!(issued_by(&identity.cert_pem, &ca.ca_pem()).expect("readable"));
    assert!(!issued_by(&identity.cert_pem, &other.ca_pem()).expect("readable"));
    assert!(validity_of_pem("not a certificate").is_err());
    assert_eq!(utc_text(1_767_225_600), "2026-01-01 00:00:00 UTC");
}

#[test]
fn a_revocation_list_signed_by_the_ca_names_the_revoked_serials_and_no_other_ca_verifies_it() {
    let authority = CertificateAuthority::generate("crl.test").expect("a CA");
    let principal = Principal { organisation: "acme".into(), name: "analyst".into(), role: Role::Developer };
    let revoked = authority.issue_client(&principal).expect("an identity");
    let kept = authority.issue_client(&principal).expect("another identity");
    let serial = serial_of_pem(&revoked.cert_pem).expect("a serial");
    assert_ne!(serial, serial_of_pem(&kept.cert_pem).expect("a serial"));
    let crl = authority.sign_crl(&[(serial.clone(), 1_767_225_600)], 1).expect("a CRL");
    assert!(crl.starts_with("-----BEGIN X509 CRL-----"), "{crl}");
    assert_eq!(revoked_serials_of_crl(&crl, &authority.ca_pem()).expect("parses"), vec![serial]);
    let empty = authority.sign_crl(&[], 2).expect("an empty CRL");
    assert!(revoked_serials_of_crl(&empty, &authority.ca_pem()).expect("parses").is_empty());
    let other = CertificateAuthority::generate("other.test").expect("another CA");
    let error = revoked_serials_of_crl(&crl, &other.ca_pem()).expect_err("another CA's key");
    assert!(error.to_string().contains("not signed by the domain CA"), "{error}");
    // The same CA loaded back from its files signs too.
    let loaded = CertificateAuthority::from_pem(&authority.ca_pem(), &authority.key_pem()).expect("loads");
    assert!(loaded.sign_crl(&[], 3).is_ok());
}
