//! A domain run as a service, watched the way an operator watches one: the log on standard
//! error (a line per request, JSON when asked), failed handshakes with their reason, the
//! health service, the Prometheus endpoint (only when asked for), and SIGTERM while a guest
//! runs (the server exits within its bound; the job is `interrupted`, logged and re-runnable).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;

use common::{Server, log_with};

const PROVIDER: &str = "provider:huzhou-data-bureau:registrar";
const DEVELOPER: &str = "developer:greenfin-analytics:analyst";
const OPERATOR: &str = "operator:huzhou-data-group:reviewer";
const REGULATOR: &str = "regulator:zhejiang-cac:inspector";

/// The exit status of `unseen job show` for a job that ended without succeeding.
const EXIT_JOB_DID_NOT_SUCCEED: i32 = 4;
/// Longest `unseen serve` may take to exit after SIGTERM (`SHUTDOWN_BOUND` in the server).
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// `unseen init DIR` with one identity per principal.
fn init(dir: &Path, name: &str, principals: &[&str]) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_unseen"));
    command.args(["init", dir.to_str().expect("a UTF-8 path"), "--name", name]);
    for principal in principals {
        command.args(["--principal", principal]);
    }
    let output = command.output().expect("run unseen init");
    assert!(output.status.success(), "{}", text(&output));
}

/// The identity files `unseen init` wrote for a principal, as the path without extension.
fn identity(domain: &Path, principal: &str) -> PathBuf {
    let parts: Vec<&str> = principal.splitn(3, ':').collect();
    let [role, organisation, name] = parts[..] else { panic!("{principal} is not ROLE:ORGANISATION:NAME") };
    domain.join("pki").join(format!("{organisation}-{role}-{name}"))
}

/// Runs `unseen ARGS` against `server` with `identity`.
fn run(server: &str, identity: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unseen"))
        .args(args)
        .env("UNSEEN_SERVER", server)
        .env("UNSEEN_IDENTITY", identity)
        .env_remove("UNSEEN_CA")
        .output()
        .expect("run unseen")
}

/// Runs with `--json`, expects success, returns the document.
fn json(server: &str, identity: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let output = run(server, identity, &args);
    assert!(output.status.success(), "unseen {}: {}", args.join(" "), text(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("JSON, got {}", text(&output)))
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn serve_with_a_json_log_writes_one_line_per_request_naming_rpc_role_organisation_and_status() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    init(&dir, "log.unseen", &[DEVELOPER, OPERATOR]);
    let log = scratch.path().join("serve.log");
    let (server, _) = Server::start_with(&dir, &["--log-format", "json"], std::fs::File::create(&log).unwrap());
    json(&server.address, &identity(&dir, DEVELOPER), &["scenario", "list"]);
    let refused = run(&server.address, &identity(&dir, OPERATOR), &["scenario", "approve", "s-9", "--reason", "ok"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));

    let written = log_with(&log, "DecideScenario\",\"role\"");
    let lines: Vec<serde_json::Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("a JSON log line, got {line:?}")))
        .collect();
    let request = |rpc: &str| {
        lines
            .iter()
            .find(|line| line["message"] == "request" && line["rpc"] == rpc)
            .unwrap_or_else(|| panic!("no request line for {rpc} in\n{written}"))
    };
    let listed = request("/unseen.v1.Developer/ListScenarios");
    assert_eq!(
        (listed["role"].as_str(), listed["organisation"].as_str()),
        (Some("developer"), Some("greenfin-analytics"))
    );
    assert_eq!(listed["status"], "Ok");
    assert!(listed["latency_ms"].is_number(), "{listed}");
    let decided = request("/unseen.v1.Operator/DecideScenario");
    assert_eq!((decided["role"].as_str(), decided["status"].as_str()), (Some("operator"), Some("NotFound")));
    assert!(decided["reason"].as_str().unwrap().contains("scenario s-9 not found"), "{decided}");
    assert!(listed.get("reason").is_none(), "an answered request has no reason: {listed}");
    // The refusal itself is logged with its reason, inside the request's span.
    let refusal = lines.iter().find(|line| line["message"] == "refused").expect("a refusal line");
    assert!(refusal["reason"].as_str().unwrap().contains("s-9"), "{refusal}");
    assert_eq!(refusal["span"]["rpc"], "/unseen.v1.Operator/DecideScenario");
}

