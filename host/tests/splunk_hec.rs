//! The `splunk_hec` sink against a strict HEC peer written from Splunk's documentation (no
//! Splunk server can run here): the token, the channel header, the event format, gzip, indexed
//! fields, and indexer acknowledgements polled on `/services/collector/ack`. Like Splunk, the
//! peer issues ack ids per channel from 0, reports an id `true` once it is indexed (after a
//! delay), then forgets it, and reports unknown ids `false`; it can answer 503 (busy), and
//! behave as a token with acknowledgement off (no `ackId`).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "5c6a1d62-hec-test-token";

/// What the peer accepted, and how it answers acks.
#[derive(Default)]
struct Hec {
    events: Vec<Value>,
    next_ack: HashMap<String, u64>,
    /// (channel, ackId) -> when it was issued, for ids not yet reported indexed.
    issued: HashMap<(String, u64), Instant>,
    /// (channel, ackId) -> times polled.
    polled: HashMap<(String, u64), u32>,
    /// How long indexing takes: an id reads `true` once this has passed since it was issued.
    ack_delay: Duration,
    /// Never acknowledge (to test resending).
    never_ack: bool,
    /// Ids that are never acknowledged (an acknowledgement lost), by (channel-less) number.
    lost: Vec<u64>,
    /// A token with indexer acknowledgement off: no `ackId`, and the ack endpoint refuses.
    acks_off: bool,
    /// Answer this many event requests with 503 (server busy) first.
    busy: u32,
    /// Event requests accepted, and the most ack ids ever outstanding at once.
    accepted: u32,
    most_outstanding: usize,
    /// Ack polls that named an id the peer never issued or already reported.
    unknown_polled: u32,
    /// The health endpoint reports full queues.
    unhealthy: bool,
    /// Health checks asked.
    health_checks: u32,
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12].iter().zip(&parts).all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn hec_error(status: u16, code: u32, text: &str) -> (u16, String) {
    (status, json!({"text": text, "code": code}).to_string())
}

/// Splunk HEC's event, ack and health endpoints, strictly.
fn handle(state: &Mutex<Hec>, req: &Request) -> (u16, String) {
    if req.target == "/services/collector/health/1.0" {
        assert_eq!(req.method, "GET");
        let mut st = state.lock().unwrap();
        st.health_checks += 1;
        if req.header("authorization").is_some_and(|v| v != format!("Splunk {TOKEN}")) {
            return hec_error(400, 4, "Invalid HEC token");
        }
        if st.unhealthy {
            return hec_error(503, 18, "HEC is unhealthy, queues are full");
        }
        return hec_error(200, 17, "HEC is healthy");
    }
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
        if st.acks_off {
            return hec_error(400, 14, "ACK is disabled");
        }
        let v: Value = serde_json::from_slice(&body).expect("ack body is JSON");
        let ids = v["acks"].as_array().expect("{\"acks\": [...]}");
        let mut answer = serde_json::Map::new();
        for id in ids {
            let id = id.as_u64().expect("ack ids are integers");
            let key = (channel.clone(), id);
            *st.polled.entry(key.clone()).or_default() += 1;
            let indexed = match st.issued.get(&key) {
                None => {
                    st.unknown_polled += 1;
                    false
                }
                Some(at) => at.elapsed() >= st.ack_delay && !st.never_ack && !st.lost.contains(&id),
            };
            if indexed {
                // Reported once, then forgotten, as Splunk does.
                st.issued.remove(&key);
            }
            answer.insert(id.to_string(), Value::Bool(indexed));
        }
        return (200, json!({ "acks": answer }).to_string());
    }
    if st.busy > 0 {
        st.busy -= 1;
        return hec_error(503, 9, "Server is busy");
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
    st.accepted += 1;
    if st.acks_off {
        return (200, json!({"text": "Success", "code": 0}).to_string());
    }
    let ack = st.next_ack.entry(channel.clone()).or_default();
    let id = *ack;
    *ack += 1;
    st.issued.insert((channel, id), Instant::now());
    st.most_outstanding = st.most_outstanding.max(st.issued.len());
    (200, json!({"text": "Success", "code": 0, "ackId": id}).to_string())
}

/// A strict HEC peer with `hec` as its initial state, over plain HTTP.
fn peer(hec: Hec) -> (Arc<Mutex<Hec>>, HttpPeer) {
    let state = Arc::new(Mutex::new(hec));
    let s2 = state.clone();
    (state, HttpPeer::start(move |req| handle(&s2, req)))
}

