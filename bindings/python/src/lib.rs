//! Python bindings of flowtag's scorer ([`flowtag_host::cli::score::LineScorer`]): the same
//! decoder, featurizer, model and tagger as `flowtag score`, so records scored from Python (Spark's
//! `mapInPandas` in `flowtag-train score-batch`) come out byte for byte as the edge tags them.
//!
//! ```python
//! from flowtag_native import Scorer
//! s = Scorer("models/unsw-supervised", format="unsw")
//! tagged = s.score([b"...", b"..."])   # JSON lines, each ending in "\n", as `flowtag score` writes
//! ```

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use flowtag_host::cli::score::{LineScorer, ScoreArgs};
use flowtag_host::transforms::anomaly::Runtime;

/// A loaded bundle and a decoder. One stream at a time: `new_stream` starts another file (or
/// a part of one, primed with the file's header lines).
#[pyclass(module = "flowtag_native")]
struct Scorer {
    /// Python may hand the object to any thread; one call at a time drives the scorer.
    inner: Mutex<LineScorer>,
    /// Batches that could not be scored since the last `take_failures` (their records went out
    /// with an error tag, as `flowtag score` writes them).
    failures: Vec<String>,
}

#[pymethods]
impl Scorer {
    #[new]
    #[pyo3(signature = (model, format = "json", reasons = "anomalous", key = "anomaly", batch = 256, runtime = "native", plugin = None, data_dir = PathBuf::from(".flowtag")))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        model: PathBuf,
        format: &str,
        reasons: &str,
        key: &str,
        batch: usize,
        runtime: &str,
        plugin: Option<PathBuf>,
        data_dir: PathBuf,
    ) -> PyResult<Scorer> {
        let runtime = match runtime {
            "native" => Runtime::Native,
            "wasm" => Runtime::Wasm,
            other => return Err(PyValueError::new_err(format!("runtime: {other:?} is not native or wasm"))),
        };
        let args = ScoreArgs {
            model,
            format: format.parse().map_err(|e: String| PyValueError::new_err(format!("format: {e}")))?,
            runtime,
            plugin,
            reasons: reasons.parse().map_err(|e| PyValueError::new_err(format!("reasons: {e}")))?,
            key: key.to_string(),
            batch: batch.max(1),
            input: None,
            data_dir,
        };
        let inner = LineScorer::open(&args).map_err(PyValueError::new_err)?;
        Ok(Scorer { inner: Mutex::new(inner), failures: Vec::new() })
    }

    /// `name@version` of the model.
    #[getter]
    fn model_id(&self) -> String {
        self.scorer().model_id().to_string()
    }

    /// Start a new stream; `preamble` are header lines it is primed with (a CSV header, Zeek's
    /// `#` lines) when it starts in the middle of a file. They make no record.
    #[pyo3(signature = (preamble = Vec::new()))]
    fn new_stream(&mut self, preamble: Vec<Vec<u8>>) -> PyResult<()> {
        let mut left = Vec::new();
        let mut scorer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let failure = scorer.new_stream(&mut left).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        // `score` flushes before it returns, so nothing is pending here.
        assert!(left.is_empty() && failure.is_none(), "records were pending at a stream boundary");
        for line in &preamble {
            scorer.prime(line);
        }
        Ok(())
    }

    /// Decode and tag these lines (each without its newline) in the current stream; returns
    /// the tagged records as JSON lines, each ending in a newline. A header or blank line makes
    /// no record; a line that cannot be decoded makes one with its decode error.
    fn score<'py>(&mut self, py: Python<'py>, lines: Vec<Vec<u8>>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 160).sum());
        let inner = &mut *self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        let (result, failures) = py.detach(|| {
            let mut failures = Vec::new();
            let mut run = || -> std::io::Result<()> {
                for line in &lines {
                    failures.extend(inner.line(line, &mut out)?);
                }
                failures.extend(inner.flush(&mut out)?);
                Ok(())
            };
            (run(), failures)
        });
        self.failures.extend(failures);
        result.map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Counts since the scorer was made: records, anomalous, unscored, malformed lines.
    fn counts(&self) -> (usize, usize, usize, usize) {
        let s = self.scorer();
        (s.records, s.anomalous, s.unscored, s.malformed)
    }

    /// The errors of batches that could not be scored since the last call.
    fn take_failures(&mut self) -> Vec<String> {
        std::mem::take(&mut self.failures)
    }
}

impl Scorer {
    fn scorer(&self) -> std::sync::MutexGuard<'_, LineScorer> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymodule]
fn flowtag_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Scorer>()?;
    Ok(())
}
