//! The tag filter as a WASM module under wasmtime (`runtime = "wasm"`).
//!
//! The module is the plugin crate compiled for `wasm32-wasip1` (`make wasm`), or any module that
//! speaks the plugin ABI (`docs/plugin-abi.md`). It is not trusted:
//!
//! - **No access**: WASI with no preopened directories, no environment, no arguments, no stdin;
//!   the bundle reaches it as bytes through `flowtag_load`. What it writes to stderr is kept
//!   (bounded) and quoted when it traps, so a panic message reaches the log.
//! - **Memory cap**: linear memory may not grow beyond `wasm.memory_limit_mib`.
//! - **Deadline**: every call runs under an epoch deadline (`wasm.timeout` per batch,
//!   `wasm.load_timeout` for loading a bundle); an engine-wide thread ticks the epoch.
//! - **Failure is per batch**: a trap, a timeout or running out of memory fails only the batch
//!   in flight. Its records go on with an `unscored` tag naming what happened (written by the
//!   host with the plugin's own [`tag_failed`]), and the instance is thrown away and recreated
//!   before the next batch.
//!
//! Compiling the 15–20 MB module with Cranelift takes seconds to tens of seconds, so the compiled
//! code is cached (see [`cache`]).

mod cache;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, Instance, Linker, Memory, Module, ResourceLimiter, Store, Trap, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

use super::{TagRuntime, Tagged};
use flowtag_plugin::bundle::sha256_hex;
use flowtag_plugin::{tag_failed, Bundle, Calibration, FilterOptions, ReasonsMode, RecordResult, Verdict, ABI_VERSION};

/// How often the engine's epoch advances: the resolution of deadlines.
const TICK: Duration = Duration::from_millis(10);
/// The wasmtime this host embeds, part of the compiled-module cache key.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// How much of the module's stderr is kept.
const STDERR_CAPACITY: usize = 1 << 20;

/// Limits for one instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub load_timeout: Duration,
}

/// The process's one engine, with epoch interruption and its ticker thread.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).expect("the default wasmtime configuration is valid");
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .expect("cannot start the epoch thread");
        engine
    })
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / TICK.as_millis()).max(1) as u64 + 1
}

/// A compiled plugin module, shared by its instances (one per model, recreated after failures).
pub struct Plugin {
    module: Module,
    linker: Linker<Guest>,
    pub path: PathBuf,
    pub sha256: String,
}

impl Plugin {
    /// Read `path`, and compile it or load its compiled code from `cache_dir`; check that it
    /// speaks this host's ABI.
    pub fn load(path: &Path, cache_dir: &Path) -> Result<Plugin, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let sha256 = sha256_hex(&bytes);
        let engine = engine();
        let compiled = cache::compiled_modules().lock().expect("not poisoned").get(&sha256).cloned();
        let module = match compiled.or_else(|| cache::cached_module(engine, &sha256, cache_dir)) {
            Some(m) => m,
            None => {
                let started = Instant::now();
                let module = Module::new(engine, &bytes)
                    .map_err(|e| format!("{}: not a usable WASM module: {e:#}", path.display()))?;
                tracing::info!(plugin = %path.display(), seconds = started.elapsed().as_secs_f64(), "compiled the WASM module");
                if let Err(e) = cache::store_module(&module, &sha256, cache_dir) {
                    tracing::warn!(plugin = %path.display(), cache = %cache_dir.display(), error = %e, "cannot cache the compiled module; it will be compiled again on the next start");
                }
                module
            }
        };
        cache::compiled_modules().lock().expect("not poisoned").insert(sha256.clone(), module.clone());
        check_exports(&module).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut linker: Linker<Guest> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |g: &mut Guest| &mut g.wasi)
            .map_err(|e| format!("cannot link WASI: {e:#}"))?;
        let plugin = Plugin { module, linker, path: path.to_path_buf(), sha256 };
        plugin.check_version().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(plugin)
    }

    /// Instantiate once, without a model, and ask which ABI version the module speaks.
    fn check_version(&self) -> Result<(), String> {
        let (mut store, instance, _) = instantiate(self, Limits::probe())?;
        let version: TypedFunc<(), u32> = export(&instance, &mut store, "flowtag_abi_version")?;
        let v = version.call(&mut store, ()).map_err(|e| format!("flowtag_abi_version failed: {e:#}"))?;
        if v != ABI_VERSION {
            return Err(format!("the module speaks plugin ABI version {v}; this host speaks version {ABI_VERSION}"));
        }
        Ok(())
    }
}

