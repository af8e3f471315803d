//! Sinks with a disk buffer (`buffer.type = "disk"`), end to end with the `flowtag` binary:
//! a network source's sender is answered once its records are on disk, a kill -9 while the
//! far end is down loses none of them, and a full buffer drops (and counts) the newest or
//! holds the source. The buffer's own invariants are tested in `host/src/buffer/disk.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn seqs_of(requests: &[Request]) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for r in requests {
        for line in String::from_utf8(r.decoded_body()).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            out.insert(v["seq"].as_i64().unwrap());
        }
    }
    out
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map_or(0, |d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg")).count())
}

#[test]
fn a_network_sender_is_answered_once_its_records_are_on_disk_and_a_crash_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let (intake, siem) = (free_port(), free_port());
    let cfg = |api: u16| {
        format!(
            "data_dir = \"{data}\"\n[api]\naddress = \"127.0.0.1:{api}\"\n\
             [sources.intake]\ntype = \"http\"\naddress = \"127.0.0.1:{intake}\"\n\
             [sinks.siem]\ntype = \"http\"\ninputs = [\"intake\"]\nuri = \"http://127.0.0.1:{siem}/\"\n\
             batch.max_events = 100\nrequest.retry_initial_backoff = \"50ms\"\nrequest.retry_max_backoff = \"200ms\"\n\
             buffer.type = \"disk\"\nbuffer.max_size = 16777216\n",
            data = dir.path().join("data").display(),
        )
    };
    // The far end is down: with a memory buffer the senders would wait for it.
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &cfg(api), api);
    for batch in 0..5 {
        let body: String =
            (0..200).map(|i| format!("{{\"seq\":{},\"pad\":\"{}\"}}\n", batch * 200 + i, "x".repeat(100))).collect();
        let (status, answer) = http_post(intake, "/", &[], body.as_bytes()).expect("an answer");
        assert_eq!(status, 200, "{answer}");
    }
    let metrics = ft.metrics();
    assert_eq!(metrics.sum("flowtag_disk_buffer_events", &[("component_id", "siem")]), 1000.0);
    assert!(metrics.sum("flowtag_disk_buffer_bytes", &[("component_id", "siem")]) > 100_000.0);
    let buffer = dir.path().join("data/buffers/siem");
    assert!(segments(&buffer) >= 1);
    ft.kill9();

    // Back up after the crash: every record the senders were answered for arrives.
    let peer = HttpPeer::start_on(siem, |_| (200, "{}".into()));
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &cfg(api), api);
    wait_until(Duration::from_secs(60), "every buffered record delivered", || seqs_of(&peer.requests()).len() == 1000);
    wait_until(Duration::from_secs(10), "the buffer empty", || {
        ft.metrics().sum("flowtag_disk_buffer_events", &[("component_id", "siem")]) == 0.0
    });
    assert!(ft.terminate().success());
    assert_eq!(seqs_of(&peer.requests()), (0..1000).collect::<BTreeSet<i64>>());
    assert_eq!(segments(&buffer), 0, "delivered segments are deleted");
}

