//! The WASM filter as Fluent Bit runs it. Fluent Bit cannot run here, so this test host calls
//! the module exactly as Fluent Bit 4.x/5.x does (`src/wasm/flb_wasm.c`,
//! `flb_wasm_call_function_format_json`), under wasmtime instead of WAMR:
//!
//! - WASI with the `accessible_paths` directories preopened under their own names (`.`), the
//!   module's own working directory being Fluent Bit's;
//! - tag and record copied into the module's memory with `wasm_runtime_module_dup_data`, each
//!   with a trailing NUL that the lengths passed do not count. The module exports no `malloc`,
//!   so WAMR takes that memory from the app heap (`wasm_heap_size`) it places in linear memory
//!   beside the module's own allocations: emulated by growing the memory by the heap's size at
//!   instantiation and copying there;
//! - `filter(tag, tag_len, time_sec, time_nsec, record, record_len)` called with six i32s; the
//!   result validated as a NUL-terminated string inside linear memory and copied (`strdup`),
//!   then parsed: it must be a JSON object.
//!
//! Records are real UNSW-NB15 rows as a Fluent Bit parser would hand them over: JSON objects
//! whose values are strings.
//!
//! Both modules are run: `flowtag_filter.wasm` (SIMD, with tract) and
//! `flowtag_filter_fluentbit.wasm`, the one for Fluent Bit, whose WAMR is built without SIMD:
//! that one is loaded by a wasmtime with SIMD switched off, so a single `v128` anywhere in it
//! fails the test, as it would fail Fluent Bit's `WASM module load`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flowtag_plugin::{Bundle, Filter, FilterOptions};
use serde_json::Value;
use wasmtime::{Engine, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use common::*;

/// Fluent Bit's `wasm_heap_size` for this test (the README recommends the same).
const HEAP: u64 = 8 << 20;

/// Which build of the module.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flavour {
    /// `flowtag_filter.wasm`: SIMD, tract.
    Simd,
    /// `flowtag_filter_fluentbit.wasm`: neither.
    FluentBit,
}

const FLAVOURS: [Flavour; 2] = [Flavour::Simd, Flavour::FluentBit];

fn wasm_path(flavour: Flavour) -> PathBuf {
    let name = match flavour {
        Flavour::Simd => "flowtag_filter.wasm",
        Flavour::FluentBit => "flowtag_filter_fluentbit.wasm",
    };
    let p = repo().join("target").join(name);
    assert!(p.exists(), "{} is missing: build it with `make wasm` (scripts/build-wasm.sh)", p.display());
    p
}

/// An engine like the runtime that loads `flavour`: Fluent Bit's WAMR has no SIMD.
fn engine(flavour: Flavour) -> Engine {
    let mut config = wasmtime::Config::new();
    if flavour == Flavour::FluentBit {
        config.wasm_simd(false).wasm_relaxed_simd(false);
    }
    Engine::new(&config).unwrap()
}

fn module(flavour: Flavour) -> &'static (Engine, Module) {
    static M: [OnceLock<(Engine, Module)>; 2] = [OnceLock::new(), OnceLock::new()];
    M[flavour as usize].get_or_init(|| {
        let engine = engine(flavour);
        let module = Module::from_file(&engine, wasm_path(flavour))
            .unwrap_or_else(|e| panic!("{flavour:?}: the filter module does not load: {e:#}"));
        (engine, module)
    })
}

struct FluentBit {
    store: Store<WasiP1Ctx>,
    memory: Memory,
    filter: TypedFunc<(u32, u32, u32, u32, u32, u32), u32>,
    heap: usize,
}

