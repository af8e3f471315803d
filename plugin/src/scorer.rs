//! The model: `model.onnx`, read and checked, run on batches of any size.
//!
//! Two engines run it. Graphs made only of dense arithmetic and tree ensembles (the
//! autoencoder, the Isolation Forest, the boosted and random forests) run on [`crate::dense`],
//! which gives the same bits natively and under WASM. With the `tract` feature (the default),
//! everything else runs through tract, optimised once with a symbolic batch dimension; tree
//! ensembles in those graphs run on our own evaluator ([`crate::forest`]), registered into
//! tract's ONNX op registry before the model is parsed, and tract does the rest. Without it
//! (the Fluent Bit build of the WASM module) such a graph is refused, saying why the dense
//! executor did not take it.

#[cfg(feature = "tract")]
use std::sync::Arc;

#[cfg(feature = "tract")]
use tract_onnx::prelude::*;
#[cfg(feature = "tract")]
use tract_onnx::tract_core::model::typed::{TypedRunnableModel, TypedSimpleState};

use crate::dense::DenseGraph;
use crate::error::BundleError;
#[cfg(feature = "tract")]
use crate::forest::tract_op;
use crate::manifest::Manifest;

pub struct Scorer {
    engine: Engine,
    width: usize,
    score: OutputRef,
    residual: Option<OutputRef>,
}

enum Engine {
    /// Tract, with the reason the dense executor did not take the graph.
    #[cfg(feature = "tract")]
    Tract {
        plan: Arc<TypedRunnableModel>,
        state: TypedSimpleState,
        why: String,
    },
    Dense(DenseGraph),
}

#[derive(Clone, Copy, Debug)]
struct OutputRef {
    /// Index among the model's outputs.
    index: usize,
    /// Column to read (scores), or expected width (residuals).
    column: usize,
}

/// Model outputs for one batch: raw scores and, for autoencoders, residuals.
#[derive(Debug, Default)]
pub struct Scores {
    pub raw: Vec<f32>,
    /// `n x width` residuals, empty when the model has none.
    pub residual: Vec<f32>,
}

