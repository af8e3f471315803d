//! The WASM filter's exports: the plugin ABI (version [`crate::ABI_VERSION`]) and Fluent Bit's
//! `filter` entry point, over the same [`Filter`] the host links natively.
//!
//! Compiled only for `wasm32`: `cargo wasm` (see `.cargo/config.toml`) builds this crate as a
//! core module. Everything crosses the boundary as bytes in linear memory; results are returned
//! as `(ptr << 32) | len` and stay valid until the next call of the same function. The module
//! is single-threaded, so its state lives in one thread-local cell.
//!
//! | export | what |
//! |---|---|
//! | `flowtag_abi_version() -> u32` | [`crate::ABI_VERSION`]; a host refuses a module that speaks another |
//! | `flowtag_alloc(len) -> ptr`, `flowtag_dealloc(ptr, len)` | guest memory for the host to write into; 0 when out of memory |
//! | `flowtag_configure(ptr, len) -> i32` | optional: `{"key": "anomaly", "reasons": "anomalous", "max_reasons": 3}`; before `flowtag_load` |
//! | `flowtag_load(ptr, len) -> i32` | a bundle as tar bytes: checked, loaded, canaries run; 0 on success, else see `flowtag_last_error` |
//! | `flowtag_calibrate(ptr, len) -> i32` | optional, after `flowtag_load`: `{"quantiles": [raw scores, ascending], "threshold": raw, "label": "local"}` replaces the manifest's calibration (both `null`: back to it); `label` goes into scored tags as `"calibration"`; 0 on success |
//! | `flowtag_tag(ptr, len) -> u64` | newline-delimited JSON records in, one tagged record per line out; 0 when no model is loaded |
//! | `flowtag_results() -> u64` | the last batch: `u32` record count, `u32` 1 if the model failed (message in `flowtag_last_error`), then per record `u8` verdict (0 normal, 1 anomalous, 2 unscored), `u16` top reason (feature index + 1, 0 for none), 1 byte padding, `f32` raw score, `f64` calibrated score, little-endian |
//! | `flowtag_last_error() -> u64` | the last error message, UTF-8 |
//! | `filter(tag, tag_len, time_sec, time_nsec, record, record_len) -> ptr` | Fluent Bit: one JSON record in, a NUL-terminated JSON object out |
//!
//! Fluent Bit cannot pass configuration to a filter, so `filter` loads its bundle on first use
//! from `flowtag-bundle/` (or `flowtag-bundle.tar`) relative to the working directory the WASI
//! runtime gives it (Fluent Bit's `accessible_paths`, `.` by default), with the default options.
//! Until a bundle loads, records pass through with an `unscored` tag naming the problem; loading
//! is retried at most every [`RETRY_LOAD`].

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::filter::{tag_failed, Filter, FilterOptions};
use crate::tagger::{ReasonsMode, Verdict};
use crate::{Bundle, ABI_VERSION};

/// The bundle paths `filter` looks for, in order.
pub const FLUENT_BIT_BUNDLES: [&str; 2] = ["flowtag-bundle", "flowtag-bundle.tar"];
/// How often `filter` retries loading a bundle that failed.
pub const RETRY_LOAD: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    options: FilterOptions,
    filter: Option<Filter>,
    out: Vec<u8>,
    results: Vec<u8>,
    error: Vec<u8>,
    ends: Vec<usize>,
    /// `filter`: when loading last failed, and why.
    fluent_failed: Option<(Instant, String)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn pack(ptr: *const u8, len: usize) -> u64 {
    ((ptr as usize as u64) << 32) | len as u64
}

/// # Safety
/// The host passes a range it wrote into memory from `flowtag_alloc`.
unsafe fn input<'a>(ptr: u32, len: u32) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    std::slice::from_raw_parts(ptr as usize as *const u8, len as usize)
}

