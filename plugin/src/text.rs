//! Text features (`type: "text"`, version 1): a request target or form body to a fixed block of
//! columns. The rules are `docs/bundle-format.md`, "Text features"; the Python twin is
//! `flowtag_export.text`, held to this code by the golden fixtures and by a parity test over
//! every request of the shared web datasets.
//!
//! In short: the value (cut to `max_bytes`) is split into path segments and `&`-separated
//! parameters, each piece percent-decoded on its own (`%XX`, `%uXXXX`, `+` in parameters,
//! repeated up to `decode_rounds`, then overlong two-byte UTF-8 folded to ASCII), and the pieces
//! rejoined, ASCII-lowercased, as the *normalised text*. From it: ten counts, keyword hits,
//! hashed character n-grams; from the pieces: hashed tokens (path segments, parameter names,
//! value lengths and value shapes). Every hash is 32-bit FNV-1a of the bytes, modulo the
//! bucket count. Buffers are kept between records: nothing is allocated per record.

use memchr::memmem::Finder;

use crate::manifest::{TextShape, TextSpec};

/// The count columns, in order, at the start of every text feature's block.
pub const COUNTS: [&str; 10] =
    ["length", "digits", "letters", "special", "control", "non_ascii", "encoded", "params", "depth", "entropy"];

/// Limits the manifest is checked against.
const MAX_BYTES: usize = 1 << 20;
const MAX_ROUNDS: u32 = 4;
const MAX_N: usize = 8;
const MAX_BUCKETS: usize = 1 << 16;
const MAX_TERM: usize = 256;

/// Columns of a text feature.
pub fn width(spec: &TextSpec) -> usize {
    COUNTS.len() + spec.keywords.len() + spec.ngrams.map_or(0, |h| h.buckets) + spec.tokens.map_or(0, |h| h.buckets)
}

/// Check a text spec: `Err((key under `text.`, problem))`.
pub fn check(spec: &TextSpec) -> Result<(), (String, String)> {
    let bad = |key: &str, problem: String| Err((key.to_string(), problem));
    if spec.version != 1 {
        return bad("version", format!("text features version {} is not known here (1 is)", spec.version));
    }
    if !(1..=MAX_BYTES).contains(&spec.max_bytes) {
        return bad("max_bytes", format!("expected 1 to {MAX_BYTES}, got {}", spec.max_bytes));
    }
    if spec.decode_rounds > MAX_ROUNDS {
        return bad("decode_rounds", format!("expected 0 to {MAX_ROUNDS}, got {}", spec.decode_rounds));
    }
    for (key, h) in [("ngrams", spec.ngrams), ("tokens", spec.tokens)] {
        let Some(h) = h else { continue };
        if !(1..=MAX_N).contains(&h.n) {
            return bad(&format!("{key}.n"), format!("expected 1 to {MAX_N}, got {}", h.n));
        }
        if !(1..=MAX_BUCKETS).contains(&h.buckets) {
            return bad(&format!("{key}.buckets"), format!("expected 1 to {MAX_BUCKETS}, got {}", h.buckets));
        }
    }
    for (g, group) in spec.keywords.iter().enumerate() {
        if group.terms.is_empty() {
            return bad(&format!("keywords[{g}].terms"), "expected at least one term".into());
        }
        for (t, term) in group.terms.iter().enumerate() {
            if term.is_empty() || term.len() > MAX_TERM {
                return bad(&format!("keywords[{g}].terms[{t}]"), format!("expected 1 to {MAX_TERM} bytes"));
            }
        }
    }
    Ok(())
}