impl FluentBit {
    /// Instantiate the module with `workdir` as Fluent Bit's working directory and the default
    /// `accessible_paths .`.
    fn start(workdir: &Path, flavour: Flavour) -> FluentBit {
        let (engine, module) = module(flavour);
        let wasi = WasiCtxBuilder::new()
            .preopened_dir(workdir, ".", FsPerms::ReadOnly)
            .expect("preopen")
            .inherit_stderr()
            .build_p1();
        let mut store = Store::new(engine, wasi);
        let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).unwrap();
        let instance = linker.instantiate(&mut store, module).expect("instantiate");
        let memory = instance.get_memory(&mut store, "memory").expect("memory export");
        let heap_pages = memory.grow(&mut store, HEAP / 65536).expect("room for the app heap");
        let filter = instance
            .get_typed_func::<(u32, u32, u32, u32, u32, u32), u32>(&mut store, "filter")
            .expect("`filter` with Fluent Bit's signature");
        FluentBit { store, memory, filter, heap: heap_pages as usize * 65536 }
    }

    /// One call, as `flb_wasm_call_function_format_json` makes it.
    fn call(&mut self, tag: &str, time: (u32, u32), record: &[u8]) -> Result<Value, String> {
        let tag_at = self.heap;
        let record_at = (tag_at + tag.len() + 1 + 7) & !7;
        assert!(record_at + record.len() + 1 <= self.heap + HEAP as usize, "record larger than the app heap");
        let mem = self.memory.data_mut(&mut self.store);
        mem[tag_at..tag_at + tag.len()].copy_from_slice(tag.as_bytes());
        mem[tag_at + tag.len()] = 0;
        mem[record_at..record_at + record.len()].copy_from_slice(record);
        mem[record_at + record.len()] = 0;
        let args = (tag_at as u32, tag.len() as u32, time.0, time.1, record_at as u32, record.len() as u32);
        let ptr = self.filter.call(&mut self.store, args).map_err(|e| format!("trap: {e:#}"))? as usize;
        // wasm_runtime_validate_app_str_addr: a NUL-terminated string inside linear memory.
        let mem = self.memory.data(&self.store);
        let tail = mem.get(ptr..).ok_or_else(|| format!("returned pointer {ptr} is outside memory"))?;
        let len = tail.iter().position(|&b| b == 0).ok_or("returned string has no NUL in memory")?;
        let text = std::str::from_utf8(&tail[..len]).map_err(|e| format!("not UTF-8: {e}"))?;
        match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(v) => Err(format!("not a JSON object: {v}")),
            Err(e) => Err(format!("not JSON ({e}): {text}")),
        }
    }
}

/// Real UNSW-NB15 rows as JSON objects of strings.
fn unsw_records(n: usize) -> Vec<Vec<u8>> {
    let path = datasets().join("unsw-nb15/UNSW_NB15_dev.csv");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (set FLOWTAG_DATASETS)", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().trim_start_matches('\u{feff}').split(',').collect();
    lines
        .take(n)
        .map(|l| {
            let map: serde_json::Map<String, Value> = header
                .iter()
                .zip(l.trim_end_matches('\r').split(','))
                .map(|(k, v)| (k.to_string(), Value::from(v)))
                .collect();
            serde_json::to_vec(&map).unwrap()
        })
        .collect()
}

fn native(bundle: &Bundle, record: &[u8]) -> Vec<u8> {
    let mut f = Filter::new(bundle, FilterOptions::default()).unwrap();
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    f.tag_batch(&[record], &mut out, &mut ends);
    out
}

fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn fluent_bit_calls_filter_on_real_records_and_gets_the_native_tags() {
    for flavour in FLAVOURS {
        calls_on_real_records(flavour);
    }
}

fn calls_on_real_records(flavour: Flavour) {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("models/unsw-unsupervised");
    copy_bundle(&model, &dir.path().join("flowtag-bundle"));
    let bundle = Bundle::read_path(&model).unwrap();
    let mut native_filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
    let mut fb = FluentBit::start(dir.path(), flavour);
    let (mut anomalous, mut normal) = (0, 0);
    for (i, record) in unsw_records(2_000).iter().enumerate() {
        let got = fb.call("flows.unsw", (1_700_000_000 + i as u32, 500), record).unwrap();
        let (mut want, mut ends) = (Vec::new(), Vec::new());
        native_filter.tag_batch(&[record], &mut want, &mut ends);
        let want: Value = serde_json::from_slice(&want).unwrap();
        assert_eq!(got, want, "{flavour:?} record {i}");
        // Every field of the record is still there, as Fluent Bit sent it.
        let sent: Value = serde_json::from_slice(record).unwrap();
        for (k, v) in sent.as_object().unwrap() {
            assert_eq!(&got[k], v, "record {i} field {k}");
        }
        match got["anomaly"]["verdict"].as_str().unwrap() {
            "anomalous" => anomalous += 1,
            "normal" => normal += 1,
            other => panic!("record {i}: verdict {other}: {got}"),
        }
        assert_eq!(got["anomaly"]["model"], "unsw-unsupervised@1");
    }
    assert!(anomalous > 100 && normal > 100, "{anomalous} anomalous, {normal} normal");
}

#[test]
fn the_bundle_can_be_a_tar() {
    for flavour in FLAVOURS {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::read_path(&repo().join("models/unsw-supervised")).unwrap();
        std::fs::write(dir.path().join("flowtag-bundle.tar"), bundle.to_tar()).unwrap();
        let mut fb = FluentBit::start(dir.path(), flavour);
        for (i, record) in unsw_records(200).iter().enumerate() {
            let got = fb.call("flows", (0, 0), record).unwrap();
            let want: Value = serde_json::from_slice(&native(&bundle, record)).unwrap();
            assert_eq!(got, want, "{flavour:?} record {i}");
        }
    }
}

