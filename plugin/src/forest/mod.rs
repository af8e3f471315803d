//! Our own evaluation of ONNX `TreeEnsembleClassifier` and `TreeEnsembleRegressor`.
//!
//! tract 0.23 cannot serve forests: its classifier walks every earlier leaf to find one and
//! builds an error value at every leaf visit (80-900 rows/s for 100 trees with backtraces on),
//! reads `BRANCH_GTE` nodes as leaves, labels binary models wrongly, and has no regressor at all.
//! This module replaces both ops: [`Forest`] is built once from the node's attributes
//! ([`spec`]), laid out for speed ([`layout`]), evaluated rows-in-blocks ([`Forest::eval`]) and
//! finished with onnxruntime's exact semantics ([`finalize`]). [`tract_op`] registers it into
//! tract's ONNX op registry so any graph around the trees (score arithmetic, a sigmoid) still
//! runs in tract.
//!
//! Results equal onnxruntime's: weights are summed in `f32`, tree after tree in ascending tree
//! id, and comparisons are done in `f32`, as onnxruntime does for float models.

pub mod finalize;
pub mod layout;
pub mod spec;
pub mod tract_op;

use finalize::{Finalizer, LabelPick};
use layout::{Layout, PerfectNode, SparseNode, LEAF};
use spec::{Aggregate, EnsembleSpec, Labels};

/// Rows evaluated together, tree after tree, so each tree stays in cache for the whole block.
const BLOCK: usize = 128;
/// Rows walking one perfect tree in lock-step.
const LANES: usize = 8;

/// A compiled tree ensemble.
#[derive(Clone, Debug)]
pub struct Forest {
    layout: Layout,
    finalizer: Finalizer,
    n_outputs: usize,
    min_features: usize,
    labels: Option<Labels>,
}

/// What a caller gets back per row.
pub struct Outputs<'a> {
    /// `n_rows x n_outputs` scores (probabilities for a classifier).
    pub scores: &'a mut [f32],
    /// One label per row, for classifiers.
    pub labels: Option<&'a mut [LabelPick]>,
}

impl Forest {
    pub fn new(spec: &EnsembleSpec) -> Forest {
        Forest {
            layout: Layout::new(spec),
            finalizer: Finalizer::new(spec),
            n_outputs: spec.n_outputs,
            min_features: spec.min_features(),
            labels: spec.labels.clone(),
        }
    }

    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// The narrowest input rows can be.
    pub fn min_features(&self) -> usize {
        self.min_features
    }

    pub fn labels(&self) -> Option<&Labels> {
        self.labels.as_ref()
    }

    pub fn n_trees(&self) -> usize {
        self.layout.roots.len()
    }

    /// How many trees have the branch-free perfect layout.
    pub fn n_perfect_trees(&self) -> usize {
        self.layout.perfect.iter().filter(|p| p.is_some()).count()
    }

    /// Evaluate `x` (`n_rows` rows of `width` features, row-major).
    ///
    /// # Panics
    /// If `width < self.min_features()` or the output slices are too short: callers (the tract
    /// op) check shapes first.
    pub fn eval(&self, x: &[f32], width: usize, out: Outputs<'_>) {
        assert!(
            width >= self.min_features,
            "input has {width} features, trees read {}",
            self.min_features
        );
        let n_rows = if width == 0 { 0 } else { x.len() / width };
        assert!(out.scores.len() >= n_rows * self.n_outputs);
        let single = self.layout.single.is_some()
            && self.labels.is_none()
            && matches!(
                self.finalizer.aggregate(),
                Aggregate::Sum | Aggregate::Average
            );
        let Outputs { scores, mut labels } = out;
        let mut acc = vec![0f32; BLOCK * self.n_outputs];
        let mut has = vec![false; BLOCK * self.n_outputs];
        let mut start = 0;
        while start < n_rows {
            let rows = BLOCK.min(n_rows - start);
            let block = &x[start * width..(start + rows) * width];
            if single {
                self.block_single(block, width, rows, &mut acc[..rows]);
                for r in 0..rows {
                    scores[start + r] = self.finalizer.single(acc[r], true);
                }
            } else {
                let n = self.n_outputs;
                self.block_general(
                    block,
                    width,
                    rows,
                    &mut acc[..rows * n],
                    &mut has[..rows * n],
                );
                for r in 0..rows {
                    let row = r * n..(r + 1) * n;
                    let z = &mut scores[(start + r) * n..(start + r + 1) * n];
                    if self.labels.is_none() && n == 1 {
                        z[0] = self.finalizer.single(acc[r], has[r]);
                        continue;
                    }
                    let pick = self
                        .finalizer
                        .multi(&mut acc[row.clone()], &mut has[row], z);
                    if let (Some(labels), Some(pick)) = (labels.as_deref_mut(), pick) {
                        labels[start + r] = pick;
                    }
                }
            }
            start += rows;
        }
    }

