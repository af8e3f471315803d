//! From a raw model score to the tags: calibrated score, verdict, reasons, model id.
//!
//! * `score`: the percentile of the raw score among normal validation traffic, from the
//!   manifest's calibration quantiles (linear between them), rounded to 6 decimals.
//! * `verdict`: `anomalous` when the raw score reaches the manifest's threshold.
//! * `reasons`: the features that drove the score, most first: for tree models the deviation of
//!   each feature from the manifest's reference statistics of normal traffic (|z| for numbers,
//!   rarity `sqrt((1 - p) / p)` for categories); for autoencoders each feature's share of the
//!   reconstruction error. Each names the feature, its value as the record has it, and a
//!   direction.

use crate::json;
use crate::manifest::{Encoding, FeatureKind, Kind, Manifest, Reference, TextSpec};
use crate::text;

/// Which records carry reasons: `anomalous` (the default), `all` scored records, or `none`.
/// The one spelling of this choice: configs (serde), the command line and the WASM ABI
/// (`FromStr`) all read it here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonsMode {
    #[default]
    Anomalous,
    All,
    None,
}

impl std::str::FromStr for ReasonsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<ReasonsMode, String> {
        match s {
            "anomalous" => Ok(ReasonsMode::Anomalous),
            "all" => Ok(ReasonsMode::All),
            "none" => Ok(ReasonsMode::None),
            other => Err(format!("reasons {other:?}: expected anomalous, all or none")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Anomalous,
    Normal,
    Unscored,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Anomalous => "anomalous",
            Verdict::Normal => "normal",
            Verdict::Unscored => "unscored",
        }
    }
}

#[derive(Clone, Debug)]
enum Ref {
    Numeric { column: usize, mean: f64, std: f64 },
    Categorical { columns: std::ops::Range<usize>, onehot: bool, frequencies: Vec<f64> },
    Text { columns: std::ops::Range<usize>, mean: Vec<f64>, std: Vec<f64>, spec: TextSpec },
}

/// One reason: feature index, how far it deviates, which way; for a text feature, which
/// column of its block (else 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reason {
    pub feature: usize,
    pub deviation: f64,
    pub direction: Direction,
    pub column: usize,
}

/// A text column's std below this counts as this, so a column normal traffic never set has a
/// finite deviation.
const MIN_TEXT_STD: f64 = 0.01;

/// A text column whose |z| reaches this is unusual: shown with the reason's n-gram.
const UNUSUAL_Z: f64 = 3.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    High,
    Low,
    Rare,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::High => "high",
            Direction::Low => "low",
            Direction::Rare => "rare",
        }
    }
}

/// A text column's z against its reference.
fn text_z(x: f32, mean: f64, std: f64) -> f64 {
    (f64::from(x) - mean) / std.max(MIN_TEXT_STD)
}

/// The index and value of the largest of `values` (the first of equals).
fn top(values: impl Iterator<Item = f64>) -> (usize, f64) {
    values.enumerate().fold((0, f64::NEG_INFINITY), |best, (i, v)| if v > best.1 { (i, v) } else { best })
}

/// Floor for category frequencies, so an unseen category has a finite rarity.
const MIN_FREQUENCY: f64 = 1e-4;

pub struct Tagger {
    threshold: f64,
    higher_is_anomalous: bool,
    /// Calibration quantiles, oriented so that higher means more anomalous.
    quantiles: Vec<f64>,
    /// The manifest's threshold and quantiles, for when a local calibration is lifted.
    bundle: (f64, Vec<f64>),
    /// `,"calibration":"<label>"` when the host calibrates (see [`Tagger::set_calibration`]).
    calibration_member: Vec<u8>,
    refs: Vec<Ref>,
    /// Feature names as JSON strings, ready to copy.
    names: Vec<Vec<u8>>,
    autoencoder: bool,
    /// `"<key>":`
    key_prefix: Vec<u8>,
    /// `"model":"name@version"`
    model_member: Vec<u8>,
    pub reasons: ReasonsMode,
    pub max_reasons: usize,
}

