//! From summed leaf weights to the op's outputs, with onnxruntime's semantics.
//!
//! ONNX leaves much unsaid here (what base values mean for a binary classifier whose leaves
//! only vote for one class, what a single-target regressor does with `LOGISTIC`), and models
//! exported by skl2onnx and others rely on what onnxruntime (1.x, `tree_ensemble_aggregator.h`
//! and `ml_common.h`) actually does. This module reproduces that behaviour case by case;
//! the golden fixtures check it against onnxruntime itself.

use super::spec::{Aggregate, EnsembleSpec, PostTransform};

/// Which label a classifier row gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelPick {
    /// `classlabels[i]`.
    Index(usize),
    /// onnxruntime returns a literal 0 or 1 for two-class models whose leaves vote for both
    /// classes; for string labels it is an index.
    Literal(i64),
}

#[derive(Clone, Debug)]
pub struct Finalizer {
    n_trees: usize,
    n_outputs: usize,
    aggregate: Aggregate,
    post: PostTransform,
    base: Vec<f32>,
    classifier: Option<ClassifierInfo>,
}

#[derive(Clone, Copy, Debug)]
struct ClassifierInfo {
    /// Two classes, and all leaf weights are for the same one of them.
    binary_case: bool,
    weights_all_positive: bool,
}

impl Finalizer {
    pub fn new(spec: &EnsembleSpec) -> Finalizer {
        let classifier = spec.labels.as_ref().map(|_| {
            let mut classes = std::collections::BTreeSet::new();
            let mut all_positive = true;
            for tree in &spec.trees {
                for node in &tree.nodes {
                    if let super::spec::Node::Leaf(weights) = node {
                        for &(o, w) in weights {
                            classes.insert(o);
                            all_positive &= w >= 0.0;
                        }
                    }
                }
            }
            ClassifierInfo {
                binary_case: spec.n_outputs == 2 && classes.len() == 1,
                weights_all_positive: all_positive,
            }
        });
        Finalizer {
            n_trees: spec.trees.len(),
            n_outputs: spec.n_outputs,
            aggregate: if classifier.is_some() { Aggregate::Sum } else { spec.aggregate },
            post: spec.post_transform,
            base: spec.base_values.clone(),
            classifier,
        }
    }

    pub fn aggregate(&self) -> Aggregate {
        self.aggregate
    }

    /// The value onnxruntime adds to a single-output sum.
    fn origin(&self) -> f32 {
        if self.base.len() == 1 {
            self.base[0]
        } else {
            0.0
        }
    }

    /// Finish a single-output regressor row.
    #[inline]
    pub fn single(&self, acc: f32, has: bool) -> f32 {
        let score = match self.aggregate {
            Aggregate::Sum => acc + self.origin(),
            Aggregate::Average => acc / self.n_trees as f32 + self.origin(),
            Aggregate::Min | Aggregate::Max => {
                if has {
                    acc + self.origin()
                } else {
                    self.origin()
                }
            }
        };
        // onnxruntime applies no post transform but PROBIT (which we refuse) to a single target.
        score
    }

