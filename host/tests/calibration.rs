//! Edge self-calibration in a running flowtag, natively and under WASM: a node whose normal
//! traffic the bundle would call anomalous warms up on its own scores, then tags about
//! `target_fpr` of it anomalous, says which calibration each tag used, reports its state and
//! drift, and resumes after a restart without a second warm-up.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `n` fixture records with every number scaled by 37: unlike the bundle's training traffic.
fn write_shifted(path: &Path, n: usize, first_seq: usize) {
    let fixture = std::fs::read_to_string(repo().join("plugin/tests/fixtures/records.jsonl")).unwrap();
    let mut text = String::new();
    // The fixture's well-formed records (it also holds malformed ones, for other tests).
    let good: Vec<serde_json::Map<String, Value>> =
        fixture.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    for (i, mut v) in good.into_iter().cycle().take(n).enumerate() {
        for x in v.values_mut() {
            if let Some(f) = x.as_f64() {
                *x = Value::from(f * 37.0 + (i % 13) as f64);
            }
        }
        v.insert("seq".into(), Value::from(first_seq + i));
        text.push_str(&serde_json::to_string(&v).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn run(runtime: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (data, input, out) = (dir.path().join("data"), dir.path().join("flows.jsonl"), dir.path().join("tagged.jsonl"));
    write_shifted(&input, 6000, 0);
    let api = free_port();
    let config = format!(
        "{}decoding = \"json\"\nread_from = \"beginning\"\n[transforms.tag]\ntype = \"anomaly\"\ninputs = [\"flows\"]\nmodel = \"{}\"\n{runtime}\n\
         [transforms.tag.calibration]\nmode = \"local\"\nwarmup_records = 1000\ntarget_fpr = 0.02\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"tag\"]\npath = \"{}\"\n",
        file_source_head(&data, api, &input),
        fixture_bundle("iforest").display(),
        out.display()
    );
    let ft = Flowtag::start(dir.path(), &config, api);
    wait_until(Duration::from_secs(60), "6000 tagged records", || read_jsonl(&out).len() >= 6000);
    let m = ft.metrics();
    assert_eq!(m.sum("flowtag_anomaly_calibration_state", &[("component_id", "tag")]), 2.0);
    let psi = m.sum("flowtag_anomaly_score_drift_psi", &[("component_id", "tag")]);
    assert!(psi > 0.25, "this traffic is far from the bundle's: PSI {psi}");
    assert!(ft.terminate().success());

    // Scored tags, in order (a few fixture records lack a feature and go on unscored).
    let tags: Vec<Value> =
        read_jsonl(&out).into_iter().map(|r| r["anomaly"].clone()).filter(|t| t["verdict"] != "unscored").collect();
    assert!(tags.len() > 5500);
    let label = |t: &Value| t["calibration"].as_str().unwrap_or("none").to_string();
    assert!(tags[..1000].iter().all(|t| label(t) == "warming_up"), "{:?}", tags[..3].to_vec());
    let late: Vec<String> = tags[1300..].iter().map(label).filter(|l| l != "local").collect();
    assert!(
        late.is_empty(),
        "the calibration switched after the warm-up: {} not local, e.g. {:?}",
        late.len(),
        tags[1300..].iter().find(|t| label(t) != "local")
    );
    let anomalous = |ts: &[Value]| ts.iter().filter(|t| t["verdict"] == "anomalous").count() as f64 / ts.len() as f64;
    let (bundle, local) = (anomalous(&tags[..1000]), anomalous(&tags[1300..]));
    assert!(bundle > 0.2, "the bundle's calibration flags much of this node's traffic: {bundle}");
    assert!((0.005..0.06).contains(&local), "about target_fpr (2 %) with this node's own: {local}");

    // Restarted on more of the same: the saved sample is this model's, no second warm-up.
    write_shifted(&dir.path().join("more.jsonl"), 500, 6000);
    std::fs::rename(dir.path().join("more.jsonl"), &input).unwrap();
    let ft = Flowtag::start(dir.path(), &config, api);
    wait_until(Duration::from_secs(60), "500 more", || read_jsonl(&out).len() >= 6500);
    assert!(ft.terminate().success());
    let again = read_jsonl(&out);
    assert!(again[6000..]
        .iter()
        .all(|r| r["anomaly"]["calibration"] == "local" || r["anomaly"]["verdict"] == "unscored"));
    assert!(data.join("transforms/tag/calibration.json").exists());
}

#[test]
fn local_calibration_natively() {
    run("");
}

#[test]
fn local_calibration_under_wasm() {
    let wasm = repo().join("target/flowtag_filter.wasm");
    assert!(wasm.exists(), "{} is missing: build it with `make wasm`", wasm.display());
    run(&format!("runtime = \"wasm\"\nplugin = \"{}\"", wasm.display()));
}