impl Tagger {
    pub fn new(manifest: &Manifest, key: &str, reasons: ReasonsMode, max_reasons: usize) -> Tagger {
        let mut refs = Vec::with_capacity(manifest.features.len());
        let mut column = 0;
        for (f, r) in manifest.features.iter().zip(&manifest.reference) {
            let width = f.width();
            refs.push(match (r, &f.kind) {
                (Reference::Numeric { mean, std }, _) => Ref::Numeric { column, mean: *mean, std: *std },
                (Reference::Categorical { frequencies }, FeatureKind::Categorical { encoding, .. }) => {
                    Ref::Categorical {
                        columns: column..column + width,
                        onehot: *encoding == Encoding::Onehot,
                        frequencies: frequencies.clone(),
                    }
                }
                (Reference::Text { mean, std }, FeatureKind::Text { text }) => Ref::Text {
                    columns: column..column + width,
                    mean: mean.clone(),
                    std: std.clone(),
                    spec: text.clone(),
                },
                // Manifest validation pairs each kind of feature with its kind of reference.
                _ => Ref::Numeric { column, mean: 0.0, std: 1.0 },
            });
            column += width;
        }
        let higher = manifest.output.higher_is_anomalous;
        let quantiles = if higher {
            manifest.calibration.quantiles.clone()
        } else {
            manifest.calibration.quantiles.iter().rev().map(|q| -q).collect()
        };
        let mut key_prefix = Vec::new();
        json::write_string(&mut key_prefix, key);
        key_prefix.push(b':');
        let mut model_member = b"\"model\":".to_vec();
        json::write_string(&mut model_member, &format!("{}@{}", manifest.name, manifest.version));
        Tagger {
            threshold: manifest.threshold,
            higher_is_anomalous: higher,
            bundle: (manifest.threshold, quantiles.clone()),
            calibration_member: Vec::new(),
            quantiles,
            refs,
            names: manifest
                .features
                .iter()
                .map(|f| {
                    let mut v = Vec::new();
                    json::write_string(&mut v, &f.name);
                    v
                })
                .collect(),
            autoencoder: manifest.kind == Kind::Autoencoder,
            key_prefix,
            model_member,
            reasons,
            max_reasons,
        }
    }

    /// Score and verdict from a calibration other than the manifest's (this node's own score
    /// distribution): `quantiles` of raw scores, ascending, and the raw `threshold`; `None`
    /// goes back to the manifest's. `label`, when given, is written into every scored tag as
    /// `"calibration":"<label>"` (e.g. `warming_up`, `local`).
    pub fn set_calibration(&mut self, local: Option<(&[f64], f64)>, label: Option<&str>) -> Result<(), String> {
        match local {
            Some((q, threshold)) => {
                if q.len() < 2 || q.windows(2).any(|w| !(w[0] <= w[1])) || !threshold.is_finite() {
                    return Err(
                        "calibration: expected at least 2 non-decreasing finite quantiles and a finite threshold"
                            .into(),
                    );
                }
                self.quantiles =
                    if self.higher_is_anomalous { q.to_vec() } else { q.iter().rev().map(|v| -v).collect() };
                self.threshold = threshold;
            }
            None => (self.threshold, self.quantiles) = self.bundle.clone(),
        }
        self.calibration_member.clear();
        if let Some(label) = label {
            self.calibration_member.extend_from_slice(b",\"calibration\":");
            json::write_string(&mut self.calibration_member, label);
        }
        Ok(())
    }

    /// Calibrated score (0..1) and verdict of a raw score.
    pub fn assess(&self, raw: f32) -> (f64, Verdict) {
        let raw = f64::from(raw);
        let (s, anomalous) =
            if self.higher_is_anomalous { (raw, raw >= self.threshold) } else { (-raw, raw <= self.threshold) };
        let verdict = if anomalous { Verdict::Anomalous } else { Verdict::Normal };
        (round6(percentile(s, &self.quantiles)), verdict)
    }

