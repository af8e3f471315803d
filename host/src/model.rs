//! The model a tag transform serves: loaded from its bundle at start, checked (hash, manifest,
//! canaries) before it goes live.

use std::path::Path;

use crate::metrics;
use crate::topology::Shutdown;
use crate::transforms::anomaly::AnomalyConfig;
use crate::transforms::runtime::{Loader, TagRuntime};
use flowtag_plugin::Bundle;

pub struct ModelManager {
    current: Option<Box<dyn TagRuntime>>,
    loader: Loader,
}

impl ModelManager {
    /// Load the configured bundle; a bundle that fails any check is refused with its reason.
    pub fn start(
        id: &str,
        cfg: &AnomalyConfig,
        _data_dir: &Path,
        wasm_cache: &Path,
        _shutdown: Shutdown,
    ) -> Result<ModelManager, String> {
        let (loader, bundle, runtime) = load_configured(id, cfg, wasm_cache)?;
        let m = &bundle.manifest;
        metrics::global().model_info.with_label_values(&[id, &m.name, &m.version, &m.model_sha256]).set(1.0);
        Ok(ModelManager { current: Some(runtime), loader })
    }

    /// Which runtime serves the models: `native`, or `wasm` with the module.
    pub fn runtime(&self) -> String {
        self.loader.describe()
    }

    /// The runtime to start with.
    pub fn current(&mut self) -> Box<dyn TagRuntime> {
        self.current.take().expect("current() is called once")
    }

    /// A newly verified model, if one arrived since the last call.
    pub fn take_update(&mut self) -> Option<Box<dyn TagRuntime>> {
        None
    }
}

/// Load a transform's model the way it runs: a loader for its runtime (for WASM, the module
/// compiled or taken from `wasm_cache`), the bundle read and checked, and a runtime serving it
/// with its canaries passed. Errors name the config key.
pub fn load_configured(
    id: &str,
    cfg: &AnomalyConfig,
    wasm_cache: &Path,
) -> Result<(Loader, Bundle, Box<dyn TagRuntime>), String> {
    let loader = Loader::new(cfg, wasm_cache).map_err(|e| format!("transforms.{id}.plugin: {e}"))?;
    let bundle =
        Bundle::read_path(&cfg.model).map_err(|e| format!("transforms.{id}.model: {}: {e}", cfg.model.display()))?;
    let runtime = loader.load(&bundle).map_err(|e| format!("transforms.{id}.model: {}: {e}", cfg.model.display()))?;
    Ok((loader, bundle, runtime))
}
