//! The Fluent forward protocol both ways: the `fluent` source fed by the real Python
//! `fluent-logger` client and by a client that asks for chunk acks, and the `fluent` sink
//! against a strict msgpack peer that checks PackedForward messages and acknowledges them.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rmpv::Value;

fn python() -> std::path::PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup.sh", p.display());
    p
}

fn source_config(dir: &std::path::Path, api: u16, port: u16, out: &std::path::Path) -> String {
    format!(
        r#"
data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"
[sources.forward]
type = "fluent"
address = "127.0.0.1:{port}"
[transforms.tag]
type = "anomaly"
inputs = ["forward"]
model = "{model}"
[sinks.out]
type = "file"
inputs = ["tag"]
path = "{out}"
"#,
        data = dir.join("data").display(),
        model = fixture_bundle("iforest").display(),
        out = out.display()
    )
}

#[test]
fn the_python_fluent_logger_client_feeds_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let (api, port) = (free_port(), free_port());
    let out = dir.path().join("out.jsonl");
    let ft = Flowtag::start(dir.path(), &source_config(dir.path(), api, port, &out), api);
    let script = format!(
        r#"
from fluent import sender
for nano in (False, True):
    s = sender.FluentSender("flows", host="127.0.0.1", port={port}, nanosecond_precision=nano)
    for i in range(500):
        # Integer seconds without nanosecond precision; EventTime with it.
        t = sender.EventTime(1700000000, 123456789 + i) if nano else 1700000000 + i
        ok = s.emit_with_time("conn", t, {{"seq": i + (500 if nano else 0), "dur": 0.5, "proto": "tcp", "service": "http", "state": "FIN",
                           "spkts": 10, "dpkts": 8, "sbytes": 4000, "dbytes": 9000, "sttl": 62, "rate": 36}})
        assert ok, s.last_error
    s.close()
"#
    );
    let status = std::process::Command::new(python()).arg("-c").arg(script).status().unwrap();
    assert!(status.success());
    wait_until(Duration::from_secs(30), "1000 records", || read_jsonl(&out).len() >= 1000);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 1000);
    let mut seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, (0..1000).collect::<Vec<_>>());
    assert!(lines.iter().all(|l| l["tag"] == "flows.conn" && l["anomaly"]["verdict"].is_string()));
    // Each time kept exactly: read from the text, as a float would lose the nanoseconds.
    let text = std::fs::read_to_string(&out).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = v["seq"].as_i64().unwrap();
        let want = if seq < 500 {
            format!("\"timestamp\":{},", 1_700_000_000 + seq)
        } else {
            format!("\"timestamp\":1700000000.{},", (123_456_789 + seq - 500).to_string().trim_end_matches('0'))
        };
        assert!(line.contains(&want), "{want} not in {line}");
    }
    assert!(ft.terminate().success());
}

fn encode(v: &Value) -> Vec<u8> {
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, v).unwrap();
    b
}

fn read_value(stream: &mut TcpStream) -> Value {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    loop {
        if let Ok(v) = rmpv::decode::read_value(&mut &buf[..]) {
            return v;
        }
        let n = stream.read(&mut piece).expect("an answer within 30 s");
        assert!(n > 0, "connection closed before the answer");
        buf.extend_from_slice(&piece[..n]);
    }
}