    pub fn wants_reasons(&self, verdict: Verdict) -> bool {
        match self.reasons {
            ReasonsMode::All => verdict != Verdict::Unscored,
            ReasonsMode::Anomalous => verdict == Verdict::Anomalous,
            ReasonsMode::None => false,
        }
    }

    /// The top reasons for one row (`residual` for autoencoders), into `out`.
    pub fn reasons_for(&self, row: &[f32], residual: Option<&[f32]>, out: &mut Vec<Reason>) {
        out.clear();
        for (feature, r) in self.refs.iter().enumerate() {
            let reason = match (r, residual.filter(|_| self.autoencoder)) {
                (Ref::Numeric { column, .. }, Some(res)) => {
                    let e = f64::from(res[*column]);
                    Reason {
                        feature,
                        deviation: e * e,
                        direction: if e >= 0.0 { Direction::High } else { Direction::Low },
                        column: 0,
                    }
                }
                (Ref::Categorical { columns, .. }, Some(res)) => Reason {
                    feature,
                    deviation: res[columns.clone()].iter().map(|&e| f64::from(e) * f64::from(e)).sum(),
                    direction: Direction::Rare,
                    column: 0,
                },
                (Ref::Text { columns, spec, .. }, Some(res)) => {
                    let hashed = text::hashed_from(spec);
                    let (c, e) = top(res[columns.clone()].iter().enumerate().map(|(c, &e)| {
                        // A hashed column speaks only for what the record has.
                        if c >= hashed && e < 0.0 {
                            0.0
                        } else {
                            f64::from(e) * f64::from(e)
                        }
                    }));
                    let signed = res[columns.start + c];
                    Reason {
                        feature,
                        deviation: e,
                        direction: if signed >= 0.0 { Direction::High } else { Direction::Low },
                        column: c,
                    }
                }
                (Ref::Text { columns, mean, std, spec }, None) => {
                    let z = |c: usize| text_z(row[columns.start + c], mean[c], std[c]);
                    let hashed = text::hashed_from(spec);
                    // A hashed column speaks only for what the record has: a token or n-gram
                    // that is usual but absent names nothing an analyst could look at.
                    let (c, dev) =
                        top((0..columns.len()).map(|c| if c >= hashed { z(c).max(0.0) } else { z(c).abs() }));
                    Reason {
                        feature,
                        deviation: dev,
                        direction: if z(c) >= 0.0 { Direction::High } else { Direction::Low },
                        column: c,
                    }
                }
                (Ref::Numeric { column, mean, std }, None) => {
                    let z = (f64::from(row[*column]) - mean) / std;
                    Reason {
                        feature,
                        deviation: z.abs(),
                        direction: if z >= 0.0 { Direction::High } else { Direction::Low },
                        column: 0,
                    }
                }
                (Ref::Categorical { columns, onehot, frequencies }, None) => {
                    let code = if *onehot {
                        row[columns.clone()].iter().position(|&v| v != 0.0).unwrap_or(frequencies.len() - 1)
                    } else {
                        (row[columns.start] as usize).min(frequencies.len() - 1)
                    };
                    let p = frequencies[code].max(MIN_FREQUENCY);
                    Reason {
                        feature,
                        deviation: ((1.0 - p) / p).max(0.0).sqrt(),
                        direction: Direction::Rare,
                        column: 0,
                    }
                }
            };
            out.push(reason);
        }
        // Largest deviation first; ties by feature order, so output is deterministic.
        out.sort_by(|a, b| b.deviation.total_cmp(&a.deviation).then(a.feature.cmp(&b.feature)));
        out.truncate(self.max_reasons);
    }

