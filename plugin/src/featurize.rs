//! Record to feature row, exactly as the manifest says (and as `flowtag_export.spec` does in
//! Python; `docs/bundle-format.md` holds the rules both follow).
//!
//! Per record: one pass over the top-level members ([`crate::json::scan_object`]), each key
//! trimmed and looked up among every feature's field names and aliases; then each feature reads
//! its value: numbers (or numbers written as strings), missing-value tokens, infinities, then the
//! transforms in `f64`, then one rounding to `f32`. Categoricals index or one-hot, with an
//! unknown bucket. The row is written into a caller's buffer and nothing is allocated per record
//! unless a key or value carries a JSON escape.

use rustc_hash::FxHashMap;

use crate::json::{self, Kind, Span};
use crate::manifest::{Encoding, FeatureKind, Infinity, Manifest, Policy, Transform};
use crate::text::TextReader;

/// Where a record holds a feature's value, and which of the feature's `fields` named it.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub span: Span,
    pub field: u16,
}

/// What a record's field holds for one feature, as found by the scan.
pub type Slot = Option<Found>;

#[derive(Clone, Debug)]
enum Reader {
    /// `scales`: per entry of `fields`, the factor its values are multiplied by (1 for a plain name).
    Numeric {
        fill: f64,
        transforms: Vec<Transform>,
        scales: Box<[f64]>,
    },
    /// `recode`: per entry of `fields`, the alias's value map, if it has one.
    Categorical {
        index: FxHashMap<Box<[u8]>, u32>,
        unknown: u32,
        onehot: bool,
        absent: u32,
        recode: Box<[Option<Recode>]>,
    },
    Text(Box<TextReader>),
}

/// An alias's value map, as category codes: a value the map lacks takes `default`, or without
/// one is looked up as it is.
#[derive(Clone, Debug)]
struct Recode {
    codes: FxHashMap<Box<[u8]>, u32>,
    default: Option<u32>,
}

#[derive(Clone, Debug)]
struct FeatureReader {
    /// The first field name, used in error messages.
    field: Box<str>,
    column: usize,
    required: bool,
    reader: Reader,
}

/// Featurizes records for one manifest.
#[derive(Clone, Debug)]
pub struct Featurizer {
    features: Vec<FeatureReader>,
    /// Trimmed field name or alias -> feature index and the entry of its `fields`.
    lookup: FxHashMap<Box<[u8]>, (u32, u16)>,
    /// Missing-value tokens, ASCII-lowercased.
    tokens: Vec<Box<[u8]>>,
    infinity: Infinity,
    policy: Policy,
    width: usize,
    scratch: String,
    /// The keys of the last record scanned, in order, with what each meant: records of one
    /// stream share their key order, so most keys are matched by a comparison, not a lookup.
    key_cache: Vec<CachedKey>,
    /// The reserved key the cache was built for.
    cache_reserved: Box<[u8]>,
}

#[derive(Clone, Debug)]
struct CachedKey {
    raw: Box<[u8]>,
    feature: Option<(u32, u16)>,
    reserved: bool,
}

/// Where a scanned record's object is, and whether it already has the reserved key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub object: json::Object,
    pub has_reserved: bool,
}

/// A record that cannot be featurized: the message names the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError(pub String);

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A piece of a record as text. Records are checked to be UTF-8 by [`Featurizer::scan`], and
/// the scanner cuts them only at ASCII delimiters (quotes, commas, brackets), so every piece
/// is UTF-8 too; this skips checking it again on the hot path.
fn text(piece: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(piece).is_ok());
    // SAFETY: see above: `piece` is a delimiter-bounded slice of a validated UTF-8 record.
    unsafe { std::str::from_utf8_unchecked(piece) }
}

/// Powers of ten that are exact in `f64`.
const POW10: [f64; 19] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18];

