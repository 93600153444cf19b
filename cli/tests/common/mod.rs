//! What the command-line tests share: a real `unseen serve` process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

    /// [`Server::start`] with more `serve` arguments and its standard error (the log) sent to
    /// `log`; also the announcement.
    pub fn start_with(domain: &Path, args: &[&str], log: impl Into<Stdio>) -> (Self, serde_json::Value) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_unseen"))
            .args(["serve", domain.to_str().expect("a UTF-8 path"), "--listen", "127.0.0.1:0", "--json"])
            .args(args)
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
