//! JSON scanning throughput on a file of JSON lines, for tuning the scanner:
//! `cargo run --release -p flowtag-plugin --example scan_speed -- flows.jsonl`.
fn main() {
    let path = std::env::args().nth(1).expect("a JSON lines file");
    let text = std::fs::read(path).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let mut members = 0usize;
        for l in &lines {
            members += flowtag_plugin::json::scan_object(l, |_| {}).map(|o| o.members).unwrap_or(0);
        }
        best = best.min(t.elapsed().as_secs_f64());
        assert!(members > 0);
    }
    println!("{:.0} MB/s, {:.2} µs per record", bytes as f64 / best / 1e6, best / lines.len() as f64 * 1e6);
}