/// The value of a plain decimal (`-?digits`, or with one `.`), as `str::parse::<f64>` gives it,
/// or `None` for anything else (an exponent, more than 19 characters, more than 2^53 in its
/// digits), which `str::parse` then takes. Flow records are nearly all such numbers, and this
/// skips the general parser's checks for them. Exact: the digits make an integer `m <= 2^53`
/// and the point a power `10^k` with `k <= 18`, both exact in `f64`, so one IEEE division
/// rounds `m / 10^k` correctly (Clinger's fast path, which `str::parse` takes too).
#[inline(always)]
fn plain_number(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    if digits.len() > 19 {
        return None;
    }
    let (mut m, mut point) = (0u64, None);
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' => m = m * 10 + u64::from(c - b'0'),
            b'.' if point.is_none() => point = Some(digits.len() - i - 1),
            _ => return None,
        }
    }
    // At least one digit besides the point.
    if digits.len() == usize::from(point.is_some()) || m > 1 << 53 {
        return None;
    }
    let v = m as f64 / POW10[point.unwrap_or(0)];
    Some(if neg { -v } else { v })
}

/// A number's text as `f64` (`None` if it is not one): plain decimals on the fast path.
#[inline(always)]
fn parse_f64(text: &str) -> Option<f64> {
    plain_number(text.as_bytes()).or_else(|| text.parse().ok())
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace())
}

