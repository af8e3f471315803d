//! The tag filter: a batch of JSON records in, the same records tagged out, in order.
//!
//! Nothing is dropped. A record that is valid JSON keeps every byte of its object and gains one
//! member, the tags (a tag member it already had is replaced). A record that cannot be scored
//! (a field missing or unreadable) gets `verdict: "unscored"` and an `error`. A line that is not
//! a JSON object is wrapped as `{"message": <the line>, <tags>}`. If the model itself fails on a
//! batch, every record of the batch is forwarded unscored with the model's error.
//!
//! Per batch: scan and featurize every record into one reused buffer, run the model once on the
//! rows that featurized, then write each record with its tags.

use crate::bundle::Bundle;
use crate::error::BundleError;
use crate::featurize::{Featurizer, Shape, Slot};
use crate::json;
use crate::manifest::Manifest;
use crate::scorer::Scorer;
use crate::tagger::{write_unscored_tag, Reason, ReasonsMode, Tagger, Verdict};

/// How far a canary's raw score may be from the expected one, relative to max(1, |expected|).
pub const CANARY_TOLERANCE: f64 = 1e-5;

/// How the filter tags.
#[derive(Clone, Debug)]
pub struct FilterOptions {
    /// The member the tags go under.
    pub key: String,
    /// Which records carry `reasons`.
    pub reasons: ReasonsMode,
    /// How many reasons at most.
    pub max_reasons: usize,
}

impl Default for FilterOptions {
    fn default() -> Self {
        FilterOptions { key: "anomaly".into(), reasons: ReasonsMode::Anomalous, max_reasons: 3 }
    }
}

/// A calibration the host sets on a live filter: this node's raw-score `quantiles` (ascending)
/// and raw `threshold` (both absent: the manifest's), and a `label` written into scored tags.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub quantiles: Option<Vec<f64>>,
    pub threshold: Option<f64>,
    pub label: Option<String>,
}

/// What happened to one record of the last batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordResult {
    pub verdict: Verdict,
    /// Calibrated score, 0..1 (0 when unscored).
    pub score: f64,
    /// The model's raw score (NaN when unscored).
    pub raw: f32,
    /// The index (in the manifest's `features`) of the record's first reason, when its tag
    /// carries reasons.
    pub top_reason: Option<u16>,
    /// Where the tags object is in the tagged record (start and end offsets from the record's
    /// first byte): the value of its last member, so readers of the tags need not find them.
    /// `None` where the runtime does not say (the WASM ABI carries no offsets).
    pub tags: Option<(u32, u32)>,
}

/// Counts for one batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchStats {
    pub records: usize,
    pub anomalous: usize,
    pub normal: usize,
    pub unscored: usize,
    /// Set when the model failed on the whole batch (every record then went out unscored).
    pub model_error: Option<String>,
}

pub struct Filter {
    id: String,
    manifest: Manifest,
    key: String,
    featurizer: Featurizer,
    scorer: Scorer,
    tagger: Tagger,
    // Reused per batch.
    x: Vec<f32>,
    slots: Vec<Slot>,
    prepared: Vec<Prepared>,
    results: Vec<RecordResult>,
    reasons: Vec<Reason>,
}

/// A record after scanning and featurizing.
enum Prepared {
    /// Featurized into row `row` of the batch matrix.
    Row { shape: Shape, row: usize },
    /// A JSON object whose features cannot be read.
    Unscorable { shape: Shape, error: String },
    /// Not a JSON object at all.
    NotObject { error: String },
}

impl Filter {
    /// Load a bundle: the manifest was checked and the model hash verified by [`Bundle`];
    /// here the model is optimised and its input width and outputs checked.
    pub fn new(bundle: &Bundle, options: FilterOptions) -> Result<Filter, BundleError> {
        let manifest = bundle.manifest.clone();
        let scorer = Scorer::new(&bundle.model_bytes, &manifest)?;
        Ok(Filter {
            id: bundle.id(),
            featurizer: Featurizer::new(&manifest),
            tagger: Tagger::new(&manifest, &options.key, options.reasons, options.max_reasons),
            key: options.key,
            manifest,
            scorer,
            x: Vec::new(),
            slots: Vec::new(),
            prepared: Vec::new(),
            results: Vec::new(),
            reasons: Vec::new(),
        })
    }

