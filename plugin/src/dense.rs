//! Our own executor for small dense ONNX graphs: the autoencoder's `Sub`/`Div` scaling, its
//! `Gemm` layers with `Relu`/`Tanh`/`Sigmoid`, and the reconstruction-error head
//! (`Sub`, `Mul`, `ReduceMean`); and tree ensembles ([`crate::forest`]) with the score
//! arithmetic around them (the Isolation Forest's `Div`, `Neg`, `Pow`, `Add`).
//!
//! Why not tract, which parses these graphs fine: tract picks its matrix kernels per target
//! (FMA kernels on x86-64, `simd128` kernels on wasm32), so the same model scores the same row
//! with different last bits natively and under WASM (measured: up to 4e-6 relative on the
//! shipped autoencoder). The native and WASM filters must tag byte for byte alike. This executor
//! computes every value in one fixed order with IEEE-754 operations (matrix products as
//! multiply-adds fused through `f64`, which is exact for the product of two `f32`; `libm` for
//! `tanh` and `exp`), so both builds give the same bits, and it is fast on these shapes: the
//! inner loops run over output columns, which the compiler vectorises without reordering any sum.
//!
//! Tree ensembles run here too, on the same evaluator tract gets through
//! [`crate::forest::tract_op`] (both read the node with [`crate::forest::onnx`]): for a forest, running the graph through tract cost about 8 % of
//! the scoring time in tensor plumbing and broadcasting around the trees.
//!
//! [`DenseGraph::from_onnx`] accepts a graph only if every node is one it runs exactly; anything
//! else (other ops, other shapes) is left to tract, and the reason is returned, so a caller can
//! say why a model lost native/WASM bit-identity.
//!
//! Values are `[N, w]` batch matrices (row-major) or constants. Supported: `Add`, `Sub`, `Mul`,
//! `Div`, `Pow` (a batch value with a batch value of the same width or width 1, or with a
//! scalar, `[w]` or `[1, w]` constant, on either side), `Gemm` (batch `A`, constant `B`,
//! `transB`, `alpha`, `beta`, constant `C`), `MatMul` (batch × constant), `Relu`, `Tanh`,
//! `Sigmoid`, `Abs`, `Neg`, `Sqrt`, `Identity`, `ReduceMean` over axis 1 (attribute or input
//! axes, `keepdims` 0 or 1), and `ai.onnx.ml`'s `TreeEnsembleRegressor` and
//! `TreeEnsembleClassifier` on the input (a classifier's label output cannot be read here; its
//! probabilities can).

use std::collections::HashMap;

use crate::onnx::{GraphProto, NodeProto};

use crate::forest::{onnx, Forest, Outputs};

/// A compiled dense graph, ready to run batches.
pub struct DenseGraph {
    steps: Vec<Step>,
    /// Width of each batch value; `values[0]` is the input.
    widths: Vec<usize>,
    outputs: HashMap<String, usize>,
    buffers: Vec<Vec<f32>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UnOp {
    Relu,
    Tanh,
    Sigmoid,
    Abs,
    Neg,
    Sqrt,
    /// `Pow` with the constant base 2 (the Isolation Forest's score): libm's `powf` took 8 % of a
    /// forest's scoring time, `exp2f` a fraction of that.
    Exp2,
    Identity,
}

/// One side of a binary op.
#[derive(Clone, Debug)]
enum Operand {
    /// A batch value.
    Value(usize),
    /// A constant broadcast along rows: one value per column, or a single value for all.
    Const(Vec<f32>),
}

#[derive(Clone, Debug)]
enum Step {
    Binary {
        op: BinOp,
        a: Operand,
        b: Operand,
        out: usize,
    },
    Unary {
        op: UnOp,
        x: usize,
        out: usize,
    },
    /// `out = alpha * (x · w) + beta * c`, `w` stored `k × m` row-major.
    Gemm {
        x: usize,
        w: Vec<f32>,
        k: usize,
        m: usize,
        alpha: f32,
        bias: Option<Vec<f32>>,
        beta: f32,
        out: usize,
        /// Every weight is finite: zero inputs are skipped.
        finite: bool,
    },
    ReduceMean {
        x: usize,
        out: usize,
    },
    /// A tree ensemble's scores (a classifier's probabilities), `[N, n_outputs]`.
    Forest {
        forest: Box<Forest>,
        x: usize,
        out: usize,
    },
}

/// What a name refers to while the graph is compiled.
#[derive(Clone, Debug)]
enum Known {
    Batch(usize),
    Const {
        shape: Vec<usize>,
        data: Vec<f32>,
    },
    /// A classifier's labels: not numbers, so no step reads them.
    Labels,
}

impl DenseGraph {
    /// The graph as a dense program, or why not: the first thing in it this executor does not
    /// run exactly (the caller then uses tract). `width` is the input's column count.
    pub fn from_onnx(model_bytes: &[u8], width: usize) -> Result<DenseGraph, String> {
        compile(&crate::onnx::read(model_bytes)?, width)
    }

