//! The tree ensemble as ONNX describes it, validated: trees of nodes by id, leaf weights, and
//! what happens after the trees (aggregation, base values, post transform, class labels).
//!
//! This is the meeting point of the ONNX attribute lists (`nodes_*`, `class_*`/`target_*`) and
//! the fast layouts in [`super::layout`]. Everything a malformed model could get wrong (a child
//! id that does not exist, a cycle, a weight for a class that is not there) is refused here with
//! the attribute named, so the evaluator can rely on well-formed trees.

use std::collections::BTreeMap;
use std::fmt;

/// How a branch node compares the feature value `x` with its threshold `t` to take its
/// true branch (ONNX `nodes_modes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Option<Mode>> {
        Some(match s {
            "BRANCH_LEQ" => Some(Mode::Leq),
            "BRANCH_LT" => Some(Mode::Lt),
            "BRANCH_GTE" => Some(Mode::Gte),
            "BRANCH_GT" => Some(Mode::Gt),
            "BRANCH_EQ" => Some(Mode::Eq),
            "BRANCH_NEQ" => Some(Mode::Neq),
            "LEAF" => None,
            _ => return None,
        })
    }

    /// Whether `x` takes the true branch, exactly as onnxruntime decides it.
    #[inline(always)]
    pub fn takes_true(self, x: f32, t: f32, missing_tracks_true: bool) -> bool {
        let hit = match self {
            Mode::Leq => x <= t,
            Mode::Lt => x < t,
            Mode::Gte => x >= t,
            Mode::Gt => x > t,
            Mode::Eq => x == t,
            Mode::Neq => x != t,
        };
        hit || (missing_tracks_true && x.is_nan())
    }
}

/// How leaf values of different trees are combined (ONNX `aggregate_function`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Aggregate {
    #[default]
    Sum,
    Average,
    Min,
    Max,
}

/// What is applied to the aggregated scores (ONNX `post_transform`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PostTransform {
    #[default]
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
}

impl PostTransform {
    /// `PROBIT` is refused: onnxruntime's probit approximation cancels badly near 0.5 and we
    /// cannot reproduce its results to 1e-5, and a model we would score differently from
    /// onnxruntime must not load.
    pub fn parse(s: &str) -> Result<PostTransform, String> {
        Ok(match s {
            "NONE" => PostTransform::None,
            "SOFTMAX" => PostTransform::Softmax,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => return Err("post_transform PROBIT is not supported".into()),
            other => return Err(format!("unknown post_transform {other:?}")),
        })
    }
}

/// Class labels of a `TreeEnsembleClassifier`.
#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Labels {
    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One node of one tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Branch {
        feature: u32,
        threshold: f32,
        mode: Mode,
        missing_tracks_true: bool,
        true_child: u32,
        false_child: u32,
    },
    /// `(output index, weight)` pairs, in the order the model lists them.
    Leaf(Vec<(u32, f32)>),
}

/// One tree: nodes indexed by their node id; the root is node 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// A whole ensemble, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleSpec {
    /// Trees in ascending tree id order (the order onnxruntime sums them in).
    pub trees: Vec<Tree>,
    /// Number of targets (regressor) or classes (classifier).
    pub n_outputs: usize,
    pub aggregate: Aggregate,
    pub post_transform: PostTransform,
    pub base_values: Vec<f32>,
    /// `Some` for a classifier.
    pub labels: Option<Labels>,
}

/// A model the evaluator refuses, with the attribute at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    pub attribute: &'static str,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attribute `{}`: {}", self.attribute, self.message)
    }
}

impl std::error::Error for SpecError {}

fn err(attribute: &'static str, message: impl Into<String>) -> SpecError {
    SpecError { attribute, message: message.into() }
}

/// The attribute lists of an ONNX tree ensemble node, before validation. Field names follow the
/// ONNX attributes; `leaf_*` are `class_*` for a classifier and `target_*` for a regressor.
#[derive(Clone, Debug, Default)]
pub struct RawEnsemble<'a> {
    pub nodes_treeids: &'a [i64],
    pub nodes_nodeids: &'a [i64],
    pub nodes_featureids: &'a [i64],
    pub nodes_modes: Vec<&'a str>,
    pub nodes_values: &'a [f32],
    pub nodes_truenodeids: &'a [i64],
    pub nodes_falsenodeids: &'a [i64],
    pub nodes_missing_value_tracks_true: Option<&'a [i64]>,
    pub leaf_treeids: &'a [i64],
    pub leaf_nodeids: &'a [i64],
    pub leaf_ids: &'a [i64],
    pub leaf_weights: &'a [f32],
    pub n_outputs: usize,
    pub aggregate: Aggregate,
    pub post_transform: PostTransform,
    pub base_values: Vec<f32>,
    pub labels: Option<Labels>,
}

