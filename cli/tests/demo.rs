//! The whole flow as a user runs it: the `unseen` binary, from a directory that is not the
//! project, and the offline verifiers on what it leaves behind.

use std::path::Path;
use std::process::Command;

fn unseen(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_unseen")).args(args).current_dir(dir).output().expect("run unseen")
}

#[test]
fn demo_releases_the_aggregate_blocks_the_dump_and_verifies_the_log() {
    let elsewhere = tempfile::tempdir().unwrap();
    let domain = elsewhere.path().join("domain");
    let output = unseen(&["demo", "--json", "--dir", domain.to_str().unwrap()], elsewhere.path());
    assert!(output.status.success(), "demo failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON document");

    let released = report["released"].as_array().unwrap();
    assert_eq!(released.len(), 2);
    assert_eq!(released[0]["output"], "kwh_by_industry_district");
    // The bank's claims: as registered, under a wrong name, an unknown credit code.
    assert_eq!(released[1]["output"], "enterprise_checks");
    let answers = std::fs::read_to_string(Path::new(released[1]["bundle_dir"].as_str().unwrap()).join("data.csv"));
    assert_eq!(
        answers.unwrap().lines().collect::<Vec<_>>(),
        ["claim,found,name,district,industry", "1,true,true,true,", "2,true,false,,", "3,false,,,"]
    );
    assert!(report["suppressed_cells"].as_u64().unwrap() >= 1);
    assert_eq!(report["audit_verified"], true);
    assert_eq!(report["audit_proofs_verified"], true, "inclusion and consistency proofs over the wire");
    assert_eq!(report["release_verified"], true);

    let blocked = report["blocked"].as_array().unwrap();
    let dump = blocked.iter().find(|output| output["output"] == "verification_result").expect("the id dump is blocked");
    for rule in ["contract", "lineage", "threshold", "content"] {
        assert!(
            dump["rules"].as_array().unwrap().iter().any(|named| named == rule),
            "{rule} must block the dump: {dump}"
        );
    }
    let notes =
        blocked.iter().find(|output| output["output"] == "verification_notes").expect("the CSV artifact is blocked");
    assert_eq!(notes["rules"], serde_json::json!(["content"]));
    assert_eq!(report["refused_queries"][0]["rule"], "catalog");

    // The released bundle verifies offline, and a changed byte of its data does not.
    let bundle = Path::new(released[0]["bundle_dir"].as_str().unwrap());
    let key = std::fs::read_to_string(bundle.join("domain.pub")).unwrap();
    let verify = unseen(&["verify", "release", bundle.to_str().unwrap(), "--public-key", &key], elsewhere.path());
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let data = std::fs::read_to_string(bundle.join("data.csv")).unwrap();
    assert!(!data.contains("__unseen"), "no hidden lineage column leaves");
    std::fs::write(bundle.join("data.csv"), data.replacen('1', "2", 1)).unwrap();
    let tampered = unseen(&["verify", "release", bundle.to_str().unwrap(), "--public-key", &key], elsewhere.path());
    assert!(!tampered.status.success());
    assert!(String::from_utf8_lossy(&tampered.stderr).contains("differs from the manifest"));

    // The audit export verifies offline; an edited decision is caught and located.
    let export = domain.join("audit-export.json");
    let verify =
        unseen(&["verify", "audit", export.to_str().unwrap(), "--public-key", &key, "--json"], elsewhere.path());
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let again = unseen(&["audit", "verify", export.to_str().unwrap(), "--public-key", &key], elsewhere.path());
    assert!(again.status.success(), "`unseen audit verify` is the regulator's spelling of the same check");
    let text = std::fs::read_to_string(&export).unwrap();
    let mut parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = parsed["entries"].as_array_mut().unwrap();
    let suppressed = entries.iter().find(|entry| entry["action"] == "query.suppress").expect("suppression was logged");
    assert!(suppressed["reason"].as_str().unwrap().starts_with("7 groups"), "{suppressed}");
    let index = entries.iter().position(|entry| entry["decision"] == "blocked").expect("the block was logged");
    entries[index]["decision"] = "auto_released".into();
    std::fs::write(&export, serde_json::to_string(&parsed).unwrap()).unwrap();
    let tampered = unseen(&["verify", "audit", export.to_str().unwrap(), "--public-key", &key], elsewhere.path());
    assert!(!tampered.status.success());
    assert!(String::from_utf8_lossy(&tampered.stderr).contains(&format!("entry {index}")));
}

#[test]
fn every_command_has_help() {
    // Walks the whole command tree from `unseen --help`, so a new command is covered by itself.
    let here = tempfile::tempdir().unwrap();
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = unseen(&args, here.path());
        let help = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success() && help.contains("Usage"), "{args:?}: {help}");
        seen += 1;
        let Some(commands) = help.split("Commands:\n").nth(1) else { continue };
        for line in commands.lines().take_while(|line| line.starts_with("  ")) {
            let name = line.split_whitespace().next().unwrap_or_default();
            if !name.is_empty() && name != "help" && line.starts_with("  ") && !line.starts_with("   ") {
                let mut child = path.clone();
                child.push(name.to_string());
                pending.push(child);
            }
        }
    }
    assert!(seen > 30, "the walk found only {seen} commands");
}