    /// Whether column `c` of text feature `feature`'s block deviates in `row` (|z| of at
    /// least 3), for showing a run of unusual n-grams whole.
    pub fn unusual(&self, feature: usize, row: &[f32], c: usize) -> bool {
        match &self.refs[feature] {
            Ref::Text { columns, mean, std, .. } => {
                c < columns.len() && text_z(row[columns.start + c], mean[c], std[c]).abs() >= UNUSUAL_Z
            }
            _ => false,
        }
    }

    /// Whether `feature` is a text feature (its reasons name a column of its block).
    pub fn is_text(&self, feature: usize) -> bool {
        matches!(self.refs[feature], Ref::Text { .. })
    }

    /// Write the tag member of a scored record: `"anomaly":{...}`. `value(reason, out)` writes
    /// the JSON value a reason shows: the record's own text for the feature (`null` when
    /// absent), or for a text feature the decoded text behind the reason's column.
    pub fn write_scored(
        &self,
        out: &mut Vec<u8>,
        raw: f32,
        score: f64,
        verdict: Verdict,
        reasons: Option<&[Reason]>,
        mut value: impl FnMut(&Reason, &mut Vec<u8>),
    ) {
        out.extend_from_slice(&self.key_prefix);
        out.extend_from_slice(b"{\"score\":");
        push_rounded(out, score, 6);
        out.extend_from_slice(b",\"raw_score\":");
        push_f32(out, raw);
        out.extend_from_slice(b",\"verdict\":\"");
        out.extend_from_slice(verdict.as_str().as_bytes());
        out.extend_from_slice(b"\",");
        out.extend_from_slice(&self.model_member);
        out.extend_from_slice(&self.calibration_member);
        if let Some(reasons) = reasons {
            out.extend_from_slice(b",\"reasons\":[");
            for (k, r) in reasons.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"feature\":");
                out.extend_from_slice(&self.names[r.feature]);
                if let Ref::Text { spec, .. } = &self.refs[r.feature] {
                    out.extend_from_slice(b",\"part\":");
                    json::write_string(out, text::part_name(spec, r.column));
                }
                out.extend_from_slice(b",\"value\":");
                value(r, out);
                out.extend_from_slice(if self.autoencoder { b",\"error\":" } else { b",\"z\":" });
                push_rounded(out, round3(r.deviation), 3);
                out.extend_from_slice(b",\"direction\":\"");
                out.extend_from_slice(r.direction.as_str().as_bytes());
                out.extend_from_slice(b"\"}");
            }
            out.push(b']');
        }
        out.push(b'}');
    }

    /// Write the tag member of a record that could not be scored.
    /// Bytes of the quoted key and colon written before the tags object.
    pub fn key_prefix_len(&self) -> usize {
        self.key_prefix.len()
    }

    pub fn write_unscored(&self, out: &mut Vec<u8>, error: &str) {
        write_unscored_tag(out, &self.key_prefix, &self.model_member, error);
    }
}

/// `"<key>":{"verdict":"unscored","model":"<id>","error":"<error>"}` from the prepared
/// `"<key>":` and `"model":"<id>"` pieces.
pub(crate) fn write_unscored_tag(out: &mut Vec<u8>, key_prefix: &[u8], model_member: &[u8], error: &str) {
    out.extend_from_slice(key_prefix);
    out.extend_from_slice(b"{\"verdict\":\"unscored\",");
    out.extend_from_slice(model_member);
    out.extend_from_slice(b",\"error\":");
    json::write_string(out, error);
    out.push(b'}');
}

/// Fraction of normal traffic scoring at most `s`, linear between the quantiles
/// (the same as `flowtag_export.manifest.calibrate`).
pub fn percentile(s: f64, q: &[f64]) -> f64 {
    let k = q.len() - 1;
    if s < q[0] {
        return 0.0;
    }
    if s >= q[k] {
        return 1.0;
    }
    // Largest i with q[i] <= s; i < k because s < q[k].
    let i = q.partition_point(|&v| v <= s) - 1;
    let (lo, hi) = (q[i], q[i + 1]);
    let frac = if hi > lo { (s - lo) / (hi - lo) } else { 0.0 };
    (i as f64 + frac) / k as f64
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e3).round() / 1e3
    } else {
        f64::MAX
    }
}

