//! The identity lifecycle of a domain directory: `unseen identity list` and `revoke`; a revoked
//! identity is refused at the handshake once the server (re)starts, and both sides say so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{DEVELOPER, OPERATOR, Server, log_with};

fn unseen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unseen")).args(args).output().expect("run unseen")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn identity(domain: &Path, principal: &str) -> PathBuf {
    let parts: Vec<&str> = principal.splitn(3, ':').collect();
    let [role, organisation, name] = parts[..] else { panic!("{principal} is not ROLE:ORGANISATION:NAME") };
    domain.join("pki").join(format!("{organisation}-{role}-{name}"))
}

fn as_client(server: &str, identity: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unseen"))
        .args(args)
        .env("UNSEEN_SERVER", server)
        .env("UNSEEN_IDENTITY", identity)
        .env_remove("UNSEEN_CA")
        .output()
        .expect("run unseen")
}

#[test]
fn a_revoked_identity_is_listed_as_such_and_refused_at_the_handshake_once_the_server_starts() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    let path = dir.to_str().unwrap();
    let init = unseen(&["init", path, "--name", "revoke.unseen", "--principal", DEVELOPER, "--principal", OPERATOR]);
    assert!(init.status.success(), "{}", text(&init));

    let listed = unseen(&["identity", "list", path, "--json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let identities: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(identities.len(), 2, "{identities:?}");
    let developer = identities.iter().find(|entry| entry["principal"] == DEVELOPER).expect("the developer");
    assert_eq!((developer["revoked"].as_bool(), developer["expired"].as_bool()), (Some(false), Some(false)));
    assert_eq!(developer["role"], "developer");
    assert!(developer["serial"].as_str().is_some_and(|serial| !serial.is_empty()), "{developer}");

    // Unknown identities and the server's certificate are refused.
    let unknown = unseen(&["identity", "revoke", path, "developer:nobody:none", "--reason", "x"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown).contains("no identity developer:nobody:none"), "{}", text(&unknown));
    let server_pem = dir.join("pki/server.pem");
    let server_cert = unseen(&["identity", "revoke", path, server_pem.to_str().unwrap(), "--reason", "x"]);
    assert_eq!(server_cert.status.code(), Some(1));
    assert!(text(&server_cert).contains("server certificate"), "{}", text(&server_cert));
    assert!(!dir.join("pki/crl.pem").exists());

    let revoked = unseen(&["identity", "revoke", path, DEVELOPER, "--reason", "left the company", "--json"]);
    assert!(revoked.status.success(), "{}", text(&revoked));
    let revocation: serde_json::Value = serde_json::from_slice(&revoked.stdout).expect("JSON");
    assert_eq!(revocation["serial"], developer["serial"]);
    assert!(dir.join("pki/crl.pem").exists());
    let again = unseen(&["identity", "revoke", path, DEVELOPER, "--reason", "again"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).contains("already revoked") && text(&again).contains("greenfin-analytics"),
        "{}",
        text(&again)
    );
    let listed = unseen(&["identity", "list", path]);
    assert!(
        text(&listed).lines().any(|line| line.starts_with(DEVELOPER) && line.contains("revoked")),
        "{}",
        text(&listed)
    );

    let log = scratch.path().join("serve.log");
    let (server, _) = Server::start_with(&dir, &[], std::fs::File::create(&log).unwrap());
    let refused = as_client(&server.address, &identity(&dir, DEVELOPER), &["scenario", "list"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    // With TLS 1.3 the alert mostly arrives as a connection that ended; the client names revocation as
    // a cause either way, and the server's log says which.
    assert!(text(&refused).contains("your identity") && text(&refused).contains("revoked"), "{}", text(&refused));
    let written = log_with(&log, "was revoked");
    assert!(
        written.lines().any(|line| line.contains("TLS handshake failed") && line.contains("was revoked")),
        "{written}"
    );
    let operator = as_client(&server.address, &identity(&dir, OPERATOR), &["scenario", "list", "--json"]);
    assert!(operator.status.success(), "{}", text(&operator));
}
