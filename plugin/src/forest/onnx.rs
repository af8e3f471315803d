//! Reading a tree ensemble from its ONNX node: the attributes of `ai.onnx.ml`'s
//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` into an [`EnsembleSpec`] ([`spec`]
//! checks it). Both engines read forests through here: the dense executor ([`crate::dense`])
//! and the tract adapter ([`super::tract_op`]).
//!
//! [`spec`]: super::spec

use crate::onnx::NodeProto;

use super::spec::{Aggregate, EnsembleSpec, Labels, PostTransform, RawEnsemble};

/// The trees of a `TreeEnsembleClassifier` (`classifier`) or `TreeEnsembleRegressor` node,
/// validated; an error names the node and the attribute at fault.
pub fn ensemble_spec(node: &NodeProto, classifier: bool) -> Result<EnsembleSpec, String> {
    let attr = |e: String| format!("{} {:?}: {e}", node.op_type, node.name);
    for unsupported in
        ["nodes_values_as_tensor", "base_values_as_tensor", "class_weights_as_tensor", "target_weights_as_tensor"]
    {
        if node.has_attr(unsupported) {
            return Err(format!(
                "{} {:?}: double-precision attribute `{unsupported}` is not supported; export float thresholds and weights",
                node.op_type, node.name
            ));
        }
    }
    let strings =
        |name: &str| -> Result<Vec<&str>, String> { Ok(node.attr_strings(name).map_err(attr)?.unwrap_or_default()) };
    let ints = |name: &str| -> Result<&[i64], String> { Ok(node.attr_ints(name).map_err(attr)?.unwrap_or(&[])) };
    let floats = |name: &str| -> Result<&[f32], String> { Ok(node.attr_floats(name).map_err(attr)?.unwrap_or(&[])) };
    let prefix = if classifier { "class" } else { "target" };

    let labels = if classifier {
        let int_labels = node.attr_ints("classlabels_int64s").map_err(attr)?;
        let str_labels = node.attr_strings("classlabels_strings").map_err(attr)?;
        Some(match (int_labels, str_labels) {
            (Some(v), None) => Labels::Int(v.to_vec()),
            (None, Some(v)) => Labels::Str(v.iter().map(|s| s.to_string()).collect()),
            _ => {
                return Err(format!(
                    "{} {:?}: exactly one of classlabels_int64s and classlabels_strings must be set",
                    node.op_type, node.name
                ))
            }
        })
    } else {
        None
    };
    let n_outputs = match &labels {
        Some(l) => l.len(),
        None => node.attr_i("n_targets").map_err(attr)?.unwrap_or(1).max(0) as usize,
    };
    let aggregate = match node.attr_s("aggregate_function").map_err(attr)?.unwrap_or("SUM") {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => return Err(format!("{} {:?}: unknown aggregate_function {other:?}", node.op_type, node.name)),
    };
    let post = node.attr_s("post_transform").map_err(attr)?.unwrap_or("NONE");
    let post_transform = PostTransform::parse(post).map_err(|e| format!("{} {:?}: {e}", node.op_type, node.name))?;

    let raw = RawEnsemble {
        nodes_treeids: ints("nodes_treeids")?,
        nodes_nodeids: ints("nodes_nodeids")?,
        nodes_featureids: ints("nodes_featureids")?,
        nodes_modes: strings("nodes_modes")?,
        nodes_values: floats("nodes_values")?,
        nodes_truenodeids: ints("nodes_truenodeids")?,
        nodes_falsenodeids: ints("nodes_falsenodeids")?,
        nodes_missing_value_tracks_true: node.attr_ints("nodes_missing_value_tracks_true").map_err(attr)?,
        leaf_treeids: ints(&format!("{prefix}_treeids"))?,
        leaf_nodeids: ints(&format!("{prefix}_nodeids"))?,
        leaf_ids: ints(&format!("{prefix}_ids"))?,
        leaf_weights: floats(&format!("{prefix}_weights"))?,
        n_outputs,
        aggregate,
        post_transform,
        base_values: floats("base_values")?.to_vec(),
        labels,
    };
    raw.build().map_err(|e| format!("{} {:?}: {e}", node.op_type, node.name))
}
