//! What the command-line tests share: a real `unseen serve` process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `unseen serve`; killed when dropped.
pub struct Server {
    child: Child,
    pub address: String,
}

impl Server {
    /// Serves the domain directory `domain` on a port the OS picks.
    pub fn start(domain: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_unseen"))
            .args(["serve", domain.to_str().expect("a UTF-8 path"), "--listen", "127.0.0.1:0", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unseen serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the announcement");
        let announced: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("serve announces itself as JSON, got {line:?}"));
        let address = announced["address"].as_str().expect("an address").to_string();
        Self { child, address }
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