impl Limits {
    /// For a short look at a module: 256 MiB, 10 s.
    fn probe() -> Limits {
        Limits { memory_bytes: 256 << 20, timeout: Duration::from_secs(10), load_timeout: Duration::from_secs(10) }
    }
}

/// A new store and instance of `plugin`'s module: WASI with nothing, the memory cap, the load
/// deadline.
fn instantiate(plugin: &Plugin, limits: Limits) -> Result<(Store<Guest>, Instance, MemoryOutputPipe), String> {
    let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
    let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build_p1();
    let mut store =
        Store::new(engine(), Guest { wasi, limiter: Limiter { memory_bytes: limits.memory_bytes, denied: None } });
    store.limiter(|g| &mut g.limiter);
    store.set_epoch_deadline(ticks(limits.load_timeout));
    let instance =
        plugin.linker.instantiate(&mut store, &plugin.module).map_err(|e| format!("cannot instantiate: {e:#}"))?;
    Ok((store, instance, stderr))
}

/// The ABI's exports, with their types.
fn check_exports(module: &Module) -> Result<(), String> {
    use wasmtime::ExternType::{Func, Memory as Mem};
    use wasmtime::ValType::{I32, I64};
    let want: [(&str, &[wasmtime::ValType], &[wasmtime::ValType]); 7] = [
        ("flowtag_abi_version", &[], &[I32]),
        ("flowtag_alloc", &[I32], &[I32]),
        ("flowtag_dealloc", &[I32, I32], &[]),
        ("flowtag_load", &[I32, I32], &[I32]),
        ("flowtag_tag", &[I32, I32], &[I64]),
        ("flowtag_results", &[], &[I64]),
        ("flowtag_last_error", &[], &[I64]),
    ];
    match module.get_export("memory") {
        Some(Mem(_)) => {}
        _ => return Err("exports no memory named `memory`: not a flowtag plugin".into()),
    }
    for (name, params, results) in want {
        let Some(Func(f)) = module.get_export(name) else {
            return Err(format!("does not export `{name}`: not a flowtag plugin (see docs/plugin-abi.md)"));
        };
        let same = |a: &mut dyn ExactSizeIterator<Item = wasmtime::ValType>, b: &[wasmtime::ValType]| {
            a.len() == b.len() && a.zip(b).all(|(x, y)| x.matches(y))
        };
        if !same(&mut f.params(), params) || !same(&mut f.results(), results) {
            return Err(format!("`{name}` has the type {f}, the ABI says ({params:?}) -> ({results:?})"));
        }
    }
    Ok(())
}

/// A store's own state: WASI and the memory cap.
struct Guest {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

struct Limiter {
    memory_bytes: usize,
    /// Set when the module asked for more memory than the cap.
    denied: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.denied = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A typed export of an instance.
fn export<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    instance: &Instance,
    store: &mut Store<Guest>,
    name: &str,
) -> Result<TypedFunc<P, R>, String> {
    instance.get_typed_func(store, name).map_err(|e| format!("export `{name}`: {e}"))
}

/// One live instance with a model loaded.
struct Live {
    store: Store<Guest>,
    memory: Memory,
    stderr: MemoryOutputPipe,
    alloc: TypedFunc<u32, u32>,
    dealloc: TypedFunc<(u32, u32), ()>,
    tag: TypedFunc<(u32, u32), u64>,
    results: TypedFunc<(), u64>,
    last_error: TypedFunc<(), u64>,
    /// Kept for the optional exports called after loading (`flowtag_calibrate`).
    instance: Instance,
}

impl Live {
    /// Instantiate, configure and load the bundle (the ABI version was checked with the module).
    fn start(
        plugin: &Plugin,
        bundle_tar: &[u8],
        options: &FilterOptions,
        limits: Limits,
        calibration: Option<&Calibration>,
    ) -> Result<Live, String> {
        let (mut store, instance, stderr) = instantiate(plugin, limits)?;
        let memory = instance.get_memory(&mut store, "memory").ok_or("no memory export")?;
        let mut live = Live {
            alloc: export(&instance, &mut store, "flowtag_alloc")?,
            dealloc: export(&instance, &mut store, "flowtag_dealloc")?,
            tag: export(&instance, &mut store, "flowtag_tag")?,
            results: export(&instance, &mut store, "flowtag_results")?,
            last_error: export(&instance, &mut store, "flowtag_last_error")?,
            instance,
            memory,
            stderr,
            store,
        };
        if let Ok(configure) = instance.get_typed_func::<(u32, u32), i32>(&mut live.store, "flowtag_configure") {
            let json = options_json(options);
            if live.call_with(&configure, json.as_bytes(), limits.load_timeout)? != 0 {
                return Err(format!("flowtag_configure refused {json}: {}", live.error_message()));
            }
        }
        let load: TypedFunc<(u32, u32), i32> = export(&instance, &mut live.store, "flowtag_load")?;
        if live.call_with(&load, bundle_tar, limits.load_timeout)? != 0 {
            return Err(format!("the module refused the bundle: {}", live.error_message()));
        }
        if let Some(c) = calibration {
            live.calibrate(c, limits.load_timeout)?;
        }
        Ok(live)
    }