#[test]
fn the_fluent_bit_module_holds_no_simd_and_the_check_can_fail() {
    let bytes = std::fs::read(wasm_path(Flavour::FluentBit)).unwrap();
    let no_simd = engine(Flavour::FluentBit);
    Module::validate(&no_simd, &bytes).expect("the Fluent Bit module validates without SIMD");
    // The other module uses v128: the same check refuses it.
    let simd = std::fs::read(wasm_path(Flavour::Simd)).unwrap();
    let err = Module::validate(&no_simd, &simd).expect_err("the SIMD module passed a no-SIMD validation");
    assert!(format!("{err:#}").contains("SIMD"), "{err:#}");
}

#[test]
fn the_fluent_bit_module_runs_every_shipped_bundle_as_native_does() {
    let cic = std::process::Command::new(flowtag())
        .args(["gen", "--schema", "cicflowmeter", "--count", "300", "--format", "json"])
        .output()
        .unwrap();
    assert!(cic.status.success());
    let cic: Vec<Vec<u8>> = cic.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    let unsw = unsw_records(300);
    for name in ["unsw-supervised", "unsw-unsupervised", "flows-portable", "cicids2017"] {
        let dir = tempfile::tempdir().unwrap();
        let model = repo().join("models").join(name);
        copy_bundle(&model, &dir.path().join("flowtag-bundle"));
        let bundle = Bundle::read_path(&model).unwrap();
        let mut fb = FluentBit::start(dir.path(), Flavour::FluentBit);
        let records = if name.starts_with("cic") { &cic } else { &unsw };
        for (i, record) in records.iter().enumerate() {
            let got = fb.call("flows", (0, 0), record).unwrap();
            let want: Value = serde_json::from_slice(&native(&bundle, record)).unwrap();
            assert_eq!(got, want, "{name} record {i}");
            assert!(got["anomaly"]["score"].is_number(), "{name} record {i} not scored: {got}");
        }
    }
}

#[test]
fn a_bundle_only_tract_runs_is_refused_by_the_fluent_bit_module_with_the_reason() {
    // The iforest fixture with its final `Add` written as `Sum` (the same sum): tract runs it,
    // flowtag's own evaluators do not.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("flowtag-bundle");
    copy_bundle(&fixture_bundle("iforest"), &target);
    let mut model = std::fs::read(target.join("model.onnx")).unwrap();
    let at: Vec<usize> = model.windows(5).enumerate().filter(|(_, w)| w == b"\x22\x03Add").map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "one Add node's op_type");
    model[at[0] + 2..at[0] + 5].copy_from_slice(b"Sum");
    std::fs::write(target.join("model.onnx"), &model).unwrap();
    let manifest_path = target.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&model).iter().map(|b| format!("{b:02x}")).collect();
    manifest["model_sha256"] = Value::from(sha);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let _ = std::fs::remove_file(target.join("manifest.sig"));
    let record = br#"{"dur":0.5,"proto":"tcp","service":"http","state":"FIN","spkts":10,"dpkts":8,"sbytes":4000,"dbytes":9000,"sttl":62,"rate":36}"#;
    // With tract (native, and the SIMD module): scored.
    let bundle = Bundle::read_path(&target).unwrap();
    let want: Value = serde_json::from_slice(&native(&bundle, record)).unwrap();
    assert!(want["anomaly"]["score"].is_number(), "{want}");
    let got = FluentBit::start(dir.path(), Flavour::Simd).call("flows", (0, 0), record).unwrap();
    assert_eq!(got, want);
    // Without: passed through, unscored, and the reason names the node and the build.
    let got = FluentBit::start(dir.path(), Flavour::FluentBit).call("flows", (0, 0), record).unwrap();
    assert_eq!(got["anomaly"]["verdict"], "unscored", "{got}");
    let error = got["anomaly"]["error"].as_str().unwrap();
    assert!(error.contains("without tract") && error.contains("Sum"), "{error}");
}

#[test]
fn without_a_bundle_records_pass_through_tagged_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut fb = FluentBit::start(dir.path(), Flavour::FluentBit);
    for record in unsw_records(3) {
        let got = fb.call("flows", (0, 0), &record).unwrap();
        let sent: Value = serde_json::from_slice(&record).unwrap();
        for (k, v) in sent.as_object().unwrap() {
            assert_eq!(&got[k], v);
        }
        assert_eq!(got["anomaly"]["verdict"], "unscored");
        let error = got["anomaly"]["error"].as_str().unwrap();
        assert!(error.contains("flowtag-bundle"), "{error}");
    }
}
