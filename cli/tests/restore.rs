//! Backup and restore exactly as `deploy/README.md` ("Backup and restore") tells an operator:
//! the gateway is stopped with SIGTERM, the domain directory archived with `tar` (and, with
//! PostgreSQL, the database dumped with `pg_dump`), the gateway started again; then the
//! directory and the database are lost, and the archive and the dump restored into an empty
//! directory and an empty database. The restored domain serves what it served: the release
//! verifies under the key from `init`, the log extends a checkpoint the regulator took before the
//! backup and verifies offline, finished jobs are there and a new job runs on the restored data.
//!
//! The PostgreSQL test reads `UNSEEN_TEST_POSTGRES_URL` like the store's tests (skipped without
//! it, a failure under `CI=true`) and takes the password the way the README says the gateway
//! does: from a libpq password file (`PGPASSFILE`), never from the URL in `domain.json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

use common::{DEVELOPER, Domain, OPERATOR, PROVIDER, REGULATOR, Server, text};

/// What the domain held before the backup, to be found again after the restore.
struct Before {
    domain_key: String,
    grant: String,
    module_hash: String,
    job: String,
    release: String,
    bundle: PathBuf,
    checkpoint: PathBuf,
}

/// A path as the command-line argument it becomes.
fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A string field of a command's JSON document.
fn string(value: &serde_json::Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("a string, got {value}"))
}

/// Runs a tool of the README's procedure (`tar`, `pg_dump`, …) with `environment`; it must succeed.
fn run_tool(program: &str, args: &[&str], environment: &[(&str, &Path)]) {
    succeed(Command::new(program).args(args).envs(environment.iter().copied()));
}

/// Runs `command`, which must succeed.
fn succeed(command: &mut Command) {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().unwrap_or_else(|error| panic!("{program} is needed to back up a domain: {error}"));
    assert!(output.status.success(), "{command:?}: {}", text(&output));
}

/// `unseen init` with one identity per role, and the metadata store at `metadata_url` if given.
fn init(dir: &Path, metadata_url: Option<&str>, environment: &[(&str, &Path)]) -> String {
    let mut init = Command::new(env!("CARGO_BIN_EXE_unseen"));
    init.args(["init", utf8(dir), "--name", "restore-test.unseen", "--json"])
        .args(["--principal", PROVIDER, "--principal", DEVELOPER, "--principal", OPERATOR, "--principal", REGULATOR])
        .envs(environment.iter().copied());
    if let Some(url) = metadata_url {
        init.args(["--metadata-url", url]);
    }
    let init = init.output().expect("run unseen init");
    assert!(init.status.success(), "{}", text(&init));
    let created: serde_json::Value = serde_json::from_slice(&init.stdout).expect("init --json prints JSON");
    string(&created["domain_public_key"]).to_string()
}

/// Every role's work up to a release the developer downloads, and a checkpoint the regulator keeps.
fn work_to_a_release(domain: &Domain, domain_key: String) -> Before {
    let example = domain.work.join("try");
    let written = domain.run(DEVELOPER, &["check", "--write-example", utf8(&example)]);
    assert!(written.status.success(), "{}", text(&written));
    let catalog = example.join("catalog.json");
    for dataset in ["population", "enterprise", "electricity"] {
        let file = example.join(format!("{dataset}.parquet"));
        domain.json(PROVIDER, &["dataset", "register", utf8(&file), "--catalog", utf8(&catalog)], 0);
    }
    let submitted = domain.json(DEVELOPER, &["scenario", "submit", utf8(&example.join("application.json"))], 0);
    let scenario = string(&submitted["scenario_id"]);
    let approved = domain.json(OPERATOR, &["scenario", "approve", scenario, "--reason", "matches 绿色能源"], 0);
    let grant = string(&approved["grant_id"]).to_string();
    let module = example.join("green_energy.wasm");
    let uploaded = domain.json(DEVELOPER, &["module", "upload", utf8(&module), "--grant", &grant], 0);
    let module_hash = string(&uploaded["module_hash"]).to_string();
    let (job, release) = run_and_release(domain, &grant, &module_hash);
    let bundle = domain.work.join("bundle");
    let fetched = domain.json(DEVELOPER, &["release", "get", &release, "--out", utf8(&bundle)], 0);
    assert_eq!(fetched["verified"], true);
    let checkpoint = domain.work.join("checkpoint.note");
    domain.json(REGULATOR, &["audit", "checkpoint", "--save", utf8(&checkpoint)], 0);
    Before { domain_key, grant, module_hash, job, release, bundle, checkpoint }
}

/// A production job of `module_hash` under `grant`, its output requested and approved: the job
/// and the release.
fn run_and_release(domain: &Domain, grant: &str, module_hash: &str) -> (String, String) {
    let production =
        domain.json(DEVELOPER, &["job", "run", "--grant", grant, "--module", module_hash, "--production", "--wait"], 0);
    assert_eq!(production["state"], "succeeded", "{production}");
    let job = string(&production["job_id"]).to_string();
    let output = string(&production["outputs"][0]["name"]);
    let egress = domain.json(DEVELOPER, &["egress", "request", &job, output], 10);
    let egress_id = string(&egress["egress_id"]);
    let decided = domain.json(OPERATOR, &["egress", "approve", egress_id, "--reason", "aggregates only"], 0);
    (job, string(&decided["release_id"]).to_string())
}