    /// `flowtag_calibrate` with `c` (modules built before it refuse, naming the export).
    fn calibrate(&mut self, c: &Calibration, deadline: Duration) -> Result<(), String> {
        let calibrate: TypedFunc<(u32, u32), i32> = export(&self.instance, &mut self.store, "flowtag_calibrate")
            .map_err(|e| format!("{e} (a module older than local calibration; rebuild it)"))?;
        let json = serde_json::to_vec(c).expect("a calibration serializes");
        if self.call_with(&calibrate, &json, deadline)? != 0 {
            return Err(format!("flowtag_calibrate refused the calibration: {}", self.error_message()));
        }
        Ok(())
    }

    /// Copy `data` into guest memory and call `func(ptr, len)`.
    fn call_with<R: wasmtime::WasmResults>(
        &mut self,
        func: &TypedFunc<(u32, u32), R>,
        data: &[u8],
        deadline: Duration,
    ) -> Result<R, String> {
        self.call_writing(func, data.len(), |guest| guest.copy_from_slice(data), deadline)
    }

    /// Allocate `len` bytes of guest memory, let `write` fill them (in place: a batch is not
    /// assembled on the host first), and call `func(ptr, len)`.
    fn call_writing<R: wasmtime::WasmResults>(
        &mut self,
        func: &TypedFunc<(u32, u32), R>,
        len: usize,
        write: impl FnOnce(&mut [u8]),
        deadline: Duration,
    ) -> Result<R, String> {
        self.store.set_epoch_deadline(ticks(deadline));
        let len32 = u32::try_from(len).map_err(|_| "input larger than 4 GiB".to_string())?;
        let ptr = self.alloc.call(&mut self.store, len32).map_err(|e| self.explain(e, deadline))?;
        if ptr == 0 {
            return Err(self.out_of_memory(len));
        }
        let guest = self
            .memory
            .data_mut(&mut self.store)
            .get_mut(ptr as usize..ptr as usize + len)
            .ok_or_else(|| format!("flowtag_alloc returned {ptr}, which is not writable for {len} bytes"))?;
        write(guest);
        let result = func.call(&mut self.store, (ptr, len32)).map_err(|e| self.explain(e, deadline))?;
        self.dealloc.call(&mut self.store, (ptr, len32)).map_err(|e| self.explain(e, deadline))?;
        Ok(result)
    }

    /// Bytes the guest returned as `(ptr << 32) | len`.
    fn read_packed(&self, packed: u64) -> Result<&[u8], String> {
        let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        self.memory
            .data(&self.store)
            .get(ptr..ptr + len)
            .ok_or_else(|| format!("the module returned bytes {ptr}..{} outside its memory", ptr + len))
    }

    fn error_message(&mut self) -> String {
        match self.last_error.call(&mut self.store, ()) {
            Ok(packed) => match self.read_packed(packed) {
                Ok(b) => String::from_utf8_lossy(b).into_owned(),
                Err(e) => e,
            },
            Err(e) => format!("flowtag_last_error failed: {e}"),
        }
    }

    fn out_of_memory(&self, wanted: usize) -> String {
        format!(
            "out of memory: the module could not allocate {wanted} bytes within the cap of {} MiB (wasm.memory_limit_mib)",
            self.store.data().limiter.memory_bytes >> 20
        )
    }