    /// `name@version`.
    pub fn model_id(&self) -> &str {
        &self.id
    }

    /// When tract, not the dense executor, runs the model: why (see [`Scorer::tract_reason`]).
    pub fn tract_reason(&self) -> Option<&str> {
        self.scorer.tract_reason()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Tag with another calibration than the manifest's (see [`crate::tagger::Tagger::set_calibration`]).
    pub fn set_calibration(&mut self, c: &Calibration) -> Result<(), String> {
        let local = match (&c.quantiles, c.threshold) {
            (Some(q), Some(t)) => Some((&q[..], t)),
            (None, None) => None,
            _ => return Err("calibration: quantiles and threshold go together".into()),
        };
        self.tagger.set_calibration(local, c.label.as_deref())
    }

    /// Results of the last batch, one per record.
    pub fn results(&self) -> &[RecordResult] {
        &self.results
    }

    /// Tag newline-delimited records (a trailing `\r` is dropped; blank lines carry no record
    /// and are skipped). Output: one tagged record per line.
    pub fn tag_lines(&mut self, input: &[u8], out: &mut Vec<u8>) -> BatchStats {
        let records: Vec<&[u8]> =
            lines(input).map(|l| l.strip_suffix(b"\r").unwrap_or(l)).filter(|l| !l.trim_ascii().is_empty()).collect();
        self.run(&records, out, None, true)
    }

    /// Tag `records` (one JSON object each), appending each tagged record to `out`; `ends[i]`
    /// is where record `i` ends in `out`.
    pub fn tag_batch(&mut self, records: &[&[u8]], out: &mut Vec<u8>, ends: &mut Vec<usize>) -> BatchStats {
        self.run(records, out, Some(ends), false)
    }

    fn run(
        &mut self,
        records: &[&[u8]],
        out: &mut Vec<u8>,
        mut ends: Option<&mut Vec<usize>>,
        newline: bool,
    ) -> BatchStats {
        let n = records.len();
        let width = self.featurizer.width();
        let n_features = self.featurizer.n_features();
        self.slots.resize(n * n_features, None);
        self.x.resize(n * width, 0.0);
        self.prepared.clear();
        let mut valid = 0;
        for (i, record) in records.iter().enumerate() {
            let slots = &mut self.slots[i * n_features..(i + 1) * n_features];
            let prepared = match self.featurizer.scan(record, slots, &self.key) {
                Err(e) => Prepared::NotObject { error: e.0 },
                Ok(shape) => match self.featurizer.fill(record, slots, &mut self.x[valid * width..(valid + 1) * width])
                {
                    Ok(()) => {
                        valid += 1;
                        Prepared::Row { shape, row: valid - 1 }
                    }
                    Err(e) => Prepared::Unscorable { shape, error: e.0 },
                },
            };
            self.prepared.push(prepared);
        }

        let mut stats = BatchStats { records: n, ..BatchStats::default() };
        let scores = match valid {
            0 => None,
            _ => match self.scorer.run(&self.x[..valid * width], valid) {
                Ok(s) => Some(s),
                Err(e) => {
                    stats.model_error = Some(e);
                    None
                }
            },
        };
        self.results.clear();
        let prefix = self.tagger.key_prefix_len();
        for (i, record) in records.iter().enumerate() {
            let record_start = out.len();
            // Where the tags object will start: after the record's members and the key.
            let tags_at;
            let verdict = match &self.prepared[i] {
                Prepared::Row { shape, row } => {
                    let raw = scores.as_ref().map(|s| s.raw[*row]);
                    open_record(out, record, *shape, &self.key);
                    tags_at = out.len() + prefix;
                    match (raw, &stats.model_error) {
                        (Some(raw), _) if raw.is_finite() => {
                            let (score, verdict) = self.tagger.assess(raw);
                            let reasons = if self.tagger.wants_reasons(verdict) {
                                let scores = scores.as_ref().expect("scored");
                                let residual = (!scores.residual.is_empty())
                                    .then(|| &scores.residual[row * width..(row + 1) * width]);
                                self.tagger.reasons_for(
                                    &self.x[row * width..(row + 1) * width],
                                    residual,
                                    &mut self.reasons,
                                );
                                Some(&self.reasons[..])
                            } else {
                                None
                            };
                            let slots = &self.slots[i * n_features..(i + 1) * n_features];
                            let (tagger, featurizer) = (&self.tagger, &mut self.featurizer);
                            let x = &self.x[row * width..(row + 1) * width];
                            tagger.write_scored(out, raw, score, verdict, reasons, |r, out| {
                                let slot = slots[r.feature];
                                if tagger.is_text(r.feature) {
                                    let unusual = |c| tagger.unusual(r.feature, x, c);
                                    match featurizer.explain(r.feature, slot, record, r.column, unusual) {
                                        Some(shown) => json::write_string(out, &shown),
                                        None => out.extend_from_slice(b"null"),
                                    }
                                } else {
                                    out.extend_from_slice(
                                        slot.map_or(&b"null"[..], |s| &record[s.span.start..s.span.end]),
                                    );
                                }
                            });
                            let top_reason = reasons.and_then(|r| r.first()).map(|r| r.feature as u16);
                            self.results.push(RecordResult { verdict, score, raw, top_reason, tags: None });
                            verdict
                        }
                        (Some(_), _) => self.unscored(out, "model returned a non-finite score"),
                        (None, Some(e)) => {
                            let e = e.clone();
                            self.unscored(out, &e)
                        }
                        (None, None) => unreachable!("rows are scored unless the model failed"),
                    }
                }
                Prepared::Unscorable { shape, error } => {
                    open_record(out, record, *shape, &self.key);
                    tags_at = out.len() + prefix;
                    let error = error.clone();
                    self.unscored(out, &error)
                }
                Prepared::NotObject { error } => {
                    wrap_line(out, record);
                    tags_at = out.len() + prefix;
                    let error = error.clone();
                    self.unscored(out, &error)
                }
            };
            if let Some(r) = self.results.last_mut() {
                r.tags = Some(((tags_at - record_start) as u32, (out.len() - record_start) as u32));
            }
            out.push(b'}');
            if newline {
                out.push(b'\n');
            }
            match verdict {
                Verdict::Anomalous => stats.anomalous += 1,
                Verdict::Normal => stats.normal += 1,
                Verdict::Unscored => stats.unscored += 1,
            }
            if let Some(ends) = ends.as_deref_mut() {
                ends.push(out.len());
            }
        }
        stats
    }

    /// Score the manifest's canary rows and compare with their expected raw scores (and
    /// verdicts, unless the score sits on the threshold): a bundle that fails this would tag
    /// differently from the way it was trained and must not go live.
    pub fn check_canaries(&mut self) -> Result<usize, BundleError> {
        let canaries = self.manifest.canaries.clone();
        let records: Vec<Vec<u8>> =
            canaries.iter().map(|c| serde_json::to_vec(&c.record).expect("a JSON map serializes")).collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        let stats = self.run(&refs, &mut out, Some(&mut ends), false);
        if let Some(e) = stats.model_error {
            return Err(BundleError::Canary { index: 0, problem: e });
        }
        for (index, (c, r)) in canaries.iter().zip(&self.results).enumerate() {
            if r.verdict == Verdict::Unscored {
                let start = if index == 0 { 0 } else { ends[index - 1] };
                let tagged = String::from_utf8_lossy(&out[start..ends[index]]);
                return Err(BundleError::Canary { index, problem: format!("could not be scored: {tagged}") });
            }
            let raw = f64::from(r.raw);
            if (raw - c.raw_score).abs() > CANARY_TOLERANCE * c.raw_score.abs().max(1.0) {
                return Err(BundleError::Canary {
                    index,
                    problem: format!(
                        "scored {raw}, expected raw_score {} (the featurizer or model disagrees with training)",
                        c.raw_score
                    ),
                });
            }
            let on_threshold =
                (raw - self.manifest.threshold).abs() <= CANARY_TOLERANCE * self.manifest.threshold.abs().max(1.0);
            if let Some(v) = &c.verdict {
                if !on_threshold && v != r.verdict.as_str() {
                    return Err(BundleError::Canary {
                        index,
                        problem: format!("verdict {}, expected {v}", r.verdict.as_str()),
                    });
                }
            }
        }
        Ok(canaries.len())
    }

    fn unscored(&mut self, out: &mut Vec<u8>, error: &str) -> Verdict {
        self.tagger.write_unscored(out, error);
        self.results.push(RecordResult {
            verdict: Verdict::Unscored,
            score: 0.0,
            raw: f32::NAN,
            top_reason: None,
            tags: None,
        });
        Verdict::Unscored
    }
}
/// Tag every record of a batch that could not be run at all (the WASM module trapped, ran out
/// of time or memory): each goes on as [`Filter`] would write an unscored record, with `error`.
/// Appends to `out` and pushes each record's end to `ends`.
pub fn tag_failed(records: &[&[u8]], key: &str, model_id: &str, error: &str, out: &mut Vec<u8>, ends: &mut Vec<usize>) {
    let mut key_prefix = Vec::new();
    json::write_string(&mut key_prefix, key);
    key_prefix.push(b':');
    let mut model_member = b"\"model\":".to_vec();
    json::write_string(&mut model_member, model_id);
    let mut scratch = String::new();
    for record in records {
        let mut has_reserved = false;
        let scanned = json::scan_object(record, |m| has_reserved |= names_key(record, &m.key, key, &mut scratch));
        match scanned {
            Ok(object) => open_record(out, record, Shape { object, has_reserved }, key),
            Err(_) => wrap_line(out, record),
        }
        write_unscored_tag(out, &key_prefix, &model_member, error);
        out.push(b'}');
        ends.push(out.len());
    }
}

/// Write the record's object up to (not including) its closing brace, followed by a comma if
/// members precede the tags. A record that already has the tag key is rewritten without it.
fn open_record(out: &mut Vec<u8>, record: &[u8], shape: Shape, key: &str) {
    let obj = shape.object;
    if !shape.has_reserved {
        out.extend_from_slice(&record[obj.open..obj.close]);
        // Drop whitespace before the closing brace so the comma sits after the last value.
        while out.last().is_some_and(|b| b.is_ascii_whitespace()) {
            out.pop();
        }
        if obj.members > 0 {
            out.push(b',');
        }
        return;
    }
    out.push(b'{');
    let mut scratch = String::new();
    let _ = json::scan_object(record, |m| {
        if !names_key(record, &m.key, key, &mut scratch) {
            out.extend_from_slice(&record[m.key.start..m.value.end]);
            out.push(b',');
        }
    });
}

/// Whether a member's key (a span of `record`) is `key`, escapes and all.
fn names_key(record: &[u8], span: &json::Span, key: &str, scratch: &mut String) -> bool {
    let inner = span.inner(record);
    match span.kind {
        json::Kind::String { escaped: true } => {
            json::unescape(inner, scratch);
            scratch == key
        }
        _ => inner == key.as_bytes(),
    }
}

/// A line that is not a JSON object, as `{"message": <line>,`.
fn wrap_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(b"{\"message\":");
    json::write_string(out, &String::from_utf8_lossy(line));
    out.push(b',');
}

/// The pieces of `input` between newlines, as `input.split(|&b| b == b'\n')` gives them (a
/// final piece, possibly empty, after the last newline), found with `memchr` (SIMD natively
/// and under WASM's simd128) instead of a byte at a time.
pub fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut newlines = memchr::memchr_iter(b'\n', input);
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match newlines.next() {
            Some(nl) => {
                start = Some(nl + 1);
                Some(&input[from..nl])
            }
            None => {
                start = None;
                Some(&input[from..])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::lines;

    #[test]
    fn lines_split_as_slice_split_does() {
        for input in [&b""[..], b"\n", b"a", b"a\n", b"a\nb", b"\n\nab\r\n\ncd\n", b"no newline at all"] {
            let want: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
            assert_eq!(lines(input).collect::<Vec<_>>(), want, "{:?}", String::from_utf8_lossy(input));
        }
        let long: Vec<u8> = (0..5000).map(|i| if i % 97 == 0 { b'\n' } else { b'x' }).collect();
        assert_eq!(lines(&long).collect::<Vec<_>>(), long.split(|&b| b == b'\n').collect::<Vec<_>>());
    }
}