/// The README's backup of a stopped domain: the directory as a tar archive, without the
/// decrypted working copies of running jobs (`state/work`) and the compiled-module cache.
fn archive(dir: &Path, archive: &Path) {
    run_tool(
        "tar",
        &[
            "--create",
            "--gzip",
            "--file",
            utf8(archive),
            "--directory",
            utf8(dir),
            "--exclude=./state/work",
            "--exclude=./state/cache",
            ".",
        ],
        &[],
    );
}

/// The README's restore of the archive into an empty directory, modes kept.
fn extract(archive: &Path, dir: &Path) {
    assert!(!dir.exists(), "a restore goes into an empty directory");
    std::fs::create_dir_all(dir).expect("create the directory to restore into");
    run_tool(
        "tar",
        &["--extract", "--gzip", "--same-permissions", "--file", utf8(archive), "--directory", utf8(dir)],
        &[],
    );
}

/// Work done after the backup, which a restore loses: a regulator's checkpoint of it.
fn work_after_the_backup(domain: &Domain) -> PathBuf {
    let example = domain.work.join("try");
    let application = example.join("application.json");
    domain.json(DEVELOPER, &["scenario", "submit", utf8(&application)], 0);
    let checkpoint = domain.work.join("checkpoint-after-backup.note");
    domain.json(REGULATOR, &["audit", "checkpoint", "--save", utf8(&checkpoint)], 0);
    checkpoint
}

/// What the restored domain must still be and do; `later` is a checkpoint taken after the
/// backup, which the restored log no longer extends.
fn check_restored(domain: &Domain, before: &Before, later: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(domain.dir.join("pki").join(key)).expect("a restored key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "pki/{key} stays readable by its owner only, got {mode:o}");
    }
    let restored_key = std::fs::read_to_string(domain.dir.join("pki/domain.pub")).expect("the restored pki/domain.pub");
    assert_eq!(restored_key.trim(), before.domain_key);

    // The release is served again, verifies under the key from init, and is the same bundle.
    let again = domain.work.join("bundle-restored");
    let fetched = domain.json(DEVELOPER, &["release", "get", &before.release, "--out", utf8(&again)], 0);
    assert_eq!(fetched["verified"], true);
    let data = |bundle: &Path| std::fs::read(bundle.join("data.csv")).expect("a bundle's data.csv");
    assert_eq!(data(&again), data(&before.bundle));
    let domain_key = domain.dir.join("pki/domain.pub");
    let verified = domain.json(DEVELOPER, &["release", "verify", utf8(&again), "--domain-key", utf8(&domain_key)], 0);
    assert_eq!(verified["verified"], true);
    assert_eq!(domain.json(DEVELOPER, &["job", "show", &before.job], 0)["state"], "succeeded");

    // The log extends what the regulator saw before the backup, and verifies offline.
    let consistent = domain.json(REGULATOR, &["audit", "prove", "--since", utf8(&before.checkpoint)], 0);
    assert_eq!(consistent["verified"], true);
    let export = domain.work.join("audit-restored.json");
    domain.json(REGULATOR, &["audit", "export", "--out", utf8(&export)], 0);
    let offline = domain.json(REGULATOR, &["audit", "verify", utf8(&export), "--public-key", &before.domain_key], 0);
    assert_eq!(offline["verified"], true);
    // A restore rolls the domain back to the backup, and every regulator holding a checkpoint
    // from after it sees that (deploy/README.md says to tell them).
    let rolled_back = domain.run(REGULATOR, &["audit", "prove", "--since", utf8(later)]);
    assert_eq!(rolled_back.status.code(), Some(1), "{}", text(&rolled_back));
    assert!(text(&rolled_back).contains("the log shrank"), "{}", text(&rolled_back));

    // New work runs on the restored datasets and module (its compiled cache was left out of the
    // backup) and is released past the restored review records of the first release.
    let (_, release) = run_and_release(domain, &before.grant, &before.module_hash);
    assert_ne!(release, before.release);
    let bundle = domain.work.join("bundle-new");
    let fetched = domain.json(DEVELOPER, &["release", "get", &release, "--out", utf8(&bundle)], 0);
    assert_eq!(fetched["verified"], true);
}

