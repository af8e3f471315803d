//! Dead letters in a running flowtag: lines a source cannot decode, records the tag filter
//! cannot score and events a sink's far end refuses for good reach a sink through
//! `ID.dead_letter` with the reason; none goes on, none is lost, and a refused event counts as
//! done only once its dead letter is delivered (killed before that, it comes again).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Fixture flow records, each with a `seq`; every 10th is marked `refuse` (the SIEM peer
/// refuses it), every 25th has a value the model cannot read, every 40th is not JSON at all.
fn write_input(path: &Path, n: usize) -> (BTreeSet<i64>, BTreeSet<i64>, BTreeSet<i64>, BTreeSet<i64>) {
    let fixture = std::fs::read_to_string(repo().join("plugin/tests/fixtures/records.jsonl")).unwrap();
    let mut records = fixture.lines().cycle();
    let (mut good, mut refused, mut unscored, mut garbage) = Default::default();
    let mut text = String::new();
    for i in 0..n as i64 {
        let record = records.next().unwrap();
        if i % 40 == 39 {
            text.push_str(&format!("garbage line {i}\n"));
            BTreeSet::insert(&mut garbage, i);
        } else if i % 25 == 24 {
            text.push_str(&format!("{{\"seq\":{i},\"dur\":\"not a number at all\",\"proto\":7}}\n"));
            BTreeSet::insert(&mut unscored, i);
        } else if i % 10 == 9 {
            text.push_str(&format!("{{\"seq\":{i},\"refuse\":true,{}\n", &record[1..]));
            BTreeSet::insert(&mut refused, i);
        } else {
            text.push_str(&format!("{{\"seq\":{i},{}\n", &record[1..]));
            BTreeSet::insert(&mut good, i);
        }
    }
    std::fs::write(path, text).unwrap();
    (good, refused, unscored, garbage)
}

/// A SIEM-like peer: 400 for a request holding a record marked `refuse`, else 200; the seqs
/// it accepted.
fn siem_peer() -> (HttpPeer, Arc<Mutex<Vec<i64>>>) {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let took = accepted.clone();
    let peer = HttpPeer::start(move |r| {
        let body = String::from_utf8(r.decoded_body()).unwrap();
        if body.contains("\"refuse\":true") {
            return (400, "{\"text\":\"Invalid data format\",\"code\":6}".into());
        }
        for line in body.lines() {
            took.lock().unwrap().push(serde_json::from_str::<Value>(line).unwrap()["seq"].as_i64().unwrap());
        }
        (200, "{}".into())
    });
    (peer, accepted)
}

fn seqs(values: &[Value]) -> BTreeSet<i64> {
    values.iter().filter_map(|v| v["seq"].as_i64()).collect()
}