    /// Run `n` rows of `x`; the named outputs as `[n, w]` slices (`w` from [`Self::output`]).
    pub fn run(&mut self, x: &[f32], n: usize) -> &[Vec<f32>] {
        let width0 = self.widths[0];
        debug_assert_eq!(x.len(), n * width0);
        self.buffers[0].clear();
        self.buffers[0].extend_from_slice(x);
        for step in &self.steps {
            match step {
                Step::Binary { op, a, b, out } => {
                    let w = self.widths[*out];
                    let mut dst = std::mem::take(&mut self.buffers[*out]);
                    dst.resize(n * w, 0.0);
                    binary(
                        *op,
                        &operand(a, &self.buffers, &self.widths),
                        &operand(b, &self.buffers, &self.widths),
                        &mut dst,
                        n,
                        w,
                    );
                    self.buffers[*out] = dst;
                }
                Step::Unary { op, x, out } => {
                    let mut dst = std::mem::take(&mut self.buffers[*out]);
                    let src = &self.buffers[*x];
                    dst.clear();
                    dst.resize(src.len(), 0.0);
                    // One loop per operation, so the compiler vectorises the cheap ones.
                    match op {
                        UnOp::Relu => map_into(&mut dst, src, |v| unary(UnOp::Relu, v)),
                        UnOp::Tanh => map_into(&mut dst, src, |v| unary(UnOp::Tanh, v)),
                        UnOp::Sigmoid => map_into(&mut dst, src, |v| unary(UnOp::Sigmoid, v)),
                        UnOp::Abs => map_into(&mut dst, src, |v| unary(UnOp::Abs, v)),
                        UnOp::Neg => map_into(&mut dst, src, |v| unary(UnOp::Neg, v)),
                        UnOp::Exp2 => map_into(&mut dst, src, |v| unary(UnOp::Exp2, v)),
                        UnOp::Sqrt => map_into(&mut dst, src, |v| unary(UnOp::Sqrt, v)),
                        UnOp::Identity => dst.copy_from_slice(src),
                    }
                    self.buffers[*out] = dst;
                }
                Step::Gemm { x, w, k, m, alpha, bias, beta, out, finite } => {
                    let mut dst = std::mem::take(&mut self.buffers[*out]);
                    gemm(&self.buffers[*x], w, *k, *m, *alpha, bias.as_deref(), *beta, &mut dst, n, *finite);
                    self.buffers[*out] = dst;
                }
                Step::ReduceMean { x, out } => {
                    let w = self.widths[*x];
                    let mut dst = std::mem::take(&mut self.buffers[*out]);
                    dst.clear();
                    dst.extend(self.buffers[*x].chunks_exact(w).map(|row| {
                        let mut s = 0.0f32;
                        for &v in row {
                            s += v;
                        }
                        s / w as f32
                    }));
                    self.buffers[*out] = dst;
                }
                Step::Forest { forest, x, out } => {
                    let mut dst = std::mem::take(&mut self.buffers[*out]);
                    dst.clear();
                    dst.resize(n * self.widths[*out], 0.0);
                    forest.eval(&self.buffers[*x], self.widths[*x], Outputs { scores: &mut dst, labels: None });
                    self.buffers[*out] = dst;
                }
            }
        }
        &self.buffers
    }

