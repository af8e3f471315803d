//! `route`, `filter`, `sample` and `throttle` in a running flowtag: every record lands where its
//! condition sends it, none twice and none lost, and the records a transform does not pass on
//! are confirmed so the file source's checkpoint moves past them (a restart sends nothing again).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const PROTOS: [&str; 3] = ["tcp", "udp", "icmp"];

/// `n` flows with distinct 5-tuples: proto cycles tcp, udp, icmp; `bytes` grows with `seq`;
/// 20 source hosts.
fn write_flows(path: &Path, n: usize) {
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{{\"seq\":{i},\"srcip\":\"10.0.0.{}\",\"sport\":{},\"dstip\":\"10.1.0.1\",\"dsport\":443,\"proto\":\"{}\",\"bytes\":{}}}\n",
                i % 20,
                1024 + i,
                PROTOS[i % 3],
                i * 10
            )
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

fn file_sink(id: &str, input: &str, dir: &Path) -> String {
    format!(
        "[sinks.{id}]\ntype = \"file\"\ninputs = [\"{input}\"]\npath = \"{}\"\n",
        dir.join(format!("{id}.jsonl")).display()
    )
}

fn seqs(dir: &Path, sink: &str) -> Vec<i64> {
    read_jsonl(&dir.join(format!("{sink}.jsonl"))).iter().map(|v| v["seq"].as_i64().unwrap()).collect()
}

#[test]
fn routes_send_each_record_where_its_condition_says_and_the_checkpoint_moves_past_all() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    write_flows(&input, 3000);
    let api = free_port();
    let cfg = format!(
        "{head}[transforms.pick]\ntype = \"route\"\ninputs = [\"flows\"]\nroute.tcp = 'proto == \"tcp\"'\nroute.big_udp = 'proto == \"udp\" && bytes >= 15000'\n\
         {tcp}{big}{rest}{archive}",
        head = file_source_head(&dir.path().join("data"), api, &input),
        tcp = file_sink("tcp", "pick.tcp", dir.path()),
        big = file_sink("big_udp", "pick.big_udp", dir.path()),
        rest = file_sink("rest", "pick._unmatched", dir.path()),
        archive = file_sink("archive", "flows", dir.path()),
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);
    wait_until(Duration::from_secs(30), "3000 archived", || ft.sent("archive") >= 3000.0);
    wait_until(Duration::from_secs(30), "3000 routed", || {
        ["tcp", "big_udp", "rest"].iter().map(|s| ft.sent(s)).sum::<f64>() >= 3000.0
    });
    // `flowtag top` shows each component with its counts.
    let top = std::process::Command::new(flowtag())
        .args(["top", "--once", "--interval", "200ms", "--api", &format!("127.0.0.1:{api}")])
        .output()
        .unwrap();
    assert!(top.status.success(), "{}", String::from_utf8_lossy(&top.stderr));
    let table = String::from_utf8_lossy(&top.stdout).to_string();
    let row = |id: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} in {table}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(row("pick")[1..4], ["transform", "route", "3000"], "{table}");
    assert_eq!(row("archive")[1..3], ["sink", "file"], "{table}");
    assert_eq!(row("flows")[5], "3000", "{table}");
    assert!(ft.terminate().success());
    let (tcp, big, rest) = (seqs(dir.path(), "tcp"), seqs(dir.path(), "big_udp"), seqs(dir.path(), "rest"));
    let want_tcp: Vec<i64> = (0..3000).filter(|i| i % 3 == 0).collect();
    let want_big: Vec<i64> = (0..3000).filter(|i| i % 3 == 1 && i * 10 >= 15000).collect();
    let sorted = |mut v: Vec<i64>| {
        v.sort();
        v
    };
    assert_eq!(sorted(tcp.clone()), want_tcp);
    assert_eq!(sorted(big.clone()), want_big);
    let mut all: Vec<i64> = tcp.iter().chain(&big).chain(&rest).copied().collect();
    all.sort();
    assert_eq!(all, (0..3000).collect::<Vec<_>>(), "each record exactly once across the routes");
    assert_eq!(seqs(dir.path(), "archive").len(), 3000);

    // Restart: the checkpoint is past every record, routed or not, so nothing comes again.
    let api = free_port();
    let cfg = cfg.replace(&format!("127.0.0.1:{}", ft_api(&cfg)), &format!("127.0.0.1:{api}"));
    let ft = Flowtag::start(dir.path(), &cfg, api);
    std::thread::sleep(Duration::from_secs(2));
    assert!(ft.terminate().success());
    assert_eq!(seqs(dir.path(), "archive").len(), 3000, "records read again after the restart");
    assert_eq!(seqs(dir.path(), "rest").len(), rest.len());
}

/// The API port written in a config.
fn ft_api(cfg: &str) -> u16 {
    let at = cfg.find("address = \"127.0.0.1:").unwrap() + "address = \"127.0.0.1:".len();
    cfg[at..].split('"').next().unwrap().parse().unwrap()
}

