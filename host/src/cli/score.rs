//! `flowtag score`: tag the records of a file (or standard input) and print them as JSON lines,
//! in input order. For trying a model or a WASM module on real logs before deploying it.
//!
//! ```text
//! flowtag score --model models/unsw-supervised --format unsw flows.csv
//! ```

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use flowtag_plugin::Bundle;

use crate::component::ComponentConfig;
use crate::decode::{Decoder, Decoding, Line};
use crate::transforms::anomaly::runtime::Loader;
use crate::transforms::anomaly::{AnomalyConfig, BatchConfig, Runtime};
use flowtag_plugin::ReasonsMode;

pub struct ScoreArgs {
    pub model: PathBuf,
    pub format: Decoding,
    pub runtime: Runtime,
    pub plugin: Option<PathBuf>,
    pub reasons: ReasonsMode,
    pub key: String,
    pub batch: usize,
    pub input: Option<PathBuf>,
    pub data_dir: PathBuf,
}

/// Run; returns the process exit code.
pub fn run(args: ScoreArgs) -> i32 {
    let cfg = AnomalyConfig {
        key: args.key.clone(),
        reasons: args.reasons,
        batch: BatchConfig { max_events: args.batch, ..BatchConfig::default() },
        ..AnomalyConfig::standalone(args.model.clone(), args.runtime, args.plugin.clone())
    };
    if let Err(e) = cfg.check("score") {
        eprintln!("flowtag score: {e}");
        return 2;
    }
    let bundle = match Bundle::read_path(&args.model) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("flowtag score: {}: {e}", args.model.display());
            return 2;
        }
    };
    let loader = match Loader::new(&cfg, &args.data_dir.join("wasm-cache")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("flowtag score: plugin: {e}");
            return 2;
        }
    };
    let mut runtime = match loader.load(&bundle) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flowtag score: {}: model refused: {e}", args.model.display());
            return 2;
        }
    };
    let reader: Box<dyn BufRead> = match &args.input {
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
            Err(e) => {
                eprintln!("flowtag score: {}: {e}", p.display());
                return 2;
            }
        },
        None => Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock())),
    };
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut decoder = Decoder::new(args.format);
    let (mut records, mut anomalous, mut unscored, mut malformed) = (0usize, 0usize, 0usize, 0usize);
    let mut pending: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let (mut tagged, mut tagged_ends) = (Vec::new(), Vec::new());
    let mut flush = |pending: &mut Vec<u8>, ends: &mut Vec<usize>, out: &mut dyn Write| -> std::io::Result<()> {
        if ends.is_empty() {
            return Ok(());
        }
        let mut start = 0;
        let recs: Vec<&[u8]> = ends
            .iter()
            .map(|&e| {
                let r = &pending[start..e];
                start = e;
                r
            })
            .collect();
        tagged.clear();
        tagged_ends.clear();
        let t = runtime.tag(&recs, &mut tagged, &mut tagged_ends);
        records += recs.len();
        anomalous += t.anomalous;
        unscored += t.unscored;
        if let Some(f) = t.failure {
            eprintln!("flowtag score: a batch could not be scored: {f}");
        }
        let mut s = 0;
        for &e in tagged_ends.iter() {
            out.write_all(&tagged[s..e])?;
            out.write_all(b"\n")?;
            s = e;
        }
        pending.clear();
        ends.clear();
        Ok(())
    };
    for line in reader.split(b'\n') {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("flowtag score: reading input: {e}");
                return 1;
            }
        };
        match decoder.decode(&line, &mut pending) {
            Line::Record => ends.push(pending.len()),
            Line::Malformed(_) => {
                malformed += 1;
                ends.push(pending.len());
            }
            Line::Skipped => {}
        }
        if ends.len() >= args.batch {
            if let Err(e) = flush(&mut pending, &mut ends, &mut out) {
                return broken_pipe(e);
            }
        }
    }
    if let Err(e) = flush(&mut pending, &mut ends, &mut out).and_then(|_| out.flush()) {
        return broken_pipe(e);
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "flowtag score: {records} records tagged by {} in {secs:.2}s: {anomalous} anomalous, {unscored} unscored{}",
        runtime.model_id(),
        if malformed > 0 { format!(" ({malformed} lines could not be decoded)") } else { String::new() }
    );
    0
}

fn broken_pipe(e: std::io::Error) -> i32 {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        0
    } else {
        eprintln!("flowtag score: writing output: {e}");
        1
    }
}

/// `flowtag decode`: each line of `file` (or standard input) through the decoder, as the
/// sources would make it; exit code 1 when a line could not be decoded.
pub fn decode(format: Decoding, file: Option<&std::path::Path>) -> i32 {
    let input: Box<dyn BufRead> = match file {
        Some(f) => match std::fs::File::open(f) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("flowtag decode: {}: {e}", f.display());
                return 2;
            }
        },
        None => Box::new(std::io::stdin().lock()),
    };
    let mut decoder = Decoder::new(format);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut record, mut malformed) = (Vec::new(), 0u64);
    for line in input.split(b'\n') {
        let Ok(line) = line else { return 2 };
        record.clear();
        match decoder.decode(&line, &mut record) {
            Line::Skipped => continue,
            Line::Record => {}
            Line::Malformed(_) => malformed += 1,
        }
        record.push(b'\n');
        if out.write_all(&record).is_err() {
            return 1;
        }
    }
    if out.flush().is_err() {
        return 1;
    }
    if malformed > 0 {
        eprintln!("flowtag decode: {malformed} lines could not be decoded");
        return 1;
    }
    0
}
