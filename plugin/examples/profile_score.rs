//! Score one bundle's fixture rows in a loop, for profilers: `cargo run --release -p flowtag-plugin
//! --example profile_score -- plugin/tests/fixtures/iforest 4096 200 [full]` (`full`: JSON
//! records through the whole filter instead of feature rows through the model).
use flowtag_plugin::featurize::Featurizer;
use flowtag_plugin::scorer::Scorer;
use flowtag_plugin::{Bundle, Filter, FilterOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bundle = Bundle::read_path(args[1].as_ref()).unwrap();
    let batch: usize = args.get(2).map_or(4096, |s| s.parse().unwrap());
    let rounds: usize = args.get(3).map_or(100, |s| s.parse().unwrap());
    let records =
        std::fs::read_to_string(std::path::Path::new(&args[1]).parent().unwrap().join("records.jsonl")).unwrap();
    let mut f = Featurizer::new(&bundle.manifest);
    let (width, mut slots) = (f.width(), vec![None; f.n_features()]);
    let mut rows = Vec::new();
    let mut row = vec![0f32; width];
    let mut good = Vec::new();
    for l in records.lines() {
        if f.scan(l.as_bytes(), &mut slots, "anomaly").and_then(|_| f.fill(l.as_bytes(), &slots, &mut row)).is_ok() {
            rows.extend_from_slice(&row);
            good.push(l.as_bytes());
        }
    }
    if args.get(4).is_some_and(|a| a == "full") {
        let mut filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
        let batch_recs: Vec<&[u8]> = good.iter().cycle().take(batch).copied().collect();
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        let t = std::time::Instant::now();
        let mut anomalous = 0;
        for _ in 0..rounds {
            out.clear();
            ends.clear();
            anomalous += filter.tag_batch(&batch_recs, &mut out, &mut ends).anomalous;
        }
        let secs = t.elapsed().as_secs_f64();
        println!("{:.0} records/s ({anomalous})", (batch * rounds) as f64 / secs);
        return;
    }
    let n = rows.len() / width;
    let x: Vec<f32> = (0..batch).flat_map(|i| rows[(i % n) * width..(i % n + 1) * width].to_vec()).collect();
    let mut scorer = Scorer::new(&bundle.model_bytes, &bundle.manifest).unwrap();
    let t = std::time::Instant::now();
    let mut sum = 0.0;
    for _ in 0..rounds {
        sum += scorer.run(&x, batch).unwrap().raw[0];
    }
    let secs = t.elapsed().as_secs_f64();
    println!("{:.0} rows/s ({sum})", (batch * rounds) as f64 / secs);
}