#[test]
fn filter_sample_and_throttle_keep_what_they_say_and_count_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    write_flows(&input, 6000);
    let run = |name: &str| -> (tempfile::TempDir, BTreeMap<String, f64>) {
        let out = tempfile::tempdir().unwrap();
        let api = free_port();
        let cfg = format!(
            "{head}[transforms.udp_only]\ntype = \"filter\"\ninputs = [\"flows\"]\ncondition = 'proto == \"udp\"'\n\
             [transforms.some]\ntype = \"sample\"\ninputs = [\"flows\"]\nrate = 10\nexclude = 'proto == \"icmp\"'\n\
             [transforms.calm]\ntype = \"throttle\"\ninputs = [\"flows\"]\nthreshold = 50\nwindow = \"1h\"\nkey_field = \"srcip\"\n\
             {udp}{some}{calm}",
            head = file_source_head(&out.path().join(format!("data-{name}")), api, &input),
            udp = file_sink("udp", "udp_only", out.path()),
            some = file_sink("sampled", "some", out.path()),
            calm = file_sink("calmed", "calm", out.path()),
        );
        let ft = Flowtag::start(out.path(), &cfg, api);
        wait_until(Duration::from_secs(30), "every record through the three", || {
            let m = ft.metrics();
            ["udp_only", "some", "calm"]
                .iter()
                .all(|t| m.sum("flowtag_component_received_events_total", &[("component_id", t)]) >= 6000.0)
        });
        // Let the sinks finish writing what passed.
        std::thread::sleep(Duration::from_millis(1500));
        let m = ft.metrics();
        let mut counts = BTreeMap::new();
        for (t, reason) in [("udp_only", "filtered"), ("some", "sampled"), ("calm", "throttled")] {
            counts.insert(
                t.to_string(),
                m.sum("flowtag_component_discarded_events_total", &[("component_id", t), ("reason", reason)]),
            );
        }
        assert!(ft.terminate().success());
        (out, counts)
    };
    let (a, discarded) = run("a");
    // filter: exactly the udp flows.
    let udp = read_jsonl(&a.path().join("udp.jsonl"));
    assert_eq!(udp.len(), 2000);
    assert!(udp.iter().all(|r| r["proto"] == "udp"));
    assert_eq!(discarded["udp_only"], 4000.0);
    // sample: every icmp flow (excluded, unchanged), about 1 in 10 of the rest, marked.
    let some = read_jsonl(&a.path().join("sampled.jsonl"));
    let icmp: Vec<&Value> = some.iter().filter(|r| r["proto"] == "icmp").collect();
    assert_eq!(icmp.len(), 2000);
    assert!(icmp.iter().all(|r| r.get("sample_rate").is_none()));
    let sampled: Vec<&Value> = some.iter().filter(|r| r["proto"] != "icmp").collect();
    // 4000 flows at 1 in 10: 400 expected, sd 19; a fixed hash, so always the same count.
    assert!((300..=500).contains(&sampled.len()), "{} sampled", sampled.len());
    assert!(sampled.iter().all(|r| r["sample_rate"] == 10));
    assert_eq!(discarded["some"], (4000 - sampled.len()) as f64);
    // throttle: at most 50 per source host (20 hosts, 300 flows each).
    let calm = read_jsonl(&a.path().join("calmed.jsonl"));
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for r in &calm {
        *per_host.entry(r["srcip"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_host.len(), 20);
    assert!(per_host.values().all(|&n| n == 50), "{per_host:?}");
    assert_eq!(discarded["calm"], 6000.0 - 1000.0);
    // The same flows are sampled in another run (another node would pick the same).
    let (b, _) = run("b");
    let kept = |d: &Path| -> BTreeSet<i64> {
        read_jsonl(&d.join("sampled.jsonl")).iter().map(|r| r["seq"].as_i64().unwrap()).collect()
    };
    assert_eq!(kept(a.path()), kept(b.path()));
}

#[test]
fn bad_conditions_and_outputs_are_refused_naming_the_key_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    write_flows(&input, 1);
    let validate = |transforms: &str, sink_input: &str| -> String {
        let cfg = format!(
            "{head}{transforms}{sink}",
            head = file_source_head(&dir.path().join("data"), free_port(), &input),
            sink = file_sink("out", sink_input, dir.path())
        );
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, cfg).unwrap();
        let out = std::process::Command::new(flowtag()).args(["validate", "--config"]).arg(&path).output().unwrap();
        assert!(!out.status.success(), "accepted: {transforms}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = validate(
        "[transforms.pick]\ntype = \"route\"\ninputs = [\"flows\"]\nroute.hot = 'score >= \"x\"'\n",
        "pick.hot",
    );
    assert!(err.contains("transforms.pick") && err.contains("at column 10: expected a number after `>=`"), "{err}");
    let err =
        validate("[transforms.pick]\ntype = \"route\"\ninputs = [\"flows\"]\nroute.hot = 'score >= 1'\n", "pick.cold");
    assert!(
        err.contains("sinks.out.inputs: `pick` has no output `cold`; name one of pick.hot, pick._unmatched"),
        "{err}"
    );
    let err = validate("[transforms.pick]\ntype = \"route\"\ninputs = [\"flows\"]\nroute.hot = 'score >= 1'\n", "pick");
    assert!(err.contains("`pick` has only named outputs"), "{err}");
    let err = validate("[transforms.some]\ntype = \"sample\"\ninputs = [\"flows\"]\nrate = 0\n", "some");
    assert!(err.contains("transforms.some.rate"), "{err}");
}

