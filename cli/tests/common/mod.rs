//! What the command-line tests share: a real `unseen serve` process, and its clients running
//! `unseen` commands as the domain's principals.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const PROVIDER: &str = "provider:huzhou-data-bureau:registrar";
pub const DEVELOPER: &str = "developer:greenfin-analytics:analyst";
pub const OPERATOR: &str = "operator:huzhou-data-group:reviewer";
pub const REGULATOR: &str = "regulator:zhejiang-cac:inspector";

/// A running `unseen serve`; killed when dropped.
pub struct Server {
    child: Child,
    pub address: String,
}

impl Server {
    /// Serves the domain directory `domain` on a port the OS picks.
    pub fn start(domain: &Path) -> Self {
        Self::start_with(domain, &[], Stdio::null()).0
    }

    /// Serves `domain` with `environment` added to the server's environment.
    pub fn start_with_env(domain: &Path, environment: &[(&str, &Path)]) -> Self {
        Self::spawn(domain, &[], environment, Stdio::null(), None).0
    }

    /// Serves `domain`, a path relative to `working_directory`, from that directory.
    pub fn start_in(working_directory: &Path, domain: &Path) -> Self {
        Self::spawn(domain, &[], &[], Stdio::null(), Some(working_directory)).0
    }

    /// [`Server::start`] with more `serve` arguments and its standard error (the log) sent to
    /// `log`; also the announcement.
    pub fn start_with(domain: &Path, args: &[&str], log: impl Into<Stdio>) -> (Self, serde_json::Value) {
        Self::spawn(domain, args, &[], log, None)
    }

    fn spawn(
        domain: &Path,
        args: &[&str],
        environment: &[(&str, &Path)],
        log: impl Into<Stdio>,
        working_directory: Option<&Path>,
    ) -> (Self, serde_json::Value) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_unseen"));
        if let Some(directory) = working_directory {
            command.current_dir(directory);
        }
        let mut child = command
            .args(["serve", domain.to_str().expect("a UTF-8 path"), "--listen", "127.0.0.1:0", "--json"])
            .args(args)
            .envs(environment.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start unseen serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the announcement");
        let announced: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("serve announces itself as JSON, got {line:?}"));
        let address = announced["address"].as_str().expect("an address").to_string();
        (Self { child, address }, announced)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `bound` for the server to exit; its exit status and how
    /// long it took, or None if it was still running (then it is killed).
    pub fn terminate(mut self, bound: Duration) -> Option<(ExitStatus, Duration)> {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let started = Instant::now();
        while started.elapsed() < bound {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, as `systemctl stop` and `docker stop` send it; the server must exit cleanly.
    pub fn stop(self) {
        let (status, _) = self.terminate(Duration::from_secs(30)).expect("unseen serve exits on SIGTERM");
        assert!(status.success(), "unseen serve exits cleanly on SIGTERM, got {status}");
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The identity files `unseen init` wrote for a principal, as the path without extension.
pub fn identity(domain: &Path, principal: &str) -> PathBuf {
    let parts: Vec<&str> = principal.splitn(3, ':').collect();
    let [role, organisation, name] = parts[..] else { panic!("{principal} is not ROLE:ORGANISATION:NAME") };
    domain.join("pki").join(format!("{organisation}-{role}-{name}"))
}

/// A domain's clients: `unseen` commands run as its principals against its server.
pub struct Domain {
    pub dir: PathBuf,
    pub server: String,
    pub work: PathBuf,
}

impl Domain {
    /// Runs `unseen ARGS` as `principal` against the server.
    pub fn run(&self, principal: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_unseen"))
            .args(args)
            .env("UNSEEN_SERVER", &self.server)
            .env("UNSEEN_IDENTITY", identity(&self.dir, principal))
            .current_dir(&self.work)
            .output()
            .expect("run unseen")
    }

    /// Runs with `--json`, expects `status`, returns the document.
    pub fn json(&self, principal: &str, args: &[&str], status: i32) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let output = self.run(principal, &args);
        assert_eq!(
            output.status.code(),
            Some(status),
            "unseen {}: stdout {} stderr {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("one JSON document, got {}", String::from_utf8_lossy(&output.stdout)))
    }
}

/// A command's standard output and error together, for messages.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The server's log so far, once it holds a line containing `expected` (or after 10 s).
pub fn log_with(path: &Path, expected: &str) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(expected) || started.elapsed() > Duration::from_secs(10) {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
