//! End to end through the real binary: files in, tagged records out (to a file and over HTTP),
//! malformed input, a sink outage, kill -9 and restart, SIGHUP and SIGTERM.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// `n` JSON records in the fixture bundle's schema, each with a unique `seq`.
fn records(n: usize, malformed_every: usize) -> (String, usize) {
    let mut out = String::new();
    let mut bad = 0;
    for i in 0..n {
        if malformed_every > 0 && i % malformed_every == malformed_every - 1 {
            // Not JSON, or JSON without the features: both must come out, tagged.
            if i % 2 == 0 {
                out.push_str(&format!("garbage line {i} {{\n"));
            } else {
                out.push_str(&format!("{{\"seq\": {i}, \"note\": \"no features\"}}\n"));
            }
            bad += 1;
            continue;
        }
        let spkts = 2 + i % 40;
        out.push_str(&format!(
            "{{\"seq\":{i},\"dur\":{:.4},\"proto\":\"{}\",\"service\":\"{}\",\"state\":\"FIN\",\"spkts\":{spkts},\"dpkts\":{},\"sbytes\":{},\"dbytes\":{},\"sttl\":62,\"rate\":{}}}\n",
            0.01 + (i % 97) as f64 / 50.0,
            if i % 3 == 0 { "udp" } else { "tcp" },
            ["http", "dns", "-", "smtp"][i % 4],
            1 + i % 30,
            spkts * (60 + i % 700),
            (1 + i % 30) * (60 + i % 900),
            1 + i % 500,
        ));
    }
    (out, bad)
}

fn config(dir: &Path, api: u16, input: &str, sink: &str) -> String {
    format!(
        r#"
{head}
batch_events = 500
poll_interval = "50ms"
glob_interval = "200ms"
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
batch.max_events = 256
{sink}
"#,
        head = file_source_head(&dir.join("data"), api, Path::new(input)),
        model = fixture_bundle("iforest").display(),
    )
}

fn file_sink(path: &Path) -> String {
    format!("[sinks.out]\ntype = \"file\"\ninputs = [\"tag\"]\npath = \"{}\"\nbatch.max_events = 500\n", path.display())
}

fn seqs(lines: &[serde_json::Value]) -> HashMap<i64, usize> {
    let mut m = HashMap::new();
    for l in lines {
        let seq = l.get("seq").and_then(|v| v.as_i64()).or_else(|| {
            // A line that was not JSON came out as {"message": ...}.
            l["message"].as_str().and_then(|m| m.split_whitespace().nth(2)).and_then(|s| s.parse().ok())
        });
        *m.entry(seq.expect("every record can be traced back")).or_default() += 1;
    }
    m
}

#[test]
fn file_to_anomaly_to_file_tags_every_record_including_10000_malformed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (text, bad) = records(30_000, 3);
    assert_eq!(bad, 10_000);
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/flows.jsonl"), &text).unwrap();
    let out = dir.path().join("out/tagged.jsonl");
    let api = free_port();
    let ft = Flowtag::start(
        dir.path(),
        &config(dir.path(), api, &dir.path().join("in/*.jsonl").display().to_string(), &file_sink(&out)),
        api,
    );
    wait_until(Duration::from_secs(60), "30000 records out", || read_jsonl(&out).len() >= 30_000);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 30_000);
    let counts = seqs(&lines);
    assert_eq!(counts.len(), 30_000, "every record exactly once");
    let unscored: Vec<&serde_json::Value> = lines.iter().filter(|l| l["anomaly"]["verdict"] == "unscored").collect();
    assert_eq!(unscored.len(), 10_000);
    assert!(unscored.iter().all(|l| l["anomaly"]["error"].as_str().is_some_and(|e| !e.is_empty())));
    assert!(lines.iter().filter(|l| l["anomaly"]["verdict"] == "anomalous").count() > 0);
    // In input order.
    let order: Vec<i64> = lines.iter().filter_map(|l| l.get("seq").and_then(|v| v.as_i64())).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "records keep their order");
    let m = ft.metrics();
    assert_eq!(m.sum("flowtag_component_sent_events_total", &[("component_id", "out")]), 30_000.0);
    assert_eq!(
        m.sum("flowtag_component_errors_total", &[("component_id", "tag"), ("error_type", "unscored")]),
        10_000.0
    );
    assert!(m.sum("flowtag_anomalies_total", &[]) > 0.0);
    assert!(ft.terminate().success());
}

