//! Stopping with a sink that cannot deliver: SIGTERM ends flowtag within the graceful-shutdown
//! limit, and a restart delivers every event (the file source reads again what was not
//! confirmed). The far end accepts connections and never answers, the worst case: a request
//! that hangs rather than fails.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

fn config(dir: &std::path::Path, api: u16, input: &std::path::Path, port: u16) -> String {
    format!(
        "{head}[sinks.out]\ntype = \"http\"\ninputs = [\"flows\"]\nuri = \"http://127.0.0.1:{port}/ingest\"\nbatch.max_events = 100\n",
        head = file_source_head(&dir.join("data"), api, input),
    )
}

/// Its exit status, which must come within `limit`.
fn exit_within(ft: &mut Flowtag, limit: Duration) -> std::process::ExitStatus {
    let stopping = Instant::now();
    loop {
        if let Some(status) = ft.exited() {
            return status;
        }
        assert!(stopping.elapsed() < limit, "still running {limit:?} after the signal:\n{}", ft.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_with_a_hanging_sink_exits_within_the_limit_and_a_restart_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    let text: String = (0..1000).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
    std::fs::write(&input, text).unwrap();
    // A far end that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let held2 = held.clone();
    std::thread::spawn(move || {
        for s in silent.incoming().flatten() {
            held2.lock().unwrap().push(s);
        }
    });
    let api = free_port();
    let mut ft = Flowtag::start_args(
        dir.path(),
        &config(dir.path(), api, &input, port),
        api,
        &["--graceful-shutdown-limit", "4s"],
    );
    wait_until(Duration::from_secs(20), "a request to the silent peer", || !held.lock().unwrap().is_empty());
    ft.signal(15);
    // The limit plus a margin for a loaded machine.
    let status = exit_within(&mut ft, Duration::from_secs(10));
    let log = ft.log();
    assert!(log.contains("giving up at shutdown"), "{log}");
    // The sink gave up at three quarters of the limit and the rest finished: a clean exit.
    assert!(status.success(), "{status}:\n{log}");
    drop(ft);

    // The far end is back: the restart sends every event, none lost.
    let peer = HttpPeer::start(|_| (200, String::new()));
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &config(dir.path(), api, &input, peer.port), api);
    let seqs = || -> BTreeSet<i64> {
        peer.requests()
            .iter()
            .flat_map(|r| {
                String::from_utf8_lossy(&r.body)
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until(Duration::from_secs(30), "1000 events after the restart", || seqs().len() == 1000);
    assert!(ft.terminate().success());
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    std::fs::write(&input, "{\"seq\":1}\n").unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let api = free_port();
    let mut ft = Flowtag::start_args(
        dir.path(),
        &config(dir.path(), api, &input, port),
        api,
        &["--graceful-shutdown-limit", "10m"],
    );
    let _conn = silent.accept().unwrap();
    ft.signal(15);
    std::thread::sleep(Duration::from_millis(300));
    assert!(ft.exited().is_none(), "the first SIGTERM drains");
    ft.signal(15);
    let status = exit_within(&mut ft, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    assert!(ft.log().contains("a second SIGTERM"), "{}", ft.log());
}
