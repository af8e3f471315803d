//! Rows per second for each golden-fixture model: the full path (JSON records in, tagged JSON
//! out: scan, featurize, score, tag) at batch 1, 64, 256 and 4096, and score-only (feature rows
//! in, raw scores out). `bench/ort_baseline.py` prints onnxruntime's single-thread figures on
//! the same rows; `bench/plugin.sh` runs both and prints the ratio.
//!
//!     cargo bench -p flowtag-plugin --bench filter

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use flowtag_plugin::featurize::Featurizer;
use flowtag_plugin::scorer::Scorer;
use flowtag_plugin::{Bundle, Filter, FilterOptions};

const MODELS: [&str; 4] = ["iforest", "classifier", "forest", "autoencoder"];

fn fixtures() -> &'static Path {
    Box::leak(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").into_boxed_path())
}

/// The fixture records that featurize (the benchmark measures the scoring path).
fn records(bundle: &Bundle) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(fixtures().join("records.jsonl")).unwrap();
    let mut f = Featurizer::new(&bundle.manifest);
    let mut slots = vec![None; f.n_features()];
    let mut row = vec![0f32; f.width()];
    text.lines()
        .filter(|l| {
            f.scan(l.as_bytes(), &mut slots, "anomaly").and_then(|_| f.fill(l.as_bytes(), &slots, &mut row)).is_ok()
        })
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

fn cycle<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    items.iter().cycle().take(n).cloned().collect()
}

fn full_path(c: &mut Criterion) {
    for model in MODELS {
        let bundle = Bundle::read_path(&fixtures().join(model)).unwrap();
        let mut filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
        let recs = records(&bundle);
        let mut group = c.benchmark_group(format!("full_json/{model}"));
        group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
        for batch in [1usize, 64, 256, 4096] {
            let batch_recs = cycle(&recs, batch);
            let refs: Vec<&[u8]> = batch_recs.iter().map(Vec::as_slice).collect();
            let (mut out, mut ends) = (Vec::with_capacity(batch * 512), Vec::with_capacity(batch));
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::from_parameter(batch), |b| {
                b.iter(|| {
                    out.clear();
                    ends.clear();
                    filter.tag_batch(&refs, &mut out, &mut ends)
                })
            });
        }
        group.finish();
    }
}

fn score_only(c: &mut Criterion) {
    for model in MODELS {
        let bundle = Bundle::read_path(&fixtures().join(model)).unwrap();
        let mut scorer = Scorer::new(&bundle.model_bytes, &bundle.manifest).unwrap();
        let mut f = Featurizer::new(&bundle.manifest);
        let (width, mut slots) = (f.width(), vec![None; f.n_features()]);
        let mut rows = Vec::new();
        for r in records(&bundle) {
            let mut row = vec![0f32; width];
            f.scan(&r, &mut slots, "anomaly").unwrap();
            f.fill(&r, &slots, &mut row).unwrap();
            rows.extend(row);
        }
        let n_rows = rows.len() / width;
        let mut group = c.benchmark_group(format!("score_only/{model}"));
        group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
        for batch in [256usize, 4096] {
            let x: Vec<f32> =
                (0..batch).flat_map(|i| rows[(i % n_rows) * width..(i % n_rows + 1) * width].to_vec()).collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::from_parameter(batch), |b| {
                b.iter_batched_ref(|| (), |_| scorer.run(&x, batch).unwrap(), BatchSize::SmallInput)
            });
        }
        group.finish();
    }
}

criterion_group!(benches, full_path, score_only);
criterion_main!(benches);
