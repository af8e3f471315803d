//! The model a tag transform serves: loaded from its bundle at start, checked (hash, manifest,
//! canaries) before it goes live.

use std::path::Path;

use crate::metrics;
use crate::topology::Shutdown;
use crate::transforms::anomaly::{load_runtime, AnomalyConfig};
use crate::transforms::runtime::TagRuntime;
use flowtag_plugin::Bundle;

pub struct ModelManager {
    current: Option<Box<dyn TagRuntime>>,
}

impl ModelManager {
    /// Load the configured bundle; a bundle that fails any check is refused with its reason.
    pub fn start(id: &str, cfg: &AnomalyConfig, data_dir: &Path, _shutdown: Shutdown) -> Result<ModelManager, String> {
        let bundle = Bundle::read_path(&cfg.model)
            .map_err(|e| format!("transforms.{id}.model: {}: {e}", cfg.model.display()))?;
        let runtime = load_runtime(cfg, &bundle, data_dir)
            .map_err(|e| format!("transforms.{id}.model: {}: {e}", cfg.model.display()))?;
        let m = &bundle.manifest;
        metrics::global().model_info.with_label_values(&[id, &m.name, &m.version, &m.model_sha256]).set(1.0);
        Ok(ModelManager { current: Some(runtime) })
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