#[test]
fn chunk_acks_come_back_only_after_the_sink_has_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let (api, port) = (free_port(), free_port());
    let out = dir.path().join("out.jsonl");
    let ft = Flowtag::start(dir.path(), &source_config(dir.path(), api, port, &out), api);
    let record = |i: i64| {
        Value::Map(vec![
            ("seq".into(), i.into()),
            ("dur".into(), 0.25.into()),
            ("proto".into(), "udp".into()),
            ("service".into(), "dns".into()),
            ("state".into(), "CON".into()),
            ("spkts".into(), 2.into()),
            ("dpkts".into(), 2.into()),
            ("sbytes".into(), 146.into()),
            ("dbytes".into(), 178.into()),
            ("rate".into(), 8.into()),
        ])
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Forward mode with EventTime, then PackedForward, each with a chunk id.
    let event_time = Value::Ext(0, [0x65u8, 0, 0, 0, 0, 0, 0, 1].to_vec());
    let entries = Value::Array((0..50).map(|i| Value::Array(vec![event_time.clone(), record(i)])).collect());
    stream
        .write_all(&encode(&Value::Array(vec![
            "t.forward".into(),
            entries,
            Value::Map(vec![("chunk".into(), "c1".into())]),
        ])))
        .unwrap();
    let ack = read_value(&mut stream);
    assert_eq!(ack, Value::Map(vec![("ack".into(), "c1".into())]));
    // By the time the ack arrives the records are in the file.
    assert_eq!(read_jsonl(&out).len(), 50);
    let mut packed = Vec::new();
    for i in 50..120 {
        packed.extend(encode(&Value::Array(vec![1_700_000_000.into(), record(i)])));
    }
    let msg = Value::Array(vec![
        "t.packed".into(),
        Value::Binary(packed),
        Value::Map(vec![("chunk".into(), "c2".into()), ("size".into(), 70.into())]),
    ]);
    stream.write_all(&encode(&msg)).unwrap();
    assert_eq!(read_value(&mut stream), Value::Map(vec![("ack".into(), "c2".into())]));
    assert_eq!(read_jsonl(&out).len(), 120);
    // Fluent Bit's v2 entries: [[EventTime, metadata], record].
    let v2_time = Value::Ext(0, [0x65u8, 0x53, 0xf1, 0x00, 0x00, 0x00, 0x00, 0x2a].to_vec());
    let meta = Value::Map(vec![("source".into(), "node-7".into())]);
    let entries = Value::Array(
        (120..130).map(|i| Value::Array(vec![Value::Array(vec![v2_time.clone(), meta.clone()]), record(i)])).collect(),
    );
    let msg = Value::Array(vec!["t.v2".into(), entries, Value::Map(vec![("chunk".into(), "c3".into())])]);
    stream.write_all(&encode(&msg)).unwrap();
    assert_eq!(read_value(&mut stream), Value::Map(vec![("ack".into(), "c3".into())]));
    let text = std::fs::read_to_string(&out).unwrap();
    let v2: Vec<&str> = text.lines().filter(|l| l.contains("\"t.v2\"")).collect();
    assert_eq!(v2.len(), 10);
    assert!(
        v2.iter().all(|l| l.contains("\"timestamp\":1700000000.000000042,")
            && l.contains("\"fluent_metadata\":{\"source\":\"node-7\"}")),
        "{v2:?}"
    );
    // Garbage closes the connection and is counted; the source keeps serving others.
    let mut bad = TcpStream::connect(("127.0.0.1", port)).unwrap();
    bad.write_all(&[0xc1, 0xc1, 0xc1]).unwrap();
    wait_until(Duration::from_secs(10), "the protocol error counted", || {
        ft.metrics().sum("flowtag_component_errors_total", &[("component_id", "forward"), ("error_type", "protocol")])
            >= 1.0
    });
    assert!(ft.terminate().success());
}