/// 32-bit FNV-1a.
#[inline(always)]
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h = 0x811c_9dc5_u32;
    for &b in bytes {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// The byte a value's shape keeps: digits to `0`, ASCII letters to `a`, bytes past ASCII to
/// `u`, anything else as it is.
#[inline(always)]
fn class(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b'0',
        b'a'..=b'z' | b'A'..=b'Z' => b'a',
        0x80.. => b'u',
        _ => b,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decode `src` into `out` (`tmp` is scratch): up to `rounds` rounds, `+` as a space
/// in the first when `plus`; then overlong two-byte UTF-8 sequences folded. Returns how many
/// escapes were decoded, overlong sequences included.
fn decode(src: &[u8], plus: bool, rounds: u32, out: &mut Vec<u8>, tmp: &mut Vec<u8>) -> u32 {
    out.clear();
    out.extend_from_slice(src);
    let mut decoded = 0;
    for round in 0..rounds {
        tmp.clear();
        let mut changed = false;
        let mut i = 0;
        while i < out.len() {
            let b = out[i];
            if b == b'%' {
                if let (Some(h), Some(l)) = (out.get(i + 1).and_then(|&c| hex(c)), out.get(i + 2).and_then(|&c| hex(c)))
                {
                    tmp.push(h << 4 | l);
                    decoded += 1;
                    changed = true;
                    i += 3;
                    continue;
                }
                if matches!(out.get(i + 1), Some(b'u' | b'U')) && i + 6 <= out.len() {
                    let digits = &out[i + 2..i + 6];
                    let cp = digits.iter().try_fold(0u32, |acc, &c| Some(acc << 4 | u32::from(hex(c)?)));
                    if let Some(c) = cp.and_then(char::from_u32) {
                        let mut utf8 = [0; 4];
                        tmp.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                        decoded += 1;
                        changed = true;
                        i += 6;
                        continue;
                    }
                }
                tmp.push(b'%');
            } else if b == b'+' && plus && round == 0 {
                tmp.push(b' ');
                changed = true;
            } else {
                tmp.push(b);
            }
            i += 1;
        }
        std::mem::swap(out, tmp);
        if !changed {
            break;
        }
    }
    // Overlong encodings of ASCII (`%c0%af` for `/`).
    tmp.clear();
    let mut i = 0;
    while i < out.len() {
        let b = out[i];
        match out.get(i + 1) {
            Some(&c) if (b == 0xc0 || b == 0xc1) && (0x80..=0xbf).contains(&c) => {
                tmp.push((b & 0x1f) << 6 | (c & 0x3f));
                decoded += 1;
                i += 2;
            }
            _ => {
                tmp.push(b);
                i += 1;
            }
        }
    }
    std::mem::swap(out, tmp);
    decoded
}

/// One token of a request, for [`TextReader::tokens`]: the bytes hashed, and what an analyst
/// should be shown for it.
struct Token<'a> {
    hashed: &'a [u8],
    shown: Shown<'a>,
}

enum Shown<'a> {
    Segment(&'a [u8]),
    Parameter { name: &'a [u8], value: &'a [u8] },
}

/// Reads one text feature; keeps its buffers between records.
#[derive(Debug)]
pub struct TextReader {
    spec: TextSpec,
    finders: Vec<Vec<Finder<'static>>>,
    /// The normalised text of the last value read.
    norm: Vec<u8>,
    piece: Vec<u8>,
    name: Vec<u8>,
    tmp: Vec<u8>,
    token: Vec<u8>,
    shape: Vec<u8>,
}

impl Clone for TextReader {
    fn clone(&self) -> TextReader {
        TextReader::new(&self.spec)
    }
}

/// What a column of a text block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Count(usize),
    Keyword(usize),
    Ngram(usize),
    Token(usize),
}

/// The first hashed column (n-grams, then tokens) of a text block.
pub fn hashed_from(spec: &TextSpec) -> usize {
    COUNTS.len() + spec.keywords.len()
}

/// What column `c` of a text block is.
pub fn part(spec: &TextSpec, c: usize) -> Part {
    let k = spec.keywords.len();
    let n = spec.ngrams.map_or(0, |h| h.buckets);
    match c {
        c if c < COUNTS.len() => Part::Count(c),
        c if c < COUNTS.len() + k => Part::Keyword(c - COUNTS.len()),
        c if c < COUNTS.len() + k + n => Part::Ngram(c - COUNTS.len() - k),
        c => Part::Token(c - COUNTS.len() - k - n),
    }
}

