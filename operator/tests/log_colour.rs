//! The operator's log lines carry no ANSI colour codes when its output is not
//! a terminal: `make up` writes them to a file, and a file full of `\x1b[2m`
//! is hard to read and to grep.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn logs_written_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // A server nobody listens on: the operator logs while it starts, then retries.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_winky-operator"))
        .args(["--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "text"])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    child.kill().unwrap();
    child.wait().unwrap();
    read.unwrap();
    assert!(line.contains("INFO"), "a log line: {line:?}");
    assert!(!line.contains('\x1b'), "no colour codes in {line:?}");
}
