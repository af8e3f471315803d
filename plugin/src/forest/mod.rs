//! Our own evaluation of ONNX `TreeEnsembleClassifier` and `TreeEnsembleRegressor`.
//!
//! tract 0.23 cannot serve forests: its classifier walks every earlier leaf to find one and
//! builds an error value at every leaf visit (80-900 rows/s for 100 trees with backtraces on),
//! reads `BRANCH_GTE` nodes as leaves, labels binary models wrongly, and has no regressor at all.
//! This module replaces both ops: [`Forest`] is built once from the node's attributes
//! ([`onnx`], checked by [`spec`]), laid out for speed ([`layout`]), evaluated rows-in-blocks ([`Forest::eval`]) and
//! finished with onnxruntime's exact semantics ([`finalize`]). [`tract_op`] registers it into
//! tract's ONNX op registry so any graph around the trees (score arithmetic, a sigmoid) still
//! runs in tract.
//!
//! Results equal onnxruntime's: weights are summed in `f32`, tree after tree in ascending tree
//! id, and comparisons are done in `f32`, as onnxruntime does for float models.

pub mod finalize;
pub mod layout;
pub mod onnx;
pub mod spec;
#[cfg(feature = "tract")]
pub mod tract_op;

use finalize::{Finalizer, LabelPick};
use layout::{Layout, PerfectNode, SparseNode, BLOCK, LEAF};
use spec::{Aggregate, EnsembleSpec, Labels};

/// Rows walking one perfect tree in lock-step: as many as the target keeps in registers. On
/// x86_64 ten, with the walk written out ([`walk_lanes_x86`]); under WASM six, since Cranelift
/// computes each lane's compare only at the end of the level and spills beyond six lanes (six
/// ran about 3.5 % faster than ten end to end, the median of 300 alternated pairs).
#[cfg(not(target_arch = "wasm32"))]
const LANES: usize = 10;
#[cfg(target_arch = "wasm32")]
const LANES: usize = 6;

/// A compiled tree ensemble.
#[derive(Clone, Debug)]
pub struct Forest {
    layout: Layout,
    finalizer: Finalizer,
    n_outputs: usize,
    min_features: usize,
    labels: Option<Labels>,
    /// Whether any tree has a perfect layout (then blocks are converted to order keys).
    has_perfect: bool,
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
        let layout = Layout::new(spec);
        Forest {
            has_perfect: layout.perfect.iter().any(Option::is_some),

            layout,
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
        assert!(width >= self.min_features, "input has {width} features, trees read {}", self.min_features);
        let n_rows = x.len().checked_div(width).unwrap_or(0);
        assert!(out.scores.len() >= n_rows * self.n_outputs);
        let single = self.layout.single.is_some()
            && self.labels.is_none()
            && matches!(self.finalizer.aggregate(), Aggregate::Sum | Aggregate::Average);
        let Outputs { scores, mut labels } = out;
        let mut acc = vec![0f32; BLOCK * self.n_outputs];
        let mut has = vec![false; BLOCK * self.n_outputs];
        // Order keys of the block, column-major (`keys[feature * BLOCK + row]`), so the rows
        // walking a tree together read one feature at consecutive addresses.
        let mut keys = vec![0u32; BLOCK * width];
        let mut start = 0;
        while start < n_rows {
            let rows = BLOCK.min(n_rows - start);
            let block = &x[start * width..(start + rows) * width];
            if self.has_perfect {
                for (r, row) in block.chunks_exact(width).enumerate() {
                    for (f, &v) in row.iter().enumerate() {
                        keys[f * BLOCK + r] = layout::order_key(v);
                    }
                }
            }
            if single {
                self.block_single(block, &keys, width, &mut acc[..rows]);
                for r in 0..rows {
                    scores[start + r] = self.finalizer.single(acc[r], true);
                }
            } else {
                let n = self.n_outputs;
                self.block_general(block, &keys, width, &mut acc[..rows * n], &mut has[..rows * n]);
                for r in 0..rows {
                    let row = r * n..(r + 1) * n;
                    let z = &mut scores[(start + r) * n..(start + r + 1) * n];
                    if self.labels.is_none() && n == 1 {
                        z[0] = self.finalizer.single(acc[r], has[r]);
                        continue;
                    }
                    let pick = self.finalizer.multi(&mut acc[row.clone()], &mut has[row], z);
                    if let (Some(labels), Some(pick)) = (labels.as_deref_mut(), pick) {
                        labels[start + r] = pick;
                    }
                }
            }
            start += rows;
        }
    }

