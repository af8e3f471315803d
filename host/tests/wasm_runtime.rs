//! `runtime = "wasm"` through the real binary: byte-identical tags against the native runtime on
//! real rows for every shipped bundle, the compiled-module cache, and hostile modules (an endless
//! loop, endless memory growth, a trap, a wrong ABI version, a missing export) that the host must
//! survive while it keeps delivering and says what happened.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn wasm_path() -> PathBuf {
    let p = repo().join("target/flowtag_filter.wasm");
    assert!(p.exists(), "{} is missing: build it with `make wasm` (scripts/build-wasm.sh)", p.display());
    p
}

/// The compiled-module cache the parity runs share (compiling the module takes seconds).
fn shared_cache() -> PathBuf {
    repo().join("target/test-wasm-cache")
}

/// A data directory whose compiled-module cache already holds the real module, so a host
/// started on it does not spend its first seconds compiling.
fn seeded_data_dir(dir: &Path) -> PathBuf {
    let input = head(dir, "unsw-nb15/UNSW_NB15_dev.csv", 1);
    score(&repo().join("models/unsw-supervised"), "unsw", &input, Some((&wasm_path(), &shared_cache())));
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("wasm-cache")).unwrap();
    for e in std::fs::read_dir(shared_cache().join("wasm-cache")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join("wasm-cache").join(e.file_name())).unwrap();
    }
    data
}

/// `flowtag score` output and stderr.
fn score(model: &Path, format: &str, input: &Path, wasm: Option<(&Path, &Path)>) -> (Vec<u8>, String) {
    let mut cmd = Command::new(flowtag());
    cmd.arg("score").arg("--model").arg(model).args(["--format", format, "--reasons", "all"]);
    if let Some((plugin, data_dir)) = wasm {
        cmd.args(["--runtime", "wasm", "--plugin"]).arg(plugin).arg("--data-dir").arg(data_dir);
    }
    let out = cmd.arg(input).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "flowtag score failed: {stderr}");
    (out.stdout, stderr)
}

/// The first `n` data rows of a dataset file (its header kept) in a temporary file.
fn head(dir: &Path, rel: &str, n: usize) -> PathBuf {
    let text = std::fs::read(datasets().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e} (set FLOWTAG_DATASETS)"));
    let mut end = 0;
    for _ in 0..=n {
        match text[end..].iter().position(|&b| b == b'\n') {
            Some(p) => end += p + 1,
            None => {
                end = text.len();
                break;
            }
        }
    }
    let path = dir.join(rel.replace('/', "_"));
    std::fs::write(&path, &text[..end]).unwrap();
    path
}

fn assert_identical(model: &str, format: &str, input: &Path, min_rows: usize) {
    let bundle = repo().join("models").join(model);
    let (native, _) = score(&bundle, format, input, None);
    let (wasm, _) = score(&bundle, format, input, Some((&wasm_path(), &shared_cache())));
    let rows = native.iter().filter(|&&b| b == b'\n').count();
    assert!(rows >= min_rows, "{model}: only {rows} rows from {}", input.display());
    if native != wasm {
        let n = String::from_utf8_lossy(&native);
        let w = String::from_utf8_lossy(&wasm);
        let (i, (a, b)) = n.lines().zip(w.lines()).enumerate().find(|(_, (a, b))| a != b).expect("a differing line");
        panic!("{model}: native and wasm differ at line {i}:\n native {a}\n wasm   {b}");
    }
}

#[test]
fn native_and_wasm_tag_real_rows_byte_for_byte_for_every_shipped_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let unsw = head(dir.path(), "unsw-nb15/UNSW_NB15_dev.csv", 10_000);
    let unsw_raw = head(dir.path(), "unsw-nb15/UNSW-NB15_1.head3500.csv", 3_500);
    for model in ["unsw-supervised", "unsw-unsupervised", "flows-portable"] {
        assert_identical(model, "unsw", &unsw, 10_000);
        assert_identical(model, "unsw", &unsw_raw, 3_500);
    }
    // CICIDS2017 in both of its CSV layouts, benign and attacks: 10,000 rows together.
    for (rel, n) in [
        ("cicids2017/original-subsets/Tuesday_Working_balanced.csv", 5_000),
        ("cicids2017/original-subsets/Thursday-Morning_WebAttacks_balanced.csv", 2_000),
        ("cicids2017/original-subsets/Friday-Afternoon-DDos.head9998.csv", 2_000),
        ("cicids2017/original-subsets/TrafficLabelling_PortScan_1000.csv", 1_000),
    ] {
        assert_identical("cicids2017", "cicflowmeter", &head(dir.path(), rel, n), n);
    }
    // Zeek conn.log (TSV and JSON) through the bundle that reads Zeek names.
    for rel in ["zeek/slips-port-scans/horizontal_conn.log", "zeek/slips-port-scans/vertical_conn.log"] {
        assert_identical("flows-portable", "zeek", &datasets().join(rel), 10);
    }
}

