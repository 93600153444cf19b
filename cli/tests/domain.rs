//! A domain run the way its people run it: `unseen init` and `unseen serve` as real processes,
//! and every role's work done with the client commands over mTLS — then the server is killed
//! with SIGKILL, restarted, and what was acknowledged is still there.

use std::process::Command;

use crate::common;

use common::{DEVELOPER, Domain, OPERATOR, PROVIDER, REGULATOR, Server, identity, text};

#[test]
fn every_role_works_through_the_command_line_and_a_killed_server_loses_nothing_acknowledged() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    let work = scratch.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    // The operator creates the domain with one identity per role.
    let init = Command::new(env!("CARGO_BIN_EXE_unseen"))
        .args(["init", dir.to_str().unwrap(), "--name", "cli-test.unseen", "--json"])
        .args(["--principal", PROVIDER, "--principal", DEVELOPER, "--principal", OPERATOR, "--principal", REGULATOR])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let created: serde_json::Value = serde_json::from_slice(&init.stdout).unwrap();
    assert_eq!(created["identities"].as_array().unwrap().len(), 4);
    let domain_key = created["domain_public_key"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(dir.join("pki/domain.pub")).unwrap().trim(), domain_key);
    // A second init over it is refused instead of replacing the domain's keys.
    let again = Command::new(env!("CARGO_BIN_EXE_unseen"))
        .args(["init", dir.to_str().unwrap(), "--name", "other"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("already holds a domain"), "{}", text(&again));

    let server = Server::start(&dir);
    let domain = Domain { dir: dir.clone(), server: server.address.clone(), work: work.clone() };

    // Example data, catalog, application and module, as a developer would try them.
    let example = work.join("try");
    let written = domain.run(DEVELOPER, &["check", "--write-example", example.to_str().unwrap()]);
    assert!(written.status.success(), "{}", text(&written));
    let catalog = example.join("catalog.json");
    for dataset in ["population", "enterprise", "electricity"] {
        let file = example.join(format!("{dataset}.parquet"));
        let registered = domain.json(
            PROVIDER,
            &["dataset", "register", file.to_str().unwrap(), "--catalog", catalog.to_str().unwrap()],
            0,
        );
        assert_eq!(registered["dataset"], format!("{dataset}@v1"));
        assert!(registered["sample_rows"].as_u64().unwrap() < registered["rows"].as_u64().unwrap());
    }

    // Developer applies; the developer's list shows it submitted; the operator approves.
    let submitted =
        domain.json(DEVELOPER, &["scenario", "submit", example.join("application.json").to_str().unwrap()], 0);
    let scenario = submitted["scenario_id"].as_str().unwrap().to_string();
    let mine = domain.json(DEVELOPER, &["scenario", "list"], 0);
    assert_eq!(mine[0]["state"], "submitted");
    // A developer may not approve its own scenario: the CLI names the role it needs.
    let self_approval = domain.run(DEVELOPER, &["scenario", "approve", &scenario, "--reason", "mine"]);
    assert_eq!(self_approval.status.code(), Some(1));
    assert!(text(&self_approval).contains("is for the operator role"), "{}", text(&self_approval));
    let pending = domain.json(OPERATOR, &["scenario", "list", "--state", "submitted"], 0);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    let approved = domain.json(OPERATOR, &["scenario", "approve", &scenario, "--reason", "matches 绿色能源"], 0);
    let grant = approved["grant_id"].as_str().unwrap().to_string();
    assert_eq!(domain.json(DEVELOPER, &["scenario", "list"], 0)[0]["grant_id"], grant.as_str());
    // A typo in a filter is an error that lists the states, not an empty list.
    let typo = domain.run(OPERATOR, &["scenario", "list", "--state", "aproved"]);
    assert!(text(&typo).contains("submitted, approved, rejected"), "{}", text(&typo));

    // Sample run: the module file is uploaded first, outputs come back and are written out.
    let module = example.join("green_energy.wasm");
    let out = work.join("sample-out");
    let sample = domain.json(
        DEVELOPER,
        &[
            "job",
            "run",
            "--grant",
            &grant,
            "--module",
            module.to_str().unwrap(),
            "--sample",
            "--wait",
            "--out",
            out.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(sample["state"], "succeeded");
    let written = sample["written"].as_array().unwrap();
    assert!(!written.is_empty());
    let sample_csv = std::fs::read_to_string(written[0].as_str().unwrap()).unwrap();
    assert!(sample_csv.lines().count() > 1, "{sample_csv}");

    // The developer imports its own table for the grant (社会数据); the operator approves it.
    let own = example.join("enterprise.parquet");
    let mut import_args = vec!["import", "submit", own.to_str().unwrap(), "--grant", &grant, "--name", "my_firms"];
    import_args.extend(["--subject-kind", "enterprise", "--column", "uscc=subject", "--column", "name=identifier"]);
    for column in ["industry=public", "district=public", "employees=sensitive", "registered_capital=sensitive"] {
        import_args.extend(["--column", column]);
    }
    let imported = domain.json(DEVELOPER, &import_args, 0);
    assert_eq!((imported["state"].as_str(), imported["dataset"].as_str()), (Some("submitted"), Some("my_firms@v1")));
    let import = imported["import_id"].as_str().unwrap().to_string();
    let untagged = domain.run(DEVELOPER, &["import", "submit", own.to_str().unwrap(), "--grant", &grant]);
    assert_eq!(untagged.status.code(), Some(1));
    assert!(text(&untagged).contains("--column NAME=TAG"), "{}", text(&untagged));
    let queue = domain.json(OPERATOR, &["import", "list", "--state", "submitted"], 0);
    assert_eq!(queue[0]["columns"].as_array().unwrap().len(), 6);
    domain.json(OPERATOR, &["import", "approve", &import, "--reason", "customer list, consent on file"], 0);
    assert_eq!(domain.json(DEVELOPER, &["import", "list"], 0)[0]["state"], "approved");

    // Production run with the uploaded module's hash; outputs stay in the domain.
    let uploaded = domain.json(DEVELOPER, &["module", "upload", module.to_str().unwrap(), "--grant", &grant], 0);
    let module_hash = uploaded["module_hash"].as_str().unwrap().to_string();
    let production = domain.json(
        DEVELOPER,
        &["job", "run", "--grant", &grant, "--module", &module_hash, "--production", "--wait"],
        0,
    );
    let job = production["job_id"].as_str().unwrap().to_string();
    assert_eq!(production["state"], "succeeded");
    assert!(production["outputs"][0]["content"].is_null(), "production outputs never come back directly");
    let output = production["outputs"][0]["name"].as_str().unwrap().to_string();

    // Egress: the reviewer's report, then the operator (exit 10 while it waits).
    let egress = domain.json(DEVELOPER, &["egress", "request", &job, &output], 10);
    assert_eq!(egress["state"], "awaiting_operator");
    assert!(egress["report"]["rules"].as_array().unwrap().iter().any(|rule| rule["rule"] == "threshold"));
    let egress_id = egress["egress_id"].as_str().unwrap().to_string();
    let waiting = domain.json(OPERATOR, &["egress", "list", "--state", "awaiting_operator"], 0);
    assert_eq!(waiting[0]["egress_id"], egress_id.as_str());
    let decided = domain.json(OPERATOR, &["egress", "approve", &egress_id, "--reason", "aggregates only"], 0);
    let release = decided["release_id"].as_str().unwrap().to_string();
    assert_eq!(domain.json(DEVELOPER, &["egress", "show", &egress_id], 0)["release_id"], release.as_str());

    // The developer downloads the release and it verifies under the domain key from init.
    let bundle = work.join("bundle");
    let fetched = domain.json(DEVELOPER, &["release", "get", &release, "--out", bundle.to_str().unwrap()], 0);
    assert_eq!(fetched["verified"], true);
    let verified = domain.json(
        DEVELOPER,
        &["release", "verify", bundle.to_str().unwrap(), "--domain-key", dir.join("pki/domain.pub").to_str().unwrap()],
        0,
    );
    assert_eq!(verified["verified"], true);

    // The regulator: entries about the release, an inclusion proof, a checkpoint kept for later.
    let about = domain.json(REGULATOR, &["audit", "show", &release], 0);
    let index = about[0]["index"].as_u64().unwrap();
    let proved = domain.json(REGULATOR, &["audit", "prove", &index.to_string()], 0);
    assert_eq!(proved["verified"], true);
    let saved = work.join("checkpoint.note");
    domain.json(REGULATOR, &["audit", "checkpoint", "--save", saved.to_str().unwrap()], 0);
    let tail = domain.json(REGULATOR, &["audit", "tail", "-n", "3"], 0);
    assert_eq!(tail.as_array().unwrap().len(), 3);

    // SIGKILL the server and start it again: everything acknowledged is still there.
    server.kill();
    let server = Server::start(&dir);
    let domain = Domain { dir: dir.clone(), server: server.address.clone(), work: work.clone() };
    assert_eq!(domain.json(DEVELOPER, &["job", "show", &job], 0)["state"], "succeeded");
    assert_eq!(domain.json(DEVELOPER, &["import", "list", "--state", "approved"], 0)[0]["import_id"], import.as_str());
    let again = work.join("bundle-again");
    domain.json(DEVELOPER, &["release", "get", &release, "--out", again.to_str().unwrap()], 0);
    assert_eq!(std::fs::read(again.join("data.csv")).unwrap(), std::fs::read(bundle.join("data.csv")).unwrap());
    domain.json(DEVELOPER, &["release", "get", &release, "--out", again.to_str().unwrap()], 0);
    let elsewhere = domain.run(DEVELOPER, &["release", "get", &release, "--out", work.to_str().unwrap()]);
    assert_eq!(elsewhere.status.code(), Some(1), "a bundle never lands on other files");
    assert!(text(&elsewhere).contains("is not empty; give release"), "{}", text(&elsewhere));
    let consistent = domain.json(REGULATOR, &["audit", "prove", "--since", saved.to_str().unwrap()], 0);
    assert_eq!(consistent["verified"], true);
    let export = work.join("audit.json");
    domain.json(REGULATOR, &["audit", "export", "--out", export.to_str().unwrap()], 0);
    let offline =
        domain.json(REGULATOR, &["audit", "verify", export.to_str().unwrap(), "--public-key", &domain_key], 0);
    assert_eq!(offline["verified"], true);
    let range = work.join("audit-range.json");
    domain.json(REGULATOR, &["audit", "export", "--out", range.to_str().unwrap(), "--range", "2..7"], 0);
    let offline = domain.json(REGULATOR, &["audit", "verify", range.to_str().unwrap(), "--public-key", &domain_key], 0);
    assert_eq!((offline["first"].as_u64(), offline["entries"].as_u64()), (Some(2), Some(5)), "{offline}");
    // Everything is within the retention period: an operator's prune keeps it all, and says so.
    let pruned = domain.json(OPERATOR, &["audit", "prune", "--reason", "monthly retention run"], 0);
    assert_eq!((pruned["newly_pruned"].as_u64(), pruned["retention_days"].as_u64()), (Some(0), Some(183)), "{pruned}");
    let early = domain.run(OPERATOR, &["audit", "prune", "--before", "2099-01-01", "--reason", "x"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(text(&early).contains("within the retention period of 183 days"), "{}", text(&early));

    // The wrong key is caught: a checkpoint that does not verify is not trusted.
    let wrong_key = "11".repeat(32);
    let untrusted = domain.run(REGULATOR, &["audit", "tail", "--domain-key", &wrong_key]);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(text(&untrusted).contains("does not verify under the domain key"), "{}", text(&untrusted));
    drop(server);

    // With the server gone, a client says what to check.
    let unreachable = domain.run(DEVELOPER, &["job", "show", &job]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(text(&unreachable).contains("`unseen serve` running"), "{}", text(&unreachable));
}

#[test]
fn init_issues_more_identities_later_and_refuses_to_overwrite_one() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    let unseen = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_unseen")).args(args).output().unwrap();
    let init = unseen(&["init", dir.to_str().unwrap(), "--name", "issue.unseen", "--host", "gateway.example"]);
    assert!(init.status.success(), "{}", text(&init));
    assert!(text(&init).contains("unseen identity issue"), "a domain without identities says how to add one");
    let issued = unseen(&["identity", "issue", dir.to_str().unwrap(), "--principal", DEVELOPER, "--json"]);
    assert!(issued.status.success(), "{}", text(&issued));
    assert!(identity(&dir, DEVELOPER).with_extension("pem").exists());
    let twice = unseen(&["identity", "issue", dir.to_str().unwrap(), "--principal", DEVELOPER]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(text(&twice).contains("already exists"), "{}", text(&twice));
    let bad = unseen(&["identity", "issue", dir.to_str().unwrap(), "--principal", "auditor:x:y"]);
    assert!(text(&bad).contains("\"auditor\" is not a role"), "{}", text(&bad));
}

#[test]
fn init_refuses_a_metadata_url_holding_a_password_and_writes_domain_json_owner_only() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    let unseen = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_unseen")).args(args).output().unwrap();
    let url = "postgres://unseen:secret@127.0.0.1:5432/unseen";
    let refused = unseen(&["init", dir.to_str().unwrap(), "--name", "secret.unseen", "--metadata-url", url]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    for hint in ["holds a password", "PGPASSWORD", "PGPASSFILE", "UNSEEN_METADATA_URL"] {
        assert!(text(&refused).contains(hint), "the refusal names {hint}: {}", text(&refused));
    }
    assert!(!text(&refused).contains("secret@"), "the refusal does not repeat the password: {}", text(&refused));
    assert!(!dir.exists(), "nothing is written");
    let init = unseen(&["init", dir.to_str().unwrap(), "--name", "secret.unseen"]);
    assert!(init.status.success(), "{}", text(&init));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("domain.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "domain.json is readable by its owner only");
    }
}

#[test]
fn an_init_that_fails_part_way_leaves_nothing_behind_and_the_directory_can_be_initialised_again() {
    let scratch = tempfile::tempdir().unwrap();
    let unseen = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_unseen")).args(args).output().unwrap();
    // The store is opened after the PKI and the domain's keys are written: an unsupported one
    // fails init there.
    let absent = scratch.path().join("absent");
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for dir in [&absent, &empty] {
        let dir = dir.to_str().unwrap();
        let failed =
            unseen(&["init", dir, "--name", "half.unseen", "--principal", DEVELOPER, "--metadata-url", "mysql://db/x"]);
        assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
        assert!(text(&failed).contains("not supported"), "{}", text(&failed));
    }
    assert!(!absent.exists(), "a directory init created is removed");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "an empty directory is left empty");
    let init = unseen(&["init", empty.to_str().unwrap(), "--name", "half.unseen", "--principal", DEVELOPER]);
    assert!(init.status.success(), "{}", text(&init));
    assert!(empty.join("domain.json").exists() && empty.join("state/keys/domain.pk8").exists());
}
