//! Memory layouts the evaluator walks.
//!
//! Every tree gets a *sparse* layout: nodes in pre-order, 16 bytes each, the true child stored
//! right after its parent so one branch in two costs no index load. It handles every ONNX mode
//! and NaN exactly as onnxruntime does.
//!
//! Trees no deeper than [`MAX_PERFECT_DEPTH`] also get a *perfect* layout: the tree padded to a
//! complete binary tree of its depth, stored breadth-first from index 1 (the children of `i` are
//! `2i` and `2i + 1`), every comparison rewritten as `x <= t` (go left). Values and thresholds
//! are compared as order-preserving integer keys ([`order_key`]), so a row descends with
//! `i = 2i + (key(t) < key(x))`: no branches, a fixed number of
//! steps, and several rows walk the same tree in lock-step. Padding a leaf that
//! sits above the bottom level adds nodes with `t = +inf` (always left) whose leaves all repeat
//! the original leaf. The rewrite is exact for every non-NaN `x`; rows with a NaN use the sparse
//! layout.

use super::spec::{EnsembleSpec, Mode, Node, Tree};

/// Deepest tree that gets a perfect layout (1023 branch nodes, 8 KiB).
pub const MAX_PERFECT_DEPTH: u32 = 10;

/// Rows evaluated together, tree after tree, so each tree stays in cache for the whole block
/// (a multiple of the evaluator's lane count).
pub const BLOCK: usize = 120;

/// A branch of a perfect tree: go left when `order_key(x[feature]) <= key`. `offset` is
/// `feature * BLOCK`: where the feature's keys start in a column-major block.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(8))]
pub struct PerfectNode {
    pub key: u32,
    pub offset: u32,
}

/// An integer that orders like the float, for every non-NaN value: `a <= b` exactly when
/// `order_key(a) <= order_key(b)` (compared unsigned, as `u32`). Negative floats have all bits
/// flipped, positive ones the sign bit set; `-0.0` is read as `+0.0` first, since the two
/// compare equal.
#[inline(always)]
pub fn order_key(x: f32) -> u32 {
    let bits = (x + 0.0).to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// A node of a sparse tree. For a branch, the true child is the next node and `next` is the
/// index of the false child; for a leaf (`flags & LEAF`), `next` is the leaf id.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct SparseNode {
    pub threshold: f32,
    pub feature: u32,
    pub next: u32,
    pub flags: u32,
}

pub const LEAF: u32 = 1 << 31;
const MISSING_TRUE: u32 = 1 << 8;

impl SparseNode {
    #[inline(always)]
    pub fn mode(&self) -> Mode {
        match self.flags & 0xff {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            _ => Mode::Neq,
        }
    }

    #[inline(always)]
    pub fn missing_tracks_true(&self) -> bool {
        self.flags & MISSING_TRUE != 0
    }
}

fn mode_bits(mode: Mode) -> u32 {
    match mode {
        Mode::Leq => 0,
        Mode::Lt => 1,
        Mode::Gte => 2,
        Mode::Gt => 3,
        Mode::Eq => 4,
        Mode::Neq => 5,
    }
}

/// Where one tree's perfect layout lives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PerfectTree {
    pub depth: u32,
    /// Offset of the tree's `2^depth` entries in [`Layout::perfect_nodes`]: branches at
    /// `1..2^depth`, entry 0 unused.
    pub nodes: u32,
    /// Offset of the tree's `2^depth` leaf ids in [`Layout::perfect_leaves`].
    pub leaves: u32,
}

/// Leaf weights, flattened: leaf `l` owns entries `start[l]..start[l + 1]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeafTable {
    pub start: Vec<u32>,
    pub output: Vec<u32>,
    pub weight: Vec<f32>,
}

impl LeafTable {
    #[inline(always)]
    pub fn weights(&self, leaf: u32) -> impl Iterator<Item = (usize, f32)> + '_ {
        let (a, b) = (self.start[leaf as usize] as usize, self.start[leaf as usize + 1] as usize);
        self.output[a..b].iter().map(|&o| o as usize).zip(self.weight[a..b].iter().copied())
    }
}