    /// What a failed call means, for the log and the error tag.
    fn explain(&self, e: wasmtime::Error, deadline: Duration) -> String {
        if let Some(wanted) = self.store.data().limiter.denied {
            return format!(
                "out of memory: the module tried to grow its memory to {} MiB, beyond the cap of {} MiB (wasm.memory_limit_mib)",
                wanted >> 20,
                self.store.data().limiter.memory_bytes >> 20
            );
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return format!("timed out: the module ran longer than {deadline:?} and was stopped");
        }
        let stderr = self.stderr.contents();
        let said = String::from_utf8_lossy(&stderr);
        let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let trap = e.downcast_ref::<Trap>().map(|t| t.to_string()).unwrap_or_else(|| format!("{e:#}"));
        if last.is_empty() {
            format!("the module trapped: {trap}")
        } else {
            format!("the module trapped: {trap} (it said: {last})")
        }
    }
}

fn options_json(o: &FilterOptions) -> String {
    let reasons = match o.reasons {
        ReasonsMode::Anomalous => "anomalous",
        ReasonsMode::All => "all",
        ReasonsMode::None => "none",
    };
    serde_json::json!({"key": o.key, "reasons": reasons, "max_reasons": o.max_reasons}).to_string()
}

/// The tag filter in a WASM instance, behind [`TagRuntime`].
pub struct Wasm {
    plugin: Arc<Plugin>,
    bundle_tar: Vec<u8>,
    options: FilterOptions,
    limits: Limits,
    id: String,
    /// The manifest's feature names, for the top reasons.
    features: Vec<String>,
    manifest: flowtag_plugin::manifest::Manifest,
    live: Option<Live>,
    /// The calibration the host set, applied again to a recreated instance.
    calibration: Option<Calibration>,
    /// When recreating the instance last failed (retried at most every few seconds).
    restart_failed: Option<(Instant, String)>,
    results: Vec<RecordResult>,
}

const RESTART_BACKOFF: Duration = Duration::from_secs(5);

impl Wasm {
    pub fn new(plugin: Arc<Plugin>, bundle: &Bundle, options: FilterOptions, limits: Limits) -> Result<Wasm, String> {
        let bundle_tar = bundle.to_tar();
        let live = Live::start(&plugin, &bundle_tar, &options, limits, None)?;
        Ok(Wasm {
            plugin,
            bundle_tar,
            options,
            limits,
            id: bundle.id(),
            features: bundle.manifest.features.iter().map(|f| f.name.clone()).collect(),
            manifest: bundle.manifest.clone(),
            live: Some(live),
            calibration: None,
            restart_failed: None,
            results: Vec::new(),
        })
    }

    /// The live instance, recreated if the last one failed.
    fn live(&mut self) -> Result<&mut Live, String> {
        if self.live.is_none() {
            if let Some((at, why)) = &self.restart_failed {
                if at.elapsed() < RESTART_BACKOFF {
                    return Err(format!("the WASM instance could not be restarted: {why}"));
                }
            }
            match Live::start(&self.plugin, &self.bundle_tar, &self.options, self.limits, self.calibration.as_ref()) {
                Ok(l) => {
                    tracing::info!(plugin = %self.plugin.path.display(), model = %self.id, "WASM instance recreated");
                    self.live = Some(l);
                    self.restart_failed = None;
                }
                Err(e) => {
                    self.restart_failed = Some((Instant::now(), e.clone()));
                    return Err(format!("the WASM instance could not be restarted: {e}"));
                }
            }
        }
        Ok(self.live.as_mut().expect("just set"))
    }

