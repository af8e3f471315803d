//! The `anomaly` transform: tags every record with the model's verdict.
//!
//! ```toml
//! [transforms.tag]
//! type = "anomaly"
//! inputs = ["flows"]
//! model = "/etc/flowtag/models/current"   # a bundle directory or .tar
//! runtime = "native"                      # or "wasm", with plugin = "flowtag_filter.wasm"
//! key = "anomaly"                         # where the tags go
//! reasons = "anomalous"                   # which records carry reasons: anomalous, all, none
//! batch.max_events = 256
//! batch.timeout = "50ms"
//! [transforms.tag.updates]                # optional: model pushes (see `model::fetch`)
//! source = "dir"
//! path = "/etc/flowtag/models/next"
//! ```
//!
//! Records are gathered into batches (up to `max_events`, or whatever arrived within
//! `timeout`), tagged in one pass of the model, and sent on in order with their
//! acknowledgements. A record the model cannot score goes on with `verdict: "unscored"` and an
//! `error`, and is counted (`flowtag_component_errors_total{error_type="unscored"}`). Tagging
//! runs on its own thread; a full downstream blocks it, which blocks the sources.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;

use super::runtime::wasm::Limits;
use super::runtime::TagRuntime;
use crate::config::duration::Dur;
use crate::event::{Event, Events};
use crate::metrics::{self, ComponentMetrics};
use crate::model::fetch::UpdatesConfig;
use crate::model::ModelManager;
use crate::topology::{Inbox, Output, Wiring};
use flowtag_plugin::{FilterOptions, ReasonsMode, Verdict};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    pub inputs: Vec<String>,
    /// The model bundle: a directory with `model.onnx` and `manifest.json`, or a `.tar`.
    pub model: PathBuf,
    #[serde(default)]
    pub runtime: Runtime,
    /// The WASM module, for `runtime = "wasm"`.
    pub plugin: Option<PathBuf>,
    /// The member the tags go under.
    #[serde(default = "default_key")]
    pub key: String,
    #[serde(default)]
    pub reasons: Reasons,
    #[serde(default = "default_max_reasons")]
    pub max_reasons: usize,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Limits for `runtime = "wasm"`.
    #[serde(default)]
    pub wasm: WasmConfig,
    /// Model pushes: where new bundles come from and how they are checked.
    pub updates: Option<UpdatesConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmConfig {
    /// The module's linear memory may not grow beyond this.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: usize,
    /// How long one batch may run before it is stopped (and its records go on unscored).
    #[serde(default = "default_wasm_timeout")]
    pub timeout: Dur,
    /// How long loading a bundle into the module may take.
    #[serde(default = "default_wasm_load_timeout")]
    pub load_timeout: Dur,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            memory_limit_mib: default_memory_limit_mib(),
            timeout: default_wasm_timeout(),
            load_timeout: default_wasm_load_timeout(),
        }
    }
}

impl WasmConfig {
    pub fn limits(&self) -> Limits {
        Limits { memory_bytes: self.memory_limit_mib << 20, timeout: self.timeout.0, load_timeout: self.load_timeout.0 }
    }
}

fn default_memory_limit_mib() -> usize {
    512
}
fn default_wasm_timeout() -> Dur {
    Dur::millis(5_000)
}
fn default_wasm_load_timeout() -> Dur {
    Dur::millis(120_000)
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    #[default]
    Native,
    Wasm,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reasons {
    #[default]
    Anomalous,
    All,
    None,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_events: default_max_events(), timeout: default_timeout() }
    }
}

fn default_key() -> String {
    "anomaly".into()
}
fn default_max_reasons() -> usize {
    3
}
fn default_max_events() -> usize {
    256
}
fn default_timeout() -> Dur {
    Dur::millis(50)
}

impl AnomalyConfig {
    /// A transform config outside a pipeline (`flowtag score`, `flowtag model verify`): the
    /// defaults a config file would get, for this bundle and runtime.
    pub fn standalone(model: PathBuf, runtime: Runtime, plugin: Option<PathBuf>) -> AnomalyConfig {
        AnomalyConfig {
            inputs: vec![],
            model,
            runtime,
            plugin,
            key: default_key(),
            reasons: Reasons::default(),
            max_reasons: default_max_reasons(),
            batch: BatchConfig::default(),
            wasm: WasmConfig::default(),
            updates: None,
        }
    }