#[test]
fn file_to_http_with_gzip_and_a_sink_outage_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = records(5_000, 0);
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/flows.jsonl"), &text).unwrap();
    // The collector is down when flowtag starts.
    let port = free_port();
    let sink = format!(
        "[sinks.collector]\ntype = \"http\"\ninputs = [\"tag\"]\nuri = \"http://127.0.0.1:{port}/ingest\"\ncompression = \"gzip\"\nbatch.max_events = 400\nrequest.retry_initial_backoff = \"100ms\"\nrequest.retry_max_backoff = \"500ms\"\n"
    );
    let api = free_port();
    let ft = Flowtag::start(
        dir.path(),
        &config(dir.path(), api, &dir.path().join("in/*.jsonl").display().to_string(), &sink),
        api,
    );
    wait_until(Duration::from_secs(30), "retries while the collector is down", || {
        ft.metrics().sum("flowtag_sink_retries_total", &[("component_id", "collector")]) >= 3.0
    });
    // Held, not dropped, and memory stays bounded meanwhile.
    let m = ft.metrics();
    assert_eq!(m.sum("flowtag_component_sent_events_total", &[("component_id", "collector")]), 0.0);
    assert_eq!(m.sum("flowtag_component_discarded_events_total", &[]), 0.0);
    let rss_kib = rss_kib(ft.child.id());
    assert!(rss_kib < 200 * 1024, "RSS {rss_kib} KiB while the sink is down");
    // The collector comes back: everything arrives.
    let peer = HttpPeer::start_on(port, |req| {
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/ingest");
        assert_eq!(req.header("content-type"), Some("application/x-ndjson"));
        (200, "{}".into())
    });
    let received = || -> usize {
        peer.requests().iter().map(|r| String::from_utf8(r.decoded_body()).unwrap().lines().count()).sum()
    };
    wait_until(Duration::from_secs(60), "5000 records at the collector", || received() >= 5_000);
    assert_eq!(received(), 5_000);
    let mut seen = std::collections::HashSet::new();
    for r in peer.requests() {
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        for line in String::from_utf8(r.decoded_body()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["anomaly"]["verdict"].is_string());
            assert!(seen.insert(v["seq"].as_i64().unwrap()));
        }
    }
    assert!(ft.terminate().success());
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

#[test]
fn kill_9_at_any_moment_and_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = 60_000;
    let (text, _) = records(n, 0);
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/flows.jsonl"), &text).unwrap();
    let out = dir.path().join("out/tagged.jsonl");
    let cfg = config(dir.path(), 0, &dir.path().join("in/*.jsonl").display().to_string(), &file_sink(&out));
    let kills = 5;
    for k in 0..kills {
        let api = free_port();
        let ft = Flowtag::start(dir.path(), &cfg.replace("127.0.0.1:0", &format!("127.0.0.1:{api}")), api);
        // Let it get somewhere, then pull the plug.
        let before = read_jsonl(&out).len();
        wait_until(Duration::from_secs(60), "progress before the kill", || {
            read_jsonl(&out).len() > before || read_jsonl(&out).len() >= n
        });
        std::thread::sleep(Duration::from_millis(50 + 97 * k as u64));
        ft.kill9();
    }
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &cfg.replace("127.0.0.1:0", &format!("127.0.0.1:{api}")), api);
    wait_until(Duration::from_secs(90), "every record out", || seqs(&read_jsonl(&out)).len() >= n);
    std::thread::sleep(Duration::from_millis(500));
    assert!(ft.terminate().success());
    let counts = seqs(&read_jsonl(&out));
    assert_eq!(counts.len(), n, "every record arrived");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // At most the request a sink had written but not yet confirmed, per crash.
    assert!(duplicates <= kills * 500, "{duplicates} duplicates after {kills} kills");
}