fn set_error(state: &mut State, message: &str) {
    state.error.clear();
    state.error.extend_from_slice(message.as_bytes());
}

#[no_mangle]
pub extern "C" fn flowtag_abi_version() -> u32 {
    ABI_VERSION
}

#[no_mangle]
pub extern "C" fn flowtag_alloc(len: u32) -> u32 {
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(len.max(1) as usize).is_err() {
        return 0;
    }
    let ptr = v.as_mut_ptr();
    std::mem::forget(v);
    ptr as usize as u32
}

/// # Safety
/// `ptr` and `len` are what `flowtag_alloc` returned and was given.
#[no_mangle]
pub unsafe extern "C" fn flowtag_dealloc(ptr: u32, len: u32) {
    if ptr != 0 {
        drop(Vec::from_raw_parts(ptr as usize as *mut u8, 0, len.max(1) as usize));
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    key: Option<String>,
    reasons: Option<String>,
    max_reasons: Option<usize>,
}

/// # Safety
/// See [`input`].
#[no_mangle]
pub unsafe extern "C" fn flowtag_configure(ptr: u32, len: u32) -> i32 {
    let bytes = input(ptr, len);
    STATE.with_borrow_mut(|state| {
        let parsed: Options = match serde_json::from_slice(bytes) {
            Ok(o) => o,
            Err(e) => {
                set_error(state, &format!("flowtag_configure: {e}"));
                return 1;
            }
        };
        let mut options = FilterOptions::default();
        if let Some(key) = parsed.key {
            options.key = key;
        }
        if let Some(r) = parsed.reasons {
            options.reasons = match r.parse::<ReasonsMode>() {
                Ok(mode) => mode,
                Err(e) => {
                    set_error(state, &format!("flowtag_configure: {e}"));
                    return 1;
                }
            };
        }
        if let Some(m) = parsed.max_reasons {
            options.max_reasons = m;
        }
        state.options = options;
        0
    })
}

/// Set the loaded filter's calibration: JSON `{"quantiles": [...], "threshold": x, "label": "local"}`
/// (see [`crate::Calibration`]); 0, or 1 with the error in `flowtag_last_error`.
///
/// # Safety
/// See [`input`].
#[no_mangle]
pub unsafe extern "C" fn flowtag_calibrate(ptr: u32, len: u32) -> i32 {
    let bytes = input(ptr, len);
    STATE.with_borrow_mut(|state| {
        let result = serde_json::from_slice::<crate::Calibration>(bytes)
            .map_err(|e| format!("flowtag_calibrate: {e}"))
            .and_then(|c| match state.filter.as_mut() {
                Some(f) => f.set_calibration(&c),
                None => Err("flowtag_calibrate: no bundle loaded".into()),
            });
        match result {
            Ok(()) => 0,
            Err(e) => {
                set_error(state, &e);
                1
            }
        }
    })
}

fn load(bundle: &Bundle, options: &FilterOptions) -> Result<Filter, String> {
    let mut filter = Filter::new(bundle, options.clone()).map_err(|e| e.to_string())?;
    filter.check_canaries().map_err(|e| e.to_string())?;
    Ok(filter)
}

/// # Safety
/// See [`input`].
#[no_mangle]
pub unsafe extern "C" fn flowtag_load(ptr: u32, len: u32) -> i32 {
    let bytes = input(ptr, len);
    STATE.with_borrow_mut(|state| match Bundle::from_tar(bytes).map_err(|e| e.to_string()) {
        Ok(bundle) => match load(&bundle, &state.options) {
            Ok(filter) => {
                state.filter = Some(filter);
                0
            }
            Err(e) => {
                set_error(state, &e);
                1
            }
        },
        Err(e) => {
            set_error(state, &e);
            1
        }
    })
}

/// # Safety
/// See [`input`].
#[no_mangle]
pub unsafe extern "C" fn flowtag_tag(ptr: u32, len: u32) -> u64 {
    let records = input(ptr, len);
    STATE.with_borrow_mut(|state| {
        let State { filter, out, results, error, .. } = state;
        let Some(filter) = filter.as_mut() else {
            error.clear();
            error.extend_from_slice(b"no model loaded: call flowtag_load first");
            return 0;
        };
        out.clear();
        let stats = filter.tag_lines(records, out);
        results.clear();
        results.extend_from_slice(&(stats.records as u32).to_le_bytes());
        results.extend_from_slice(&u32::from(stats.model_error.is_some()).to_le_bytes());
        for r in filter.results() {
            let verdict: u8 = match r.verdict {
                Verdict::Normal => 0,
                Verdict::Anomalous => 1,
                Verdict::Unscored => 2,
            };
            // The top reason as feature index + 1 (0: none) in what was padding.
            let top = r.top_reason.map_or(0, |f| f.saturating_add(1));
            results.push(verdict);
            results.extend_from_slice(&top.to_le_bytes());
            results.push(0);
            results.extend_from_slice(&r.raw.to_le_bytes());
            results.extend_from_slice(&r.score.to_le_bytes());
        }
        if let Some(e) = &stats.model_error {
            error.clear();
            error.extend_from_slice(e.as_bytes());
        }
        pack(out.as_ptr(), out.len())
    })
}

#[no_mangle]
pub extern "C" fn flowtag_results() -> u64 {
    STATE.with_borrow(|state| pack(state.results.as_ptr(), state.results.len()))
}

#[no_mangle]
pub extern "C" fn flowtag_last_error() -> u64 {
    STATE.with_borrow(|state| pack(state.error.as_ptr(), state.error.len()))
}

/// The first bundle of [`FLUENT_BIT_BUNDLES`] that exists, loaded.
fn load_fluent_bit_bundle(options: &FilterOptions) -> Result<Filter, String> {
    let mut tried = Vec::new();
    for path in FLUENT_BIT_BUNDLES {
        let p = Path::new(path);
        if p.exists() {
            let bundle = Bundle::read_path(p).map_err(|e| format!("{path}: {e}"))?;
            return load(&bundle, options).map_err(|e| format!("{path}: {e}"));
        }
        tried.push(path);
    }
    Err(format!(
        "no model bundle: none of {} in the filter's working directory (Fluent Bit's accessible_paths)",
        tried.join(", ")
    ))
}

/// Fluent Bit's WASM filter: one JSON record in, the tagged record out as a NUL-terminated
/// JSON object (in a buffer reused by the next call: Fluent Bit copies it at once).
///
/// # Safety
/// Fluent Bit passes `record_len` bytes at `record` (followed by a NUL it does not count).
#[no_mangle]
pub unsafe extern "C" fn filter(
    _tag: *const u8,
    _tag_len: u32,
    _time_sec: u32,
    _time_nsec: u32,
    record: *const u8,
    record_len: u32,
) -> *const u8 {
    let record = input(record as usize as u32, record_len);
    STATE.with_borrow_mut(|state| {
        let retry = state.fluent_failed.as_ref().is_none_or(|(at, _)| at.elapsed() >= RETRY_LOAD);
        if state.filter.is_none() && retry {
            match load_fluent_bit_bundle(&state.options) {
                Ok(f) => {
                    state.filter = Some(f);
                    state.fluent_failed = None;
                }
                Err(e) => state.fluent_failed = Some((Instant::now(), e)),
            }
        }
        let State { filter, out, ends, fluent_failed, options, .. } = state;
        out.clear();
        ends.clear();
        match filter.as_mut() {
            Some(f) => {
                f.tag_batch(&[record], out, ends);
            }
            None => {
                let why = fluent_failed.as_ref().map_or("no model loaded", |(_, e)| e.as_str());
                tag_failed(&[record], &options.key, "none", why, out, ends);
            }
        }
        out.push(0);
        out.as_ptr()
    })
}