/// A forward-protocol input that checks every message strictly, records the events, and acks.
fn strict_forward_peer() -> (u16, Arc<Mutex<Vec<(String, Value)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let mut stream = stream.unwrap();
            let got = got2.clone();
            std::thread::spawn(move || loop {
                stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut buf = Vec::new();
                let mut piece = [0u8; 65536];
                let msg = loop {
                    if let Ok(v) = rmpv::decode::read_value(&mut &buf[..]) {
                        break v;
                    }
                    match stream.read(&mut piece) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&piece[..n]),
                    }
                };
                // [tag, bin, {"size": n, "chunk": id}]
                let parts = msg.as_array().expect("a message is an array");
                assert_eq!(parts.len(), 3, "PackedForward with options");
                let tag = parts[0].as_str().expect("tag").to_string();
                let Value::Binary(entries) = &parts[1] else { panic!("entries are bin, got {}", parts[1]) };
                let opts = parts[2].as_map().expect("options map");
                let opt = |k: &str| opts.iter().find(|(key, _)| key.as_str() == Some(k)).map(|(_, v)| v.clone());
                let chunk = opt("chunk").and_then(|c| c.as_str().map(str::to_string)).expect("chunk id");
                let mut cursor = &entries[..];
                let mut n = 0;
                while !cursor.is_empty() {
                    let e = rmpv::decode::read_value(&mut cursor).unwrap();
                    let e = e.as_array().expect("entry is [time, record]");
                    let Value::Ext(0, time) = &e[0] else { panic!("the time is not an EventTime: {}", e[0]) };
                    assert_eq!(time.len(), 8, "EventTime is 8 bytes");
                    assert!(e[1].is_map());
                    // The time goes along with the record, as `_time` (seconds, nanoseconds).
                    let secs = u32::from_be_bytes(time[..4].try_into().unwrap());
                    let nanos = u32::from_be_bytes(time[4..].try_into().unwrap());
                    let mut record = e[1].as_map().unwrap().clone();
                    record.push(("_time".into(), Value::Array(vec![secs.into(), nanos.into()])));
                    got.lock().unwrap().push((tag.clone(), Value::Map(record)));
                    n += 1;
                }
                assert_eq!(opt("size").and_then(|s| s.as_u64()), Some(n), "size matches the entries");
                let ack = encode(&Value::Map(vec![("ack".into(), chunk.into())]));
                stream.write_all(&ack).unwrap();
            });
        }
    });
    (port, got)
}

#[test]
fn the_sink_sends_packed_forward_and_waits_for_acks() {
    let (peer_port, got) = strict_forward_peer();
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..1500 {
        text.push_str(&format!("{{\"seq\":{i},\"timestamp\":1700000000.{ns:09},\"dur\":0.5,\"proto\":\"tcp\",\"service\":\"http\",\"state\":\"FIN\",\"spkts\":10,\"dpkts\":8,\"sbytes\":4000,\"dbytes\":9000,\"sttl\":62,\"rate\":36}}\n", ns = i * 1000 + 7));
    }
    std::fs::write(dir.path().join("flows.jsonl"), text).unwrap();
    let api = free_port();
    let cfg = format!(
        r#"
{head}
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
[sinks.aggregator]
type = "fluent"
inputs = ["tag"]
address = "127.0.0.1:{peer_port}"
tag = "flowtag.flows"
batch.max_events = 400
"#,
        head = file_source_head(&dir.path().join("data"), api, &dir.path().join("flows.jsonl")),
        model = fixture_bundle("iforest").display()
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);
    wait_until(Duration::from_secs(30), "1500 confirmed", || ft.sent("aggregator") >= 1500.0);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1500);
    assert!(got.iter().all(|(tag, _)| tag == "flowtag.flows"));
    let rec = &got[0].1;
    let field = |k: &str| rec.as_map().unwrap().iter().find(|(key, _)| key.as_str() == Some(k)).map(|(_, v)| v.clone());
    assert_eq!(field("seq").and_then(|v| v.as_i64()), Some(0));
    assert!(field("anomaly").is_some_and(|a| a.is_map()));
    for (_, rec) in got.iter() {
        let m = rec.as_map().unwrap();
        // Keys in the record's order, not sorted.
        let keys: Vec<&str> = m.iter().take(4).map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["seq", "timestamp", "dur", "proto"]);
        // The entry's EventTime is the record's timestamp, to the nanosecond.
        let seq = m[0].1.as_u64().unwrap();
        let time = &m.last().unwrap().1;
        assert_eq!(time, &Value::Array(vec![1_700_000_000u32.into(), ((seq * 1000 + 7) as u32).into()]));
    }
    drop(got);
    assert!(ft.terminate().success());
}