impl Featurizer {
    pub fn new(manifest: &Manifest) -> Featurizer {
        let mut lookup = FxHashMap::default();
        let mut features = Vec::with_capacity(manifest.features.len());
        let mut column = 0;
        for (i, f) in manifest.features.iter().enumerate() {
            for (k, field) in f.fields.iter().enumerate() {
                // First feature (and first entry) to claim a name keeps it; the manifest has at
                // most 65535 entries per feature.
                lookup.entry(trim(field.name()).as_bytes().into()).or_insert((i as u32, k as u16));
            }
            let reader = match &f.kind {
                FeatureKind::Numeric { fill, transforms } => Reader::Numeric {
                    fill: *fill,
                    transforms: transforms.clone(),
                    scales: f.fields.iter().map(|a| a.alias().and_then(|a| a.scale).unwrap_or(1.0)).collect(),
                },
                FeatureKind::Categorical { encoding, categories, fill } => {
                    let code = |c: &str| categories.iter().position(|k| k == c).unwrap_or(categories.len()) as u32;
                    let recode = f
                        .fields
                        .iter()
                        .map(|a| {
                            let a = a.alias()?;
                            let map = a.map.as_ref();
                            (map.is_some() || a.default.is_some()).then(|| Recode {
                                codes: map
                                    .into_iter()
                                    .flatten()
                                    .map(|(from, to)| (trim(from).as_bytes().into(), code(to)))
                                    .collect(),
                                default: a.default.as_deref().map(code),
                            })
                        })
                        .collect();
                    Reader::Categorical {
                        index: categories.iter().enumerate().map(|(k, c)| (c.as_bytes().into(), k as u32)).collect(),
                        unknown: categories.len() as u32,
                        onehot: *encoding == Encoding::Onehot,
                        absent: fill.as_deref().map_or(categories.len() as u32, code),
                        recode,
                    }
                }
                FeatureKind::Text { text } => Reader::Text(Box::new(TextReader::new(text))),
            };
            features.push(FeatureReader { field: f.fields[0].name().into(), column, required: f.required, reader });
            column += f.width();
        }
        Featurizer {
            features,
            lookup,
            tokens: manifest
                .missing
                .tokens
                .iter()
                .map(|t| t.to_ascii_lowercase().into_bytes().into_boxed_slice())
                .collect(),
            infinity: manifest.missing.infinity,
            policy: manifest.missing.policy,
            width: column,
            scratch: String::new(),
            key_cache: Vec::new(),
            cache_reserved: Box::new([]),
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn n_features(&self) -> usize {
        self.features.len()
    }

    /// Feature index and column range of each feature.
    pub fn columns(&self, feature: usize) -> std::ops::Range<usize> {
        let start = self.features[feature].column;
        let end = self.features.get(feature + 1).map_or(self.width, |f| f.column);
        start..end
    }

    /// Validate `record` as one JSON object and find each feature's value: `slots` gets one
    /// span per feature (the last matching field wins). `reserved` is a key the caller will
    /// write itself (the tag key): where the record already has it is reported.
    pub fn scan(&mut self, record: &[u8], slots: &mut [Slot], reserved: &str) -> Result<Shape, RecordError> {
        debug_assert_eq!(slots.len(), self.features.len());
        slots.fill(None);
        if *self.cache_reserved != *reserved.as_bytes() {
            self.key_cache.clear();
            self.cache_reserved = reserved.as_bytes().into();
        }
        let lookup = &self.lookup;
        let scratch = &mut self.scratch;
        let cache = &mut self.key_cache;
        let mut has_reserved = false;
        let mut position = 0;
        // Inlined into the scanner's loop: it runs once per member, and with two parsers
        // calling it LLVM kept it a call; inlined, scanning and matching take about 13 % less
        // time (perf, against the forest's unchanged share).
        let object = json::scan_utf8_object(
            record,
            #[inline(always)]
            |m| {
                let Kind::String { escaped } = m.key.kind else {
                    return;
                };
                let inner = m.key.inner(record);
                let hit = cache.get(position).filter(|c| same_bytes(&c.raw, inner));
                let (feature, reserved_here) = match hit {
                    Some(c) => (c.feature, c.reserved),
                    None => {
                        let key: &[u8] = if escaped {
                            json::unescape(inner, scratch);
                            scratch.as_bytes()
                        } else {
                            inner
                        };
                        let entry = CachedKey {
                            raw: inner.into(),
                            feature: lookup.get(key.trim_ascii()).copied(),
                            reserved: key == reserved.as_bytes(),
                        };
                        let meaning = (entry.feature, entry.reserved);
                        if position < cache.len() {
                            cache[position] = entry;
                        } else {
                            cache.push(entry);
                        }
                        meaning
                    }
                };
                position += 1;
                has_reserved |= reserved_here;
                if let Some((f, field)) = feature {
                    slots[f as usize] = Some(Found { span: m.value, field });
                }
            },
        )
        .map_err(|e| match e {
            json::RecordProblem::NotUtf8 => RecordError("record is not valid UTF-8".into()),
            json::RecordProblem::Json(e) => RecordError(e.to_string()),
        })?;
        Ok(Shape { object, has_reserved })
    }

    /// Write the feature row of a scanned record into `row`.
    pub fn fill(&mut self, record: &[u8], slots: &[Slot], row: &mut [f32]) -> Result<(), RecordError> {
        debug_assert_eq!(row.len(), self.width);
        for (i, slot) in slots.iter().enumerate() {
            self.feature(i, *slot, record, row)?;
        }
        Ok(())
    }

    fn feature(&mut self, i: usize, slot: Slot, record: &[u8], row: &mut [f32]) -> Result<(), RecordError> {
        let f = &self.features[i];
        if slot.is_none() && f.required {
            return Err(RecordError(format!("missing field `{}`", f.field)));
        }
        match &f.reader {
            Reader::Numeric { scales, .. } => {
                let raw = match slot {
                    None => None,
                    Some(Found { span, field }) => {
                        let scale = scales[usize::from(field)];
                        self.number(i, span, record)?.map(|v| v * scale)
                    }
                };
                let raw = match raw {
                    Some(v) if v.is_infinite() && self.infinity == Infinity::Missing => None,
                    v => v,
                };
                let (column, f) = (self.features[i].column, &self.features[i]);
                let Reader::Numeric { fill, transforms, .. } = &f.reader else { unreachable!() };
                let value = match raw {
                    Some(v) => apply(transforms, v),
                    None => None,
                };
                let value = match value {
                    Some(v) => v,
                    None if self.policy == Policy::Unscored => {
                        return Err(RecordError(format!("field `{}` has no usable value", f.field)));
                    }
                    // The fill value goes through the transforms as a present value would.
                    None => apply(transforms, *fill).unwrap_or(0.0),
                };
                row[column] = value as f32;
            }
            Reader::Categorical { unknown, onehot, absent, .. } => {
                let (unknown, onehot, absent, column) = (*unknown, *onehot, *absent, f.column);
                let code = match slot {
                    None => absent,
                    Some(found) => self.category(i, found, record)?.unwrap_or(absent),
                };
                if onehot {
                    let cols = &mut row[column..=column + unknown as usize];
                    cols.fill(0.0);
                    cols[code as usize] = 1.0;
                } else {
                    row[column] = code as f32;
                }
            }
            Reader::Text(_) => {
                let columns = self.columns(i);
                let Featurizer { features, scratch, .. } = self;
                let value = text_value(&features[i].field, slot, record, scratch)?;
                let Reader::Text(t) = &mut features[i].reader else { unreachable!() };
                t.write(value, &mut row[columns]);
            }
        }
        Ok(())
    }

    /// For a reason: what column `c` of text feature `i`'s block shows in `record` (see
    /// [`TextReader::explain`]).
    pub fn explain(
        &mut self,
        i: usize,
        slot: Slot,
        record: &[u8],
        c: usize,
        unusual: impl Fn(usize) -> bool,
    ) -> Option<String> {
        let Featurizer { features, scratch, .. } = self;
        let value = text_value(&features[i].field, slot, record, scratch).ok()?;
        let Reader::Text(t) = &mut features[i].reader else { return None };
        t.explain(value, c, unusual)
    }

    /// The number a field holds; `None` when it is missing (null, a token, NaN).
    fn number(&mut self, i: usize, span: Span, record: &[u8]) -> Result<Option<f64>, RecordError> {
        let text: &str = match span.kind {
            Kind::Number => text(span.inner(record)),
            Kind::True => return Ok(Some(1.0)),
            Kind::False => return Ok(Some(0.0)),
            Kind::Null => return Ok(None),
            Kind::String { escaped } => {
                let inner = span.inner(record);
                if escaped {
                    json::unescape(inner, &mut self.scratch);
                    let t = trim(&self.scratch).to_string();
                    return self.number_text(i, &t);
                }
                trim(text(inner))
            }
            Kind::Object | Kind::Array => {
                let what = if span.kind == Kind::Object { "an object" } else { "an array" };
                return Err(RecordError(format!("field `{}`: expected a number, got {what}", self.features[i].field)));
            }
        };
        if span.kind == Kind::Number {
            // JSON numbers always parse; a huge exponent gives infinity.
            return Ok(parse_f64(text).filter(|v| !v.is_nan()));
        }
        self.number_text(i, text)
    }

    fn number_text(&self, i: usize, text: &str) -> Result<Option<f64>, RecordError> {
        if self.tokens.iter().any(|t| t.eq_ignore_ascii_case(text.as_bytes())) {
            return Ok(None);
        }
        match parse_f64(text) {
            Some(v) if v.is_nan() => Ok(None),
            Some(v) => Ok(Some(v)),
            None => Err(RecordError(format!("field `{}`: expected a number, got {:?}", self.features[i].field, text))),
        }
    }

    /// The category code a field holds: `None` for null; unknown categories get the
    /// unknown bucket.
    fn category(&mut self, i: usize, found: Found, record: &[u8]) -> Result<Option<u32>, RecordError> {
        let span = found.span;
        let Reader::Categorical { index, unknown, recode, .. } = &self.features[i].reader else {
            unreachable!("category() is only called for categorical features")
        };
        let key: &[u8] = match span.kind {
            Kind::String { escaped: true } => {
                json::unescape(span.inner(record), &mut self.scratch);
                self.scratch.as_bytes().trim_ascii()
            }
            Kind::String { escaped: false } | Kind::Number => span.inner(record).trim_ascii(),
            Kind::True => b"true",
            Kind::False => b"false",
            Kind::Null => return Ok(None),
            Kind::Object | Kind::Array => {
                let what = if span.kind == Kind::Object { "an object" } else { "an array" };
                return Err(RecordError(format!(
                    "field `{}`: expected a category, got {what}",
                    self.features[i].field
                )));
            }
        };
        if let Some(r) = &recode[usize::from(found.field)] {
            if let Some(code) = r.codes.get(key).copied().or(r.default) {
                return Ok(Some(code));
            }
        }
        Ok(Some(index.get(key).copied().unwrap_or(*unknown)))
    }
}

/// The bytes a text feature reads: a string unescaped (into `scratch` when it has escapes), a
/// number or `true`/`false` as written; absent and `null` are empty.
fn text_value<'a>(field: &str, slot: Slot, record: &'a [u8], scratch: &'a mut String) -> Result<&'a [u8], RecordError> {
    let Some(Found { span, .. }) = slot else { return Ok(b"") };
    match span.kind {
        Kind::String { escaped: true } => {
            json::unescape(span.inner(record), scratch);
            Ok(scratch.as_bytes())
        }
        Kind::String { escaped: false } | Kind::Number | Kind::True | Kind::False => Ok(span.inner(record)),
        Kind::Null => Ok(b""),
        Kind::Object | Kind::Array => {
            let what = if span.kind == Kind::Object { "an object" } else { "an array" };
            Err(RecordError(format!("field `{field}`: expected text, got {what}")))
        }
    }
}

/// The transforms, in order, in `f64`; `None` if the result is not finite.
fn apply(transforms: &[Transform], mut x: f64) -> Option<f64> {
    for t in transforms {
        x = match *t {
            Transform::Clip { min, max } => x.clamp(min, max),
            Transform::Log1p => {
                if x < 0.0 {
                    -libm::log1p(-x)
                } else {
                    libm::log1p(x)
                }
            }
            Transform::Scale { mean, std } => (x - mean) / std,
        };
    }
    x.is_finite().then_some(x)
}

/// `a == b` for the short keys of a record, without a call to `memcmp` (under WASM that is
/// wasi-libc's byte loop, and keys are compared for every field of every record): words that
/// overlap at the ends instead of a loop over the tail.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |s: &[u8], i: usize| u32::from_ne_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if w8(a, i) != w8(b, i) {
                    return false;
                }
                i += 8;
            }
            w8(a, n - 8) == w8(b, n - 8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{plain_number, same_bytes, Featurizer};
    use crate::manifest::Manifest;
    use crate::test_rng::Rng;

    /// A manifest of `features` (index-encoded categoricals), with what validation needs.
    fn manifest(features: serde_json::Value) -> Result<Manifest, String> {
        let n = features.as_array().unwrap().len();
        let doc = serde_json::json!({
            "format": 1, "name": "t", "version": "1", "kind": "isolation_forest",
            "input": {"name": "input", "width": n}, "output": {"name": "score"},
            "features": features, "threshold": 0.5, "calibration": {"quantiles": [0.0, 1.0]},
            "reference": features.as_array().unwrap().iter().map(|f| match f["categories"].as_array() {
                Some(c) => serde_json::json!({"frequencies": vec![0.0; c.len() + 1]}),
                None => serde_json::json!({"mean": 0.0, "std": 1.0}),
            }).collect::<Vec<_>>(),
            "model_sha256": "0".repeat(64),
        });
        Manifest::parse(doc.to_string().as_bytes()).map_err(|e| e.to_string())
    }

    fn row(f: &mut Featurizer, record: &str) -> Result<Vec<f32>, String> {
        let mut slots = vec![None; f.n_features()];
        let mut row = vec![0.0; f.width()];
        f.scan(record.as_bytes(), &mut slots, "tags").map_err(|e| e.0)?;
        f.fill(record.as_bytes(), &slots, &mut row).map_err(|e| e.0)?;
        Ok(row)
    }

    #[test]
    fn aliases_scale_numbers_and_map_categories() {
        let m = manifest(serde_json::json!([
            {"name": "dur", "type": "numeric", "fields": ["dur", {"name": "Flow Duration", "scale": 1e-6},
                                                          {"name": "flowDurationMilliseconds", "scale": 0.001}]},
            {"name": "proto", "type": "categorical", "encoding": "index", "categories": ["tcp", "udp"],
             "fields": ["proto", {"name": "protocolIdentifier", "map": {"6": "tcp", "17": "udp", "1": "icmp"}}]},
            {"name": "service", "type": "categorical", "encoding": "index", "categories": ["-", "http"], "required": false,
             "fields": ["service", {"name": "destinationTransportPort", "map": {"80": "http"}, "default": "-"}]},
        ]))
        .unwrap();
        // Reference rows: (dur, proto code, service code).
        let mut f = Featurizer::new(&m);
        assert_eq!(row(&mut f, r#"{"dur": 1.5, "proto": "udp", "service": "http"}"#).unwrap(), [1.5, 1.0, 1.0]);
        assert_eq!(row(&mut f, r#"{"Flow Duration": 1500000, "protocolIdentifier": 6}"#).unwrap(), [1.5, 0.0, 2.0]);
        let netflow = r#"{"flowDurationMilliseconds": 1500, "protocolIdentifier": 17, "destinationTransportPort": 80}"#;
        assert_eq!(row(&mut f, netflow).unwrap(), [1.5, 1.0, 1.0]);
        // Unmapped: a port outside the map takes the default; a protocol outside it is read as
        // it is (here unknown); "icmp" is mapped to but not a category: unknown.
        let other = r#"{"dur": 0, "protocolIdentifier": "tcp", "destinationTransportPort": 8080}"#;
        assert_eq!(row(&mut f, other).unwrap(), [0.0, 0.0, 0.0]);
        assert_eq!(row(&mut f, r#"{"dur": 0, "protocolIdentifier": 1}"#).unwrap(), [0.0, 2.0, 2.0]);
        // A string number is scaled too; a missing value stays missing (the fill, unscaled).
        assert_eq!(row(&mut f, r#"{"Flow Duration": " 2e6 ", "proto": "tcp"}"#).unwrap(), [2.0, 0.0, 2.0]);
        assert_eq!(row(&mut f, r#"{"Flow Duration": "-", "proto": "tcp"}"#).unwrap(), [0.0, 0.0, 2.0]);
    }

    #[test]
    fn alias_conversions_must_fit_the_feature() {
        let numeric_map = serde_json::json!([{"name": "dur", "type": "numeric", "fields": ["dur", {"name": "d", "map": {"1": "x"}}]}]);
        let e = manifest(numeric_map).unwrap_err();
        assert!(e.contains("features[0].fields[1]") && e.contains("numeric one takes scale"), "{e}");
        let first = serde_json::json!([{"name": "dur", "type": "numeric", "fields": [{"name": "d", "scale": 2}]}]);
        let e = manifest(first).unwrap_err();
        assert!(e.contains("features[0].fields[0]") && e.contains("canonical name must be a plain name"), "{e}");
        let cat_scale = serde_json::json!([{"name": "p", "type": "categorical", "encoding": "index", "fields": ["p", {"name": "q", "scale": 2}]}]);
        let e = manifest(cat_scale).unwrap_err();
        assert!(e.contains("features[0].fields[1]") && e.contains("categorical one takes map"), "{e}");
        let zero =
            serde_json::json!([{"name": "dur", "type": "numeric", "fields": ["dur", {"name": "d", "scale": 0}]}]);
        assert!(manifest(zero).unwrap_err().contains("not a finite, non-zero number"));
        let unknown =
            serde_json::json!([{"name": "dur", "type": "numeric", "fields": ["dur", {"name": "d", "unit": "ms"}]}]);
        assert!(manifest(unknown).is_err(), "an alias with an unknown key is refused");
    }

    #[test]
    fn plain_numbers_parse_as_std_does() {
        let fixed = "0 -0 1 -1 0.5 -0.5 1. .5 007 0.000011 180363632.0 0.1 0.2 0.3 \
                     9007199254740992 9007199254740993 900719925474099.3 1234567890123456789 \
                     9999999999999999999 1.7976931348623157 123456.78901234567 0.000000000000000001";
        let mut cases: Vec<String> = fixed.split(' ').map(str::to_string).collect();
        let mut rng = Rng(0x5eed_1234);
        for _ in 0..200_000 {
            let len = 1 + rng.index(20);
            let mut t: String = (0..len).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
            if rng.below(2) == 0 {
                t.insert(rng.index(len + 1), '.');
            }
            if rng.below(4) == 0 {
                t.insert(0, '-');
            }
            cases.push(t);
        }
        let mut fast = 0;
        for t in &cases {
            let std = t.parse::<f64>().ok();
            match plain_number(t.as_bytes()) {
                Some(v) => {
                    fast += 1;
                    assert_eq!(Some(v.to_bits()), std.map(f64::to_bits), "{t:?}");
                }
                // Left to `str::parse`: only what is beyond the fast path.
                None => {
                    let digits = t.replace(['-', '.'], "");
                    let beyond = t.trim_start_matches('-').len() > 19 || digits.parse::<u128>().unwrap() > 1 << 53;
                    assert!(beyond, "{t:?}");
                }
            }
        }
        assert!(fast > cases.len() / 2, "the fast path took {fast} of {}", cases.len());
        for bad in ["", "-", ".", "-.", "1.2.3", "1e5", "12a", "+1", " 1", "Infinity", "NaN"] {
            assert_eq!(plain_number(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let a: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        for n in 0..a.len() {
            assert!(same_bytes(&a[..n], &a[..n]));
            assert!(!same_bytes(&a[..n], &a[..n + 1]), "lengths differ");
            for at in 0..n {
                let mut b = a[..n].to_vec();
                b[at] ^= 0x40;
                assert!(!same_bytes(&a[..n], &b), "length {n}, difference at {at}");
            }
        }
    }
}