/// All trees of an ensemble, laid out for evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Root of each tree in `sparse`.
    pub roots: Vec<u32>,
    pub sparse: Vec<SparseNode>,
    /// Perfect layout of each tree, when it has one.
    pub perfect: Vec<Option<PerfectTree>>,
    pub perfect_nodes: Vec<PerfectNode>,
    pub perfect_leaves: Vec<u32>,
    pub leaves: LeafTable,
    /// When every leaf carries exactly one weight for output 0 of a single-output ensemble:
    /// that weight by leaf id, and by position in `perfect_leaves` (one load less per tree).
    pub single: Option<(Vec<f32>, Vec<f32>)>,
}

impl Layout {
    pub fn new(spec: &EnsembleSpec) -> Layout {
        let mut layout = Layout {
            roots: Vec::with_capacity(spec.trees.len()),
            sparse: Vec::new(),
            perfect: Vec::with_capacity(spec.trees.len()),
            perfect_nodes: Vec::new(),
            perfect_leaves: Vec::new(),
            leaves: LeafTable { start: vec![0], ..LeafTable::default() },
            single: None,
        };
        for tree in &spec.trees {
            // Leaf ids are global: assign them in node order, tree after tree.
            let first_leaf = layout.leaves.start.len() as u32 - 1;
            let mut leaf_ids = vec![u32::MAX; tree.nodes.len()];
            for (i, node) in tree.nodes.iter().enumerate() {
                if let Node::Leaf(weights) = node {
                    leaf_ids[i] = layout.leaves.start.len() as u32 - 1;
                    for &(o, w) in weights {
                        layout.leaves.output.push(o);
                        layout.leaves.weight.push(w);
                    }
                    layout.leaves.start.push(layout.leaves.output.len() as u32);
                }
            }
            debug_assert!(leaf_ids.iter().all(|&l| l == u32::MAX || l >= first_leaf));
            layout.roots.push(layout.sparse.len() as u32);
            layout.push_sparse(tree, &leaf_ids);
            let perfect = layout.push_perfect(tree, &leaf_ids);
            layout.perfect.push(perfect);
        }
        let n_leaves = layout.leaves.start.len() - 1;
        let single =
            spec.n_outputs == 1 && (0..n_leaves).all(|l| layout.leaves.start[l + 1] - layout.leaves.start[l] == 1);
        if single {
            let by_leaf = layout.leaves.weight.clone();
            let by_slot = layout.perfect_leaves.iter().map(|&l| by_leaf[l as usize]).collect();
            layout.single = Some((by_leaf, by_slot));
        }
        layout
    }

    /// Pre-order, true child first; iterative so that degenerate deep trees cannot overflow
    /// the stack.
    fn push_sparse(&mut self, tree: &Tree, leaf_ids: &[u32]) {
        // (node id, index of the parent whose `next` must point here, if this is a false child)
        let mut stack: Vec<(u32, Option<usize>)> = vec![(0, None)];
        while let Some((id, patch)) = stack.pop() {
            let at = self.sparse.len();
            if let Some(parent) = patch {
                self.sparse[parent].next = at as u32;
            }
            match tree.nodes[id as usize] {
                Node::Leaf(_) => self.sparse.push(SparseNode {
                    threshold: 0.0,
                    feature: 0,
                    next: leaf_ids[id as usize],
                    flags: LEAF,
                }),
                Node::Branch { feature, threshold, mode, missing_tracks_true, true_child, false_child } => {
                    self.sparse.push(SparseNode {
                        threshold,
                        feature,
                        next: u32::MAX,
                        flags: mode_bits(mode) | if missing_tracks_true { MISSING_TRUE } else { 0 },
                    });
                    // Popped in reverse: the true child is laid out next.
                    stack.push((false_child, Some(at)));
                    stack.push((true_child, None));
                }
            }
        }
    }