#[test]
fn tap_shows_the_events_leaving_an_output_and_takes_the_api_token() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    write_flows(&input, 30);
    let api = free_port();
    let cfg = format!(
        "{head}[transforms.pick]\ntype = \"route\"\ninputs = [\"flows\"]\nroute.tcp = 'proto == \"tcp\"'\n{tcp}{rest}",
        head = file_source_head(&dir.path().join("data"), api, &input),
        tcp = file_sink("tcp", "pick.tcp", dir.path()),
        rest = file_sink("rest", "pick._unmatched", dir.path()),
    )
    .replacen(
        &format!("address = \"127.0.0.1:{api}\"\n"),
        &format!("address = \"127.0.0.1:{api}\"\ntoken = \"t0k\"\n"),
        1,
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);
    let tap = |token: Option<&str>, output: &str| {
        let mut cmd = std::process::Command::new(flowtag());
        cmd.args(["tap", output, "--limit", "20", "--api", &format!("127.0.0.1:{api}")]);
        cmd.env_remove("FLOWTAG_API_TOKEN");
        if let Some(t) = token {
            cmd.env("FLOWTAG_API_TOKEN", t);
        }
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    // Without the token: refused.
    let out = tap(None, "pick.tcp").wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    // An output the pipeline does not have: named.
    let out = tap(Some("t0k"), "pick.udp").wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pick._unmatched, pick.tcp"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With it: the tcp flows written while the tap is open.
    let child = tap(Some("t0k"), "pick.tcp");
    std::thread::sleep(Duration::from_millis(500));
    let text: String = (1000..1090)
        .map(|i| format!("{{\"seq\":{i},\"srcip\":\"10.0.0.1\",\"proto\":\"{}\"}}\n", PROTOS[i % 3]))
        .collect();
    std::fs::OpenOptions::new().append(true).open(&input).unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l["proto"] == "tcp" && l["seq"].as_i64().unwrap() >= 1000), "{lines:?}");
    assert!(ft.terminate().success());
}

/// A chain after the tag filter, `tag -> route -> filter`, each the only reader of the output
/// before it: the route and the filter run on the tag filter's thread (no hand-off). Every
/// record lands where the chain says, each is counted as received by each transform, and the
/// checkpoint moves past the filtered ones.
#[test]
fn transforms_run_inline_after_the_tag_filter_deliver_and_confirm_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    write_flows(&input, 3000);
    let api = free_port();
    let cfg = format!(
        "{head}[transforms.tag]\ntype = \"anomaly\"\ninputs = [\"flows\"]\nmodel = \"{model}\"\n\
         [transforms.pick]\ntype = \"route\"\ninputs = [\"tag\"]\nroute.udp = 'proto == \"udp\" && exists(anomaly.verdict)'\n\
         [transforms.tcp_only]\ntype = \"filter\"\ninputs = [\"pick._unmatched\"]\ncondition = 'proto == \"tcp\"'\n\
         {udp}{tcp}",
        head = file_source_head(&dir.path().join("data"), api, &input),
        model = fixture_bundle("iforest").display(),
        udp = file_sink("udp", "pick.udp", dir.path()),
        tcp = file_sink("tcp", "tcp_only", dir.path()),
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);
    wait_until(Duration::from_secs(30), "2000 records out", || ft.sent("udp") + ft.sent("tcp") >= 2000.0);
    // No thread of their own is running (a thread's name is at most 15 bytes here).
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", ft.child.id()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    assert!(threads.iter().any(|t| t == "anomaly:tag"), "{threads:?}");
    assert!(!threads.iter().any(|t| t.starts_with("transform-")), "{threads:?}");
    let m = ft.metrics();
    let received = |id: &str| m.sum("flowtag_component_received_events_total", &[("component_id", id)]);
    assert_eq!((received("pick"), received("tcp_only")), (3000.0, 2000.0));
    assert_eq!(m.sum("flowtag_component_discarded_events_total", &[("component_id", "tcp_only")]), 1000.0);
    assert!(ft.terminate().success());
    let sorted = |mut v: Vec<i64>| {
        v.sort();
        v
    };
    assert_eq!(sorted(seqs(dir.path(), "udp")), (0..3000).filter(|i| i % 3 == 1).collect::<Vec<_>>());
    assert_eq!(sorted(seqs(dir.path(), "tcp")), (0..3000).filter(|i| i % 3 == 0).collect::<Vec<_>>());
    // Restart: nothing is read again, the icmp flows the filter dropped included.
    let api2 = free_port();
    let ft = Flowtag::start(dir.path(), &cfg.replace(&format!("127.0.0.1:{api}"), &format!("127.0.0.1:{api2}")), api2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ft.sent("udp") + ft.sent("tcp"), 0.0, "records read again after the restart");
    assert!(ft.terminate().success());
}