impl RawEnsemble<'_> {
    /// Validate the attribute lists and build the trees.
    pub fn build(&self) -> Result<EnsembleSpec, SpecError> {
        let n = self.nodes_nodeids.len();
        if n == 0 {
            return Err(err("nodes_nodeids", "the ensemble has no nodes"));
        }
        let same_len = |name: &'static str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(err(name, format!("has {len} entries, expected {n} (one per node)")))
            }
        };
        same_len("nodes_treeids", self.nodes_treeids.len())?;
        same_len("nodes_featureids", self.nodes_featureids.len())?;
        same_len("nodes_modes", self.nodes_modes.len())?;
        same_len("nodes_values", self.nodes_values.len())?;
        same_len("nodes_truenodeids", self.nodes_truenodeids.len())?;
        same_len("nodes_falsenodeids", self.nodes_falsenodeids.len())?;
        if let Some(m) = self.nodes_missing_value_tracks_true {
            same_len("nodes_missing_value_tracks_true", m.len())?;
        }
        let leaf_name = if self.labels.is_some() { "class_ids" } else { "target_ids" };
        let w = self.leaf_ids.len();
        for (name, len) in [
            ("leaf tree ids", self.leaf_treeids.len()),
            ("leaf node ids", self.leaf_nodeids.len()),
            ("leaf weights", self.leaf_weights.len()),
        ] {
            if len != w {
                return Err(err(leaf_name, format!("{name} has {len} entries, expected {w}")));
            }
        }
        if self.n_outputs == 0 {
            return Err(err(
                if self.labels.is_some() { "classlabels_int64s" } else { "n_targets" },
                "must be at least 1",
            ));
        }
        if let Some(labels) = &self.labels {
            if labels.len() < 2 {
                return Err(err("classlabels_int64s", "a classifier needs at least 2 classes"));
            }
        }
        if !self.base_values.is_empty() && self.base_values.len() != self.n_outputs && self.base_values.len() != 1 {
            return Err(err(
                "base_values",
                format!("has {} entries, expected 0, 1 or {}", self.base_values.len(), self.n_outputs),
            ));
        }

        // Group nodes by tree id, in ascending order, as onnxruntime does.
        let mut by_tree: BTreeMap<i64, BTreeMap<i64, usize>> = BTreeMap::new();
        for i in 0..n {
            let nodes = by_tree.entry(self.nodes_treeids[i]).or_default();
            if nodes.insert(self.nodes_nodeids[i], i).is_some() {
                return Err(err(
                    "nodes_nodeids",
                    format!("node {} appears twice in tree {}", self.nodes_nodeids[i], self.nodes_treeids[i]),
                ));
            }
        }
        let mut trees = Vec::with_capacity(by_tree.len());
        let mut tree_index: BTreeMap<i64, usize> = BTreeMap::new();
        for (tree_id, nodes) in &by_tree {
            let count = nodes.len();
            // Node ids must be 0..count so that they index the node vector directly.
            if nodes.keys().copied().ne(0..count as i64) {
                return Err(err(
                    "nodes_nodeids",
                    format!("tree {tree_id}: node ids must be 0, 1, ... {} without gaps", count - 1),
                ));
            }
            let mut tree_nodes = Vec::with_capacity(count);
            for &i in nodes.values() {
                let mode = Mode::parse(self.nodes_modes[i])
                    .ok_or_else(|| err("nodes_modes", format!("unknown mode {:?}", self.nodes_modes[i])))?;
                tree_nodes.push(match mode {
                    None => Node::Leaf(Vec::new()),
                    Some(mode) => {
                        let child = |name: &'static str, v: i64| {
                            if v >= 0 && (v as usize) < count {
                                Ok(v as u32)
                            } else {
                                Err(err(name, format!("tree {tree_id}: child {v} does not exist")))
                            }
                        };
                        let feature = self.nodes_featureids[i];
                        if !(0..=u32::MAX as i64).contains(&feature) {
                            return Err(err("nodes_featureids", format!("invalid feature {feature}")));
                        }
                        Node::Branch {
                            feature: feature as u32,
                            threshold: self.nodes_values[i],
                            mode,
                            missing_tracks_true: self.nodes_missing_value_tracks_true.is_some_and(|m| m[i] != 0),
                            true_child: child("nodes_truenodeids", self.nodes_truenodeids[i])?,
                            false_child: child("nodes_falsenodeids", self.nodes_falsenodeids[i])?,
                        }
                    }
                });
            }
            tree_index.insert(*tree_id, trees.len());
            trees.push(Tree { nodes: tree_nodes });
        }

        for k in 0..w {
            let tree = *tree_index.get(&self.leaf_treeids[k]).ok_or_else(|| {
                err(leaf_name, format!("weight {k} names tree {} which has no nodes", self.leaf_treeids[k]))
            })?;
            let node = self.leaf_nodeids[k];
            let target = self.leaf_ids[k];
            if !(0..self.n_outputs as i64).contains(&target) {
                return Err(err(
                    leaf_name,
                    format!("weight {k} is for output {target}, but there are {}", self.n_outputs),
                ));
            }
            let nodes = &mut trees[tree].nodes;
            match usize::try_from(node).ok().and_then(|i| nodes.get_mut(i)) {
                Some(Node::Leaf(weights)) => weights.push((target as u32, self.leaf_weights[k])),
                // onnxruntime only reads weights at leaves; a weight on a branch has no effect.
                Some(Node::Branch { .. }) => {}
                None => {
                    return Err(err(
                        leaf_name,
                        format!("weight {k} names node {node} which tree {} does not have", self.leaf_treeids[k]),
                    ))
                }
            }
        }

        for (t, tree) in trees.iter().enumerate() {
            check_is_tree(tree).map_err(|m| err("nodes_truenodeids", format!("tree {t}: {m}")))?;
        }

        Ok(EnsembleSpec {
            trees,
            n_outputs: self.n_outputs,
            aggregate: self.aggregate,
            post_transform: self.post_transform,
            base_values: self.base_values.clone(),
            labels: self.labels.clone(),
        })
    }
}