    /// Run `records` through the module; on success, append them tagged to `out`.
    fn run(&mut self, records: &[&[u8]], out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Result<Option<String>, String> {
        let timeout = self.limits.timeout;
        let live = self.live()?;
        let tag = live.tag.clone();
        // The batch as lines, written straight into the guest's memory.
        let len = records.iter().map(|r| r.len() + 1).sum();
        let write = |mut guest: &mut [u8]| {
            for r in records {
                let (line, rest) = guest.split_at_mut(r.len() + 1);
                line[..r.len()].copy_from_slice(r);
                line[r.len()] = b'\n';
                guest = rest;
            }
        };
        let packed = live.call_writing(&tag, len, write, timeout)?;
        let live = self.live.as_mut().expect("live");
        if packed == 0 {
            return Err(format!("flowtag_tag failed: {}", live.error_message()));
        }
        let tagged = live.read_packed(packed)?;
        let start = out.len();
        let mut lines = 0;
        for line in flowtag_plugin::lines(tagged) {
            if line.is_empty() {
                continue;
            }
            out.extend_from_slice(line);
            ends.push(out.len());
            lines += 1;
        }
        if lines != records.len() {
            out.truncate(start);
            ends.truncate(ends.len() - lines);
            return Err(format!("the module returned {lines} records for {}", records.len()));
        }
        let packed = live.results.call(&mut live.store, ()).map_err(|e| live.explain(e, timeout))?;
        let raw = live.read_packed(packed)?;
        self.results.clear();
        let (count, failed) = match raw.get(..8) {
            Some(h) => {
                (u32::from_le_bytes(h[..4].try_into().expect("4")), u32::from_le_bytes(h[4..8].try_into().expect("4")))
            }
            None => return Err("flowtag_results returned less than its header".into()),
        };
        let entries = &raw[8..];
        if count as usize != records.len() || entries.len() != records.len() * 16 {
            return Err(format!("flowtag_results describes {count} records for {}", records.len()));
        }
        for e in entries.chunks_exact(16) {
            let verdict = match e[0] {
                0 => Verdict::Normal,
                1 => Verdict::Anomalous,
                _ => Verdict::Unscored,
            };
            let raw = f32::from_le_bytes(e[4..8].try_into().expect("4"));
            let score = f64::from_le_bytes(e[8..16].try_into().expect("8"));
            let top = u16::from_le_bytes([e[1], e[2]]);
            let top_reason = top.checked_sub(1).filter(|&f| usize::from(f) < self.features.len());
            self.results.push(RecordResult { verdict, score, raw, top_reason, tags: None });
        }
        Ok((failed != 0).then(|| live.error_message()))
    }
}

impl TagRuntime for Wasm {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn tag(&mut self, records: &[&[u8]], out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Tagged {
        // Records travel as lines: one that is blank or holds a newline cannot, and is tagged
        // here (no decoder produces one, but nothing may be lost if one does).
        if records.iter().any(|r| r.trim_ascii().is_empty() || memchr::memchr(b'\n', r).is_some()) {
            return self.tag_split(records, out, ends);
        }
        match self.run(records, out, ends) {
            Ok(model_error) => {
                let mut t = Tagged { failure: model_error, ..Tagged::default() };
                for r in &self.results {
                    match r.verdict {
                        Verdict::Anomalous => t.anomalous += 1,
                        Verdict::Normal => t.normal += 1,
                        Verdict::Unscored => t.unscored += 1,
                    }
                }
                t
            }
            Err(why) => {
                // The instance may be in any state: start a fresh one for the next batch.
                self.live = None;
                self.fail(records, &why, out, ends)
            }
        }
    }

    fn results(&self) -> &[RecordResult] {
        &self.results
    }

    fn feature_names(&self) -> &[String] {
        &self.features
    }

    fn set_calibration(&mut self, c: &Calibration) -> Result<(), String> {
        self.calibration = Some(c.clone());
        let deadline = self.limits.load_timeout;
        let live = self.live()?;
        live.calibrate(c, deadline)
    }

    fn manifest(&self) -> &flowtag_plugin::manifest::Manifest {
        &self.manifest
    }
}

impl Wasm {
    fn fail(&mut self, records: &[&[u8]], why: &str, out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Tagged {
        tag_failed(records, &self.options.key, &self.id, why, out, ends);
        self.results.clear();
        self.results.extend(records.iter().map(|_| RecordResult {
            verdict: Verdict::Unscored,
            score: 0.0,
            raw: f32::NAN,
            top_reason: None,
            tags: None,
        }));
        Tagged { unscored: records.len(), failure: Some(why.to_string()), ..Tagged::default() }
    }

    /// Tag a batch that holds records the line protocol cannot carry: those are tagged here,
    /// the rest go through the module in runs.
    fn tag_split(&mut self, records: &[&[u8]], out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Tagged {
        let mut total = Tagged::default();
        let mut results = Vec::with_capacity(records.len());
        let mut i = 0;
        while i < records.len() {
            let bad = |r: &[u8]| r.trim_ascii().is_empty() || r.contains(&b'\n');
            let j = (i..records.len()).find(|&k| bad(records[k]) != bad(records[i])).unwrap_or(records.len());
            let t = if bad(records[i]) {
                let t = self.fail(&records[i..j], "the record is blank or spans lines", out, ends);
                Tagged { failure: None, ..t }
            } else {
                self.tag(&records[i..j], out, ends)
            };
            results.extend_from_slice(&self.results);
            total.anomalous += t.anomalous;
            total.normal += t.normal;
            total.unscored += t.unscored;
            total.failure = total.failure.or(t.failure);
            i = j;
        }
        self.results = results;
        total
    }
}