/// flowtag with `cfg`, given the right HEC token in its environment.
fn start(dir: &std::path::Path, cfg: &str, api: u16) -> Flowtag {
    Flowtag::start_with_env(dir, cfg, api, &[("HEC_TOKEN", TOKEN)])
}

/// The same, for a far end that fails its health check (so `/ready` is not awaited).
fn start_failing(dir: &std::path::Path, cfg: &str, api: u16) -> Flowtag {
    Flowtag::start_live(dir, cfg, api, &[("HEC_TOKEN", TOKEN)])
}

/// Wait until the `siem` sink has confirmed `n` events.
fn wait_confirmed(ft: &Flowtag, n: f64) {
    wait_until(Duration::from_secs(60), &format!("{n} events confirmed"), || ft.sent("siem") >= n);
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
    let (state, peer) = peer(Hec { ack_delay: Duration::from_millis(150), ..Hec::default() });
    let api = free_port();
    let ft = start(dir.path(), &config(dir.path(), api, &input, peer.port, ""), api);
    wait_confirmed(&ft, 2_000.0);
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
    // Every request's ack was polled until Splunk said it was indexed, and only ids it issued.
    assert!(st.issued.is_empty(), "every id was reported indexed");
    assert_eq!(st.unknown_polled, 0, "the sink polled ids it had no business polling");
    assert_eq!(st.health_checks, 1, "one health check at start");
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
    let (state, peer) = peer(Hec::default());
    // A token HEC refuses: retried (a rotated secret may fix it), never dropped.
    let api = free_port();
    let ft = Flowtag::start_live(
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
    let log = ft.log();
    assert!(log.contains("HEC token refused"), "the log says why: {log}");
    assert!(log.contains("health check failed") && log.contains("HEC refused the token"), "{log}");
    let (status, body) = http_get(api, "/ready").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("siem"), "{body}");
    ft.kill9();

    // Splunk never acknowledges: after acknowledgements.timeout the request goes again.
    state.lock().unwrap().never_ack = true;
    let api = free_port();
    let cfg = config(dir.path(), api, &input, peer.port, "acknowledgements.timeout = \"1s\"");
    let ft = start(dir.path(), &cfg, api);
    wait_until(Duration::from_secs(30), "a resend", || state.lock().unwrap().events.len() >= 600);
    assert_eq!(ft.sent("siem"), 0.0, "not confirmed without an ack");
    // Splunk catches up: the events are confirmed.
    state.lock().unwrap().never_ack = false;
    wait_until(Duration::from_secs(30), "confirmation", || ft.sent("siem") >= 300.0);
    assert!(ft.terminate().success());
}

/// Count of each `seq` the peer indexed.
fn indexed(state: &Mutex<Hec>) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for e in &state.lock().unwrap().events {
        *counts.entry(e["event"]["seq"].as_i64().unwrap()).or_default() += 1;
    }
    counts
}

#[test]
fn requests_overlap_while_acknowledgements_are_pending_and_a_lost_one_resends_only_its_batch() {
    let (dir, input) = setup(3_000);
    // Indexing takes 1 s, and the acknowledgement of the third request (id 2) is lost.
    let (state, peer) = peer(Hec { ack_delay: Duration::from_secs(1), lost: vec![2], ..Hec::default() });
    let api = free_port();
    let cfg = config(dir.path(), api, &input, peer.port, "acknowledgements.timeout = \"3s\"");
    let ft = start(dir.path(), &cfg, api);
    wait_confirmed(&ft, 3_000.0);
    let counts = indexed(&state);
    assert_eq!(counts.len(), 3_000, "nothing lost");
    let twice: usize = counts.values().filter(|&&n| n == 2).count();
    assert!(counts.values().all(|&n| n <= 2));
    assert!(twice > 0 && twice <= 300, "only the batch whose acknowledgement was lost went twice ({twice} events)");
    let st = state.lock().unwrap();
    assert!(st.most_outstanding >= 5, "requests did not overlap: at most {} awaited an ack", st.most_outstanding);
    assert_eq!(st.unknown_polled, 0);
    drop(st);
    assert!(ft.terminate().success());
}

