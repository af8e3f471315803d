//! The `splunk_hec` sink against a strict HEC peer written from Splunk's documentation (no
//! Splunk server can run here): the token, the channel header, the event format, gzip, indexed
//! fields, and indexer acknowledgements polled on `/services/collector/ack`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "5c6a1d62-hec-test-token";

/// What the peer accepted, and how it answers acks.
#[derive(Default)]
struct Hec {
    events: Vec<Value>,
    next_ack: HashMap<String, u64>,
    /// (channel, ackId) -> times polled; an ack turns true on its second poll (indexing delay).
    polled: HashMap<(String, u64), u32>,
    /// Never acknowledge (to test resending).
    never_ack: bool,
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12].iter().zip(&parts).all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn hec_error(status: u16, code: u32, text: &str) -> (u16, String) {
    (status, json!({"text": text, "code": code}).to_string())
}

/// Splunk HEC's event and ack endpoints, strictly.
fn handle(state: &Mutex<Hec>, req: &Request) -> (u16, String) {
    if req.method != "POST" {
        return hec_error(405, 6, "Invalid data format");
    }
    match req.header("authorization") {
        None => return hec_error(401, 2, "Token is required"),
        Some(v) if v != format!("Splunk {TOKEN}") => return hec_error(403, 4, "Invalid token"),
        _ => {}
    }
    let Some(channel) = req.header("x-splunk-request-channel").map(str::to_string) else {
        return hec_error(400, 10, "Data channel is missing");
    };
    if !is_uuid(&channel) {
        return hec_error(400, 11, "Invalid data channel");
    }
    let body = req.decoded_body();
    let mut st = state.lock().unwrap();
    if let Some(query) = req.target.strip_prefix("/services/collector/ack?") {
        assert_eq!(query, format!("channel={channel}"), "the ack poll names its channel");
        let v: Value = serde_json::from_slice(&body).expect("ack body is JSON");
        let ids = v["acks"].as_array().expect("{\"acks\": [...]}");
        let mut answer = serde_json::Map::new();
        for id in ids {
            let id = id.as_u64().expect("ack ids are integers");
            let n = st.polled.entry((channel.clone(), id)).or_default();
            *n += 1;
            answer.insert(id.to_string(), Value::Bool(*n >= 2 && !st.never_ack));
        }
        return (200, json!({ "acks": answer }).to_string());
    }
    assert_eq!(req.target, "/services/collector/event", "only the event endpoint is used");
    let mut batch = Vec::new();
    for item in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let Ok(Value::Object(ev)) = item else { return hec_error(400, 6, "Invalid data format") };
        for k in ev.keys() {
            if !["event", "time", "host", "source", "sourcetype", "index", "fields"].contains(&k.as_str()) {
                return hec_error(400, 6, "Invalid data format");
            }
        }
        match ev.get("event") {
            None => return hec_error(400, 12, "Event field is required"),
            Some(Value::Null) => return hec_error(400, 13, "Event field cannot be blank"),
            _ => {}
        }
        if let Some(f) = ev.get("fields") {
            let ok = f.as_object().is_some_and(|m| m.values().all(|v| v.is_string() || v.is_number() || v.is_array()));
            if !ok {
                return hec_error(400, 15, "Error in handling indexed fields");
            }
        }
        if ev.get("time").is_some_and(|t| !t.is_number()) {
            return hec_error(400, 6, "Invalid data format");
        }
        batch.push(Value::Object(ev));
    }
    if batch.is_empty() {
        return hec_error(400, 5, "No data");
    }
    st.events.extend(batch);
    let ack = st.next_ack.entry(channel).or_default();
    let id = *ack;
    *ack += 1;
    (200, json!({"text": "Success", "code": 0, "ackId": id}).to_string())
}

fn setup(n: usize) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"seq\":{i},\"ts\":{},\"dur\":0.5,\"proto\":\"tcp\",\"service\":\"http\",\"state\":\"FIN\",\"spkts\":{},\"dpkts\":8,\"sbytes\":4000,\"dbytes\":9000,\"sttl\":62,\"rate\":36}}\n",
            1_700_000_000 + i,
            4 + i % 50
        ));
    }
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/flows.jsonl"), text).unwrap();
    let input = dir.path().join("in/*.jsonl").display().to_string();
    (dir, input)
}

