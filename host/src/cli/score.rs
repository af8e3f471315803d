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
use crate::transforms::anomaly::runtime::{Loader, TagRuntime};
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

/// `flowtag score`'s engine: decodes lines with a source's decoder, tags them in batches and
/// writes each tagged record as a JSON line, in input order. The Python bindings
/// (`bindings/python`, Spark batch scoring) drive the same struct, so an archive scored there
/// gets the bytes `flowtag score` writes.
pub struct LineScorer {
    format: Decoding,
    decoder: Decoder,
    runtime: Box<dyn TagRuntime>,
    batch: usize,
    pending: Vec<u8>,
    ends: Vec<usize>,
    tagged: Vec<u8>,
    tagged_ends: Vec<usize>,
    scratch: Vec<u8>,
    pub records: usize,
    pub anomalous: usize,
    pub unscored: usize,
    pub malformed: usize,
}

/// A batch that could not be scored (its records still went out, with an error tag).
pub type Failure = Option<String>;

impl LineScorer {
    /// Load the bundle as `flowtag score` does (canaries checked); errors name what failed.
    pub fn open(args: &ScoreArgs) -> Result<LineScorer, String> {
        let cfg = AnomalyConfig {
            key: args.key.clone(),
            reasons: args.reasons,
            batch: BatchConfig { max_events: args.batch, ..BatchConfig::default() },
            ..AnomalyConfig::standalone(args.model.clone(), args.runtime, args.plugin.clone())
        };
        cfg.check("score")?;
        let bundle = Bundle::read_path(&args.model).map_err(|e| format!("{}: {e}", args.model.display()))?;
        let loader = Loader::new(&cfg, &args.data_dir.join("wasm-cache")).map_err(|e| format!("plugin: {e}"))?;
        let runtime = loader.load(&bundle).map_err(|e| format!("{}: model refused: {e}", args.model.display()))?;
        Ok(LineScorer {
            format: args.format,
            decoder: Decoder::new(args.format),
            runtime,
            batch: args.batch.max(1),
            pending: Vec::new(),
            ends: Vec::new(),
            tagged: Vec::new(),
            tagged_ends: Vec::new(),
            scratch: Vec::new(),
            records: 0,
            anomalous: 0,
            unscored: 0,
            malformed: 0,
        })
    }

    /// `name@version` of the model.
    pub fn model_id(&self) -> &str {
        self.runtime.model_id()
    }

    /// Start a new stream (another file, or a part of one): the decoder forgets the headers it
    /// has seen. Records still pending are written first.
    pub fn new_stream(&mut self, out: &mut dyn Write) -> std::io::Result<Failure> {
        let failure = self.flush(out)?;
        self.decoder = Decoder::new(self.format);
        Ok(failure)
    }

    /// Feed a line for its header state only (a CSV header, Zeek's `#fields`): a stream that
    /// starts in the middle of a file is primed with the file's first lines. A record it would
    /// make is dropped.
    pub fn prime(&mut self, line: &[u8]) {
        self.scratch.clear();
        let _ = self.decoder.decode(line, &mut self.scratch);
    }

    /// One line of input (without its newline). A full batch is tagged and written to `out`.
    pub fn line(&mut self, line: &[u8], out: &mut dyn Write) -> std::io::Result<Failure> {
        match self.decoder.decode(line, &mut self.pending) {
            Line::Record => self.ends.push(self.pending.len()),
            Line::Malformed(_) => {
                self.malformed += 1;
                self.ends.push(self.pending.len());
            }
            Line::Skipped => {}
        }
        if self.ends.len() >= self.batch {
            self.flush(out)
        } else {
            Ok(None)
        }
    }

    /// Tag and write the records still pending.
    pub fn flush(&mut self, out: &mut dyn Write) -> std::io::Result<Failure> {
        if self.ends.is_empty() {
            return Ok(None);
        }
        let mut start = 0;
        let recs: Vec<&[u8]> = self
            .ends
            .iter()
            .map(|&e| {
                let r = &self.pending[start..e];
                start = e;
                r
            })
            .collect();
        self.tagged.clear();
        self.tagged_ends.clear();
        let t = self.runtime.tag(&recs, &mut self.tagged, &mut self.tagged_ends);
        self.records += recs.len();
        self.anomalous += t.anomalous;
        self.unscored += t.unscored;
        let mut s = 0;
        for &e in self.tagged_ends.iter() {
            out.write_all(&self.tagged[s..e])?;
            out.write_all(b"\n")?;
            s = e;
        }
        self.pending.clear();
        self.ends.clear();
        Ok(t.failure)
    }
}

/// Run; returns the process exit code.
pub fn run(args: ScoreArgs) -> i32 {
    let mut scorer = match LineScorer::open(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flowtag score: {e}");
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
    let report = |f: Failure| {
        if let Some(f) = f {
            eprintln!("flowtag score: a batch could not be scored: {f}");
        }
    };
    for line in reader.split(b'\n') {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("flowtag score: reading input: {e}");
                return 1;
            }
        };
        match scorer.line(&line, &mut out) {
            Ok(f) => report(f),
            Err(e) => return broken_pipe(e),
        }
    }
    match scorer.flush(&mut out).and_then(|f| out.flush().map(|_| f)) {
        Ok(f) => report(f),
        Err(e) => return broken_pipe(e),
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "flowtag score: {} records tagged by {} in {secs:.2}s: {} anomalous, {} unscored{}",
        scorer.records,
        scorer.model_id(),
        scorer.anomalous,
        scorer.unscored,
        if scorer.malformed > 0 {
            format!(" ({} lines could not be decoded)", scorer.malformed)
        } else {
            String::new()
        }
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