    /// The value index and width of output `name`.
    pub fn output(&self, name: &str) -> Option<(usize, usize)> {
        self.outputs.get(name).map(|&v| (v, self.widths[v]))
    }
}

/// A view of an operand for one run.
enum View<'a> {
    Rows { data: &'a [f32], w: usize },
    Const(&'a [f32]),
}

fn operand<'a>(o: &'a Operand, buffers: &'a [Vec<f32>], widths: &[usize]) -> View<'a> {
    match o {
        Operand::Value(v) => View::Rows { data: &buffers[*v], w: widths[*v] },
        Operand::Const(c) => View::Const(c),
    }
}

#[inline(always)]
fn apply(op: BinOp, a: f32, b: f32) -> f32 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Pow => libm::powf(a, b),
    }
}

/// Element `(r, c)` of a broadcast operand of an `n × w` result.
#[inline(always)]
fn at(v: &View, r: usize, c: usize) -> f32 {
    match v {
        View::Rows { data, w: 1 } => data[r],
        View::Rows { data, w } => data[r * w + c],
        View::Const(k) if k.len() == 1 => k[0],
        View::Const(k) => k[c],
    }
}

fn binary(op: BinOp, a: &View, b: &View, dst: &mut [f32], n: usize, w: usize) {
    // The common shapes get loops the compiler vectorises; the order of operations per element
    // is the same either way (one operation per element).
    match (a, b) {
        (View::Rows { data: x, w: wx }, View::Const(k)) if *wx == w && k.len() == w => {
            for (row_out, row) in dst.chunks_exact_mut(w).zip(x.chunks_exact(w)) {
                for ((d, &xv), &kv) in row_out.iter_mut().zip(row).zip(k.iter()) {
                    *d = apply(op, xv, kv);
                }
            }
        }
        (View::Rows { data: x, w: wx }, View::Rows { data: y, w: wy }) if *wx == w && *wy == w => {
            for ((d, &xv), &yv) in dst.iter_mut().zip(x.iter()).zip(y.iter()) {
                *d = apply(op, xv, yv);
            }
        }
        _ => {
            for r in 0..n {
                for c in 0..w {
                    dst[r * w + c] = apply(op, at(a, r, c), at(b, r, c));
                }
            }
        }
    }
}

#[inline(always)]
fn map_into(dst: &mut [f32], src: &[f32], f: impl Fn(f32) -> f32) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = f(v);
    }
}

#[inline(always)]
fn unary(op: UnOp, v: f32) -> f32 {
    match op {
        UnOp::Relu => {
            if v > 0.0 || v.is_nan() {
                v
            } else {
                0.0
            }
        }
        UnOp::Tanh => libm::tanhf(v),
        UnOp::Sigmoid => 1.0 / (1.0 + libm::expf(-v)),
        UnOp::Abs => v.abs(),
        UnOp::Neg => -v,
        UnOp::Exp2 => libm::exp2f(v),
        UnOp::Sqrt => v.sqrt(),
        UnOp::Identity => v,
    }
}

/// `dst[n × m] = alpha * (x[n × k] · w[k × m]) + beta * bias`, each sum in `k` order with
/// fused multiply-adds.
#[allow(clippy::too_many_arguments)]
fn gemm(
    x: &[f32],
    w: &[f32],
    k: usize,
    m: usize,
    alpha: f32,
    bias: Option<&[f32]>,
    beta: f32,
    dst: &mut Vec<f32>,
    n: usize,
    finite: bool,
) {
    dst.clear();
    dst.resize(n * m, 0.0);
    for (row_out, row) in dst.chunks_exact_mut(m).zip(x.chunks_exact(k)) {
        for (kk, &xv) in row.iter().enumerate() {
            // A zero input adds nothing to sums of finite products (a hashed text block is
            // mostly zeros); with a weight that is not finite it would make a NaN, so then
            // every input counts.
            if xv == 0.0 && finite {
                continue;
            }
            multiply_add(row_out, &w[kk * m..(kk + 1) * m], xv);
        }
        if alpha != 1.0 {
            for d in row_out.iter_mut() {
                *d *= alpha;
            }
        }
        if let Some(b) = bias {
            if b.len() == 1 {
                let bv = beta * b[0];
                for d in row_out.iter_mut() {
                    *d += bv;
                }
            } else {
                for (d, &bv) in row_out.iter_mut().zip(b) {
                    *d += beta * bv;
                }
            }
        }
    }
}