    fn push_perfect(&mut self, tree: &Tree, leaf_ids: &[u32]) -> Option<PerfectTree> {
        let depth = depth(tree)?;
        if depth > MAX_PERFECT_DEPTH || !perfect_eligible(tree) {
            return None;
        }
        let placed =
            PerfectTree { depth, nodes: self.perfect_nodes.len() as u32, leaves: self.perfect_leaves.len() as u32 };
        let n_leaves = 1usize << depth;
        let mut nodes = vec![PerfectNode { key: order_key(f32::INFINITY), offset: 0 }; n_leaves];
        let mut leaves = vec![u32::MAX; n_leaves];
        fill(tree, leaf_ids, 0, 1, &mut nodes, &mut leaves);
        debug_assert!(leaves.iter().all(|&l| l != u32::MAX));
        self.perfect_nodes.extend(nodes);
        self.perfect_leaves.extend(leaves);
        Some(placed)
    }
}

/// Depth of the deepest leaf (a lone leaf has depth 0), or `None` for absurdly deep trees.
fn depth(tree: &Tree) -> Option<u32> {
    let mut deepest = 0u32;
    let mut stack = vec![(0u32, 0u32)];
    while let Some((id, d)) = stack.pop() {
        if d > 63 {
            return None;
        }
        match tree.nodes[id as usize] {
            Node::Leaf(_) => deepest = deepest.max(d),
            Node::Branch { true_child, false_child, .. } => {
                stack.push((true_child, d + 1));
                stack.push((false_child, d + 1));
            }
        }
    }
    Some(deepest)
}

/// The `x <= t` form of a branch: `(threshold, left child, right child)`, or `None` when the
/// rewrite would not be exact for every non-NaN `x`.
fn canonical(node: &Node) -> Option<(f32, u32, u32)> {
    let Node::Branch { threshold: t, mode, true_child, false_child, .. } = *node else {
        return None;
    };
    if t.is_nan() {
        return None;
    }
    match mode {
        Mode::Leq => Some((t, true_child, false_child)),
        // x < t  <=>  x <= next_down(t), for finite x and t > -inf.
        Mode::Lt if t > f32::NEG_INFINITY => Some((t.next_down(), true_child, false_child)),
        // x > t  <=>  !(x <= t)
        Mode::Gt => Some((t, false_child, true_child)),
        // x >= t  <=>  !(x < t)  <=>  !(x <= next_down(t))
        Mode::Gte if t > f32::NEG_INFINITY => Some((t.next_down(), false_child, true_child)),
        _ => None,
    }
}

fn perfect_eligible(tree: &Tree) -> bool {
    tree.nodes.iter().all(|n| matches!(n, Node::Leaf(_)) || canonical(n).is_some())
}

/// Place node `id` at position `pos` (1-based, breadth-first); positions from `nodes.len()` on
/// are leaf slots.
fn fill(tree: &Tree, leaf_ids: &[u32], id: u32, pos: usize, nodes: &mut [PerfectNode], leaves: &mut [u32]) {
    let n_leaves = nodes.len();
    if pos >= n_leaves {
        leaves[pos - n_leaves] = leaf_ids[id as usize];
        return;
    }
    match tree.nodes[id as usize] {
        // A leaf above the bottom level: an always-left padding node over two copies of it.
        Node::Leaf(_) => {
            nodes[pos] = PerfectNode { key: order_key(f32::INFINITY), offset: 0 };
            fill(tree, leaf_ids, id, 2 * pos, nodes, leaves);
            fill(tree, leaf_ids, id, 2 * pos + 1, nodes, leaves);
        }
        Node::Branch { feature, .. } => {
            let (threshold, left, right) = canonical(&tree.nodes[id as usize]).expect("checked by perfect_eligible");
            nodes[pos] = PerfectNode { key: order_key(threshold), offset: feature * BLOCK as u32 };
            fill(tree, leaf_ids, left, 2 * pos, nodes, leaves);
            fill(tree, leaf_ids, right, 2 * pos + 1, nodes, leaves);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::order_key;

    #[test]
    fn order_keys_order_like_floats() {
        let v = [f32::NEG_INFINITY, -3.5, -1e-40, -0.0, 0.0, 1e-40, 1.0, 7.25, f32::MAX, f32::INFINITY];
        for a in v {
            for b in v {
                assert_eq!(a <= b, order_key(a) <= order_key(b), "{a} <= {b}");
            }
        }
    }
}