impl Scorer {
    pub fn new(model_bytes: &[u8], manifest: &Manifest) -> Result<Scorer, BundleError> {
        let model_err = |problem: String| BundleError::Model { problem };
        let graph = crate::onnx::read(model_bytes).map_err(model_err)?;
        let inputs = graph.fed_inputs();
        if inputs.len() != 1 {
            return Err(model_err(format!("expected 1 input, the graph has {}", inputs.len())));
        }
        let width = manifest.width();
        // A declared concrete width must match the manifest's features.
        if let Some(w) = inputs[0].dim(1) {
            if w as usize != width {
                return Err(BundleError::Width { model: w as usize, manifest: width });
            }
        }
        let names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        let find = |key: &'static str, name: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| BundleError::Output {
                key,
                name: name.to_string(),
                available: names.clone(),
            })
        };
        let score = OutputRef { index: find("output.name", &manifest.output.name)?, column: manifest.output.column };
        let residual = match &manifest.output.residual {
            Some(name) => Some(OutputRef { index: find("output.residual", name)?, column: width }),
            None => None,
        };
        let engine = match crate::dense::compile(&graph, width) {
            Ok(dense) => {
                // Dense outputs are read by name; map the names found above to values. A graph
                // output the dense graph has no value for is a classifier's labels.
                let value = |key: &'static str, name: &str| {
                    dense.output(name).ok_or_else(|| BundleError::Model {
                        problem: format!("manifest.json `{key}` names {name:?}, which holds class labels, not scores"),
                    })
                };
                let score = OutputRef { index: value("output.name", &manifest.output.name)?.0, ..score };
                let residual = match &manifest.output.residual {
                    Some(name) => Some(OutputRef { index: value("output.residual", name)?.0, column: width }),
                    None => None,
                };
                let mut scorer = Scorer { engine: Engine::Dense(dense), width, score, residual };
                scorer.run(&vec![0.0; width], 1).map_err(model_err)?;
                return Ok(scorer);
            }
            Err(why) => Self::fallback(model_bytes, width, why)?,
        };
        let mut scorer = Scorer { engine, width, score, residual };
        // One row of zeros proves the graph runs and the outputs have the shapes we read.
        scorer.run(&vec![0.0; width], 1).map_err(model_err)?;
        Ok(scorer)
    }

    /// The engine for a graph the dense executor does not run (`why`): tract.
    #[cfg(feature = "tract")]
    fn fallback(model_bytes: &[u8], width: usize, why: String) -> Result<Engine, BundleError> {
        let model_err = |e: TractError| BundleError::Model { problem: format!("{e:#}") };
        let mut onnx = tract_onnx::onnx();
        tract_op::register(&mut onnx.op_register);
        let mut model = onnx.model_for_read(&mut &model_bytes[..]).map_err(model_err)?;
        let n = model.symbols.sym("N");
        model.set_input_fact(0, f32::fact(&[n.to_dim(), width.to_dim()]).into()).map_err(model_err)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| BundleError::Model { problem: format!("cannot run with {width} input columns: {e:#}") })?;
        let state = plan.spawn().map_err(model_err)?;
        Ok(Engine::Tract { plan, state, why })
    }

    /// Without tract, a graph the dense executor does not run is refused, saying why.
    #[cfg(not(feature = "tract"))]
    fn fallback(_: &[u8], _: usize, why: String) -> Result<Engine, BundleError> {
        Err(BundleError::Model {
            problem: format!(
                "this build runs models on flowtag's own evaluators only (built without tract, as the Fluent Bit module is), and they do not run this graph: {why}"
            ),
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Score `x`, `n` rows of `width` columns.
    pub fn run(&mut self, x: &[f32], n: usize) -> Result<Scores, String> {
        debug_assert_eq!(x.len(), n * self.width);
        match &mut self.engine {
            Engine::Dense(g) => {
                let values = g.run(x, n);
                let raw = column_of(&values[self.score.index], n, self.score.column, "score")?;
                let residual = self.residual.map(|r| values[r.index].clone()).unwrap_or_default();
                if self.residual.is_some() && residual.len() != n * self.width {
                    return Err(format!("the model's residuals do not have {n} rows of {} columns", self.width));
                }
                Ok(Scores { raw, residual })
            }
            #[cfg(feature = "tract")]
            Engine::Tract { state, .. } => {
                let input = Tensor::from_shape(&[n, self.width], x).map_err(|e| e.to_string())?;
                let outputs = state.run(tvec!(input.into_tvalue())).map_err(|e| format!("model failed: {e:#}"))?;
                let raw = read_column(&outputs[self.score.index], n, self.score.column, "score")?;
                let residual = match self.residual {
                    Some(r) => {
                        let t = &outputs[r.index];
                        let v = t.cast_to::<f32>().map_err(|e| e.to_string())?;
                        let s = v
                            .try_as_plain_ram()
                            .and_then(|p| p.as_slice::<f32>().map(|s| s.to_vec()))
                            .map_err(|e| e.to_string())?;
                        if s.len() != n * r.column {
                            return Err(format!(
                                "residual output has {} values, expected {} x {}",
                                s.len(),
                                n,
                                r.column
                            ));
                        }
                        s
                    }
                    None => Vec::new(),
                };
                Ok(Scores { raw, residual })
            }
        }
    }

    /// The tract plan, when tract runs the model (for callers that inspect the optimised graph).
    #[cfg(feature = "tract")]
    pub fn plan(&self) -> Option<&Arc<TypedRunnableModel>> {
        match &self.engine {
            Engine::Tract { plan, .. } => Some(plan),
            Engine::Dense(_) => None,
        }
    }

    /// Which engine runs the model: `"dense"` or `"tract"`.
    pub fn engine(&self) -> &'static str {
        match self.engine {
            #[cfg(feature = "tract")]
            Engine::Tract { .. } => "tract",
            Engine::Dense(_) => "dense",
        }
    }

    /// When tract runs the model, why the dense executor did not (tract's results may differ in
    /// the last bits between native and WASM builds); `None` when the dense executor runs it.
    pub fn tract_reason(&self) -> Option<&str> {
        match &self.engine {
            #[cfg(feature = "tract")]
            Engine::Tract { why, .. } => Some(why),
            Engine::Dense(_) => None,
        }
    }
}

/// Column `column` of a `[n]` or `[n, k]` output as f32.
#[cfg(feature = "tract")]
fn read_column(t: &TValue, n: usize, column: usize, what: &str) -> Result<Vec<f32>, String> {
    let v = t.cast_to::<f32>().map_err(|e| e.to_string())?;
    let view = v.try_as_plain_ram().map_err(|e| e.to_string())?;
    column_of(view.as_slice::<f32>().map_err(|e| e.to_string())?, n, column, what)
}

/// Column `column` of `n` rows stored row-major in `s`.
fn column_of(s: &[f32], n: usize, column: usize, what: &str) -> Result<Vec<f32>, String> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if !s.len().is_multiple_of(n) {
        return Err(format!("{what} output has {} values for {n} rows", s.len()));
    }
    let k = s.len() / n;
    if column >= k {
        return Err(format!("{what} output has {k} columns, manifest `output.column` is {column}"));
    }
    Ok(s.iter().skip(column).step_by(k).copied().collect())
}
