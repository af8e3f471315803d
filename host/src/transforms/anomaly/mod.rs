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
//! [transforms.tag.calibration]            # optional: this node's own (see `calibration`)
//! mode = "local"
//! ```
//!
//! Records are gathered into batches (up to `max_events`, or whatever arrived within
//! `timeout`), tagged in one pass of the model, and sent on in order with their
//! acknowledgements. A record the model cannot score goes on with `verdict: "unscored"` and an
//! `error`, and is counted (`flowtag_component_errors_total{error_type="unscored"}`); when
//! something reads `ID.dead_letter`, such records go there instead, the `error` as their
//! reason. Tagging
//! runs on its own thread; a full downstream blocks it, which blocks the sources.

pub mod calibration;
pub mod model;
pub mod runtime;
mod worker;

use std::path::PathBuf;

use serde::Deserialize;

use super::TransformStart;
use crate::component::ComponentConfig;
use crate::config::duration::Dur;
use flowtag_plugin::{FilterOptions, ReasonsMode};
use model::fetch::UpdatesConfig;
use model::ModelManager;
use runtime::wasm::Limits;

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
    pub reasons: ReasonsMode,
    #[serde(default = "default_max_reasons")]
    pub max_reasons: usize,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Limits for `runtime = "wasm"`.
    #[serde(default)]
    pub wasm: WasmConfig,
    /// Model pushes: where new bundles come from and how they are checked.
    pub updates: Option<UpdatesConfig>,
    /// The bundle's calibration, or this node's own (see [`calibration`]).
    #[serde(default)]
    pub calibration: calibration::CalibrationConfig,
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

/// Where the tag filter runs: linked into the host, or as a WASM module under wasmtime.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    #[default]
    Native,
    Wasm,
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
            reasons: ReasonsMode::default(),
            max_reasons: default_max_reasons(),
            batch: BatchConfig::default(),
            wasm: WasmConfig::default(),
            updates: None,
            calibration: calibration::CalibrationConfig::default(),
        }
    }

    pub fn options(&self) -> FilterOptions {
        FilterOptions { key: self.key.clone(), reasons: self.reasons, max_reasons: self.max_reasons }
    }
}

impl ComponentConfig for AnomalyConfig {
    const TYPE: &'static str = "anomaly";
    const DEAD_LETTER: bool = true;

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn check(&self, id: &str) -> Result<(), String> {
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
        self.calibration.check(&format!("transforms.{id}.calibration"))
    }
}

impl super::TransformType for AnomalyConfig {
    fn start(self, s: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> {
        let TransformStart { id, inbox, out, dead_letters, shared, .. } = s;
        shared.health.pending(&id, "loading the model");
        let data_dir = shared.data_dir.join("transforms").join(&id);
        let wasm_cache = shared.data_dir.join("wasm-cache");
        let manager = ModelManager::start(&id, &self, &data_dir, &wasm_cache, shared.shutdown.clone(), &shared.models)?;
        let runtime = manager.runtime();
        let worker = worker::Worker::new(id.clone(), self, inbox, out, dead_letters, manager, Some(&data_dir))?;
        shared.health.ready(&id);
        tracing::info!(component = %id, model = %worker.model_id(), %runtime, "tagging with model");
        worker::spawn(worker)
    }
}
