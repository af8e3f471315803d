//! Native vs WASM tag filter, measured through the host's own runtimes:
//!
//! - records/s at batch 1, 64, 256 and 4096 for each runtime, and the ratio WASM / native. This
//!   shared 2-core VM drifts by tens of percent from one second to the next, so the runtimes are
//!   timed in pairs: both tag the same slice of records back to back, [`PAIRS`] times over
//!   successive slices, and the ratio is the median of the pairs' ratios (with its quartiles),
//!   next to the best records/s each runtime reached;
//! - WASM start (module ready and a bundle loaded) without and with the compiled-module cache,
//!   each in a fresh `flowtag score` process on one record (so process start is included), next
//!   to the native start;
//! - the per-record cost of Fluent Bit's `filter` entry point (one JSON record in, one out), as a
//!   Fluent Bit host calls it, under wasmtime;
//! - at batch 256, the same module through the same ABI calls on an engine *without* epoch
//!   interruption, to show what the host's per-batch deadline (`wasm.timeout`) costs. The host
//!   itself always runs with the deadline.
//!
//!     cargo run --release -p host --example runtime_bench -- [--records 100000] [--model DIR]...
//!
//! Records are `flowtag gen --schema unsw --format json` records (about 700 bytes each). Prints a
//! markdown table per model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flowtag_host::cli::generate::{self as gen, Format, GenArgs, Schema};
use flowtag_host::transforms::anomaly::runtime::{Loader, TagRuntime};
use flowtag_host::transforms::anomaly::AnomalyConfig;
use flowtag_plugin::{Bundle, Filter, FilterOptions};
use wasmtime::{Engine, Linker, Module, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiCtxBuilder;

/// Rounds of the no-deadline comparison; the best of each is reported.
const ROUNDS: usize = 3;
/// Timed pairs per batch size (native then WASM on the same slice of records).
const PAIRS: usize = 150;
/// Records per slice (at least one batch): long enough to time, short enough that both runtimes
/// of a pair see the same machine.
const SLICE: usize = 2560;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

struct Args {
    records: u64,
    models: Vec<PathBuf>,
    plugin: PathBuf,
    /// The Fluent Bit build of the module (no SIMD), measured on an engine without SIMD.
    fluent_bit_plugin: PathBuf,
    /// Only the per-record `filter` costs.
    filter_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        records: 100_000,
        models: Vec::new(),
        plugin: repo().join("target/flowtag_filter.wasm"),
        fluent_bit_plugin: repo().join("target/flowtag_filter_fluentbit.wasm"),
        filter_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--records" => a.records = v.parse().expect("--records N"),
            "--model" => a.models.push(PathBuf::from(v)),
            "--plugin" => a.plugin = PathBuf::from(v),
            "--fluent-bit-plugin" => a.fluent_bit_plugin = PathBuf::from(v),
            "--filter-only" => a.filter_only = v.parse().expect("--filter-only true|false"),
            _ => panic!("unknown argument {k}"),
        }
    }
    if a.models.is_empty() {
        a.models = vec![repo().join("plugin/tests/fixtures/iforest"), repo().join("models/unsw-unsupervised")];
    }
    a
}

fn config(model: &Path, plugin: Option<&Path>) -> AnomalyConfig {
    let mut text = format!("inputs = [\"x\"]\nmodel = {:?}\n", model.display().to_string());
    if let Some(p) = plugin {
        text += &format!("runtime = \"wasm\"\nplugin = {:?}\n", p.display().to_string());
    }
    toml::from_str(&text).expect("a valid transform config")
}

/// Records/s of a fresh runtime tagging `records` (at most 20,000 at batch 1) in batches of `batch`.
fn throughput(loader: &Loader, bundle: &Bundle, records: &[&[u8]], batch: usize) -> f64 {
    let mut runtime = loader.load(bundle).expect("the model loads");
    let n = if batch == 1 { records.len().min(20_000) } else { records.len() };
    rate(runtime.as_mut(), &records[..n], batch)
}