    /// Single-output sums: `acc[r]` is the sum of leaf weights for row `r`.
    fn block_single(&self, x: &[f32], keys: &[u32], width: usize, acc: &mut [f32]) {
        let (by_leaf, by_slot) = self.layout.single.as_ref().expect("single layout");
        acc.fill(0.0);
        self.visit_leaves(x, keys, width, acc.len(), |r, leaf| {
            acc[r] += match leaf {
                Leaf::Slot(s) => by_slot[s],
                Leaf::Id(id) => by_leaf[id as usize],
            }
        });
    }

    /// Any ensemble: per row and output, the aggregated weight and whether any leaf voted.
    fn block_general(&self, x: &[f32], keys: &[u32], width: usize, acc: &mut [f32], has: &mut [bool]) {
        acc.fill(0.0);
        has.fill(false);
        let n = self.n_outputs;
        let aggregate = self.finalizer.aggregate();
        let leaves = &self.layout.leaves;
        let slots = &self.layout.perfect_leaves;
        self.visit_leaves(x, keys, width, acc.len() / n, |r, leaf| {
            let leaf = match leaf {
                Leaf::Slot(s) => slots[s],
                Leaf::Id(id) => id,
            };
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
        });
    }

    /// For each tree in order, each row of the block: `visit(row, leaf)`. Perfect trees are
    /// walked `LANES` rows at a time on `keys`; sparse trees, and every tree when the block has a
    /// NaN, one row at a time on `x`.
    #[inline(always)]
    fn visit_leaves(&self, x: &[f32], keys: &[u32], width: usize, rows: usize, mut visit: impl FnMut(usize, Leaf)) {
        let any_nan = x.iter().any(|v| v.is_nan());
        for (t, &root) in self.layout.roots.iter().enumerate() {
            match self.layout.perfect[t] {
                Some(p) if !any_nan => {
                    let n = 1usize << p.depth;
                    let nodes = &self.layout.perfect_nodes[p.nodes as usize..][..n];
                    let first_slot = p.leaves as usize;
                    let mut r = 0;
                    while r + LANES <= rows {
                        let slots = walk_perfect::<LANES>(nodes, p.depth, keys, r);
                        for (l, slot) in slots.into_iter().enumerate() {
                            visit(r + l, Leaf::Slot(first_slot + slot));
                        }
                        r += LANES;
                    }
                    while r < rows {
                        visit(r, Leaf::Slot(first_slot + walk_perfect::<1>(nodes, p.depth, keys, r)[0]));
                        r += 1;
                    }
                }
                _ => {
                    for r in 0..rows {
                        visit(r, Leaf::Id(walk_sparse(&self.layout.sparse, root, &x[r * width..][..width])));
                    }
                }
            }
        }
    }
}

/// Where a row ended in one tree: a slot of `Layout::perfect_leaves`, or a leaf id.
#[derive(Clone, Copy)]
enum Leaf {
    Slot(usize),
    Id(u32),
}

