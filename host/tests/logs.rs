//! What `flowtag run` writes to its log when the log is not a terminal (a Kubernetes log, a CI
//! artifact, a pipe): plain text, no ANSI colour codes.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowtag.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[api]\nenabled = false\n[log]\nlevel = \"info\"\n\
             [sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut child = Command::new(common::flowtag())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{\"a\":1}\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("flowtag is running"), "the log has lines: {log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{\"a\":1}");
}