#[test]
fn an_identity_from_another_domain_is_refused_at_the_handshake_and_both_sides_say_why() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, foreign) = (scratch.path().join("domain"), scratch.path().join("foreign"));
    init(&dir, "here.unseen", &[DEVELOPER]);
    init(&foreign, "there.unseen", &[DEVELOPER]);
    let log = scratch.path().join("serve.log");
    let (server, _) = Server::start_with(&dir, &[], std::fs::File::create(&log).unwrap());
    let stranger = identity(&foreign, DEVELOPER);

    // With this domain's CA the client connects; the gateway refuses its certificate.
    let ca = dir.join("pki/ca.pem");
    let refused = run(&server.address, &stranger, &["scenario", "list", "--ca", ca.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("was not issued by this domain's CA"), "{}", text(&refused));
    let written = log_with(&log, "was not issued by this domain's CA");
    assert!(
        written
            .lines()
            .any(|line| line.contains("TLS handshake failed") && line.contains("not issued by this domain's CA")),
        "{written}"
    );

    // With its own domain's CA the client does not trust the gateway; the gateway logs the alert.
    let mistrusted = run(&server.address, &stranger, &["scenario", "list"]);
    assert_eq!(mistrusted.status.code(), Some(1));
    assert!(text(&mistrusted).contains("gateway's certificate is not one the domain CA"), "{}", text(&mistrusted));
    assert!(log_with(&log, "alert UnknownCA").contains("alert UnknownCA"));
    // Neither looks like a server that is not running.
    assert!(!text(&refused).contains("`unseen serve` running"), "{}", text(&refused));
}

#[test]
fn the_health_service_answers_serving_to_any_identity_of_the_domain() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    init(&dir, "health.unseen", &[DEVELOPER, OPERATOR]);
    let server = Server::start(&dir);
    for principal in [OPERATOR, DEVELOPER] {
        let health = json(&server.address, &identity(&dir, principal), &["health"]);
        assert_eq!(health["status"], "SERVING", "{health}");
    }
    let service = json(&server.address, &identity(&dir, OPERATOR), &["health", "--service", "unseen.v1.Operator"]);
    assert_eq!(service["status"], "SERVING");
}

/// `GET /metrics` over plain HTTP/1.1; the body.
fn scrape(address: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the metrics port");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The TCP sockets process `pid` listens on (Linux: its socket inodes in /proc/net/tcp{,6}).
#[cfg(target_os = "linux")]
fn listening_sockets(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's file descriptors")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // state 0A is LISTEN; field 9 is the inode
            fields.get(3) == Some(&"0A") && fields.get(9).is_some_and(|inode| inodes.iter().any(|own| own == inode))
        })
        .count()
}

#[test]
fn metrics_are_served_only_when_asked_for_and_count_requests_by_rpc_and_status() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    init(&dir, "metrics.unseen", &[DEVELOPER]);

    // Off by default: nothing announced, and the gateway's port is the only one listening.
    let (server, announced) = Server::start_with(&dir, &[], std::process::Stdio::null());
    assert!(announced.get("metrics").is_none(), "{announced}");
    #[cfg(target_os = "linux")]
    assert_eq!(listening_sockets(server.pid()), 1);
    drop(server);

    let (server, announced) =
        Server::start_with(&dir, &["--metrics-listen", "127.0.0.1:0"], std::process::Stdio::null());
    let metrics = announced["metrics"].as_str().expect("the metrics address is announced").to_string();
    assert!(metrics.starts_with("127.0.0.1:"), "{metrics}");
    #[cfg(target_os = "linux")]
    assert_eq!(listening_sockets(server.pid()), 2);
    json(&server.address, &identity(&dir, DEVELOPER), &["scenario", "list"]);
    let body = scrape(&metrics);
    assert!(
        body.lines()
            .any(|line| line == "unseen_requests_total{rpc=\"/unseen.v1.Developer/ListScenarios\",code=\"Ok\"} 1"),
        "{body}"
    );
    for family in ["unseen_request_seconds_bucket", "unseen_jobs_queued 0", "unseen_audit_fsync_seconds_count"] {
        assert!(body.contains(family), "{family} missing from\n{body}");
    }
}

