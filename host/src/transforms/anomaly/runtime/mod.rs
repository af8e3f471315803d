//! Where the tag filter runs: natively in the host, or as a WASM module under wasmtime. Both
//! sit behind [`TagRuntime`], so batching, metrics and model updates do not care which.

pub mod wasm;

use std::path::Path;
use std::sync::Arc;

use flowtag_plugin::manifest::Manifest;
use flowtag_plugin::{Bundle, Calibration, Filter, FilterOptions, RecordResult};

use super::{AnomalyConfig, Runtime};

/// Counts and results of one tagged batch.
#[derive(Debug, Default)]
pub struct Tagged {
    pub anomalous: usize,
    pub normal: usize,
    pub unscored: usize,
    /// The whole batch failed (model error, WASM trap...): every record went out with this
    /// error in its tag.
    pub failure: Option<String>,
}

/// A tag filter with a model loaded.
pub trait TagRuntime: Send {
    /// `name@version` of the model.
    fn model_id(&self) -> &str;

    /// Tag `records` (one JSON object each); each tagged record is appended to `out` and ends at
    /// `ends[i]`. Never loses a record: on failure every record is written with an error tag.
    fn tag(&mut self, records: &[&[u8]], out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Tagged;

    /// Per-record results of the last batch (verdicts, calibrated scores, top reasons).
    fn results(&self) -> &[RecordResult];

    /// The model's feature names, in the manifest's order (a top reason is an index into it).
    fn feature_names(&self) -> &[String];

    /// Tag with this calibration from now on (see [`Calibration`]).
    fn set_calibration(&mut self, c: &Calibration) -> Result<(), String>;

    /// The model's manifest.
    fn manifest(&self) -> &Manifest;
}

/// The plugin linked into the host.
pub struct Native {
    filter: Filter,
    id: String,
    features: Vec<String>,
}

impl Native {
    pub fn new(bundle: &Bundle, options: FilterOptions) -> Result<Native, String> {
        let mut filter = Filter::new(bundle, options).map_err(|e| e.to_string())?;
        filter.check_canaries().map_err(|e| e.to_string())?;
        if let Some(why) = filter.tract_reason() {
            tracing::warn!(model = %filter.model_id(), reason = %why, "the model runs on tract, not the dense executor: native and WASM tags may differ in the last digits");
        }
        let features = bundle.manifest.features.iter().map(|f| f.name.clone()).collect();
        Ok(Native { id: filter.model_id().to_string(), filter, features })
    }
}

impl TagRuntime for Native {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn tag(&mut self, records: &[&[u8]], out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Tagged {
        let stats = self.filter.tag_batch(records, out, ends);
        Tagged {
            anomalous: stats.anomalous,
            normal: stats.normal,
            unscored: stats.unscored,
            failure: stats.model_error,
        }
    }

    fn results(&self) -> &[RecordResult] {
        self.filter.results()
    }

    fn feature_names(&self) -> &[String] {
        &self.features
    }

    fn set_calibration(&mut self, c: &Calibration) -> Result<(), String> {
        self.filter.set_calibration(c)
    }

    fn manifest(&self) -> &Manifest {
        self.filter.manifest()
    }
}

/// Builds a runtime for a bundle the way a transform is configured: the same for its first
/// model and for every pushed one, so model updates do not care which runtime runs.
pub enum Loader {
    Native { options: FilterOptions },
    Wasm { plugin: Arc<wasm::Plugin>, options: FilterOptions, limits: wasm::Limits },
}

impl Loader {
    /// For `runtime = "wasm"` this compiles the module (or loads it from the cache in
    /// `cache_dir`) once.
    pub fn new(cfg: &AnomalyConfig, cache_dir: &Path) -> Result<Loader, String> {
        let options = cfg.options();
        match cfg.runtime {
            Runtime::Native => Ok(Loader::Native { options }),
            Runtime::Wasm => {
                let path = cfg.plugin.as_ref().ok_or("runtime = \"wasm\" needs plugin = \"<module.wasm>\"")?;
                let plugin = wasm::Plugin::load(path, cache_dir)?;
                Ok(Loader::Wasm { plugin: Arc::new(plugin), options, limits: cfg.wasm.limits() })
            }
        }
    }

    /// A runtime serving `bundle`, its canaries checked.
    pub fn load(&self, bundle: &Bundle) -> Result<Box<dyn TagRuntime>, String> {
        match self {
            Loader::Native { options } => Ok(Box::new(Native::new(bundle, options.clone())?)),
            Loader::Wasm { plugin, options, limits } => {
                Ok(Box::new(wasm::Wasm::new(plugin.clone(), bundle, options.clone(), *limits)?))
            }
        }
    }

    /// `native`, or `wasm` with the module's path.
    pub fn describe(&self) -> String {
        match self {
            Loader::Native { .. } => "native".into(),
            Loader::Wasm { plugin, .. } => format!("wasm: {}, sha256 {}", plugin.path.display(), &plugin.sha256[..12]),
        }
    }
}
