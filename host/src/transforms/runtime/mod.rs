//! Where the tag filter runs: natively in the host, or as a WASM module under wasmtime. Both
//! sit behind [`TagRuntime`], so batching, metrics and model updates do not care which.

use flowtag_plugin::{Bundle, Filter, FilterOptions, RecordResult};

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

    /// Per-record results of the last batch (verdicts and calibrated scores).
    fn results(&self) -> &[RecordResult];
}

/// The plugin linked into the host.
pub struct Native {
    filter: Filter,
    id: String,
}

impl Native {
    pub fn new(bundle: &Bundle, options: FilterOptions) -> Result<Native, String> {
        let mut filter = Filter::new(bundle, options).map_err(|e| e.to_string())?;
        filter.check_canaries().map_err(|e| e.to_string())?;
        Ok(Native { id: filter.model_id().to_string(), filter })
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
}