/// `d[j] += xv * w[j]` for every `j`: a fused multiply-add, as onnxruntime's kernels do it,
/// computed exactly the same way on every target: the product of two f32 is exact in f64, and
/// the sum is rounded to f32 once more.
#[inline(always)]
fn multiply_add(d: &mut [f32], w: &[f32], xv: f32) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let (d, w) = multiply_add_simd128(d, w, xv);
    let xv = f64::from(xv);
    for (d, &wv) in d.iter_mut().zip(w) {
        *d = (xv * f64::from(wv) + f64::from(*d)) as f32;
    }
}

/// [`multiply_add`] four lanes at a time with WASM's simd128, written out rather than left to
/// LLVM's vectoriser (the WASM filter ran about 8 % faster on the autoencoder with it); the same
/// IEEE operations per element, so the same bits. Eight lanes per loop turn where it can: under
/// the host every turn also checks the batch's deadline (epoch interruption), and halving the
/// turns made the autoencoder's WASM filter about 4 % faster. Keeping the sums in registers
/// across `k` instead was 13 % slower: Cranelift spills vectors that live across that check.
/// Returns the tails it left.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn multiply_add_simd128<'a, 'b>(d: &'a mut [f32], w: &'b [f32], xv: f32) -> (&'a mut [f32], &'b [f32]) {
    use core::arch::wasm32::*;
    let n = d.len().min(w.len()) / 4 * 4;
    let (head, tail) = d.split_at_mut(n);
    let x2 = f64x2_splat(f64::from(xv));
    let mut pairs = head.chunks_exact_mut(8);
    for (dc, wc) in (&mut pairs).zip(w.chunks_exact(8)) {
        let (d0, d1) = dc.split_at_mut(4);
        let (w0, w1) = wc.split_at(4);
        quad(d0, w0, x2);
        quad(d1, w1, x2);
    }
    for (dc, wc) in pairs.into_remainder().chunks_exact_mut(4).zip(w[n / 8 * 8..].chunks_exact(4)) {
        quad(dc, wc, x2);
    }
    (tail, &w[n..])
}

/// One step of [`multiply_add_simd128`] on four lanes.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn quad(dc: &mut [f32], wc: &[f32], x2: core::arch::wasm32::v128) {
    use core::arch::wasm32::*;
    assert!(dc.len() == 4 && wc.len() == 4);
    // SAFETY: `dc` and `wc` are 4 f32 each (16 bytes); v128 loads and stores need no alignment.
    unsafe {
        let dv = v128_load(dc.as_ptr().cast());
        let wv = v128_load(wc.as_ptr().cast());
        let hi = |v: v128| i64x2_shuffle::<1, 1>(v, v);
        let lo =
            f32x4_demote_f64x2_zero(f64x2_add(f64x2_mul(x2, f64x2_promote_low_f32x4(wv)), f64x2_promote_low_f32x4(dv)));
        let up = f32x4_demote_f64x2_zero(f64x2_add(
            f64x2_mul(x2, f64x2_promote_low_f32x4(hi(wv))),
            f64x2_promote_low_f32x4(hi(dv)),
        ));
        v128_store(dc.as_mut_ptr().cast(), i64x2_shuffle::<0, 2>(lo, up));
    }
}

/// The graph as a dense program, or why not (see [`DenseGraph::from_onnx`]).
pub fn compile(graph: &GraphProto, width: usize) -> Result<DenseGraph, String> {
    let mut known: HashMap<String, Known> = HashMap::new();
    for t in &graph.initializer {
        let (shape, data) =
            t.to_f32().map_err(|e| format!("initializer {:?} does not read as f32 numbers: {e}", t.name))?;
        known.insert(t.name.clone(), Known::Const { shape, data });
    }
    let inputs: Vec<_> = graph.input.iter().filter(|i| !known.contains_key(&i.name)).collect();
    if inputs.len() != 1 {
        return Err(format!("the graph has {} inputs; the dense executor runs graphs of one", inputs.len()));
    }
    let mut widths = vec![width];
    known.insert(inputs[0].name.clone(), Known::Batch(0));
    let mut steps = Vec::new();
    for node in &graph.node {
        let outs = compile_node(node, &known, &mut widths, &mut steps).ok_or_else(|| why_not(node))?;
        for (name, k) in node.output.iter().zip(outs) {
            known.insert(name.clone(), k);
        }
    }
    let mut outputs = HashMap::new();
    for o in &graph.output {
        match known.get(&o.name) {
            Some(Known::Batch(v)) => outputs.insert(o.name.clone(), *v),
            Some(Known::Labels) => None,
            Some(Known::Const { .. }) => return Err(format!("graph output {:?} is a constant", o.name)),
            None => return Err(format!("graph output {:?} is computed by no node", o.name)),
        };
    }
    let buffers = vec![Vec::new(); widths.len()];
    Ok(DenseGraph { steps, widths, outputs, buffers })
}

