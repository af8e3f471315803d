//! Connection limits and idle timeouts of the listening sources, against the real binary on
//! 127.0.0.1: past `connections.limit` a new connection waits until one closes, and a client
//! that stays silent for `connections.idle_timeout` is disconnected (plain TCP and HTTP).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Whether the server closed `s` (a read returns end of file or an error) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return start.elapsed() <= limit,
        }
    }
}

#[test]
fn past_the_limit_a_connection_waits_and_silent_clients_are_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let (api, tcp, http) = (free_port(), free_port(), free_port());
    let out = dir.path().join("out.jsonl");
    let cfg = format!(
        "data_dir = \"{data}\"\n[api]\naddress = \"127.0.0.1:{api}\"\n\
         [sources.lines]\ntype = \"tcp\"\naddress = \"127.0.0.1:{tcp}\"\n\
         connections.limit = 2\nconnections.idle_timeout = \"1s\"\n\
         [sources.posts]\ntype = \"http\"\naddress = \"127.0.0.1:{http}\"\nconnections.idle_timeout = \"1s\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"lines\", \"posts\"]\npath = \"{out}\"\n",
        data = dir.path().join("data").display(),
        out = out.display(),
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);

    // Two clients that connect and say nothing hold both places.
    let mut first = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    let mut second = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    third.write_all(b"{\"n\":3}\n").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(read_jsonl(&out).is_empty(), "a connection past the limit was served");
    // Past the idle timeout the silent ones are closed, and the third is served.
    assert!(closed_within(&mut first, Duration::from_secs(10)), "a silent client was not disconnected");
    assert!(closed_within(&mut second, Duration::from_secs(10)));
    wait_until(Duration::from_secs(10), "the waiting connection served", || read_jsonl(&out).len() == 1);
    // A client that keeps talking is not idle.
    for i in 0..4 {
        third.write_all(format!("{{\"n\":{}}}\n", 4 + i).as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    wait_until(Duration::from_secs(10), "five records", || read_jsonl(&out).len() == 5);

    // HTTP: a client that opens a connection and sends nothing is disconnected too; one that
    // posts is served.
    let mut silent = TcpStream::connect(("127.0.0.1", http)).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)), "a silent HTTP client was not disconnected");
    let (status, body) = http_post(http, "/", &[], b"{\"n\":9}\n").unwrap();
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(10), "six records", || read_jsonl(&out).len() == 6);
    assert!(ft.terminate().success());
}

#[test]
fn bad_connection_limits_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, want) in [
        ("connections.limit = 0", "sources.lines.connections.limit: must be at least 1"),
        ("connections.idle_timeout = \"0s\"", "sources.lines.connections.idle_timeout: must be more than 0"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            format!(
                "[sources.lines]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\n{extra}\n[sinks.out]\ntype = \"console\"\ninputs = [\"lines\"]\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(flowtag()).args(["validate", "--config"]).arg(&path).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
}