#[test]
fn sighup_reloads_and_sigterm_drains_without_losing_events() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let input = dir.path().join("in/live.jsonl");
    std::fs::write(&input, "").unwrap();
    let out = dir.path().join("out/tagged.jsonl");
    let api = free_port();
    let cfg = config(dir.path(), api, &dir.path().join("in/*.jsonl").display().to_string(), &file_sink(&out));
    let mut ft = Flowtag::start(dir.path(), &cfg, api);
    // A writer appends records the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, input2) = (stop.clone(), input.clone());
    let writer = std::thread::spawn(move || {
        let (text, _) = records(20_000, 0);
        let mut f = std::fs::OpenOptions::new().append(true).open(&input2).unwrap();
        let mut written = 0;
        for chunk in text.lines().collect::<Vec<_>>().chunks(200) {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            for l in chunk {
                writeln!(f, "{l}").unwrap();
            }
            written += chunk.len();
            std::thread::sleep(Duration::from_millis(20));
        }
        written
    });
    std::thread::sleep(Duration::from_millis(700));
    // Reload with a change: reasons for every record from now on.
    std::fs::write(
        dir.path().join("flowtag.toml"),
        cfg.replace("batch.max_events = 256", "batch.max_events = 256\nreasons = \"all\""),
    )
    .unwrap();
    ft.signal(1);
    wait_until(Duration::from_secs(30), "the reload", || ft.log().contains("config reloaded"));
    ft.wait_ready();
    let written = writer.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(60), "everything written to come out", || read_jsonl(&out).len() >= written);
    assert!(ft.terminate().success());
    let lines = read_jsonl(&out);
    let counts = seqs(&lines);
    assert_eq!(counts.len(), written, "no record lost across the reload");
    assert!(counts.values().all(|&c| c == 1), "a graceful reload duplicates nothing");
    assert!(
        lines.iter().any(|l| l["anomaly"]["verdict"] == "normal" && l["anomaly"]["reasons"].is_array()),
        "the new config is in effect"
    );
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |cfg: &str| {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, cfg).unwrap();
        let out = std::process::Command::new(flowtag())
            .args(["validate", "--config"])
            .arg(&path)
            .env_remove("NOT_SET_TOKEN")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cfg}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let base = format!("[sources.flows]\ntype = \"stdin\"\n[transforms.tag]\ntype = \"anomaly\"\ninputs = [\"flows\"]\nmodel = \"{}\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"tag\"]\n", fixture_bundle("iforest").display());
    assert!(run(&base.replace("type = \"stdin\"", "type = \"stdin\"\ndecodng = \"json\""))
        .contains("sources.flows.decodng: unknown field `decodng`"));
    assert!(run(&format!("[api]\nadress = \"127.0.0.1:9\"\n{base}")).contains(
        "api.adress: unknown field `adress`, expected one of `enabled`, `address`, `token`, `token_file` (did you mean `address`?) at line 2"
    ));
    // Inside a typed table serde loses the key; the message still names it, and the table's line.
    let runtime = run(&base.replace("type = \"anomaly\"", "type = \"anomaly\"\nruntime = \"wsam\""));
    assert!(
        runtime.contains("transforms.tag.runtime: unknown variant `wsam`, expected `native` or `wasm`"),
        "{runtime}"
    );
    assert!(runtime.contains("(the table at line 3"), "{runtime}");
    assert!(run(&base.replace("type = \"anomaly\"", "type = \"anomaly\"\nbatch = { max_events = \"many\" }"))
        .contains("transforms.tag.batch.max_events: invalid type: string \"many\""));
    assert!(run(&base.replace("type = \"console\"", "type = \"file\"")).contains("sinks.out: missing field `path`"));
    assert!(run(&base.replace("inputs = [\"tag\"]", "inputs = [\"tagg\"]"))
        .contains("sinks.out.inputs: no source or transform is called `tagg` (did you mean `tag`?)"));
    assert!(run(&base.replace(
        "type = \"console\"",
        "type = \"splunk_hec\"\nendpoint = \"https://splunk:8088\"\ntoken = \"${NOT_SET_TOKEN}\""
    ))
    .contains("`NOT_SET_TOKEN` is not set"));
    assert!(run(&base.replace("type = \"console\"", "type = \"splunk_hec\"\nendpoint = \"https://splunk:8088\""))
        .contains("sinks.out.token: required"));
    assert!(run(&base.replace("type = \"anomaly\"", "type = \"anomaly\"\nbatch.max_events = 0"))
        .contains("transforms.tag.batch.max_events"));
    assert!(run(&base.replace("type = \"stdin\"", "type = \"tcp\"\naddress = \"not an address\"")).contains("address"));
    let good = dir.path().join("ok.toml");
    std::fs::write(&good, &base).unwrap();
    assert!(std::process::Command::new(flowtag())
        .args(["validate", "--config"])
        .arg(&good)
        .status()
        .unwrap()
        .success());
}

#[test]
fn long_records_that_straddle_reads_come_out_exactly_once() {
    // `flowtag gen` UNSW records are ~700 bytes: a 1000-line batch spans several 256 KiB reads,
    // so lines are split across reads and across batches.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let gen = std::process::Command::new(flowtag())
        .args(["gen", "--schema", "unsw", "--format", "json", "--count", "20000", "--seed", "9"])
        .output()
        .unwrap();
    assert!(gen.status.success());
    std::fs::write(dir.path().join("in/flows.jsonl"), &gen.stdout).unwrap();
    let out = dir.path().join("out/tagged.jsonl");
    let api = free_port();
    let cfg = config(dir.path(), api, &dir.path().join("in/*.jsonl").display().to_string(), &file_sink(&out))
        .replace("batch_events = 500", "batch_events = 1000");
    let ft = Flowtag::start(dir.path(), &cfg, api);
    wait_until(Duration::from_secs(60), "20000 records", || read_jsonl(&out).len() >= 20_000);
    std::thread::sleep(Duration::from_millis(300));
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 20_000);
    let ids: std::collections::HashSet<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 20_000);
    assert!(!ft.log().contains("truncated"), "no false truncation");
    assert!(ft.terminate().success());
}

#[test]
fn a_blackhole_counts_and_confirms_everything_so_the_checkpoint_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = records(5_000, 0);
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/flows.jsonl"), &text).unwrap();
    let input = dir.path().join("in/*.jsonl").display().to_string();
    let sink = "[sinks.nowhere]\ntype = \"blackhole\"\ninputs = [\"tag\"]\n";
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &config(dir.path(), api, &input, sink), api);
    wait_until(Duration::from_secs(30), "5000 records taken", || ft.sent("nowhere") >= 5_000.0);
    assert_eq!(ft.sent("nowhere"), 5_000.0);
    assert!(ft.terminate().success());
    // Everything was confirmed: after a restart nothing is read again.
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &config(dir.path(), api, &input, sink), api);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ft.sent("nowhere"), 0.0, "records read again after the restart");
    assert!(ft.terminate().success());
}
