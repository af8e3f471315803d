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

/// What a record's field holds for one feature, as found by the scan.
pub type Slot = Option<Span>;

#[derive(Clone, Debug)]
enum Reader {
    Numeric { fill: f64, transforms: Vec<Transform> },
    Categorical { index: FxHashMap<Box<[u8]>, u32>, unknown: u32, onehot: bool, absent: u32 },
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
    /// Trimmed field name or alias -> feature index.
    lookup: FxHashMap<Box<[u8]>, u32>,
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
    feature: Option<u32>,
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
            for name in &f.fields {
                // First feature to claim a name keeps it.
                lookup.entry(trim(name).as_bytes().into()).or_insert(i as u32);
            }
            let reader = match &f.kind {
                FeatureKind::Numeric { fill, transforms } => {
                    Reader::Numeric { fill: *fill, transforms: transforms.clone() }
                }
                FeatureKind::Categorical { encoding, categories, fill } => Reader::Categorical {
                    index: categories.iter().enumerate().map(|(k, c)| (c.as_bytes().into(), k as u32)).collect(),
                    unknown: categories.len() as u32,
                    onehot: *encoding == Encoding::Onehot,
                    absent: fill
                        .as_ref()
                        .and_then(|f| categories.iter().position(|c| c == f))
                        .unwrap_or(categories.len()) as u32,
                },
            };
            features.push(FeatureReader { field: f.fields[0].as_str().into(), column, required: f.required, reader });
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
                if let Some(f) = feature {
                    slots[f as usize] = Some(m.value);
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
            Reader::Numeric { .. } => {
                let raw = match slot {
                    None => None,
                    Some(span) => self.number(i, span, record)?,
                };
                let raw = match raw {
                    Some(v) if v.is_infinite() && self.infinity == Infinity::Missing => None,
                    v => v,
                };
                let (column, f) = (self.features[i].column, &self.features[i]);
                let Reader::Numeric { fill, transforms } = &f.reader else { unreachable!() };
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
                    Some(span) => self.category(i, span, record)?.unwrap_or(absent),
                };
                if onehot {
                    let cols = &mut row[column..=column + unknown as usize];
                    cols.fill(0.0);
                    cols[code as usize] = 1.0;
                } else {
                    row[column] = code as f32;
                }
            }
        }
        Ok(())
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
    fn category(&mut self, i: usize, span: Span, record: &[u8]) -> Result<Option<u32>, RecordError> {
        let Reader::Categorical { index, unknown, .. } = &self.features[i].reader else {
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
        Ok(Some(index.get(key).copied().unwrap_or(*unknown)))
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
    use super::{plain_number, same_bytes};
    use crate::test_rng::Rng;

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