#[test]
fn sigterm_cancels_a_running_guest_exits_within_the_bound_and_the_job_is_interrupted_and_logged() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("domain");
    init(&dir, "stop.unseen", &[PROVIDER, DEVELOPER, OPERATOR, REGULATOR]);
    let log = scratch.path().join("serve.log");
    let (server, _) = Server::start_with(&dir, &[], std::fs::File::create(&log).unwrap());
    let address = server.address.clone();
    let as_ = |principal: &str| identity(&dir, principal);

    // A grant, and a guest that spins until its fuel is spent (about half a minute).
    let example = scratch.path().join("try");
    let written = run(&address, &as_(DEVELOPER), &["check", "--write-example", example.to_str().unwrap()]);
    assert!(written.status.success(), "{}", text(&written));
    let catalog = example.join("catalog.json");
    for dataset in ["population", "enterprise", "electricity"] {
        let file = example.join(format!("{dataset}.parquet"));
        json(
            &address,
            &as_(PROVIDER),
            &["dataset", "register", file.to_str().unwrap(), "--catalog", catalog.to_str().unwrap()],
        );
    }
    let application = example.join("application.json");
    let scenario = json(&address, &as_(DEVELOPER), &["scenario", "submit", application.to_str().unwrap()]);
    let scenario = scenario["scenario_id"].as_str().unwrap().to_string();
    let approved = json(&address, &as_(OPERATOR), &["scenario", "approve", &scenario, "--reason", "ok"]);
    let grant = approved["grant_id"].as_str().unwrap().to_string();
    let spinner = scratch.path().join("red_team.wasm");
    std::fs::write(&spinner, unseen_samples::modules::RED_TEAM).unwrap();
    let run_args = ["job", "run", "--grant", &grant, "--module", spinner.to_str().unwrap(), "--production"];
    let submitted = json(&address, &as_(DEVELOPER), &[&run_args[..], &["--params", "attack=loop"]].concat());
    let job = submitted["job_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    while json(&address, &as_(DEVELOPER), &["job", "show", &job])["state"] != "running" {
        assert!(started.elapsed() < Duration::from_secs(60), "{job} never started");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (status, took) = server.terminate(SHUTDOWN_BOUND).expect("the server exits within its bound after SIGTERM");
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(&log).unwrap());
    eprintln!("stopped {:.1} s after SIGTERM", took.as_secs_f64());
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("cancelling a running job"), "{written}");

    // Restarted, the job is interrupted (not failed, not cancelled), logged, and runs again.
    let server = Server::start(&dir);
    let shown = run(&server.address, &as_(DEVELOPER), &["job", "show", &job, "--json"]);
    assert_eq!(shown.status.code(), Some(EXIT_JOB_DID_NOT_SUCCEED), "{}", text(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("the job as JSON");
    assert_eq!(shown["state"], "interrupted", "{shown}");
    assert!(shown["error"].as_str().unwrap().contains("run it again"), "{shown}");
    let entries = json(&server.address, &as_(REGULATOR), &["audit", "show", &job]);
    let actions: Vec<&str> =
        entries.as_array().unwrap().iter().filter_map(|entry| entry["entry"]["action"].as_str()).collect();
    assert_eq!(actions.iter().filter(|action| **action == "job.interrupt").count(), 1, "{actions:?}");
    assert!(!actions.contains(&"job.finish"), "a job stopped by the shutdown is not finished: {actions:?}");
    let module = submitted["module_hash"].as_str().unwrap();
    let again_args = ["job", "run", "--grant", &grant, "--module", module, "--production", "--params", "attack=loop"];
    let again = json(&server.address, &as_(DEVELOPER), &again_args);
    assert_ne!(again["job_id"], job.as_str(), "the interrupted job's module and grant run again");
}