#[test]
fn a_full_buffer_drops_the_newest_and_counts_them_or_holds_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    let line = |i: usize| format!("{{\"seq\":{i},\"pad\":\"{}\"}}\n", "y".repeat(300));
    let n = 10_000; // about 3.3 MB, three times the buffer
    std::fs::write(&input, (0..n).map(line).collect::<String>()).unwrap();
    let siem = free_port(); // nobody listens
    let cfg = |data: &str, api: u16, when_full: &str| {
        format!(
            "{head}[sinks.siem]\ntype = \"http\"\ninputs = [\"flows\"]\nuri = \"http://127.0.0.1:{siem}/\"\n\
             request.retry_initial_backoff = \"50ms\"\nrequest.retry_max_backoff = \"200ms\"\n\
             buffer.type = \"disk\"\nbuffer.max_size = 1048576\nbuffer.when_full = \"{when_full}\"\n",
            head = file_source_head(&dir.path().join(data), api, &input),
        )
    };
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &cfg("drop", api, "drop_newest"), api);
    let dropped = |m: &Metrics| {
        m.sum("flowtag_component_discarded_events_total", &[("component_id", "siem"), ("reason", "buffer_full")])
    };
    let buffered = |m: &Metrics| m.sum("flowtag_disk_buffer_events", &[("component_id", "siem")]);
    wait_until(Duration::from_secs(30), "every record buffered or dropped", || {
        let m = ft.metrics();
        buffered(&m) + dropped(&m) == n as f64
    });
    let m = ft.metrics();
    let bytes = m.sum("flowtag_disk_buffer_bytes", &[("component_id", "siem")]);
    assert!(bytes <= 1_048_576.0 && bytes > 500_000.0, "{bytes} bytes on disk");
    assert!(dropped(&m) > 5000.0, "{} dropped", dropped(&m));
    assert!(ft.terminate().success());

    // `block`: the buffer fills and the source waits; nothing is dropped.
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &cfg("block", api, "block"), api);
    wait_until(Duration::from_secs(30), "the buffer full", || {
        ft.metrics().sum("flowtag_disk_buffer_bytes", &[("component_id", "siem")]) > 700_000.0
    });
    std::thread::sleep(Duration::from_millis(500));
    let m = ft.metrics();
    assert!(m.sum("flowtag_disk_buffer_bytes", &[("component_id", "siem")]) <= 1_048_576.0);
    assert_eq!(dropped(&m), 0.0);
    assert!(buffered(&m) < n as f64, "the source is held");
    ft.kill9();
}

#[test]
fn a_full_memory_buffer_that_drops_the_newest_lets_the_source_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    let n = 10_000;
    std::fs::write(
        &input,
        (0..n).map(|i| format!("{{\"seq\":{i},\"pad\":\"{}\"}}\n", "z".repeat(300))).collect::<String>(),
    )
    .unwrap();
    let siem = free_port(); // nobody listens
    let api = free_port();
    let cfg = format!(
        "{head}[sinks.siem]\ntype = \"http\"\ninputs = [\"flows\"]\nuri = \"http://127.0.0.1:{siem}/\"\n\
         batch.max_events = 100\nrequest.retry_initial_backoff = \"50ms\"\nrequest.retry_max_backoff = \"200ms\"\n\
         buffer.max_size = 65536\nbuffer.when_full = \"drop_newest\"\n",
        head = file_source_head(&dir.path().join("data"), api, &input),
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);
    // The source reads the whole file although the far end is down: what does not fit is dropped.
    wait_until(Duration::from_secs(30), "the source past the whole file", || {
        ft.metrics().sum("flowtag_component_sent_events_total", &[("component_id", "flows")]) == n as f64
    });
    let m = ft.metrics();
    // The sink holds what it is retrying and one batch of the source's in its inbox; the rest
    // was dropped.
    let dropped =
        m.sum("flowtag_component_discarded_events_total", &[("component_id", "siem"), ("reason", "buffer_full")]);
    assert!(dropped > (n - 3000) as f64 && dropped < n as f64, "{dropped} dropped");
    ft.kill9();
}

#[test]
fn bad_buffer_settings_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    for (buffer, expect) in [
        ("buffer.type = \"disk\"\n", "sinks.out.buffer.max_size"),
        ("buffer.type = \"disk\"\nbuffer.max_size = 1000\n", "at least 1048576"),
        ("buffer.when_full = \"drop_oldest\"\n", "drop_oldest"),
        ("buffer.max_size = 10\n", "a memory buffer needs at least 1024"),
        ("buffer.type = \"tape\"\n", "tape"),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\n[sources.s]\ntype = \"stdin\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"s\"]\n{buffer}",
                dir.path().display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(flowtag()).args(["validate", "--config"]).arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "{buffer}: {err}");
    }
}