/// Operations [`compile_node`] runs, in some forms.
const DENSE_OPS: [&str; 17] = [
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Gemm",
    "MatMul",
    "Relu",
    "Tanh",
    "Sigmoid",
    "Abs",
    "Neg",
    "Sqrt",
    "Identity",
    "ReduceMean",
    "TreeEnsembleRegressor",
    "TreeEnsembleClassifier",
];

/// Why [`compile_node`] refused `node`.
fn why_not(node: &NodeProto) -> String {
    let op = node.op_type.as_str();
    let what = format!(
        "node {:?} ({}{op})",
        node.name,
        if node.domain.is_empty() { String::new() } else { format!("{}.", node.domain) }
    );
    if !DENSE_OPS.contains(&op) {
        return format!("{what}: not an operation the dense executor runs");
    }
    if let ("ai.onnx.ml", "TreeEnsembleRegressor" | "TreeEnsembleClassifier") = (node.domain.as_str(), op) {
        if let Err(e) = onnx::ensemble_spec(node, op == "TreeEnsembleClassifier") {
            return format!("{what}: {e}");
        }
    }
    format!("{what}: its inputs, shapes or attributes are not of a form the dense executor runs exactly (see the list in dense.rs)")
}

/// Compile one node; `None` when it is not one this executor runs.
fn compile_node(
    node: &NodeProto,
    known: &HashMap<String, Known>,
    widths: &mut Vec<usize>,
    steps: &mut Vec<Step>,
) -> Option<Vec<Known>> {
    let input = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| known.get(n));
    fn new_value(widths: &mut Vec<usize>, w: usize) -> usize {
        widths.push(w);
        widths.len() - 1
    }
    let op = node.op_type.as_str();
    match node.domain.as_str() {
        "" | "ai.onnx" => {}
        "ai.onnx.ml" if matches!(op, "TreeEnsembleRegressor" | "TreeEnsembleClassifier") => {
            let classifier = op == "TreeEnsembleClassifier";
            if node.output.len() != 1 + usize::from(classifier) {
                return None;
            }
            let Known::Batch(x) = input(0)? else { return None };
            // A node tract would refuse is left to tract, which says why.
            let forest = Forest::new(&onnx::ensemble_spec(node, classifier).ok()?);
            if widths[*x] < forest.min_features() {
                return None;
            }
            let out = new_value(widths, forest.n_outputs());
            steps.push(Step::Forest { forest: Box::new(forest), x: *x, out });
            return Some(if classifier { vec![Known::Labels, Known::Batch(out)] } else { vec![Known::Batch(out)] });
        }
        _ => return None,
    }
    if node.output.len() != 1 {
        return None;
    }
    let out = match op {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" => {
            let bop = match op {
                "Add" => BinOp::Add,
                "Sub" => BinOp::Sub,
                "Mul" => BinOp::Mul,
                "Div" => BinOp::Div,
                _ => BinOp::Pow,
            };
            let (a, b) = (input(0)?, input(1)?);
            if let (BinOp::Pow, Known::Const { data, .. }, Known::Batch(x)) = (bop, a, b) {
                if data[..] == [2.0] {
                    let out = new_value(widths, widths[*x]);
                    steps.push(Step::Unary { op: UnOp::Exp2, x: *x, out });
                    return Some(vec![Known::Batch(out)]);
                }
            }
            let wa = batch_width(a, widths);
            let wb = batch_width(b, widths);
            let w = match (wa, wb) {
                (Some(x), Some(y)) if x == y || y == 1 => x,
                (Some(1), Some(y)) => y,
                (Some(x), None) => x,
                (None, Some(y)) => y,
                _ => return None,
            };
            let a = broadcast(a, w)?;
            let b = broadcast(b, w)?;
            let out = new_value(widths, w);
            steps.push(Step::Binary { op: bop, a, b, out });
            out
        }
        "Relu" | "Tanh" | "Sigmoid" | "Abs" | "Neg" | "Sqrt" | "Identity" => {
            let Known::Batch(x) = input(0)? else { return None };
            let uop = match op {
                "Relu" => UnOp::Relu,
                "Tanh" => UnOp::Tanh,
                "Sigmoid" => UnOp::Sigmoid,
                "Abs" => UnOp::Abs,
                "Neg" => UnOp::Neg,
                "Sqrt" => UnOp::Sqrt,
                _ => UnOp::Identity,
            };
            let w = widths[*x];
            let out = new_value(widths, w);
            steps.push(Step::Unary { op: uop, x: *x, out });
            out
        }
        "Gemm" | "MatMul" => {
            let Known::Batch(x) = input(0)? else { return None };
            let Known::Const { shape, data } = input(1)? else { return None };
            let gemm = op == "Gemm";
            let attr_i = |name: &str, default: i64| node.attr_i(name).ok().flatten().unwrap_or(default);
            let attr_f = |name: &str, default: f32| node.attr_f(name).ok().flatten().unwrap_or(default);
            if gemm && attr_i("transA", 0) != 0 {
                return None;
            }
            let trans_b = gemm && attr_i("transB", 0) != 0;
            if shape.len() != 2 {
                return None;
            }
            let (k, m) = if trans_b { (shape[1], shape[0]) } else { (shape[0], shape[1]) };
            if k != widths[*x] {
                return None;
            }
            let w = if trans_b {
                let mut t = vec![0.0; k * m];
                for r in 0..m {
                    for c in 0..k {
                        t[c * m + r] = data[r * k + c];
                    }
                }
                t
            } else {
                data.clone()
            };
            let (alpha, beta) = if gemm { (attr_f("alpha", 1.0), attr_f("beta", 1.0)) } else { (1.0, 1.0) };
            let bias = match (gemm, input(2)) {
                (true, Some(Known::Const { shape, data })) => {
                    let len: usize = shape.iter().product();
                    if !(len == 1
                        || (len == m && shape.last() == Some(&m) && shape.iter().rev().skip(1).all(|&d| d == 1)))
                    {
                        return None;
                    }
                    Some(data.clone())
                }
                (true, Some(Known::Batch(_))) => return None,
                _ => None,
            };
            let out = new_value(widths, m);
            let finite = w.iter().all(|v| v.is_finite());
            steps.push(Step::Gemm { x: *x, w, k, m, alpha, bias, beta, out, finite });
            out
        }
        "ReduceMean" => {
            let Known::Batch(x) = input(0)? else { return None };
            let axes: Vec<i64> = match node.attr_ints("axes").ok().flatten() {
                Some(a) => a.to_vec(),
                None => match input(1) {
                    Some(Known::Const { data, .. }) => data.iter().map(|&v| v as i64).collect(),
                    _ => return None,
                },
            };
            if axes != [1] && axes != [-1] {
                return None;
            }
            // keepdims 0 gives [N], 1 gives [N, 1]: the same numbers, read as one column.
            let out = new_value(widths, 1);
            steps.push(Step::ReduceMean { x: *x, out });
            out
        }
        _ => return None,
    };
    Some(vec![Known::Batch(out)])
}

fn batch_width(k: &Known, widths: &[usize]) -> Option<usize> {
    match k {
        Known::Batch(v) => Some(widths[*v]),
        Known::Const { .. } | Known::Labels => None,
    }
}

/// A binary op's operand for a result of width `w`.
fn broadcast(k: &Known, w: usize) -> Option<Operand> {
    match k {
        Known::Batch(v) => Some(Operand::Value(*v)),
        Known::Const { shape, data } => {
            let len: usize = shape.iter().product();
            let row_shaped = shape.last() == Some(&w) && shape.iter().rev().skip(1).all(|&d| d == 1);
            if len == 1 || (len == w && row_shaped) {
                Some(Operand::Const(data.clone()))
            } else {
                None
            }
        }
        Known::Labels => None,
    }
}