/// Walk `L` consecutive rows starting at `first` down a perfect tree; returns each row's leaf
/// slot (`0..2^depth`). `keys` holds the block's values as [`layout::order_key`]s, column-major
/// with a stride of [`BLOCK`] rows, so lane `l` reads `keys[feature * BLOCK + first + l]`: one
/// base register for all lanes, which keeps every lane's index in a register.
///
/// This is the hot loop of every forest with shallow trees, so it reads without bounds checks.
/// What makes that sound is checked once, here, before the loop:
/// * `nodes.len() == 2^depth`: a row at level `d < depth` sits at an index in `2^d..2^(d+1)`,
///   so every node read is in bounds;
/// * `first + L <= BLOCK` and every node's feature is below `keys.len() / BLOCK`
///   ([`Forest::eval`] sizes `keys` as `width * BLOCK` and asserts `width >= min_features`;
///   padding nodes read feature 0).
#[inline(always)]
fn walk_perfect<const L: usize>(nodes: &[PerfectNode], depth: u32, keys: &[u32], first: usize) -> [usize; L] {
    assert_eq!(nodes.len(), 1usize << depth);
    assert!(first + L <= BLOCK && keys.len() >= BLOCK);
    let keys = &keys[first..];
    #[cfg(target_arch = "x86_64")]
    if L == LANES {
        // SAFETY: the invariants above, for `LANES` lanes.
        let slots = unsafe { walk_lanes_x86(nodes, depth, keys) };
        return std::array::from_fn(|l| slots[l]);
    }
    let mut idx = [1usize; L];
    let mut level = || {
        for (l, i) in idx.iter_mut().enumerate() {
            // SAFETY: see the invariants above: `*i < nodes.len()` at every level, and
            // `offset + l = feature * BLOCK + l < keys.len()` for `feature < width`,
            // `l < BLOCK - first`.
            unsafe {
                let node = *nodes.get_unchecked(*i);
                debug_assert!(node.offset as usize + l < keys.len());
                let v = *keys.get_unchecked(node.offset as usize + l);
                *i = 2 * *i + usize::from(node.key < v);
            }
        }
    };
    // Two levels per turn: under WASM every turn of a loop also checks the host's deadline
    // (epoch interruption), and this loop turns most often of all. Unrolling further made
    // Cranelift's code slower, not faster.
    for _ in 0..depth / 2 {
        level();
        level();
    }
    if depth % 2 == 1 {
        level();
    }
    idx.map(|i| i - nodes.len())
}

/// [`walk_perfect`] for [`LANES`] lanes on x86_64: per lane and level one 64-bit load of the
/// node (key low, offset high), a compare of the key with the lane's value that leaves
/// `key < value` (unsigned) in the carry, and `adc i, i`, which makes `2i + carry`. The lanes read
/// through one base register with constant displacements, so all ten indices stay in registers.
/// LLVM does not find this form on its own (it spills lanes and materialises each flag, about
/// half the speed); this loop is what makes forests fast, so it is written out.
///
/// # Safety
/// As for [`walk_perfect`], with `L = LANES`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn walk_lanes_x86(nodes: &[PerfectNode], depth: u32, keys: &[u32]) -> [usize; LANES] {
    let np = nodes.as_ptr();
    let base = keys.as_ptr();
    let mut i = [1usize; LANES];
    macro_rules! lane {
        ($l:literal) => {{
            std::arch::asm!(
                // The node in one 64-bit load: key in the low half, offset in the high half.
                "mov {n}, qword ptr [{np} + {i}*8]",
                "mov {off}, {n}",
                "shr {off}, 32",
                "cmp {n:e}, dword ptr [{base} + {off}*4 + {disp}]",
                "adc {i}, {i}",
                n = out(reg) _,
                off = out(reg) _,
                np = in(reg) np,
                base = in(reg) base,
                disp = const $l * 4,
                i = inout(reg) i[$l],
                options(pure, readonly, nostack),
            );
        }};
    }
    for _ in 0..depth {
        lane!(0);
        lane!(1);
        lane!(2);
        lane!(3);
        lane!(4);
        lane!(5);
        lane!(6);
        lane!(7);
        lane!(8);
        lane!(9);
    }
    i.map(|i| i - nodes.len())
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
        i = if node.mode().takes_true(v, node.threshold, node.missing_tracks_true()) {
            i + 1
        } else {
            node.next as usize
        };
    }
}

#[cfg(test)]
mod tests;