/// Records/s of `runtime` tagging `records` in batches of `batch`.
fn rate(runtime: &mut dyn TagRuntime, records: &[&[u8]], batch: usize) -> f64 {
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for chunk in records.chunks(batch) {
        out.clear();
        ends.clear();
        let t = runtime.tag(chunk, &mut out, &mut ends);
        assert!(t.failure.is_none(), "{:?}", t.failure);
    }
    records.len() as f64 / started.elapsed().as_secs_f64()
}

/// Native and WASM timed in pairs on the same slices (see the module doc).
struct Paired {
    native_best: f64,
    wasm_best: f64,
    /// Quartiles of the per-pair WASM / native ratio: lower, median, upper.
    ratio: [f64; 3],
}

fn paired(native: &Loader, wasm: &Loader, bundle: &Bundle, records: &[&[u8]], batch: usize) -> Paired {
    let mut n_rt = native.load(bundle).expect("the model loads natively");
    let mut w_rt = wasm.load(bundle).expect("the model loads under WASM");
    let slice = SLICE.max(batch);
    let slices: Vec<&[&[u8]]> = records.chunks_exact(slice).collect();
    assert!(!slices.is_empty(), "--records must be at least {slice}");
    // One untimed pass each: caches, the allocator and the instance's memory warm up.
    rate(n_rt.as_mut(), slices[0], batch);
    rate(w_rt.as_mut(), slices[0], batch);
    let (mut native_best, mut wasm_best, mut ratios) = (0f64, 0f64, Vec::with_capacity(PAIRS));
    for k in 0..PAIRS {
        let s = slices[k % slices.len()];
        let n = rate(n_rt.as_mut(), s, batch);
        let w = rate(w_rt.as_mut(), s, batch);
        native_best = native_best.max(n);
        wasm_best = wasm_best.max(w);
        ratios.push(w / n);
    }
    ratios.sort_by(f64::total_cmp);
    let q = |f: f64| ratios[((ratios.len() - 1) as f64 * f).round() as usize];
    Paired { native_best, wasm_best, ratio: [q(0.25), q(0.5), q(0.75)] }
}

/// The tag filter module on a wasmtime engine without epoch interruption (so with no
/// deadline), called as the host's runtime calls it: per batch `flowtag_alloc`, a copy in,
/// `flowtag_tag`, `flowtag_dealloc`, `flowtag_results`, and the tagged lines copied out.
struct Undeadlined {
    store: Store<WasiP1Ctx>,
    memory: wasmtime::Memory,
    alloc: TypedFunc<u32, u32>,
    dealloc: TypedFunc<(u32, u32), ()>,
    tag: TypedFunc<(u32, u32), u64>,
    results: TypedFunc<(), u64>,
}

impl Undeadlined {
    fn new(module: &Module, bundle: &Bundle) -> Undeadlined {
        let mut store = Store::new(module.engine(), WasiCtxBuilder::new().build_p1());
        let mut linker: Linker<WasiP1Ctx> = Linker::new(module.engine());
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).unwrap();
        let instance = linker.instantiate(&mut store, module).unwrap();
        let mut u = Undeadlined {
            memory: instance.get_memory(&mut store, "memory").unwrap(),
            alloc: instance.get_typed_func(&mut store, "flowtag_alloc").unwrap(),
            dealloc: instance.get_typed_func(&mut store, "flowtag_dealloc").unwrap(),
            tag: instance.get_typed_func(&mut store, "flowtag_tag").unwrap(),
            results: instance.get_typed_func(&mut store, "flowtag_results").unwrap(),
            store,
        };
        let load: TypedFunc<(u32, u32), i32> = instance.get_typed_func(&mut u.store, "flowtag_load").unwrap();
        assert_eq!(u.call_with(&load, &bundle.to_tar()), 0, "the module loads the bundle");
        u
    }

    fn call_with<R: wasmtime::WasmResults>(&mut self, func: &TypedFunc<(u32, u32), R>, data: &[u8]) -> R {
        let len = data.len() as u32;
        let ptr = self.alloc.call(&mut self.store, len).unwrap();
        self.memory.write(&mut self.store, ptr as usize, data).unwrap();
        let r = func.call(&mut self.store, (ptr, len)).unwrap();
        self.dealloc.call(&mut self.store, (ptr, len)).unwrap();
        r
    }

    fn read(&self, packed: u64) -> &[u8] {
        let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        &self.memory.data(&self.store)[ptr..ptr + len]
    }

    /// Records/s at `batch`, like [`throughput`].
    fn throughput(&mut self, records: &[&[u8]], batch: usize) -> f64 {
        let (mut input, mut out) = (Vec::new(), Vec::new());
        let tag = self.tag.clone();
        let started = Instant::now();
        for chunk in records.chunks(batch) {
            input.clear();
            for r in chunk {
                input.extend_from_slice(r);
                input.push(b'\n');
            }
            let packed = self.call_with(&tag, &input);
            out.clear();
            out.extend_from_slice(self.read(packed));
            let results = self.results.call(&mut self.store, ()).unwrap();
            std::hint::black_box(self.read(results).len());
        }
        records.len() as f64 / started.elapsed().as_secs_f64()
    }
}