/// How reasons name column `c` of a text block: a count's name, a keyword group's name,
/// `ngram` or `token`.
pub fn part_name(spec: &TextSpec, c: usize) -> &str {
    match part(spec, c) {
        Part::Count(i) => COUNTS[i],
        Part::Keyword(g) => &spec.keywords[g].name,
        Part::Ngram(_) => "ngram",
        Part::Token(_) => "token",
    }
}

impl TextReader {
    pub fn new(spec: &TextSpec) -> TextReader {
        let finders = spec
            .keywords
            .iter()
            .map(|g| g.terms.iter().map(|t| Finder::new(t.to_ascii_lowercase().as_bytes()).into_owned()).collect())
            .collect();
        TextReader {
            spec: spec.clone(),
            finders,
            norm: Vec::new(),
            piece: Vec::new(),
            name: Vec::new(),
            tmp: Vec::new(),
            token: Vec::new(),
            shape: Vec::new(),
        }
    }

    pub fn width(&self) -> usize {
        width(&self.spec)
    }

    /// Write the block of `value` into `out` (`width()` columns).
    pub fn write(&mut self, value: &[u8], out: &mut [f32]) {
        debug_assert_eq!(out.len(), self.width());
        out.fill(0.0);
        let ngram_base = hashed_from(&self.spec);
        let token_base = ngram_base + self.spec.ngrams.map_or(0, |h| h.buckets);
        let tokens = self.spec.tokens;
        let mut counts = [0u32; 9];
        counts[0] = value.len().min(u32::MAX as usize) as u32;
        let (encoded, params, depth) = self.tokens(value, |t| {
            if let Some(h) = tokens {
                out[token_base + (fnv1a32(t.hashed) as usize) % h.buckets] += 1.0;
            }
        });
        counts[6] = encoded;
        counts[7] = params;
        counts[8] = depth;
        let mut histogram = [0u32; 256];
        for &b in &self.norm {
            histogram[usize::from(b)] += 1;
        }
        for (b, &c) in histogram.iter().enumerate() {
            let slot = match b as u8 {
                b'0'..=b'9' => 1,
                b'a'..=b'z' | b'A'..=b'Z' => 2,
                0x20..=0x7e => 3,
                0x00..=0x1f | 0x7f => 4,
                0x80.. => 5,
            };
            counts[slot] += c;
        }
        for (i, c) in counts.iter().enumerate() {
            out[i] = libm::log1p(f64::from(*c)) as f32;
        }
        out[9] = entropy(&histogram, self.norm.len()) as f32;
        for (g, finders) in self.finders.iter().enumerate() {
            let hits: usize = finders.iter().map(|f| f.find_iter(&self.norm).count()).sum();
            out[COUNTS.len() + g] = libm::log1p(hits as f64) as f32;
        }
        if let Some(h) = self.spec.ngrams {
            for gram in self.norm.windows(h.n) {
                out[ngram_base + (fnv1a32(gram) as usize) % h.buckets] += 1.0;
            }
        }
        for v in &mut out[ngram_base..] {
            if *v != 0.0 {
                *v = libm::log1p(f64::from(*v)) as f32;
            }
        }
    }