#[test]
fn a_token_with_acknowledgement_off_gets_each_event_once_and_a_busy_splunk_is_waited_for() {
    let (dir, input) = setup(1_000);
    let (state, peer) = peer(Hec { acks_off: true, busy: 3, unhealthy: true, ..Hec::default() });
    let api = free_port();
    let ft =
        Flowtag::start_live(dir.path(), &config(dir.path(), api, &input, peer.port, ""), api, &[("HEC_TOKEN", TOKEN)]);
    wait_confirmed(&ft, 1_000.0);
    // The failed health check was logged; a delivered request made the sink ready again.
    assert!(ft.log().contains("queues are full"), "{}", ft.log());
    assert_eq!(http_get(api, "/ready").unwrap().0, 200);
    // A moment more: nothing is sent again.
    std::thread::sleep(Duration::from_millis(1500));
    let counts = indexed(&state);
    assert_eq!(counts.len(), 1_000);
    assert!(counts.values().all(|&n| n == 1), "an accepted request was sent again");
    let m = ft.metrics();
    assert!(m.sum("flowtag_sink_retries_total", &[("component_id", "siem")]) >= 3.0, "503 was retried");
    let log = ft.log();
    assert_eq!(log.matches("indexer acknowledgement is off for this token").count(), 1, "warned once: {log}");
    assert!(!log.contains(TOKEN), "the token is in the log");
    assert!(ft.terminate().success());
}

/// The same sink over HTTPS, against a peer whose certificate a test CA signed.
fn https_config(dir: &std::path::Path, api: u16, input: &str, port: u16, extra: &str) -> String {
    config(dir, api, input, port, extra).replace("endpoint = \"http://", "endpoint = \"https://")
}

#[test]
fn certificates_are_verified_by_default_trusted_with_ca_file_and_unchecked_only_when_said_with_a_warning() {
    let ca = common::tls::TestCa::new();
    let (dir, input) = setup(200);
    let state = Arc::new(Mutex::new(Hec::default()));
    let s2 = state.clone();
    let peer = HttpPeer::start_tls(ca.server_config(), move |req| handle(&s2, req));

    // No `tls` table: the test CA is not trusted, nothing is delivered, the log says why.
    let api = free_port();
    let ft = start_failing(dir.path(), &https_config(dir.path(), api, &input, peer.port, ""), api);
    wait_until(Duration::from_secs(30), "refused handshakes", || {
        ft.metrics().sum("flowtag_sink_retries_total", &[("component_id", "siem")]) >= 2.0
    });
    assert_eq!(state.lock().unwrap().events.len(), 0, "events reached an unverified endpoint");
    assert_eq!(ft.sent("siem"), 0.0);
    let log = ft.log();
    assert!(log.contains("UnknownIssuer") || log.contains("invalid peer certificate"), "the cause is named: {log}");
    assert!(!log.contains(TOKEN), "the token is in the log");
    ft.kill9();

    // With the CA as `tls.ca_file`: delivered, each event once.
    let ca_file = ca.write_ca(dir.path());
    let api = free_port();
    let cfg =
        https_config(dir.path(), api, &input, peer.port, &format!("tls.ca_file = {:?}", ca_file.display().to_string()));
    let ft = start(dir.path(), &cfg, api);
    wait_confirmed(&ft, 200.0);
    assert!(ft.terminate().success());
    let counts = indexed(&state);
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|&n| n == 1));

    // verify_certificate = false: accepted, and warned about at start and by validate.
    let (dir2, input2) = setup(10);
    let api = free_port();
    let cfg = https_config(dir2.path(), api, &input2, peer.port, "tls.verify_certificate = false");
    let ft = start(dir2.path(), &cfg, api);
    wait_confirmed(&ft, 10.0);
    assert!(ft.log().contains("sinks.siem.tls.verify_certificate = false"), "warned at start");
    assert!(ft.terminate().success());
    let out = std::process::Command::new(flowtag())
        .args(["validate", "--no-environment", "--config"])
        .arg(dir2.path().join("flowtag.toml"))
        .env("HEC_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: sinks.siem.tls.verify_certificate = false"));
}