/// Wall time of `flowtag score` on one record.
fn start_time(model: &Path, wasm: Option<(&Path, &Path)>, one: &Path) -> Duration {
    let mut cmd = Command::new(repo().join("target/release/flowtag"));
    cmd.arg("score").arg("--model").arg(model).arg(one);
    if let Some((plugin, data)) = wasm {
        cmd.args(["--runtime", "wasm", "--plugin"]).arg(plugin).arg("--data-dir").arg(data);
    }
    let started = Instant::now();
    let out = cmd.output().expect("target/release/flowtag (cargo build --release -p host)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

/// µs per record through Fluent Bit's `filter` entry point, and natively one record at a time;
/// on an engine without SIMD when `simd` is false (as Fluent Bit's WAMR is built).
fn fluent_bit_cost(plugin: &Path, simd: bool, model: &Path, records: &[&[u8]]) -> (f64, f64) {
    let work = tempfile::tempdir().unwrap();
    let bundle = Bundle::read_path(model).unwrap();
    std::fs::write(work.path().join("flowtag-bundle.tar"), bundle.to_tar()).unwrap();
    let mut config = wasmtime::Config::new();
    config.wasm_simd(simd).wasm_relaxed_simd(simd);
    let engine = Engine::new(&config).unwrap();
    let module = Module::from_file(&engine, plugin).unwrap();
    let wasi =
        WasiCtxBuilder::new().preopened_dir(work.path(), ".", wasmtime_wasi::FsPerms::ReadOnly).unwrap().build_p1();
    let mut store = Store::new(&engine, wasi);
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let heap = memory.grow(&mut store, 16).unwrap() as usize * 65536;
    let filter: TypedFunc<(u32, u32, u32, u32, u32, u32), u32> = instance.get_typed_func(&mut store, "filter").unwrap();
    let n = records.len().min(20_000);
    let call = |store: &mut Store<WasiP1Ctx>, r: &[u8]| {
        let mem = memory.data_mut(&mut *store);
        mem[heap..heap + 6].copy_from_slice(b"flows\0");
        mem[heap + 8..heap + 8 + r.len()].copy_from_slice(r);
        mem[heap + 8 + r.len()] = 0;
        let ptr = filter.call(&mut *store, (heap as u32, 5, 0, 0, heap as u32 + 8, r.len() as u32)).unwrap() as usize;
        let mem = memory.data(&*store);
        let len = mem[ptr..].iter().position(|&b| b == 0).unwrap();
        std::hint::black_box(mem[ptr..ptr + len].to_vec());
    };
    call(&mut store, records[0]); // loads the bundle
    let started = Instant::now();
    for r in &records[..n] {
        call(&mut store, r);
    }
    let wasm_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let mut native = Filter::new(&bundle, FilterOptions::default()).unwrap();
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for r in &records[..n] {
        out.clear();
        ends.clear();
        native.tag_batch(&[r], &mut out, &mut ends);
        std::hint::black_box(&out);
    }
    (wasm_us, started.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn main() {
    let a = args();
    let mut data = Vec::new();
    gen::write(
        &GenArgs {
            schema: Schema::Unsw,
            count: a.records,
            rate: None,
            format: Format::Json,
            seed: 3,
            attack_share: 0.1,
        },
        &mut data,
    )
    .unwrap();
    let records: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mean_len = data.len() / records.len();
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one.jsonl");
    std::fs::write(&one, [records[0], b"\n"].concat()).unwrap();
    println!(
        "{} records of {mean_len} bytes (flowtag gen --schema unsw --format json); plugin {}",
        records.len(),
        a.plugin.display()
    );
    if a.filter_only {
        for model in &a.models {
            let (fb, nat) = fluent_bit_cost(&a.plugin, true, model, &records);
            let (fb_nosimd, _) = fluent_bit_cost(&a.fluent_bit_plugin, false, model, &records);
            println!(
                "{}: `filter`, one record per call, under wasmtime: SIMD module {fb:.1} µs, Fluent Bit module (no SIMD) {fb_nosimd:.1} µs per record; native one at a time {nat:.1} µs.",
                model.display()
            );
        }
        return;
    }
    // Compiled once (Cranelift, 6-30 s on this machine), for every model.
    let undeadlined = Module::from_file(&Engine::default(), &a.plugin).unwrap();
    for model in &a.models {
        let bundle = Bundle::read_path(model).unwrap();
        let native = Loader::new(&config(model, None), tmp.path()).unwrap();
        let cache = tmp.path().join(format!("cache-{}", bundle.manifest.name));
        let wasm = Loader::new(&config(model, Some(&a.plugin)), &cache).unwrap();
        println!("\n### {} ({})\n", bundle.id(), model.display());
        println!("| batch | native records/s (best) | WASM records/s (best) | WASM / native (median of {PAIRS} pairs, quartiles) |");
        println!("|---|---|---|---|");
        for batch in [1, 64, 256, 4096] {
            let p = paired(&native, &wasm, &bundle, &records, batch);
            let [lo, mid, hi] = p.ratio;
            println!("| {batch} | {:.0} | {:.0} | {mid:.3} ({lo:.3}-{hi:.3}) |", p.native_best, p.wasm_best);
        }
        // What the deadline costs: the host's WASM runtime against the same module on an engine
        // without epoch interruption, alternated, with native as the reference.
        let mut bare = Undeadlined::new(&undeadlined, &bundle);
        let (mut n, mut w, mut b) = (0f64, 0f64, 0f64);
        for _ in 0..ROUNDS {
            n = n.max(throughput(&native, &bundle, &records, 256));
            w = w.max(throughput(&wasm, &bundle, &records, 256));
            b = b.max(bare.throughput(&records, 256));
        }
        println!(
            "\nAt batch 256, WASM / native: {:.2} with the host's per-batch deadline (epoch interruption), {:.2} on an engine without it.",
            w / n,
            b / n
        );
        let data_dir = tmp.path().join(format!("start-{}", bundle.manifest.name));
        let cold = start_time(model, Some((&a.plugin, &data_dir)), &one);
        let warm = start_time(model, Some((&a.plugin, &data_dir)), &one);
        let native_start = start_time(model, None, &one);
        println!(
            "\nStart (a `flowtag score` process on one record): WASM without the compiled-module cache {:.0} ms, with it {:.0} ms; native {:.0} ms.",
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            native_start.as_secs_f64() * 1e3
        );
        let (fb, nat) = fluent_bit_cost(&a.plugin, true, model, &records);
        let (fb_nosimd, _) = fluent_bit_cost(&a.fluent_bit_plugin, false, model, &records);
        println!(
            "Fluent Bit ABI (`filter`, one record per call, under wasmtime): {fb:.1} µs per record; the Fluent Bit module (no SIMD, no tract) on an engine without SIMD: {fb_nosimd:.1} µs; the native filter one record at a time: {nat:.1} µs."
        );
    }
}