#[test]
fn the_compiled_module_is_cached_and_a_corrupt_cache_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = head(dir.path(), "unsw-nb15/UNSW_NB15_dev.csv", 50);
    let bundle = repo().join("models/unsw-supervised");
    let (first, _) = score(&bundle, "unsw", &input, Some((&wasm_path(), &data)));
    let cache = data.join("wasm-cache");
    let entries = |ext: &str| -> Vec<PathBuf> {
        std::fs::read_dir(&cache)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == ext)).collect()
            })
            .unwrap_or_default()
    };
    let code = entries("cwasm");
    assert_eq!(code.len(), 1, "one compiled module in {}", cache.display());
    let name = code[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains("wasmtime48.0.8"), "the key names the wasmtime version: {name}");

    // Started again: loaded from the cache, same output.
    let (second, log) = score(&bundle, "unsw", &input, Some((&wasm_path(), &data)));
    assert_eq!(first, second);
    assert!(!log.contains("corrupt") && !log.contains("compiling again"), "{log}");

    // Corrupt it: ignored, rebuilt, same output.
    let mut bytes = std::fs::read(&code[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&code[0], &bytes).unwrap();
    let (third, log) = score(&bundle, "unsw", &input, Some((&wasm_path(), &data)));
    assert_eq!(first, third);
    assert!(log.contains("corrupt") && log.contains("compiling again"), "{log}");
    let fixed = std::fs::read(&code[0]).unwrap();
    assert_ne!(fixed, bytes, "the cache entry was rewritten");

    // Truncated: the same.
    std::fs::write(&code[0], &fixed[..fixed.len() / 3]).unwrap();
    let (fourth, log) = score(&bundle, "unsw", &input, Some((&wasm_path(), &data)));
    assert_eq!(first, fourth);
    assert!(log.contains("compiling again"), "{log}");
}

/// A module that speaks the ABI by echoing each batch back unchanged, except that a batch whose
/// first record's first key starts with `L` loops for ever, `M` grows memory until refused and
/// then traps, `T` traps at once.
fn hostile_wat(version: u32, with_results: bool) -> String {
    let results = if with_results {
        r#"(func (export "flowtag_results") (result i64)
             (i64.or (i64.shl (i64.const 7340032) (i64.const 32))
                     (i64.extend_i32_u (i32.add (i32.const 8) (i32.mul (global.get $n) (i32.const 16))))))"#
    } else {
        ""
    };
    format!(
        r#"(module
  (memory (export "memory") 128)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 1024) "hostile test module")
  (func (export "flowtag_abi_version") (result i32) (i32.const {version}))
  (func (export "flowtag_alloc") (param $len i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $len) (i32.const 6291456))
      (then (i32.const 0)) (else (i32.const 65536))))
  (func (export "flowtag_dealloc") (param i32 i32))
  (func (export "flowtag_configure") (param i32 i32) (result i32) (i32.const 0))
  (func (export "flowtag_load") (param i32 i32) (result i32) (i32.const 0))
  (func (export "flowtag_last_error") (result i64)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 19)))
  {results}
  (func (export "flowtag_tag") (param $ptr i32) (param $len i32) (result i64)
    (local $c i32) (local $i i32) (local $n i32)
    (local.set $c (i32.load8_u (i32.add (local.get $ptr) (i32.const 2))))
    (if (i32.eq (local.get $c) (i32.const 76))
      (then (loop $spin (br $spin))))
    (if (i32.eq (local.get $c) (i32.const 77))
      (then (loop $grow
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
        (br $grow))))
    (if (i32.eq (local.get $c) (i32.const 84))
      (then unreachable))
    ;; Count the lines, write the results header and one "normal" entry per line.
    (block $done
      (loop $count
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (local.get $i))) (i32.const 10))
          (then (local.set $n (i32.add (local.get $n) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $count)))
    (global.set $n (local.get $n))
    (i32.store (i32.const 7340032) (local.get $n))
    (i32.store (i32.const 7340036) (i32.const 0))
    (memory.fill (i32.const 7340040) (i32.const 0) (i32.mul (local.get $n) (i32.const 16)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))
)"#
    )
}

fn write_module(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).expect("valid WAT")).unwrap();
    path
}

fn wasm_config(dir: &Path, api: u16, plugin: &Path, input: &Path, output: &Path) -> String {
    format!(
        r#"
{head}
poll_interval = "50ms"
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
runtime = "wasm"
plugin = "{plugin}"
batch.max_events = 1
wasm.timeout = "300ms"
wasm.memory_limit_mib = 32
[sinks.out]
type = "file"
inputs = ["tag"]
path = "{output}"
"#,
        head = file_source_head(&dir.join("data"), api, input),
        model = fixture_bundle("iforest").display(),
        plugin = plugin.display(),
        output = output.display(),
    )
}