    /// Single-output sums: `acc[r]` is the sum of leaf weights for row `r`.
    fn block_single(&self, x: &[f32], width: usize, rows: usize, acc: &mut [f32]) {
        let (by_leaf, by_slot) = self.layout.single.as_ref().expect("single layout");
        acc.fill(0.0);
        let any_nan = x.iter().any(|v| v.is_nan());
        for (t, &root) in self.layout.roots.iter().enumerate() {
            match self.layout.perfect[t] {
                Some(p) if !any_nan => {
                    let n_branches = (1usize << p.depth) - 1;
                    let nodes = &self.layout.perfect_nodes[p.nodes as usize..][..n_branches];
                    let values = &by_slot[p.leaves as usize..][..n_branches + 1];
                    let mut r = 0;
                    while r + LANES <= rows {
                        let idx = walk_perfect::<LANES>(nodes, p.depth, x, width, r);
                        for l in 0..LANES {
                            acc[r + l] += values[idx[l] - n_branches];
                        }
                        r += LANES;
                    }
                    while r < rows {
                        let idx = walk_perfect::<1>(nodes, p.depth, x, width, r);
                        acc[r] += values[idx[0] - n_branches];
                        r += 1;
                    }
                }
                _ => {
                    for r in 0..rows {
                        let leaf = walk_sparse(&self.layout.sparse, root, &x[r * width..][..width]);
                        acc[r] += by_leaf[leaf as usize];
                    }
                }
            }
        }
    }

    /// Any ensemble: per row and output, the aggregated weight and whether any leaf voted.
    fn block_general(
        &self,
        x: &[f32],
        width: usize,
        rows: usize,
        acc: &mut [f32],
        has: &mut [bool],
    ) {
        acc.fill(0.0);
        has.fill(false);
        let n = self.n_outputs;
        let aggregate = self.finalizer.aggregate();
        let leaves = &self.layout.leaves;
        let mut vote = |r: usize, leaf: u32| {
            for (o, w) in leaves.weights(leaf) {
                let (a, h) = (&mut acc[r * n + o], &mut has[r * n + o]);
                *a = match aggregate {
                    Aggregate::Sum | Aggregate::Average => *a + w,
                    Aggregate::Min if *h && *a <= w => *a,
                    Aggregate::Max if *h && *a >= w => *a,
                    Aggregate::Min | Aggregate::Max => w,
                };
                *h = true;
                // onnxruntime reads only the first weight of a leaf of a single-output model.
                if n == 1 {
                    break;
                }
            }
        };
        let any_nan = x.iter().any(|v| v.is_nan());
        for (t, &root) in self.layout.roots.iter().enumerate() {
            match self.layout.perfect[t] {
                Some(p) if !any_nan => {
                    let n_branches = (1usize << p.depth) - 1;
                    let nodes = &self.layout.perfect_nodes[p.nodes as usize..][..n_branches];
                    let slots = &self.layout.perfect_leaves[p.leaves as usize..][..n_branches + 1];
                    let mut r = 0;
                    while r + LANES <= rows {
                        let idx = walk_perfect::<LANES>(nodes, p.depth, x, width, r);
                        for l in 0..LANES {
                            vote(r + l, slots[idx[l] - n_branches]);
                        }
                        r += LANES;
                    }
                    while r < rows {
                        let idx = walk_perfect::<1>(nodes, p.depth, x, width, r);
                        vote(r, slots[idx[0] - n_branches]);
                        r += 1;
                    }
                }
                _ => {
                    for r in 0..rows {
                        vote(
                            r,
                            walk_sparse(&self.layout.sparse, root, &x[r * width..][..width]),
                        );
                    }
                }
            }
        }
    }
}

/// Walk `L` consecutive rows starting at `first` down a perfect tree; returns each row's final
/// position (`>= 2^depth - 1`, a leaf slot).
#[inline(always)]
fn walk_perfect<const L: usize>(
    nodes: &[PerfectNode],
    depth: u32,
    x: &[f32],
    width: usize,
    first: usize,
) -> [usize; L] {
    let mut idx = [0usize; L];
    let mut base = [0usize; L];
    for (l, b) in base.iter_mut().enumerate() {
        *b = (first + l) * width;
    }
    for _ in 0..depth {
        for l in 0..L {
            let node = nodes[idx[l]];
            let v = x[base[l] + node.feature as usize];
            idx[l] = 2 * idx[l] + 1 + usize::from(!(v <= node.threshold));
        }
    }
    idx
}

/// Walk one row down a sparse tree; returns the leaf id.
#[inline(always)]
fn walk_sparse(nodes: &[SparseNode], root: u32, row: &[f32]) -> u32 {
    let mut i = root as usize;
    loop {
        let node = nodes[i];
        if node.flags & LEAF != 0 {
            return node.next;
        }
        let v = row[node.feature as usize];
        i = if node
            .mode()
            .takes_true(v, node.threshold, node.missing_tracks_true())
        {
            i + 1
        } else {
            node.next as usize
        };
    }
}

#[cfg(test)]
mod tests;