#[test]
fn a_rotated_token_file_is_read_again_and_no_secret_reaches_the_log() {
    let (dir, input) = setup(100);
    let (state, peer) = peer(Hec::default());
    // The Secret holds an old token; HEC refuses it until the Secret is rotated.
    let token_file = dir.path().join("hec-token");
    std::fs::write(&token_file, "old-token-0f9a\n").unwrap();
    // Flows far from normal traffic, so the alert's rule holds.
    let odd: String = (0..20)
        .map(|i| format!("{{\"seq\":{},\"ts\":1700000000,\"dur\":3000,\"proto\":\"icmp\",\"service\":\"-\",\"state\":\"INT\",\"spkts\":900000,\"dpkts\":0,\"sbytes\":900000000,\"dbytes\":0,\"sttl\":254,\"rate\":9000000}}\n", 10_000 + i))
        .collect();
    std::fs::write(dir.path().join("in/odd.jsonl"), odd).unwrap();
    // A Slack alert whose webhook is unreachable: its URL (a secret) must not be logged either.
    let webhook_secret = "B0SECRETPATH/xoxb9z";
    let extra = format!(
        "token_file = {:?}\n[alerts.burst]\ntype = \"slack\"\ninputs = [\"tag\"]\nwhen = \"score > 0.0\"\ngroup_wait = \"0s\"\nurl = \"http://127.0.0.1:1/services/T0/{webhook_secret}\"\n",
        token_file.display().to_string()
    );
    let api = free_port();
    let cfg = config(dir.path(), api, &input, peer.port, &extra).replace("token = \"${HEC_TOKEN}\"\n", "");
    let ft = Flowtag::start_live(dir.path(), &cfg, api, &[]);
    wait_until(Duration::from_secs(30), "refusals", || {
        ft.metrics().sum("flowtag_sink_retries_total", &[("component_id", "siem")]) >= 2.0
    });
    assert_eq!(state.lock().unwrap().events.len(), 0);
    // A sink that cannot deliver takes the node out of readiness, saying why.
    wait_until(Duration::from_secs(30), "/ready to report the sink", || {
        common::http_get(api, "/ready").is_some_and(|(status, body)| status == 503 && body.contains("siem"))
    });
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    wait_until(Duration::from_secs(30), "delivery with the rotated token", || ft.sent("siem") >= 100.0);
    assert_eq!(common::http_get(api, "/ready").unwrap().0, 200, "ready again once it delivers");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ft.log().contains("alert delivery failed") {
        assert!(std::time::Instant::now() < deadline, "no failed alert delivery in 30 s:\n{}", ft.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = ft.log();
    assert!(ft.terminate().success());
    for secret in ["old-token-0f9a", TOKEN, webhook_secret] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
    assert!(log.contains("http://127.0.0.1:1/…"), "the failing webhook is named by its host: {log}");
}

#[test]
fn mutual_tls_with_a_client_certificate() {
    let ca = common::tls::TestCa::new();
    let (dir, input) = setup(50);
    let state = Arc::new(Mutex::new(Hec::default()));
    let s2 = state.clone();
    let peer = HttpPeer::start_tls(ca.server_config_mutual(), move |req| handle(&s2, req));
    let ca_file = ca.write_ca(dir.path()).display().to_string();

    // Without a client certificate the peer refuses the handshake: nothing delivered.
    let api = free_port();
    let cfg = https_config(dir.path(), api, &input, peer.port, &format!("tls.ca_file = {ca_file:?}"));
    let ft = start_failing(dir.path(), &cfg, api);
    wait_until(Duration::from_secs(30), "refused handshakes", || {
        ft.metrics().sum("flowtag_sink_retries_total", &[("component_id", "siem")]) >= 2.0
    });
    assert_eq!(state.lock().unwrap().events.len(), 0);
    ft.kill9();

    // With one the CA signed: delivered.
    let (crt, key) = ca.write_client(dir.path(), "node-1");
    let api = free_port();
    let tls = format!(
        "tls.ca_file = {ca_file:?}\ntls.crt_file = {:?}\ntls.key_file = {:?}",
        crt.display().to_string(),
        key.display().to_string()
    );
    let cfg = https_config(dir.path(), api, &input, peer.port, &tls);
    let ft = start(dir.path(), &cfg, api);
    wait_confirmed(&ft, 50.0);
    assert!(ft.terminate().success());

    // A key that is not the certificate's is refused at start, naming the key.
    let (_, other_key) = ca.write_client(dir.path(), "node-2");
    let bad = format!(
        "tls.ca_file = {ca_file:?}\ntls.crt_file = {:?}\ntls.key_file = {:?}",
        crt.display().to_string(),
        other_key.display().to_string()
    );
    std::fs::write(dir.path().join("bad.toml"), https_config(dir.path(), free_port(), &input, peer.port, &bad))
        .unwrap();
    let out = std::process::Command::new(flowtag())
        .args(["run", "--config"])
        .arg(dir.path().join("bad.toml"))
        .env("HEC_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sinks.siem.tls.key_file"), "{err}");
}