    pub fn check(&self, id: &str) -> Result<(), String> {
        if self.key.is_empty() {
            return Err(format!("transforms.{id}.key: must not be empty"));
        }
        if self.batch.max_events == 0 {
            return Err(format!("transforms.{id}.batch.max_events: must be at least 1"));
        }
        if self.plugin.is_some() && self.runtime == Runtime::Native {
            return Err(format!("transforms.{id}.plugin: only used with runtime = \"wasm\"; remove it or set runtime"));
        }
        if self.plugin.is_none() && self.runtime == Runtime::Wasm {
            return Err(format!(
                "transforms.{id}.plugin: runtime = \"wasm\" needs the module, e.g. plugin = \"/usr/lib/flowtag/flowtag_filter.wasm\""
            ));
        }
        if self.wasm.memory_limit_mib < 16 || self.wasm.memory_limit_mib > 4096 {
            return Err(format!(
                "transforms.{id}.wasm.memory_limit_mib: {} is out of range (16..=4096)",
                self.wasm.memory_limit_mib
            ));
        }
        if let Some(up) = &self.updates {
            up.check(&format!("transforms.{id}.updates"))?;
        }
        Ok(())
    }

    pub fn options(&self) -> FilterOptions {
        FilterOptions {
            key: self.key.clone(),
            reasons: match self.reasons {
                Reasons::Anomalous => ReasonsMode::Anomalous,
                Reasons::All => ReasonsMode::All,
                Reasons::None => ReasonsMode::None,
            },
            max_reasons: self.max_reasons,
        }
    }
}

pub fn spawn(
    id: String,
    cfg: AnomalyConfig,
    inbox: Inbox,
    out: Output,
    wiring: Arc<Wiring>,
) -> Result<std::thread::JoinHandle<()>, String> {
    wiring.health.pending(&id, "loading the model");
    let data_dir = wiring.data_dir.join("transforms").join(&id);
    let wasm_cache = wiring.data_dir.join("wasm-cache");
    let mut manager = ModelManager::start(&id, &cfg, &data_dir, &wasm_cache, wiring.shutdown.clone())?;
    let runtime = manager.current();
    let handle = tokio::runtime::Handle::current();
    let metrics = ComponentMetrics::new(&id, "transform", "anomaly");
    wiring.health.ready(&id);
    tracing::info!(component = %id, model = %runtime.model_id(), runtime = %manager.runtime(), "tagging with model");
    std::thread::Builder::new()
        .name(format!("anomaly:{id}"))
        .spawn(move || Tagger { id, cfg, inbox, out, metrics, handle, runtime, manager, tag_bytes: 256 }.run())
        .map_err(|e| format!("cannot start a thread: {e}"))
}

struct Tagger {
    id: String,
    cfg: AnomalyConfig,
    inbox: Inbox,
    out: Output,
    metrics: ComponentMetrics,
    handle: tokio::runtime::Handle,
    runtime: Box<dyn TagRuntime>,
    manager: ModelManager,
    /// Bytes the tags added per record in the last batch (it sizes the next batch's buffer).
    tag_bytes: usize,
}