    /// Finish one row of a multi-output regressor or a classifier: `acc`/`has` hold the
    /// aggregated weights per output and are used as scratch; `z` receives the scores.
    pub fn multi(&self, acc: &mut [f32], has: &mut [bool], z: &mut [f32]) -> Option<LabelPick> {
        debug_assert_eq!(acc.len(), self.n_outputs);
        let use_base = self.base.len() == self.n_outputs;
        let Some(info) = self.classifier else {
            for j in 0..self.n_outputs {
                let base = if use_base { self.base[j] } else { 0.0 };
                acc[j] = match self.aggregate {
                    Aggregate::Sum => acc[j] + base,
                    Aggregate::Average => acc[j] / self.n_trees as f32 + base,
                    Aggregate::Min | Aggregate::Max => base + if has[j] { acc[j] } else { 0.0 },
                };
            }
            write_scores(acc, has, self.post, z);
            return None;
        };

        if self.n_outputs > 2 {
            for k in 0..self.base.len().min(self.n_outputs) {
                if has[k] {
                    acc[k] += self.base[k];
                } else {
                    has[k] = true;
                    acc[k] = self.base[k];
                }
            }
            let mut best: Option<usize> = None;
            for k in 0..self.n_outputs {
                if has[k] && best.is_none_or(|b| acc[k] > acc[b]) {
                    best = Some(k);
                }
            }
            write_scores(acc, has, self.post, z);
            return Some(LabelPick::Index(best.unwrap_or(0)));
        }

        // Two classes.
        let mut second_class = -1;
        let mut two = true;
        match self.base.len() {
            2 => {
                if has[1] {
                    // onnxruntime: base_values[0] is not used; it assumes both are equal.
                    // (Class 0 still reads as 0 unless a leaf voted for it.)
                    acc[1] = self.base[1] + acc[0];
                    acc[0] = -acc[1];
                } else {
                    acc[1] += self.base[1];
                    acc[0] += self.base[0];
                }
            }
            1 => {
                acc[0] += self.base[0];
                two = has[1];
            }
            _ => {
                second_class = 3;
                two = has[1];
            }
        }
        let (s0, h0) = (acc[0], has[0]);
        let (s1, h1) = if two && has[1] { (acc[1], true) } else { (0.0, false) };
        let positive = if h1 {
            s1
        } else if h0 {
            s0
        } else {
            0.0
        };
        let label = if info.binary_case {
            if info.weights_all_positive {
                second_class = if positive > 0.5 { 0 } else { 1 };
            } else {
                second_class = if positive > 0.0 { 2 } else { 3 };
            }
            LabelPick::Index(usize::from(second_class == 0 || second_class == 2))
        } else {
            LabelPick::Literal(i64::from(positive > 0.0))
        };
        if two {
            write_scores(&mut acc[..2], &has[..2], self.post, z);
        } else {
            write_binary_scores(if has[0] { acc[0] } else { 0.0 }, self.post, second_class, z);
        }
        Some(label)
    }
}

/// onnxruntime's `write_scores` for two or more values. An output no leaf voted for is
/// written as 0 before the transform, whatever was added to it (its `ScoreValue` reads as 0
/// while `has_score` is unset).
fn write_scores(scores: &mut [f32], has: &[bool], post: PostTransform, z: &mut [f32]) {
    for (s, h) in scores.iter_mut().zip(has) {
        if !h {
            *s = 0.0;
        }
    }
    match post {
        PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
        PostTransform::Softmax => softmax(scores),
        PostTransform::SoftmaxZero => softmax_zero(scores),
        PostTransform::None => {}
    }
    z[..scores.len()].copy_from_slice(scores);
}

/// onnxruntime's `write_binary_scores`: one score expanded to two columns.
fn write_binary_scores(score: f32, post: PostTransform, second_class: i32, z: &mut [f32]) {
    z[1] = 0.0;
    let logistic_pair = || [logistic(-score), logistic(score)];
    let pair = match second_class {
        0 | 1 => [1.0 - score, score],
        2 if post == PostTransform::Logistic => logistic_pair(),
        2 => [-score, score],
        3 if post == PostTransform::Logistic => logistic_pair(),
        // onnxruntime 1.31 writes the same pair for a positive and a negative winner.
        3 => [-score, score],
        _ => {
            z[0] = score;
            return;
        }
    };
    z[..2].copy_from_slice(&pair);
}

pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + libm::expf(-x.abs()));
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0f32;
    for x in v.iter_mut() {
        *x = libm::expf(*x - max);
        sum += *x;
    }
    v.iter_mut().for_each(|x| *x /= sum);
}

/// Softmax that leaves (near-)zero scores out of the exponentials.
fn softmax_zero(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::MIN, f32::max);
    let exp_neg_max = libm::expf(-max);
    let mut sum = 0.0f32;
    for x in v.iter_mut() {
        if *x > 0.0000001 || *x < -0.0000001 {
            *x = libm::expf(*x - max);
            sum += *x;
        } else {
            *x *= exp_neg_max;
        }
    }
    v.iter_mut().for_each(|x| *x /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_symmetric_and_bounded() {
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(3.0) + logistic(-3.0) - 1.0).abs() < 1e-7);
        assert!(logistic(100.0) <= 1.0 && logistic(-100.0) >= 0.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut v = [1.0f32, 2.0, 3.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
    }
}