/// Every node reachable from the root is reached once: no cycles, no shared subtrees.
fn check_is_tree(tree: &Tree) -> Result<(), String> {
    let mut seen = vec![false; tree.nodes.len()];
    let mut stack = vec![0u32];
    while let Some(i) = stack.pop() {
        let i = i as usize;
        if std::mem::replace(&mut seen[i], true) {
            return Err(format!("node {i} is reached twice (a cycle or a shared subtree)"));
        }
        if let Node::Branch { true_child, false_child, .. } = tree.nodes[i] {
            stack.push(true_child);
            stack.push(false_child);
        }
    }
    Ok(())
}

impl EnsembleSpec {
    /// Smallest input width the ensemble can read: one more than the largest feature index
    /// used by a reachable branch.
    pub fn min_features(&self) -> usize {
        self.trees
            .iter()
            .flat_map(|t| t.nodes.iter())
            .filter_map(|n| match n {
                Node::Branch { feature, .. } => Some(*feature as usize + 1),
                Node::Leaf(_) => None,
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump<'a>(modes: Vec<&'a str>) -> RawEnsemble<'a> {
        RawEnsemble {
            nodes_treeids: &[0, 0, 0],
            nodes_nodeids: &[0, 1, 2],
            nodes_featureids: &[1, 0, 0],
            nodes_modes: modes,
            nodes_values: &[0.5, 0.0, 0.0],
            nodes_truenodeids: &[1, 0, 0],
            nodes_falsenodeids: &[2, 0, 0],
            leaf_treeids: &[0, 0],
            leaf_nodeids: &[1, 2],
            leaf_ids: &[0, 0],
            leaf_weights: &[1.0, 2.0],
            n_outputs: 1,
            aggregate: Aggregate::Sum,
            post_transform: PostTransform::None,
            ..Default::default()
        }
    }

    #[test]
    fn builds_a_stump() {
        let spec = stump(vec!["BRANCH_LEQ", "LEAF", "LEAF"]).build().unwrap();
        assert_eq!(spec.trees.len(), 1);
        assert_eq!(spec.min_features(), 2);
        assert_eq!(spec.trees[0].nodes[2], Node::Leaf(vec![(0, 2.0)]));
    }

    #[test]
    fn refuses_unknown_mode_and_bad_children() {
        let e = stump(vec!["BRANCH_XX", "LEAF", "LEAF"]).build().unwrap_err();
        assert_eq!(e.attribute, "nodes_modes");
        let mut raw = stump(vec!["BRANCH_LEQ", "LEAF", "LEAF"]);
        raw.nodes_falsenodeids = &[7, 0, 0];
        let e = raw.build().unwrap_err();
        assert_eq!(e.attribute, "nodes_falsenodeids");
        assert!(e.to_string().contains("child 7 does not exist"), "{e}");
    }

    #[test]
    fn refuses_cycles_and_out_of_range_targets() {
        let mut raw = stump(vec!["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"]);
        raw.nodes_truenodeids = &[1, 0, 0];
        raw.nodes_falsenodeids = &[2, 2, 0];
        assert!(raw.build().unwrap_err().message.contains("reached twice"));
        let mut raw = stump(vec!["BRANCH_LEQ", "LEAF", "LEAF"]);
        raw.leaf_ids = &[0, 3];
        assert!(raw.build().unwrap_err().message.contains("output 3"));
    }

    #[test]
    fn modes_follow_onnxruntime_for_nan() {
        assert!(!Mode::Leq.takes_true(f32::NAN, 1.0, false));
        assert!(Mode::Leq.takes_true(f32::NAN, 1.0, true));
        assert!(Mode::Neq.takes_true(f32::NAN, 1.0, false));
        assert!(Mode::Gte.takes_true(1.0, 1.0, false));
        assert!(!Mode::Gt.takes_true(1.0, 1.0, false));
    }
}
