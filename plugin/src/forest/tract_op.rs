//! [`Forest`] as a tract op, registered under the ONNX names `TreeEnsembleClassifier` and
//! `TreeEnsembleRegressor` (replacing tract's own classifier, see the module above).
//!
//! The registry is keyed by op type only; these ops live in the `ai.onnx.ml` domain and no
//! default-domain op shares their names.

use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::finalize::LabelPick;
use super::onnx::ensemble_spec;
use super::spec::Labels;
use super::Forest;

/// Put our tree-ensemble ops into an ONNX op registry.
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("TreeEnsembleClassifier", build_classifier);
    reg.insert("TreeEnsembleRegressor", build_regressor);
}

fn build_classifier(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    build(node, true)
}

fn build_regressor(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    build(node, false)
}

fn build(node: &NodeProto, classifier: bool) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    // tract's node and ours are the same protobuf message: re-read it with our reader.
    let ours = <crate::onnx::NodeProto as prost::Message>::decode(&prost::Message::encode_to_vec(node)[..])
        .map_err(|e| format_err!("{e}"))?;
    let spec = ensemble_spec(&ours, classifier).map_err(|e| format_err!("{e}"))?;
    Ok((expand(TreeEnsemble { forest: Arc::new(Forest::new(&spec)) }), vec![]))
}

/// The inference-time face of the op: shape rules, then wiring of [`ForestOp`].
#[derive(Clone, Debug)]
struct TreeEnsemble {
    forest: Arc<Forest>,
}

impl Expansion for TreeEnsemble {
    fn name(&self) -> StaticName {
        "FlowtagTreeEnsemble".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(if self.forest.labels().is_some() { 2 } else { 1 })
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, self.nboutputs()?)?;
        s.equals(&inputs[0].rank, 2)?;
        let scores = match self.forest.labels() {
            Some(labels) => {
                let dt = match labels {
                    Labels::Int(_) => i64::datum_type(),
                    Labels::Str(_) => String::datum_type(),
                };
                s.equals(&outputs[0].datum_type, dt)?;
                s.equals(&outputs[0].rank, 1)?;
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
                &outputs[1]
            }
            None => &outputs[0],
        };
        s.equals(&scores.datum_type, f32::datum_type())?;
        s.equals(&scores.rank, 2)?;
        s.equals(&scores.shape[0], &inputs[0].shape[0])?;
        s.equals(&scores.shape[1], self.forest.n_outputs().to_dim())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let mut input = inputs[0];
        if model.outlet_fact(input)?.datum_type != f32::datum_type() {
            input = model.wire_node(
                format!("{prefix}.cast"),
                tract_onnx::tract_core::ops::cast::cast(f32::datum_type()),
                &[input],
            )?[0];
        }
        model.wire_node(prefix, ForestOp { forest: self.forest.clone() }, &[input])
    }
}

/// The typed op tract runs.
#[derive(Clone, Debug)]
pub struct ForestOp {
    pub forest: Arc<Forest>,
}

impl PartialEq for ForestOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.forest, &other.forest)
    }
}

impl Eq for ForestOp {}

impl Op for ForestOp {
    fn name(&self) -> StaticName {
        "FlowtagTreeEnsemble".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} trees ({} perfect), {} outputs",
            self.forest.n_trees(),
            self.forest.n_perfect_trees(),
            self.forest.n_outputs()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for ForestOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape();
        ensure!(shape.len() == 2, "tree ensemble input must be [N, features], got {shape:?}");
        let (n, width) = (shape[0], shape[1]);
        ensure!(
            width >= self.forest.min_features(),
            "tree ensemble input has {width} features, the trees read feature {}",
            self.forest.min_features().saturating_sub(1)
        );
        let view = input.try_as_plain_ram()?;
        let x = view.as_slice::<f32>()?;
        let n_out = self.forest.n_outputs();
        let mut scores = vec![0f32; n * n_out];
        let scores_tensor;
        match self.forest.labels() {
            None => {
                self.forest.eval(x, width, super::Outputs { scores: &mut scores, labels: None });
                scores_tensor = Tensor::from_shape(&[n, n_out], &scores)?;
                Ok(tvec!(scores_tensor.into_tvalue()))
            }
            Some(labels) => {
                let mut picks = vec![LabelPick::Index(0); n];
                self.forest.eval(x, width, super::Outputs { scores: &mut scores, labels: Some(&mut picks) });
                scores_tensor = Tensor::from_shape(&[n, n_out], &scores)?;
                let label_tensor = match labels {
                    Labels::Int(l) => {
                        let v: Vec<i64> = picks
                            .iter()
                            .map(|p| match *p {
                                LabelPick::Index(i) => l.get(i).copied().unwrap_or(0),
                                LabelPick::Literal(v) => v,
                            })
                            .collect();
                        Tensor::from_shape(&[n], &v)?
                    }
                    Labels::Str(l) => {
                        let v: Vec<String> = picks
                            .iter()
                            .map(|p| {
                                let i = match *p {
                                    LabelPick::Index(i) => i,
                                    LabelPick::Literal(v) => v as usize,
                                };
                                l.get(i).cloned().unwrap_or_default()
                            })
                            .collect();
                        tensor1(&v)
                    }
                };
                Ok(tvec!(label_tensor.into_tvalue(), scores_tensor.into_tvalue()))
            }
        }
    }
}

impl TypedOp for ForestOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        let scores = f32::fact(&[n.clone(), self.forest.n_outputs().to_dim()]);
        Ok(match self.forest.labels() {
            None => tvec!(scores),
            Some(Labels::Int(_)) => tvec!(i64::fact(&[n]), scores),
            Some(Labels::Str(_)) => tvec!(String::fact(&[n]), scores),
        })
    }

    as_op!();
}