#[test]
fn each_cause_reaches_the_dead_letter_sink_with_its_reason_and_nothing_else_goes_there() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    let (good, refused, unscored, garbage) = write_input(&input, 600);
    let (peer, accepted) = siem_peer();
    let api = free_port();
    let cfg = format!(
        "{head}\
         [transforms.tag]\ntype = \"anomaly\"\ninputs = [\"flows\"]\nmodel = \"{model}\"\n\
         [sinks.siem]\ntype = \"http\"\ninputs = [\"tag\"]\nuri = \"http://127.0.0.1:{port}/\"\nbatch.max_events = 1\n\
         [sinks.archive]\ntype = \"file\"\ninputs = [\"tag\"]\npath = \"{archive}\"\n\
         [sinks.dead]\ntype = \"file\"\ninputs = [\"flows.dead_letter\", \"tag.dead_letter\", \"siem.dead_letter\"]\npath = \"{dead}\"\n",
        head = file_source_head(&dir.path().join("data"), api, &input),
        model = fixture_bundle("iforest").display(),
        port = peer.port,
        archive = dir.path().join("archive.jsonl").display(),
        dead = dir.path().join("dead.jsonl").display(),
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);
    let letters = garbage.len() + unscored.len() + refused.len();
    wait_until(Duration::from_secs(60), "every dead letter delivered", || ft.sent("dead") >= letters as f64);
    wait_until(Duration::from_secs(60), "everything archived", || {
        ft.sent("archive") >= (good.len() + refused.len()) as f64
    });
    let m = ft.metrics();
    let dead_count = |id: &str, cause: &str| {
        m.sum("flowtag_component_dead_letter_events_total", &[("component_id", id), ("cause", cause)])
    };
    assert_eq!(dead_count("flows", "decode"), garbage.len() as f64);
    assert_eq!(dead_count("tag", "unscored"), unscored.len() as f64);
    assert_eq!(dead_count("siem", "refused"), refused.len() as f64);
    assert!(ft.terminate().success());

    // The archive and the SIEM have the scored records only; the SIEM none it refused.
    let archive = read_jsonl(&dir.path().join("archive.jsonl"));
    assert_eq!(archive.len(), good.len() + refused.len(), "each scored record archived once");
    assert_eq!(seqs(&archive), good.union(&refused).copied().collect());
    assert!(archive.iter().all(|v| v["anomaly"]["verdict"] != "unscored" && v.get("dead_letter").is_none()));
    let mut took = accepted.lock().unwrap().clone();
    took.sort();
    assert_eq!(took, good.iter().copied().collect::<Vec<_>>(), "the SIEM got each good record once");

    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), letters, "each dead letter once");
    let by = |component: &str| -> Vec<&Value> {
        dead.iter().filter(|v| v["dead_letter"]["component"] == component).collect()
    };
    for v in by("flows") {
        assert_eq!(v["dead_letter"]["cause"], "decode", "{v}");
        let reason = v["dead_letter"]["reason"].as_str().unwrap();
        assert!(!reason.is_empty() && v["decode_error"] == reason, "{v}");
        assert!(v["message"].as_str().unwrap().starts_with("garbage line "), "{v}");
    }
    let lines: BTreeSet<i64> = by("flows")
        .iter()
        .map(|v| v["message"].as_str().unwrap().trim_start_matches("garbage line ").parse().unwrap())
        .collect();
    assert_eq!(lines, garbage);
    for v in by("tag") {
        assert_eq!(v["dead_letter"]["cause"], "unscored", "{v}");
        assert_eq!(v["anomaly"]["verdict"], "unscored", "{v}");
        assert_eq!(v["dead_letter"]["reason"], v["anomaly"]["error"], "{v}");
    }
    assert_eq!(seqs(&by("tag").into_iter().cloned().collect::<Vec<_>>()), unscored);
    for v in by("siem") {
        assert_eq!(v["dead_letter"]["cause"], "refused", "{v}");
        let reason = v["dead_letter"]["reason"].as_str().unwrap();
        assert!(reason.starts_with("HTTP 400") && reason.contains("Invalid data format"), "{v}");
        assert!(v["anomaly"]["verdict"].is_string(), "a refused event keeps its tags: {v}");
    }
    assert_eq!(seqs(&by("siem").into_iter().cloned().collect::<Vec<_>>()), refused);

    // Every record, dead letters included, was confirmed: a restart reads nothing again.
    let api2 = free_port();
    let ft =
        Flowtag::start(dir.path(), &cfg.replace(&format!("127.0.0.1:{api}\""), &format!("127.0.0.1:{api2}\"")), api2);
    std::thread::sleep(Duration::from_secs(2));
    assert!(ft.terminate().success());
    assert_eq!(read_jsonl(&dir.path().join("dead.jsonl")).len(), letters, "dead letters sent again");
    assert_eq!(read_jsonl(&dir.path().join("archive.jsonl")).len(), good.len() + refused.len());
}

#[test]
fn a_refused_event_whose_dead_letter_was_not_delivered_comes_again_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    let text: String = (0..50).map(|i| format!("{{\"seq\":{i},\"refuse\":true}}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let (siem, _) = siem_peer();
    // The dead-letter store is down (503) until `up`.
    let up = Arc::new(AtomicBool::new(false));
    let stored = Arc::new(Mutex::new(BTreeSet::new()));
    let (up2, stored2) = (up.clone(), stored.clone());
    let store = HttpPeer::start(move |r| {
        if !up2.load(Ordering::SeqCst) {
            return (503, "down".into());
        }
        for line in String::from_utf8(r.decoded_body()).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["dead_letter"]["cause"], "refused");
            stored2.lock().unwrap().insert(v["seq"].as_i64().unwrap());
        }
        (200, "{}".into())
    });
    let api = free_port();
    let cfg = |api: u16| {
        format!(
            "{head}\
             [sinks.siem]\ntype = \"http\"\ninputs = [\"flows\"]\nuri = \"http://127.0.0.1:{siem}/\"\n\
             [sinks.store]\ntype = \"http\"\ninputs = [\"siem.dead_letter\"]\nuri = \"http://127.0.0.1:{store}/\"\n\
             request.retry_initial_backoff = \"50ms\"\nrequest.retry_max_backoff = \"100ms\"\n",
            head = file_source_head(&dir.path().join("data"), api, &input),
            siem = siem.port,
            store = store.port,
        )
    };
    let ft = Flowtag::start(dir.path(), &cfg(api), api);
    wait_until(Duration::from_secs(30), "the store tried twice", || store.requests().len() >= 2);
    assert!(siem.requests().len() >= 1);
    ft.kill9();
    assert!(stored.lock().unwrap().is_empty());
    up.store(true, Ordering::SeqCst);
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &cfg(api), api);
    wait_until(Duration::from_secs(30), "every refused event stored", || stored.lock().unwrap().len() == 50);
    assert!(ft.terminate().success());
    assert_eq!(*stored.lock().unwrap(), (0..50).collect::<BTreeSet<i64>>());
}