fn config(dir: &std::path::Path, api: u16, input: &str, hec_port: u16, extra: &str) -> String {
    format!(
        r#"
{head}
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
[sinks.siem]
type = "splunk_hec"
inputs = ["tag"]
endpoint = "http://127.0.0.1:{hec_port}"
token = "${{HEC_TOKEN}}"
index = "netflow"
sourcetype = "flowtag:flow"
source = "flowtag-test"
host = "node-1"
timestamp_key = "ts"
indexed_fields = ["anomaly.verdict", "anomaly.model", "proto"]
compression = "gzip"
batch.max_events = 300
acknowledgements.query_interval = "100ms"
request.retry_initial_backoff = "100ms"
request.retry_max_backoff = "300ms"
{extra}
"#,
        head = file_source_head(&dir.join("data"), api, std::path::Path::new(input)),
        model = fixture_bundle("iforest").display(),
    )
}

#[test]
fn events_reach_hec_with_acks_token_channel_and_indexed_fields() {
    let (dir, input) = setup(2_000);
    let state = Arc::new(Mutex::new(Hec::default()));
    let s2 = state.clone();
    let peer = HttpPeer::start(move |req| handle(&s2, req));
    let api = free_port();
    let ft = Flowtag::start_with_env(
        dir.path(),
        &config(dir.path(), api, &input, peer.port, ""),
        api,
        &[("HEC_TOKEN", TOKEN)],
    );
    wait_until(Duration::from_secs(60), "2000 events confirmed", || {
        ft.metrics().sum("flowtag_component_sent_events_total", &[("component_id", "siem")]) >= 2_000.0
    });
    let st = state.lock().unwrap();
    assert_eq!(st.events.len(), 2_000, "each event indexed once");
    let mut seqs: Vec<i64> = st.events.iter().map(|e| e["event"]["seq"].as_i64().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, (0..2_000).collect::<Vec<_>>());
    let e = &st.events[0];
    assert_eq!(e["index"], "netflow");
    assert_eq!(e["sourcetype"], "flowtag:flow");
    assert_eq!(e["source"], "flowtag-test");
    assert_eq!(e["host"], "node-1");
    assert!(e["time"].as_f64().unwrap() >= 1.7e9);
    assert_eq!(e["fields"]["proto"], "tcp");
    assert!(["normal", "anomalous"].contains(&e["fields"]["anomaly.verdict"].as_str().unwrap()));
    assert_eq!(e["fields"]["anomaly.model"], "fixture-iforest@1");
    assert!(e["event"]["anomaly"]["score"].is_number());
    // Every request's ack was polled until Splunk said it was indexed.
    assert!(st.polled.values().all(|&n| n >= 2));
    let gzip = peer
        .requests()
        .iter()
        .filter(|r| r.target.ends_with("/event"))
        .all(|r| r.header("content-encoding") == Some("gzip"));
    assert!(gzip);
    drop(st);
    assert!(ft.terminate().success());
}

#[test]
fn a_wrong_token_holds_events_and_an_unacknowledged_request_is_sent_again() {
    let (dir, input) = setup(300);
    let state = Arc::new(Mutex::new(Hec::default()));
    let s2 = state.clone();
    let peer = HttpPeer::start(move |req| handle(&s2, req));
    // A token HEC refuses: retried (a rotated secret may fix it), never dropped.
    let api = free_port();
    let ft = Flowtag::start_with_env(
        dir.path(),
        &config(dir.path(), api, &input, peer.port, ""),
        api,
        &[("HEC_TOKEN", "wrong")],
    );
    wait_until(Duration::from_secs(30), "retries", || {
        ft.metrics().sum("flowtag_sink_retries_total", &[("component_id", "siem")]) >= 3.0
    });
    let m = ft.metrics();
    assert_eq!(m.sum("flowtag_component_discarded_events_total", &[("component_id", "siem")]), 0.0);
    assert_eq!(state.lock().unwrap().events.len(), 0);
    assert!(ft.log().contains("HEC token refused"), "the log says why");
    ft.kill9();

    // Splunk never acknowledges: after acknowledgements.timeout the request goes again.
    state.lock().unwrap().never_ack = true;
    let api = free_port();
    let cfg = config(dir.path(), api, &input, peer.port, "acknowledgements.timeout = \"1s\"");
    let ft = Flowtag::start_with_env(dir.path(), &cfg, api, &[("HEC_TOKEN", TOKEN)]);
    wait_until(Duration::from_secs(30), "a resend", || state.lock().unwrap().events.len() >= 600);
    assert_eq!(
        ft.metrics().sum("flowtag_component_sent_events_total", &[("component_id", "siem")]),
        0.0,
        "not confirmed without an ack"
    );
    // Splunk catches up: the events are confirmed.
    state.lock().unwrap().never_ack = false;
    wait_until(Duration::from_secs(30), "confirmation", || {
        ft.metrics().sum("flowtag_component_sent_events_total", &[("component_id", "siem")]) >= 300.0
    });
    assert!(ft.terminate().success());
}
