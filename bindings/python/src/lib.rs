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

use pyo3::buffer::PyBuffer;
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

    /// `score` for lines held as an Arrow binary column, without a Python object per line:
    /// `offsets` (int32, one more than the lines) and `data` are the column's buffers, as
    /// pyarrow gives them. Returns the tagged lines the same way, without their newlines:
    /// (offsets as int32 bytes, data bytes), ready for `pyarrow.Array.from_buffers`.
    fn score_arrow<'py>(
        &mut self,
        py: Python<'py>,
        offsets: PyBuffer<i32>,
        data: PyBuffer<u8>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let offs = contiguous(&offsets, py)?;
        let bytes = contiguous(&data, py)?;
        let n = offs.len().saturating_sub(1);
        let mut bounds = Vec::with_capacity(n);
        for w in offs.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a < 0 || b < a || b as usize > bytes.len() {
                return Err(PyValueError::new_err(format!(
                    "Arrow offsets {a}..{b} outside the data ({} bytes)",
                    bytes.len()
                )));
            }
            bounds.push((a as usize, b as usize));
        }
        let inner = &mut *self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        let (result, failures, out) = py.detach(|| {
            let mut out = Vec::with_capacity(bytes.len() * 2 + n * 160);
            let mut failures = Vec::new();
            let mut run = || -> std::io::Result<()> {
                for &(a, b) in &bounds {
                    failures.extend(inner.line(&bytes[a..b], &mut out)?);
                }
                failures.extend(inner.flush(&mut out)?);
                Ok(())
            };
            (run(), failures, out)
        });
        self.failures.extend(failures);
        result.map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        // Each tagged line ends in '\n': the offsets are where lines start, the data drops
        // the newlines.
        let mut out_offsets: Vec<u8> = Vec::with_capacity(4 * (n + 1));
        let mut out_data = Vec::with_capacity(out.len());
        out_offsets.extend_from_slice(&0i32.to_le_bytes());
        for line in out.split(|&c| c == b'\n') {
            if out_data.len() + line.len() > i32::MAX as usize {
                return Err(PyValueError::new_err(
                    "the tagged lines of one call exceed 2 GiB (an Arrow binary column's limit): score fewer at a time",
                ));
            }
            out_data.extend_from_slice(line);
            out_offsets.extend_from_slice(&(out_data.len() as i32).to_le_bytes());
        }
        // `split` yields an empty piece after the last newline: drop its offset.
        out_offsets.truncate(out_offsets.len() - 4);
        Ok((PyBytes::new(py, &out_offsets), PyBytes::new(py, &out_data)))
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

/// A read-only, C-contiguous buffer's items.
fn contiguous<'a, T: pyo3::buffer::Element>(buf: &'a PyBuffer<T>, _py: Python<'_>) -> PyResult<&'a [T]> {
    if !buf.is_c_contiguous() {
        return Err(PyValueError::new_err("the buffer is not contiguous"));
    }
    // SAFETY: the buffer is C-contiguous with item type T (PyBuffer<T> checked the format),
    // and the exporter keeps it alive and unchanged while `buf` holds it.
    Ok(unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const T, buf.item_count()) })
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