#[test]
fn hostile_modules_fail_only_their_batch_and_the_host_keeps_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = write_module(dir.path(), "hostile.wasm", &hostile_wat(flowtag_plugin::ABI_VERSION, true));
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let mut lines = Vec::new();
    for (i, kind) in ["a", "L", "a", "M", "a", "T", "a", "L", "a"].iter().enumerate() {
        for j in 0..5 {
            let k = if j == 2 { kind } else { &"a" };
            lines.push(format!("{{\"{k}\":{},\"seq\":{}}}", i * 10 + j, lines.len()));
        }
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let api = free_port();
    let ft = Flowtag::start(dir.path(), &wasm_config(dir.path(), api, &plugin, &input, &output), api);
    wait_until(Duration::from_secs(60), "every record delivered", || read_jsonl(&output).len() >= lines.len());
    let out = read_jsonl(&output);
    assert_eq!(out.len(), lines.len(), "every record in comes out once");
    let mut failures = std::collections::BTreeMap::new();
    for (i, rec) in out.iter().enumerate() {
        assert_eq!(rec["seq"], i, "in order");
        let hostile = ["L", "M", "T"].iter().find(|k| rec.get(**k).is_some());
        match hostile {
            Some(k) => {
                assert_eq!(rec["anomaly"]["verdict"], "unscored", "{rec}");
                let error = rec["anomaly"]["error"].as_str().unwrap().to_string();
                failures.entry(k.to_string()).or_insert_with(Vec::new).push(error);
            }
            // The echo module returns a good record as it was.
            None => assert!(rec.get("anomaly").is_none(), "{rec}"),
        }
    }
    assert!(failures["L"].iter().all(|e| e.contains("timed out")), "{failures:?}");
    assert_eq!(failures["L"].len(), 2);
    assert!(failures["M"][0].contains("out of memory") && failures["M"][0].contains("32 MiB"), "{failures:?}");
    assert!(failures["T"][0].contains("trapped") && failures["T"][0].contains("unreachable"), "{failures:?}");
    let m = ft.metrics();
    assert_eq!(
        m.sum("flowtag_component_errors_total", &[("component_id", "tag"), ("error_type", "batch_failed")]),
        4.0
    );
    assert_eq!(m.sum("flowtag_component_sent_events_total", &[("component_id", "out")]), lines.len() as f64);
    assert_eq!(http_get(api, "/health").map(|(s, _)| s), Some(200));
    let log = ft.log();
    assert!(log.contains("WASM instance recreated"), "{log}");
    assert!(ft.terminate().success());
}

#[test]
fn modules_that_do_not_speak_the_abi_are_refused_at_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"a\":1}\n").unwrap();
    let cases = [
        ("old.wasm", hostile_wat(99, true), "speaks plugin ABI version 99"),
        ("partial.wasm", hostile_wat(flowtag_plugin::ABI_VERSION, false), "does not export `flowtag_results`"),
        ("junk.wasm", String::new(), "not a usable WASM module"),
    ];
    for (name, wat, want) in cases {
        let plugin = if wat.is_empty() {
            let p = dir.path().join(name);
            std::fs::write(&p, b"\0asm\x01\0\0\0garbage").unwrap();
            p
        } else {
            write_module(dir.path(), name, &wat)
        };
        let cfg = wasm_config(dir.path(), free_port(), &plugin, &input, &dir.path().join("out.jsonl"));
        let path = dir.path().join("flowtag.toml");
        std::fs::write(&path, cfg).unwrap();
        for sub in ["run", "validate"] {
            let out = Command::new(flowtag()).arg(sub).arg("--config").arg(&path).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{sub} {name}: started anyway");
            assert!(stderr.contains(want) && stderr.contains("transforms.tag.plugin"), "{sub} {name}: {stderr}");
        }
    }
}

#[test]
fn a_pipeline_tags_with_the_real_module_as_it_does_natively() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.csv");
    std::fs::copy(head(dir.path(), "unsw-nb15/UNSW_NB15_dev.csv", 3_000), &input).unwrap();
    let api = free_port();
    let out_native = dir.path().join("native.jsonl");
    let out_wasm = dir.path().join("wasm.jsonl");
    let data = seeded_data_dir(dir.path());
    let cfg = format!(
        r#"
{head}
decoding = "unsw"
[transforms.native]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
[transforms.wasm]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
runtime = "wasm"
plugin = "{plugin}"
[sinks.native_out]
type = "file"
inputs = ["native"]
path = "{out_native}"
[sinks.wasm_out]
type = "file"
inputs = ["wasm"]
path = "{out_wasm}"
"#,
        head = file_source_head(&data, api, &input),
        model = repo().join("models/unsw-unsupervised").display(),
        plugin = wasm_path().display(),
        out_native = out_native.display(),
        out_wasm = out_wasm.display(),
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);
    wait_until(Duration::from_secs(120), "both sinks have every record", || {
        [&out_native, &out_wasm].iter().all(|p| read_jsonl(p).len() >= 3_000)
    });
    assert!(ft.terminate().success());
    let native = std::fs::read(&out_native).unwrap();
    let wasm = std::fs::read(&out_wasm).unwrap();
    assert_eq!(native.len(), wasm.len());
    assert!(native == wasm, "the two runtimes tagged differently");
    assert!(
        std::fs::read_dir(dir.path().join("data/wasm-cache")).unwrap().count() >= 2,
        "the compiled module is cached"
    );
}