/// `sha512_hex(salt + hostname + nonce + key)`, written here from the Forward Protocol v1
/// specification, apart from flowtag's own.
fn spec_digest(salt: &[u8], hostname: &str, nonce: &[u8], key: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha512::new();
    for part in [salt, hostname.as_bytes(), nonce, key.as_bytes()] {
        h.update(part);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_source_requires_the_shared_key_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (api, port) = (free_port(), free_port());
    let out = dir.path().join("out.jsonl");
    let cfg = source_config(dir.path(), api, port, &out)
        .replace("type = \"fluent\"\n", "type = \"fluent\"\nshared_key = \"${FORWARD_KEY}\"\n");
    let ft = Flowtag::start_with_env(dir.path(), &cfg, api, &[("FORWARD_KEY", "k3y-for-nodes")]);
    let record = Value::Map(vec![("seq".into(), 1.into()), ("dur".into(), Value::F64(0.5))]);
    let message = |seq: i64| {
        encode(&Value::Array(vec![
            "flows".into(),
            Value::Array(vec![Value::Array(vec![1_700_000_000.into(), record.clone()])]),
            Value::Map(vec![("chunk".into(), format!("c{seq}").into())]),
        ]))
    };
    for (key, accepted) in [("wrong-key", false), ("k3y-for-nodes", true)] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let helo = read_value(&mut s);
        let helo = helo.as_array().unwrap();
        assert_eq!(helo[0].as_str(), Some("HELO"));
        let nonce = helo[1].as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some("nonce")).unwrap().1.clone();
        let nonce = nonce.as_slice().map(<[u8]>::to_vec).unwrap_or_else(|| nonce.as_str().unwrap().as_bytes().to_vec());
        let salt = b"client-salt";
        let ping = Value::Array(vec![
            "PING".into(),
            "test-client".into(),
            Value::Binary(salt.to_vec()),
            spec_digest(salt, "test-client", &nonce, key).into(),
            "".into(),
            "".into(),
        ]);
        s.write_all(&encode(&ping)).unwrap();
        let pong = read_value(&mut s);
        let pong = pong.as_array().unwrap();
        assert_eq!(pong[0].as_str(), Some("PONG"));
        assert_eq!(pong[1].as_bool(), Some(accepted), "{pong:?}");
        if accepted {
            // The server proves it holds the key too.
            let host = pong[3].as_str().unwrap();
            assert_eq!(pong[4].as_str().unwrap(), spec_digest(salt, host, &nonce, key));
            s.write_all(&message(1)).unwrap();
            let ack = read_value(&mut s);
            assert_eq!(ack.as_map().unwrap()[0].1.as_str(), Some("c1"));
        } else {
            // Refused: the connection is closed, and what it would send is never read.
            let _ = s.write_all(&message(0));
        }
    }
    wait_until(Duration::from_secs(10), "the record", || read_jsonl(&out).len() == 1);
    let log = ft.log();
    assert!(ft.terminate().success());
    assert_eq!(read_jsonl(&out).len(), 1, "only the authenticated connection's record");
    assert!(log.contains("handshake refused"), "{log}");
    assert!(!log.contains("k3y-for-nodes"), "the key is in the log");
}

#[test]
fn the_sink_and_the_source_agree_on_a_shared_key_and_refuse_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let (api_in, port) = (free_port(), free_port());
    let out = dir.path().join("out.jsonl");
    let receiver_dir = dir.path().join("receiver");
    std::fs::create_dir_all(&receiver_dir).unwrap();
    let cfg = source_config(&receiver_dir, api_in, port, &out)
        .replace("type = \"fluent\"\n", "type = \"fluent\"\nshared_key = \"${FORWARD_KEY}\"\n");
    let receiver = Flowtag::start_with_env(&receiver_dir, &cfg, api_in, &[("FORWARD_KEY", "right")]);
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
    let sender = |name: &str, key: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let api = free_port();
        let cfg = format!(
            "{head}[sinks.fwd]\ntype = \"fluent\"\ninputs = [\"flows\"]\naddress = \"127.0.0.1:{port}\"\nshared_key = \"${{FORWARD_KEY}}\"\nrequest.retry_initial_backoff = \"100ms\"\nrequest.retry_max_backoff = \"200ms\"\n",
            head = file_source_head(&d.join("data"), api, &input),
        );
        Flowtag::start_with_env(&d, &cfg, api, &[("FORWARD_KEY", key)])
    };
    let wrong = sender("wrong", "not-it");
    wait_until(Duration::from_secs(20), "refused handshakes", || {
        wrong.metrics().sum("flowtag_sink_retries_total", &[("component_id", "fwd")]) >= 2.0
    });
    assert!(wrong.log().contains("refused the handshake"), "{}", wrong.log());
    wrong.kill9();
    assert_eq!(read_jsonl(&out).len(), 0);
    let right = sender("right", "right");
    wait_until(Duration::from_secs(20), "three records", || read_jsonl(&out).len() == 3);
    assert!(right.terminate().success());
    assert!(receiver.terminate().success());
}