#[test]
fn a_stopped_domain_archived_with_tar_is_restored_and_serves_what_it_served() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    let work = scratch.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let domain_key = init(&dir, None, &[]);

    let server = Server::start(&dir);
    let domain = Domain { dir: dir.clone(), server: server.address.clone(), work: work.clone() };
    let before = work_to_a_release(&domain, domain_key);

    // Backup: stop, archive, start again.
    server.stop();
    let backup = scratch.path().join("backup.tar.gz");
    archive(&dir, &backup);
    let server = Server::start(&dir);
    let domain = Domain { dir: dir.clone(), server: server.address.clone(), work: work.clone() };
    let later = work_after_the_backup(&domain);

    // The disk is lost while the domain runs; the archive is restored on another disk, and the
    // domain served from there by a path relative to where its operator stands.
    server.kill();
    std::fs::remove_dir_all(&dir).unwrap();
    let moved = scratch.path().join("other-disk/domain");
    extract(&backup, &moved);
    let server = Server::start_in(scratch.path(), Path::new("other-disk/domain"));
    let domain = Domain { dir: moved, server: server.address.clone(), work };
    check_restored(&domain, &before, &later);
}

/// Whether this runs under CI, where a backend that cannot be tested is a failure.
fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"))
}

/// A PostgreSQL database of this test's own, dropped when the test ends, and the password file
/// the gateway and the PostgreSQL tools read.
struct Database {
    host: String,
    port: String,
    user: String,
    name: String,
    password_file: PathBuf,
}

impl Database {
    /// From `UNSEEN_TEST_POSTGRES_URL` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`).
    fn create(scratch: &Path) -> Option<Self> {
        let Ok(admin_url) = std::env::var("UNSEEN_TEST_POSTGRES_URL") else {
            assert!(!on_ci(), "UNSEEN_TEST_POSTGRES_URL is not set: CI must test the restore on PostgreSQL");
            eprintln!("skipped on PostgreSQL: set UNSEEN_TEST_POSTGRES_URL to restore a domain there");
            return None;
        };
        let rest = admin_url.split_once("://").expect("a URL").1;
        let (credentials, address) = rest.split_once('@').expect("the URL names a user and a password");
        let (user, password) = credentials.split_once(':').expect("the URL has a password");
        let address = address.split('/').next().unwrap_or(address);
        let (host, port) = address.split_once(':').unwrap_or((address, "5432"));
        // libpq's password file: HOST:PORT:DATABASE:USER:PASSWORD, ':' and '\' escaped.
        let password_file = scratch.join("pgpass");
        let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
        std::fs::write(&password_file, format!("*:*:*:{user}:{escaped}\n")).expect("write the password file");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))
            .expect("make the password file owner-only");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .subsec_nanos();
        let database = Self {
            host: host.into(),
            port: port.into(),
            user: user.into(),
            name: format!("unseen_restore_{}_{nanos}", std::process::id()),
            password_file,
        };
        database.createdb();
        Some(database)
    }

    /// The URL `domain.json` holds: no password in it.
    fn url(&self) -> String {
        format!("postgres://{}@{}:{}/{}", self.user, self.host, self.port, self.name)
    }

    fn environment(&self) -> [(&'static str, &Path); 1] {
        [("PGPASSFILE", &self.password_file)]
    }

    /// A PostgreSQL client tool connecting as the test's role, its password from the file.
    fn tool(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.args(["--host", &self.host, "--port", &self.port, "--username", &self.user]).envs(self.environment());
        command
    }

    /// `createdb`: the empty database a restore goes into.
    fn createdb(&self) {
        succeed(self.tool("createdb").arg(&self.name));
    }

    fn dropdb(&self) {
        succeed(self.tool("dropdb").args(["--force", "--if-exists", &self.name]));
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let dropped = self.tool("dropdb").args(["--force", "--if-exists", &self.name]).status();
        if !dropped.is_ok_and(|status| status.success()) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

#[test]
fn a_domain_on_postgresql_is_restored_from_its_archive_and_a_pg_dump() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(database) = Database::create(scratch.path()) else { return };
    let environment = database.environment();
    let dir = scratch.path().join("domain");
    let work = scratch.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let url = database.url();
    let domain_key = init(&dir, Some(&url), &environment);
    let config = std::fs::read_to_string(dir.join("domain.json")).unwrap();
    assert!(config.contains(&url), "domain.json names the database, without a password: {config}");

    let server = Server::start_with_env(&dir, &environment);
    let domain = Domain { dir: dir.clone(), server: server.address.clone(), work: work.clone() };
    let before = work_to_a_release(&domain, domain_key);

    // Backup: stop, dump the database and archive the directory, start again.
    server.stop();
    let dump = scratch.path().join("metadata.dump");
    run_tool("pg_dump", &["--format=custom", "--file", utf8(&dump), "--dbname", &url], &environment);
    let backup = scratch.path().join("backup.tar.gz");
    archive(&dir, &backup);
    let server = Server::start_with_env(&dir, &environment);
    let domain = Domain { dir: dir.clone(), server: server.address.clone(), work: work.clone() };
    let later = work_after_the_backup(&domain);

    // Both are lost; an empty database gets the dump, an empty directory the archive.
    server.kill();
    std::fs::remove_dir_all(&dir).unwrap();
    database.dropdb();
    database.createdb();
    run_tool("pg_restore", &["--no-owner", "--dbname", &url, utf8(&dump)], &environment);
    extract(&backup, &dir);
    let server = Server::start_with_env(&dir, &environment);
    let domain = Domain { dir: dir.clone(), server: server.address.clone(), work };
    check_restored(&domain, &before, &later);
}
