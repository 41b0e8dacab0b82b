//! What the sandbox's test files share.

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The built binary as a harness starts it, after its one start-up line on stdout.
pub struct Started {
    pub child: Child,
    /// The start-up line, as written and parsed.
    pub line: String,
    pub started: Value,
    /// What comes after it on stdout.
    pub stdout: BufReader<ChildStdout>,
}

/// Starts the built binary with `args` (its stderr to `stderr`) and reads its start-up
/// line, within 10 s.
pub async fn start_binary(args: &[&str], stderr: Stdio) -> Started {
    let mut child = Command::new(env!("CARGO_BIN_EXE_okta-sandbox"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line))
        .await
        .expect("start-up line in time")
        .unwrap();
    let started = serde_json::from_str(&line).unwrap();
    Started {
        child,
        line,
        started,
        stdout,
    }
}