#[test]
fn flowtag_to_flowtag_over_mutual_tls_and_nothing_without_it() {
    use common::tls::TestCa;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = ca.write_ca(dir.path());
    let (crt, key) = ca.write_server(dir.path());
    let (client_crt, client_key) = ca.write_client(dir.path(), "node-1");
    let (api_in, port) = (free_port(), free_port());
    let out = dir.path().join("out.jsonl");
    let receiver_dir = dir.path().join("receiver");
    std::fs::create_dir_all(&receiver_dir).unwrap();
    let cfg = source_config(&receiver_dir, api_in, port, &out).replace(
        "type = \"fluent\"\n",
        &format!(
            "type = \"fluent\"\ntls.crt_file = \"{}\"\ntls.key_file = \"{}\"\ntls.client_ca_file = \"{}\"\n",
            crt.display(),
            key.display(),
            ca_file.display()
        ),
    );
    let receiver = Flowtag::start(&receiver_dir, &cfg, api_in);
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
    let sender = |name: &str, tls: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let api = free_port();
        let cfg = format!(
            "{head}[sinks.fwd]\ntype = \"fluent\"\ninputs = [\"flows\"]\naddress = \"127.0.0.1:{port}\"\n{tls}\nrequest.retry_initial_backoff = \"100ms\"\nrequest.retry_max_backoff = \"200ms\"\n",
            head = file_source_head(&d.join("data"), api, &input),
        );
        Flowtag::start(&d, &cfg, api)
    };
    let retried = |ft: &Flowtag| ft.metrics().sum("flowtag_sink_retries_total", &[("component_id", "fwd")]) >= 2.0;
    // Plain TCP to a TLS source: the handshake fails, nothing is read.
    let plain = sender("plain", "");
    wait_until(Duration::from_secs(20), "refused plain connections", || retried(&plain));
    plain.kill9();
    // TLS without the test CA: the sink refuses the receiver's certificate.
    let untrusting = sender("untrusting", "tls = {}");
    wait_until(Duration::from_secs(20), "refused certificates", || retried(&untrusting));
    assert!(untrusting.log().contains("UnknownIssuer"), "{}", untrusting.log());
    untrusting.kill9();
    // Trusting the CA but without a client certificate: the receiver refuses the client.
    let anonymous = sender("anonymous", &format!("tls.ca_file = \"{}\"", ca_file.display()));
    wait_until(Duration::from_secs(20), "refused anonymous clients", || retried(&anonymous));
    anonymous.kill9();
    assert_eq!(read_jsonl(&out).len(), 0, "a record came through without mutual TLS");
    assert!(
        receiver.metrics().sum("flowtag_component_errors_total", &[("component_id", "forward"), ("error_type", "tls")])
            >= 3.0
    );
    let mutual = sender(
        "mutual",
        &format!(
            "tls.ca_file = \"{}\"\ntls.crt_file = \"{}\"\ntls.key_file = \"{}\"",
            ca_file.display(),
            client_crt.display(),
            client_key.display()
        ),
    );
    wait_until(Duration::from_secs(20), "three records over mutual TLS", || read_jsonl(&out).len() == 3);
    assert!(mutual.terminate().success());
    assert!(receiver.terminate().success());
}