fn push_f64(out: &mut Vec<u8>, x: f64) {
    let mut b = ryu::Buffer::new();
    out.extend_from_slice(if x.is_finite() { b.format_finite(x) } else { "null" }.as_bytes());
}

/// `x`, which the caller rounded to `places` decimals ([`round6`], [`round3`]), written exactly
/// as [`push_f64`] writes it, without ryu's general search for the shortest digits. Such an
/// `x` is the double nearest to `m / 10^places` for the integer `m = x * 10^places`, and no
/// shorter decimal lies within its rounding interval (with `m` below 1e15 the interval is under
/// a quarter of `10^-places`), so its shortest form is `m`'s digits with the point put back
/// and trailing zeros dropped; ryu writes that in plain notation from 1e-5 to 1e16. Anything
/// else (zero, tiny or huge values, a value not rounded so) goes to ryu.
fn push_rounded(out: &mut Vec<u8>, x: f64, places: u32) {
    const SCALE: [f64; 7] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6];
    let scale = SCALE[places as usize];
    let m = (x * scale).round();
    if !(x.abs() >= 1e-5 && m.abs() < 1e15 && m / scale == x) {
        return push_f64(out, x);
    }
    if x < 0.0 {
        out.push(b'-');
    }
    let m = m.abs() as u64;
    let unit = 10u64.pow(places);
    push_digits(out, m / unit, 1);
    out.push(b'.');
    let (mut frac, mut width) = (m % unit, places as usize);
    if frac == 0 {
        out.push(b'0');
        return;
    }
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    push_digits(out, frac, width);
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut at = buf.len();
    while n > 0 {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[at.min(buf.len() - width)..]);
}

fn push_f32(out: &mut Vec<u8>, x: f32) {
    let mut b = ryu::Buffer::new();
    out.extend_from_slice(if x.is_finite() { b.format_finite(x) } else { "null" }.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounded_values_are_written_as_ryu_writes_them() {
        let check = |x: f64, places: u32| {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            push_rounded(&mut fast, x, places);
            push_f64(&mut slow, x);
            assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap(), "{x:e} to {places} places");
        };
        let mut rng = crate::test_rng::Rng(7);
        for i in 0..400_000 {
            // Magnitudes from 1e-8 to 1e17, both signs: each value as drawn (not so rounded,
            // so it must go to ryu) and, seven times in eight, rounded as the tagger rounds.
            let magnitude = 10f64.powi(rng.index(26) as i32 - 8);
            let x = (rng.next() as f64 / u64::MAX as f64) * magnitude * if i % 2 == 0 { 1.0 } else { -1.0 };
            check(x, 6);
            check(x, 3);
            if i % 8 != 0 {
                check(round6(x), 6);
                check(round3(x), 3);
            }
        }
        for x in [0.0, -0.0, 1.0, 0.5, 1e-5, 1e-6, 0.00001, 0.000012, 0.0001, 99.995, 7.0, 1e15, 9e15, 1e16, f64::MAX] {
            check(x, 6);
            check(x, 3);
            check(round6(x), 6);
            check(round3(x), 3);
        }
        let mut out = Vec::new();
        push_rounded(&mut out, f64::NAN, 6);
        assert_eq!(out, b"null");
    }

    #[test]
    fn percentile_interpolates_and_handles_ties() {
        let q = [0.0, 0.0, 0.0, 1.0, 2.0];
        assert_eq!(percentile(-1.0, &q), 0.0);
        assert_eq!(percentile(0.0, &q), 0.5);
        assert_eq!(percentile(0.5, &q), 0.625);
        assert_eq!(percentile(2.0, &q), 1.0);
        assert_eq!(percentile(9.0, &q), 1.0);
    }
}
