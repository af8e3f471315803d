//! The fast layouts against a direct reading of the trees, on random ensembles with every
//! branch mode, thresholds hit exactly, infinities and NaN.

use super::finalize::LabelPick;
use super::spec::{Aggregate, EnsembleSpec, Labels, Mode, Node, PostTransform, Tree};
use super::{Forest, Outputs};

use crate::test_rng::Rng;

/// A few distinct values, so inputs often equal thresholds.
fn value(rng: &mut Rng) -> f32 {
    [-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0][rng.index(8)]
}

const MODES: [Mode; 6] = [Mode::Leq, Mode::Lt, Mode::Gte, Mode::Gt, Mode::Eq, Mode::Neq];

fn random_tree(rng: &mut Rng, max_depth: u32, n_features: u32, n_outputs: u32, modes: &[Mode]) -> Tree {
    let mut nodes = Vec::new();
    grow(rng, &mut nodes, 0, max_depth, n_features, n_outputs, modes);
    Tree { nodes }
}

fn grow(
    rng: &mut Rng,
    nodes: &mut Vec<Node>,
    depth: u32,
    max_depth: u32,
    n_features: u32,
    n_outputs: u32,
    modes: &[Mode],
) -> u32 {
    let id = nodes.len() as u32;
    if depth == max_depth || (depth > 0 && rng.below(4) == 0) {
        let n_weights = 1 + rng.below(n_outputs as u64) as u32;
        let weights = (0..n_weights).map(|k| ((k + id) % n_outputs, value(rng) + id as f32 * 0.01)).collect();
        nodes.push(Node::Leaf(weights));
        return id;
    }
    nodes.push(Node::Leaf(vec![]));
    let true_child = grow(rng, nodes, depth + 1, max_depth, n_features, n_outputs, modes);
    let false_child = grow(rng, nodes, depth + 1, max_depth, n_features, n_outputs, modes);
    nodes[id as usize] = Node::Branch {
        feature: rng.below(n_features as u64) as u32,
        threshold: value(rng),
        mode: modes[rng.index(modes.len())],
        missing_tracks_true: rng.below(2) == 0,
        true_child,
        false_child,
    };
    id
}

/// The leaf a row reaches, read straight off the spec.
fn reference_leaf<'a>(tree: &'a Tree, row: &[f32]) -> &'a [(u32, f32)] {
    let mut id = 0usize;
    loop {
        match &tree.nodes[id] {
            Node::Leaf(w) => return w,
            Node::Branch { feature, threshold, mode, missing_tracks_true, true_child, false_child } => {
                let take = mode.takes_true(row[*feature as usize], *threshold, *missing_tracks_true);
                id = if take { *true_child } else { *false_child } as usize;
            }
        }
    }
}

fn reference_sums(spec: &EnsembleSpec, row: &[f32]) -> Vec<f32> {
    let mut acc = vec![0f32; spec.n_outputs];
    for tree in &spec.trees {
        for &(o, w) in reference_leaf(tree, row) {
            acc[o as usize] += w;
            if spec.n_outputs == 1 {
                break;
            }
        }
    }
    acc
}

fn regressor(trees: Vec<Tree>, n_outputs: usize) -> EnsembleSpec {
    EnsembleSpec {
        trees,
        n_outputs,
        aggregate: Aggregate::Sum,
        post_transform: PostTransform::None,
        base_values: vec![],
        labels: None,
    }
}

fn random_rows(rng: &mut Rng, n: usize, width: usize, with_nan: bool) -> Vec<f32> {
    (0..n * width)
        .map(|_| match rng.below(20) {
            0 if with_nan => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            _ => value(rng),
        })
        .collect()
}

fn eval(forest: &Forest, x: &[f32], width: usize) -> Vec<f32> {
    let n = x.len() / width;
    let mut scores = vec![0f32; n * forest.n_outputs()];
    forest.eval(x, width, Outputs { scores: &mut scores, labels: None });
    scores
}

