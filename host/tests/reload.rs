//! `--watch-config`: a ConfigMap update (the kubelet swaps the `..data` symlink the config file
//! points through) reloads the pipeline, as SIGHUP does, with nothing lost and nothing twice.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::*;

fn config(dir: &Path, api: u16, input: &Path, sink: &str) -> String {
    format!(
        "{head}[sinks.{sink}]\ntype = \"file\"\ninputs = [\"flows\"]\npath = \"{}\"\n",
        dir.join(format!("{sink}.jsonl")).display(),
        head = file_source_head(&dir.join("data"), api, input),
    )
}

fn append(path: &Path, from: usize, to: usize) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for i in from..to {
        writeln!(f, "{{\"seq\":{i}}}").unwrap();
    }
}

#[test]
fn a_configmap_style_swap_reloads_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.jsonl");
    append(&input, 0, 500);
    let api = free_port();
    let first = config(dir.path(), api, &input, "before");
    let mut ft = Flowtag::start_args(dir.path(), &first, api, &["--graceful-shutdown-limit", "20s", "--watch-config"]);
    ft.wait_ready();
    // As a ConfigMap volume lays it out: flowtag.toml -> ..data/flowtag.toml, ..data -> v1.
    let cm = dir.path().join("cm");
    std::fs::create_dir_all(cm.join("v1")).unwrap();
    std::fs::write(cm.join("v1/flowtag.toml"), &first).unwrap();
    symlink("v1", cm.join("..data")).unwrap();
    let config_path = dir.path().join("flowtag.toml");
    std::fs::remove_file(&config_path).unwrap();
    symlink(cm.join("..data/flowtag.toml"), &config_path).unwrap();
    wait_until(Duration::from_secs(20), "500 records before", || {
        read_jsonl(&dir.path().join("before.jsonl")).len() == 500
    });

    // The update: v2 written beside, then `..data` swapped in one rename.
    std::fs::create_dir_all(cm.join("v2")).unwrap();
    std::fs::write(cm.join("v2/flowtag.toml"), config(dir.path(), api, &input, "after")).unwrap();
    symlink("v2", cm.join("..data_tmp")).unwrap();
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    wait_until(Duration::from_secs(20), "the reload", || ft.log().contains("config reloaded"));
    assert!(ft.log().contains("the config file changed"), "{}", ft.log());
    append(&input, 500, 1000);
    wait_until(Duration::from_secs(20), "500 records after", || {
        read_jsonl(&dir.path().join("after.jsonl")).len() >= 500
    });
    assert!(ft.terminate().success());
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for sink in ["before", "after"] {
        for r in read_jsonl(&dir.path().join(format!("{sink}.jsonl"))) {
            *seen.entry(r["seq"].as_i64().unwrap()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 1000, "every record once across the two configs");
    assert!(seen.values().all(|&n| n == 1), "a record twice");

    // A broken update is refused and the running config stays.
    std::fs::create_dir_all(cm.join("v3")).unwrap();
    std::fs::write(cm.join("v3/flowtag.toml"), "[sources.flows]\ntype = \"nope\"\n").unwrap();
    let api2 = free_port();
    let mut ft = Flowtag::start_args(
        dir.path(),
        &config(dir.path(), api2, &input, "after"),
        api2,
        &["--graceful-shutdown-limit", "20s", "--watch-config"],
    );
    ft.wait_ready();
    std::fs::write(dir.path().join("flowtag.toml.v3"), "[sources.flows]\ntype = \"nope\"\n").unwrap();
    std::fs::rename(dir.path().join("flowtag.toml.v3"), dir.path().join("flowtag.toml")).unwrap();
    wait_until(Duration::from_secs(20), "the refusal", || ft.log().contains("reload refused"));
    assert_eq!(http_get(api2, "/ready").unwrap().0, 200, "the running config stays");
    assert!(ft.terminate().success());
}