    /// Split `value` into its pieces, decode each, build the normalised text in `self.norm` and
    /// hand each token to `each`. Returns (escapes decoded, parameters, path depth).
    fn tokens(&mut self, value: &[u8], mut each: impl FnMut(Token<'_>)) -> (u32, u32, u32) {
        let raw = &value[..value.len().min(self.spec.max_bytes)];
        let rounds = self.spec.decode_rounds;
        let n = self.spec.tokens.map_or(1, |h| h.n);
        let form = self.spec.shape == TextShape::Form;
        let TextReader { norm, piece, name, tmp, token, shape, .. } = self;
        norm.clear();
        let (mut encoded, mut params, mut depth) = (0, 0, 0);
        let (path, query) = match (form, memchr::memchr(b'?', raw)) {
            (true, _) => (None, Some(raw)),
            (false, Some(q)) => (Some(&raw[..q]), Some(&raw[q + 1..])),
            (false, None) => (Some(raw), None),
        };
        if let Some(path) = path {
            let last = memchr::memchr_iter(b'/', path).count();
            for (i, seg) in path.split(|&b| b == b'/').enumerate() {
                if i > 0 {
                    norm.push(b'/');
                }
                encoded += decode(seg, false, rounds, piece, tmp);
                piece.make_ascii_lowercase();
                norm.extend_from_slice(piece);
                let is_last = i == last;
                if !seg.is_empty() {
                    depth += 1;
                }
                if is_last || !piece.is_empty() {
                    token.clear();
                    token.push(if is_last { b'F' } else { b'P' });
                    // A segment with a digit (an id, a date) is known by its shape.
                    if piece.iter().any(u8::is_ascii_digit) {
                        token.extend(piece.iter().map(|&b| class(b)));
                    } else {
                        token.extend_from_slice(piece);
                    }
                    each(Token { hashed: token, shown: Shown::Segment(piece) });
                }
            }
        }
        if let Some(query) = query {
            if path.is_some() {
                norm.push(b'?');
            }
            for (i, part) in query.split(|&b| b == b'&').enumerate() {
                if i > 0 {
                    norm.push(b'&');
                }
                if part.is_empty() {
                    continue;
                }
                params += 1;
                let (raw_name, raw_value) = match memchr::memchr(b'=', part) {
                    Some(e) => (&part[..e], Some(&part[e + 1..])),
                    None => (part, None),
                };
                encoded += decode(raw_name, true, rounds, name, tmp);
                name.make_ascii_lowercase();
                norm.extend_from_slice(name);
                piece.clear();
                if let Some(v) = raw_value {
                    encoded += decode(v, true, rounds, piece, tmp);
                    norm.push(b'=');
                    norm.extend(piece.iter().map(u8::to_ascii_lowercase));
                }
                let shown = || Shown::Parameter { name, value: piece };
                token.clear();
                token.push(b'K');
                token.extend_from_slice(name);
                each(Token { hashed: token, shown: shown() });
                token.truncate(0);
                token.push(b'L');
                token.extend_from_slice(name);
                token.push(b':');
                let bits = usize::BITS - piece.len().leading_zeros();
                push_decimal(token, bits);
                each(Token { hashed: token, shown: shown() });
                shape.clear();
                shape.push(b'^');
                shape.extend(piece.iter().map(|&b| class(b)));
                shape.push(b'$');
                let grams = shape.len().saturating_sub(n) + 1;
                for g in 0..grams {
                    token.clear();
                    token.push(b'V');
                    token.extend_from_slice(name);
                    token.push(b':');
                    token.extend_from_slice(&shape[g..(g + n).min(shape.len())]);
                    each(Token { hashed: token, shown: shown() });
                }
            }
        }
        (encoded, params, depth)
    }

    /// What an analyst should see for column `c` of `value`'s block: the decoded substring, token
    /// or matched keyword behind it, at most `MAX_SHOWN` bytes (lossy UTF-8). `unusual(c)` says
    /// which other n-gram columns deviate, so a run of unusual n-grams is shown whole.
    pub fn explain(&mut self, value: &[u8], c: usize, unusual: impl Fn(usize) -> bool) -> Option<String> {
        let part = part(&self.spec, c);
        let ngram_base = hashed_from(&self.spec);
        match part {
            Part::Count(_) => {
                self.tokens(value, |_| {});
                Some(lossy(&self.norm[..self.norm.len().min(MAX_SHOWN)]))
            }
            Part::Token(bucket) => {
                let buckets = self.spec.tokens?.buckets;
                let mut shown = None;
                self.tokens(value, |t| {
                    if shown.is_none() && (fnv1a32(t.hashed) as usize) % buckets == bucket {
                        shown = Some(match t.shown {
                            Shown::Segment(s) => s.to_vec(),
                            Shown::Parameter { name, value } => [name, b"=", value].concat(),
                        });
                    }
                });
                shown.map(|s| lossy(&s))
            }
            Part::Keyword(g) => {
                self.tokens(value, |_| {});
                let hit =
                    self.finders[g].iter().filter_map(|f| f.find(&self.norm).map(|at| (at, f.needle().len()))).min()?;
                Some(lossy(around(&self.norm, hit.0, hit.0 + hit.1)))
            }
            Part::Ngram(bucket) => {
                let h = self.spec.ngrams?;
                self.tokens(value, |_| {});
                let in_bucket = |g: &[u8]| (fnv1a32(g) as usize) % h.buckets;
                // The run of positions with unusual n-grams that holds `bucket`'s first one.
                let (mut start, mut end, mut hit) = (0, 0, false);
                for (i, g) in self.norm.windows(h.n).enumerate() {
                    let b = in_bucket(g);
                    if b == bucket || unusual(ngram_base + b) {
                        if i > end || end == 0 {
                            if hit {
                                break;
                            }
                            start = i;
                        }
                        end = i + h.n;
                        hit |= b == bucket;
                    }
                }
                let (s, e) = hit.then_some((start, end))?;
                Some(lossy(&self.norm[s..e.min(s + MAX_SHOWN)]))
            }
        }
    }
}

/// Longest text shown in a reason.
const MAX_SHOWN: usize = 80;

/// `text[start..end]` and a little on either side, within [`MAX_SHOWN`].
fn around(text: &[u8], start: usize, end: usize) -> &[u8] {
    let pad = MAX_SHOWN.saturating_sub(end - start) / 2;
    let s = start.saturating_sub(pad.min(16));
    &text[s..(end + pad.min(16)).min(text.len()).min(s + MAX_SHOWN)]
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn push_decimal(out: &mut Vec<u8>, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Shannon entropy in bits of a byte histogram over `n` bytes, summed in byte order.
fn entropy(histogram: &[u32; 256], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let mut h = 0.0;
    for &c in histogram {
        if c > 0 {
            let p = f64::from(c) / n;
            h -= p * libm::log2(p);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Hashing, KeywordGroup};

    fn spec() -> TextSpec {
        TextSpec {
            version: 1,
            max_bytes: 8192,
            decode_rounds: 2,
            shape: TextShape::Target,
            ngrams: Some(Hashing { n: 3, buckets: 64 }),
            tokens: Some(Hashing { n: 3, buckets: 128 }),
            keywords: vec![KeywordGroup { name: "sql".into(), terms: vec!["union".into(), "' or".into()] }],
        }
    }

    fn norm(r: &mut TextReader, v: &str) -> String {
        let mut out = vec![0.0; r.width()];
        r.write(v.as_bytes(), &mut out);
        String::from_utf8_lossy(&r.norm).into_owned()
    }

    #[test]
    fn decoding_is_per_piece_repeated_and_bounded() {
        let mut r = TextReader::new(&spec());
        assert_eq!(norm(&mut r, "/A%2fb/c.JSP?x=1+2&Y=%2527%20OR"), "/a/b/c.jsp?x=1 2&y=' or");
        // Three rounds are needed for %252527; two are allowed.
        assert_eq!(norm(&mut r, "/?q=%252527"), "/?q=%27");
        // %u, overlong, malformed escapes left alone, a lone surrogate left alone.
        assert_eq!(norm(&mut r, "/%u0041%c0%af%zz%4?a=%uD800"), "/a/%zz%4?a=%ud800");
        // `+` is a space in parameters only.
        assert_eq!(norm(&mut r, "/a+b?c+d=e+f"), "/a+b?c d=e f");
        let mut s = spec();
        s.max_bytes = 4;
        let mut r = TextReader::new(&s);
        let mut out = vec![0.0; r.width()];
        r.write(b"/abcdefgh", &mut out);
        assert_eq!(r.norm, b"/abc");
        assert_eq!(out[0], libm::log1p(9.0) as f32, "length counts the whole value");
    }

    #[test]
    fn counts_keywords_and_hashes() {
        let mut r = TextReader::new(&spec());
        let mut out = vec![0.0; r.width()];
        r.write(b"/a/b.php?id=1%27+or+1=1&&x", &mut out);
        let count = |i: usize| (f64::from(out[i]).exp_m1()).round() as u32;
        // "/a/b.php?id=1' or 1=1&&x"
        assert_eq!(String::from_utf8_lossy(&r.norm), "/a/b.php?id=1' or 1=1&&x");
        assert_eq!([count(0), count(1), count(2), count(6), count(7), count(8)], [26, 3, 10, 1, 2, 2]);
        assert_eq!(count(3), 24 - 3 - 10, "special: the rest is printable ASCII");
        assert_eq!(count(10), 1, "one sql keyword");
        let ngrams: f64 = out[11..75].iter().map(|v| f64::from(*v).exp_m1()).sum();
        assert_eq!(ngrams.round() as usize, r.norm.len() - 2);
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn explain_shows_decoded_text() {
        let mut r = TextReader::new(&spec());
        let v = b"/shop/item.jsp?id=7%27%20or%201=1--";
        let mut out = vec![0.0; r.width()];
        r.write(v, &mut out);
        let base = COUNTS.len() + 1;
        let bucket = (fnv1a32(b"' o") as usize) % 64;
        let wanted =
            ["' o", " or", "or ", "r 1", " 1=", "1=1", "=1-", "1--"].map(|g| (fnv1a32(g.as_bytes()) as usize) % 64);
        let shown = r.explain(v, base + bucket, |c| c >= base && wanted.contains(&(c - base))).unwrap();
        assert!(shown.contains("' or 1=1--"), "{shown}");
        let tok = 75 + (fnv1a32(b"Kid") as usize) % 128;
        assert_eq!(r.explain(v, tok, |_| false).unwrap(), "id=7' or 1=1--");
        assert!(r.explain(v, 10, |_| false).unwrap().contains("id=7' or 1=1--"));
    }

    /// A manifest with one text feature `text` (reference of `width` columns).
    fn manifest(
        text: serde_json::Value,
        width: usize,
        fields: serde_json::Value,
    ) -> Result<crate::manifest::Manifest, String> {
        let doc = serde_json::json!({
            "format": 1, "name": "t", "version": "1", "kind": "novelty",
            "input": {"name": "input", "width": width}, "output": {"name": "score"},
            "features": [{"name": "target", "type": "text", "fields": fields, "text": text}],
            "threshold": 0.5, "calibration": {"quantiles": [0.0, 1.0]},
            "reference": [{"mean": vec![0.0; width], "std": vec![1.0; width]}],
            "model_sha256": "0".repeat(64),
        });
        crate::manifest::Manifest::parse(doc.to_string().as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn manifests_with_text_features_are_checked() {
        let good = serde_json::json!({"version": 1, "ngrams": {"n": 3, "buckets": 16}});
        assert!(manifest(good.clone(), 26, serde_json::json!(["target"])).is_ok());
        let e = manifest(good.clone(), 27, serde_json::json!(["target"])).unwrap_err();
        assert!(e.contains("input.width"), "{e}");
        let e = manifest(good, 26, serde_json::json!(["target", {"name": "u", "scale": 2}])).unwrap_err();
        assert!(e.contains("features[0].fields[1]") && e.contains("plain names"), "{e}");
        for (text, key) in [
            (serde_json::json!({"version": 2}), "features[0].text.version"),
            (serde_json::json!({"version": 1, "ngrams": {"n": 9, "buckets": 16}}), "features[0].text.ngrams.n"),
            (serde_json::json!({"version": 1, "tokens": {"n": 3, "buckets": 0}}), "features[0].text.tokens.buckets"),
            (serde_json::json!({"version": 1, "decode_rounds": 5}), "features[0].text.decode_rounds"),
            (serde_json::json!({"version": 1, "max_bytes": 0}), "features[0].text.max_bytes"),
            (
                serde_json::json!({"version": 1, "keywords": [{"name": "k", "terms": [""]}]}),
                "features[0].text.keywords[0].terms[0]",
            ),
        ] {
            let width = 10 + text["keywords"].as_array().map_or(0, |k| k.len());
            let e = manifest(text, width, serde_json::json!(["target"])).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
        let unknown = serde_json::json!({"version": 1, "regex": ["a+"]});
        assert!(manifest(unknown, 10, serde_json::json!(["target"])).is_err(), "unknown keys are refused");
    }
}