#[test]
fn perfect_and_sparse_layouts_agree_with_the_trees() {
    let mut rng = Rng(0x5eed);
    for case in 0..60 {
        let width = 1 + rng.below(6) as usize;
        let n_outputs = if case % 3 == 0 { 3 } else { 1 };
        let modes: &[Mode] = if case % 2 == 0 { &MODES[..4] } else { &MODES };
        let trees: Vec<Tree> = (0..1 + rng.below(12))
            .map(|_| {
                let depth = 1 + rng.below(11) as u32;
                random_tree(&mut rng, depth, width as u32, n_outputs as u32, modes)
            })
            .collect();
        let spec = regressor(trees, n_outputs);
        let forest = Forest::new(&spec);
        // 300 rows: several blocks, lanes and a tail; NaN in every other case.
        let x = random_rows(&mut rng, 300, width, case % 2 == 1);
        let got = eval(&forest, &x, width);
        for (r, row) in x.chunks(width).enumerate() {
            let want = reference_sums(&spec, row);
            let got = &got[r * n_outputs..(r + 1) * n_outputs];
            assert_eq!(got, &want[..], "case {case} row {r} {row:?}");
        }
    }
}

#[test]
fn shallow_leq_trees_get_the_perfect_layout_and_deep_ones_do_not() {
    let mut rng = Rng(7);
    let shallow: Vec<Tree> = (0..5).map(|_| random_tree(&mut rng, 6, 4, 1, &MODES[..4])).collect();
    let forest = Forest::new(&regressor(shallow, 1));
    assert_eq!(forest.n_perfect_trees(), 5);
    let mut deep = Vec::new();
    grow_chain(&mut deep, 14);
    let forest = Forest::new(&regressor(vec![Tree { nodes: deep }], 1));
    assert_eq!(forest.n_perfect_trees(), 0);
}

/// A chain of `depth` branches, each with a leaf on its false side.
fn grow_chain(nodes: &mut Vec<Node>, depth: u32) {
    for d in 0..depth {
        let id = nodes.len() as u32;
        nodes.push(Node::Branch {
            feature: 0,
            threshold: d as f32,
            mode: Mode::Gt,
            missing_tracks_true: false,
            true_child: id + 2,
            false_child: id + 1,
        });
        nodes.push(Node::Leaf(vec![(0, d as f32)]));
    }
    nodes.push(Node::Leaf(vec![(0, -1.0)]));
}

#[test]
fn deep_chain_is_walked_right() {
    let mut nodes = Vec::new();
    grow_chain(&mut nodes, 14);
    let forest = Forest::new(&regressor(vec![Tree { nodes }], 1));
    assert_eq!(eval(&forest, &[0.5, 3.0, 100.0, -1.0], 1), vec![1.0, 3.0, -1.0, 0.0]);
}

#[test]
fn average_min_and_max_aggregate_like_onnxruntime() {
    let leaf = |w: f32| Tree { nodes: vec![Node::Leaf(vec![(0, w)])] };
    let mut spec = regressor(vec![leaf(1.0), leaf(4.0), leaf(-2.0)], 1);
    spec.base_values = vec![10.0];
    for (aggregate, want) in
        [(Aggregate::Sum, 13.0), (Aggregate::Average, 11.0), (Aggregate::Min, 8.0), (Aggregate::Max, 14.0)]
    {
        spec.aggregate = aggregate;
        assert_eq!(eval(&Forest::new(&spec), &[0.0], 1), vec![want], "{aggregate:?}");
    }
}

#[test]
fn binary_classifier_voting_for_one_class_expands_to_two_columns() {
    // Leaves vote only for class 1 with probabilities: onnxruntime writes [1 - p, p].
    let stump = Tree {
        nodes: vec![
            Node::Branch {
                feature: 0,
                threshold: 0.5,
                mode: Mode::Leq,
                missing_tracks_true: false,
                true_child: 1,
                false_child: 2,
            },
            Node::Leaf(vec![(1, 0.2)]),
            Node::Leaf(vec![(1, 0.9)]),
        ],
    };
    let spec = EnsembleSpec {
        trees: vec![stump],
        n_outputs: 2,
        aggregate: Aggregate::Sum,
        post_transform: PostTransform::None,
        base_values: vec![],
        labels: Some(Labels::Int(vec![0, 1])),
    };
    let forest = Forest::new(&spec);
    let mut scores = vec![0f32; 4];
    let mut labels = vec![LabelPick::Index(9); 2];
    forest.eval(&[0.0, 1.0], 1, Outputs { scores: &mut scores, labels: Some(&mut labels) });
    // has[1] is set, so onnxruntime keeps both columns as summed: [0, p].
    assert_eq!(scores, vec![0.0, 0.2, 0.0, 0.9]);
    assert_eq!(labels, vec![LabelPick::Index(0), LabelPick::Index(1)]);
}