impl Tagger {
    fn run(mut self) {
        // Timers (the batch timeout) need the runtime's context on this thread.
        let handle = self.handle.clone();
        let _runtime = handle.enter();
        let max = self.cfg.batch.max_events;
        let mut pending: Events = Vec::with_capacity(max * 2);
        let mut out_buf: Vec<u8> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        loop {
            // Wait for something, then gather up to `max_events` or until the timeout.
            if pending.is_empty() {
                match self.inbox.blocking_recv() {
                    Some(events) => pending.extend(events),
                    None => break,
                }
            }
            let deadline = Instant::now() + self.cfg.batch.timeout.0;
            let mut closed = false;
            while pending.len() < max {
                match self.inbox.try_recv() {
                    Ok(events) => pending.extend(events),
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match self.handle.block_on(tokio::time::timeout(left, self.inbox.recv())) {
                            Ok(Some(events)) => pending.extend(events),
                            Ok(None) => {
                                closed = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            // A new model goes live between batches: each record is tagged by exactly one.
            if let Some(next) = self.manager.take_update() {
                tracing::info!(component = %self.id, from = %self.runtime.model_id(), to = %next.model_id(), "model swapped");
                self.runtime = next;
            }
            let take = pending.len().min(max);
            let batch: Events = pending.drain(..take).collect();
            let tagged = self.tag(&batch, &mut out_buf, &mut ends);
            self.metrics.received(batch.len(), batch.iter().map(|e| e.data.len()).sum());
            let n = tagged.len();
            if self.out.blocking_send(tagged).is_err() {
                tracing::warn!(component = %self.id, "downstream is gone; stopping");
                break;
            }
            self.metrics.sent(n);
            if closed && pending.is_empty() {
                break;
            }
        }
        // Input closed: tag what is left, then the output closes with this thread.
        while !pending.is_empty() {
            let take = pending.len().min(self.cfg.batch.max_events);
            let batch: Events = pending.drain(..take).collect();
            let tagged = self.tag(&batch, &mut out_buf, &mut ends);
            if self.out.blocking_send(tagged).is_err() {
                break;
            }
        }
    }

    fn tag(&mut self, batch: &[Event], out_buf: &mut Vec<u8>, ends: &mut Vec<usize>) -> Events {
        let records: Vec<&[u8]> = batch.iter().map(|e| &e.data[..]).collect();
        out_buf.clear();
        ends.clear();
        // The buffer goes downstream with the events, so each batch starts a new one: sized
        // from the records and the tag bytes per record of the last batch (plus a quarter), it
        // is allocated once instead of grown and copied a dozen times.
        let input: usize = records.iter().map(|r| r.len()).sum();
        out_buf.reserve(input + records.len() * (self.tag_bytes + self.tag_bytes / 4));
        let started = Instant::now();
        let result = self.runtime.tag(&records, out_buf, ends);
        let m = metrics::global();
        m.inference.with_label_values(&[&self.id]).observe(started.elapsed().as_secs_f64());
        let model = self.runtime.model_id().to_string();
        if let Some(failure) = &result.failure {
            self.metrics.error("batch_failed", 1);
            tracing::warn!(component = %self.id, error = %failure, "a batch could not be scored; its records go on with an error tag");
        }
        if result.unscored > 0 {
            self.metrics.error("unscored", result.unscored);
        }
        m.anomalies.with_label_values(&[&self.id, &model]).inc_by(result.anomalous as u64);
        m.scored.with_label_values(&[&self.id, &model]).inc_by((result.anomalous + result.normal) as u64);
        // Observed locally and flushed once per batch, not with atomics per record.
        let hist = m.score.with_label_values(&[&self.id, &model]).local();
        // Counted per batch: a metric lookup per anomalous record costs more than the count.
        let mut top: Vec<(&str, u64)> = Vec::new();
        let mut start = 0;
        for (r, &end) in self.runtime.results().iter().zip(ends.iter()) {
            if r.verdict != Verdict::Unscored {
                hist.observe(r.score);
            }
            if r.verdict == Verdict::Anomalous {
                if let Some(feature) = top_reason(&out_buf[start..end]) {
                    match top.iter_mut().find(|(f, _)| *f == feature) {
                        Some((_, n)) => *n += 1,
                        None => top.push((feature, 1)),
                    }
                }
            }
            start = end;
        }
        hist.flush();
        for (feature, n) in top {
            m.top_reasons.with_label_values(&[&self.id, &model, feature]).inc_by(n);
        }
        self.tag_bytes = out_buf.len().saturating_sub(input).div_ceil(records.len().max(1));
        let data = Bytes::from(std::mem::take(out_buf));
        let mut start = 0;
        let tagged = batch
            .iter()
            .zip(ends.iter())
            .map(|(e, &end)| {
                let ev = Event { data: data.slice(start..end), ack: e.ack.clone() };
                start = end;
                ev
            })
            .collect();
        tagged
    }
}

/// The feature of a tagged record's first reason (`"reasons":[{"feature":"NAME"`, as the tagger
/// writes it; feature names come from the manifest). None when the record has no reasons.
///
/// The tag is the record's last member, so its reasons are the last place this text occurs;
/// the search walks back over the `[` bytes from the end (a few, near the end), which costs
/// far less than a reverse substring search over the record.
fn top_reason(record: &[u8]) -> Option<&str> {
    const BEFORE: &[u8] = b"\"reasons\":";
    const AFTER: &[u8] = b"[{\"feature\":\"";
    let at = memchr::memrchr_iter(b'[', record)
        .find(|&i| record[..i].ends_with(BEFORE) && record[i..].starts_with(AFTER))?
        + AFTER.len();
    let len = memchr::memchr2(b'"', b'\\', &record[at..])?;
    std::str::from_utf8(&record[at..at + len]).ok()
}

#[cfg(test)]
mod top_reason_tests {
    use super::top_reason;

    #[test]
    fn finds_the_first_reason_of_the_tag() {
        let rec = br#"{"a":1,"anomaly":{"score":1.0,"verdict":"anomalous","reasons":[{"feature":"spkts","value":"9"},{"feature":"dur"}]}}"#;
        assert_eq!(top_reason(rec), Some("spkts"));
        assert_eq!(top_reason(br#"{"anomaly":{"verdict":"anomalous"}}"#), None);
        // The tag's reasons, not look-alikes earlier in the record or inside reason values.
        let rec = br#"{"x":["reasons",[1]],"y":"\"reasons\":[{\"feature\":\"fake\"","anomaly":{"reasons":[{"feature":"dur","value":"[a]"}]}}"#;
        assert_eq!(top_reason(rec), Some("dur"));
        assert_eq!(top_reason(br#"["#), None);
    }
}
