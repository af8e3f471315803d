//! Rows/s of the dense executor alone on a bundle's model (default: the shipped autoencoder),
//! on random rows: `cargo run --release -p flowtag-plugin --example dense_speed [-- BUNDLE]`.
use flowtag_plugin::dense::DenseGraph;
use flowtag_plugin::Bundle;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "models/unsw-unsupervised".into());
    let bundle = Bundle::read_path(path.as_ref()).unwrap();
    let width = bundle.manifest.width();
    let mut g = DenseGraph::from_onnx(&bundle.model_bytes, width).unwrap_or_else(|e| panic!("not a dense graph: {e}"));
    let n = 256;
    let x: Vec<f32> = (0..n * width).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
    let reps = 400;
    let started = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(g.run(&x, n));
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{}: {:.0} rows/s at batch {n}", bundle.id(), (n * reps) as f64 / secs);
}
