//! A strict scanner for one JSON object per record, without building a tree.
//!
//! The tag filter needs three things from a record: whether it is valid JSON (RFC 8259, so a
//! broken line is tagged with an error rather than half-read), where each top-level member's
//! key and value are, and where the object closes (the tags are spliced in there, leaving the
//! rest of the record byte for byte as it came). [`scan_object`] validates the whole text,
//! nested values included, and reports top-level members as byte ranges. Nothing is allocated;
//! callers unescape the rare escaped string with [`unescape`].

use std::fmt;

mod fast;

/// Maximum nesting of arrays and objects inside a record.
pub const MAX_DEPTH: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string; `escaped` when it contains a backslash escape.
    String {
        escaped: bool,
    },
    Number,
    True,
    False,
    Null,
    Object,
    Array,
}

/// A value as a byte range of the record (strings include their quotes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The bytes of the value; for strings, between the quotes (still escaped).
    #[inline(always)]
    pub fn inner<'a>(&self, s: &'a [u8]) -> &'a [u8] {
        match self.kind {
            Kind::String { .. } => &s[self.start + 1..self.end - 1],
            _ => &s[self.start..self.end],
        }
    }
}

/// One top-level member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The key, a string span.
    pub key: Span,
    pub value: Span,
}

/// Where the object is: the offsets of its `{` and `}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    pub open: usize,
    pub close: usize,
    pub members: usize,
    /// Every byte of the record is ASCII, so it is valid UTF-8 without a further check.
    pub ascii: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub expected: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.expected)
    }
}

impl std::error::Error for JsonError {}

/// Why a record is not one JSON object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// The bytes are not UTF-8 (JSON's encoding).
    NotUtf8,
    Json(JsonError),
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::NotUtf8 => f.write_str("not valid UTF-8"),
            RecordProblem::Json(e) => e.fmt(f),
        }
    }
}

/// [`scan_object`], with the record also required to be UTF-8. The check comes after the scan,
/// which finds out on the way whether every byte is ASCII (the common case, needing no further
/// pass); a record that is not UTF-8 is reported as such whatever else is wrong with it.
pub fn scan_utf8_object(s: &[u8], member: impl FnMut(Member)) -> Result<Object, RecordProblem> {
    let scanned = scan_object(s, member);
    let utf8 = |ascii: bool| ascii || std::str::from_utf8(s).is_ok();
    match scanned {
        Ok(object) if utf8(object.ascii) => Ok(object),
        Err(e) if utf8(false) => Err(RecordProblem::Json(e)),
        _ => Err(RecordProblem::NotUtf8),
    }
}

/// Validate `s` as exactly one JSON object (surrounding whitespace allowed) and call
/// `member` for each top-level member in order. On an invalid record, members before the
/// error may have been reported.
pub fn scan_object(s: &[u8], mut member: impl FnMut(Member)) -> Result<Object, JsonError> {
    if s.len() <= fast::MAX_LEN {
        match fast::scan(s, &mut member) {
            fast::Fast::Done(object) => return Ok(object),
            // The scalar parser names the error (it always finds one: the differential tests
            // in `json/fast.rs` hold the two parsers to the same verdicts).
            fast::Fast::Invalid => {
                return Err(scan_scalar(s, |_| {}).err().unwrap_or(JsonError { offset: 0, expected: "a JSON object" }))
            }
            fast::Fast::Unsupported => {}
        }
    }
    scan_scalar(s, member)
}

/// Whether the fast path and the byte-at-a-time parser agree on `s` (same verdict; for a valid
/// record, the same object and members): `Err` describes the disagreement. The fuzzer's and
/// the tests' differential check.
pub fn check_fast_path(s: &[u8]) -> Result<(), String> {
    let mut fast = Vec::new();
    let mut slow = Vec::new();
    let f = scan_object(s, |m| fast.push(m)).map(|o| (o, fast));
    let r = scan_scalar(s, |m| slow.push(m)).map(|o| (o, slow));
    if f != r {
        return Err(format!("scan_object {f:?}, the scalar parser {r:?}"));
    }
    Ok(())
}

/// [`scan_object`] a byte at a time: the reference, the error reporter, and the parser of
/// what the fast path leaves (nesting, escapes, long records).
fn scan_scalar(s: &[u8], mut member: impl FnMut(Member)) -> Result<Object, JsonError> {
    let mut p = Parser { s, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(p.err(if p.i == s.len() { "a JSON object, got an empty line" } else { "a JSON object" }));
    }
    let open = p.i;
    p.i += 1;
    let mut members = 0;
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            if p.peek() != Some(b'"') {
                return Err(p.err("a string key"));
            }
            let key = p.string()?;
            p.ws();
            p.expect(b':', "':' after a key")?;
            p.ws();
            let value = p.value(1)?;
            member(Member { key, value });
            members += 1;
            p.ws();
            match p.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(p.err_at(p.i.saturating_sub(1), "',' or '}' after a value")),
            }
        }
    }
    let close = p.i - 1;
    p.ws();
    if p.i != s.len() {
        return Err(p.err("end of record after the object"));
    }
    Ok(Object { open, close, members, ascii: s.is_ascii() })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn err(&self, expected: &'static str) -> JsonError {
        JsonError { offset: self.i, expected }
    }

    fn err_at(&self, offset: usize, expected: &'static str) -> JsonError {
        JsonError { offset, expected }
    }

    fn expect(&mut self, c: u8, expected: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(expected))
        }
    }

    #[inline(always)]
    fn ws(&mut self) {
        // Compact JSON has none: one comparison in the common case.
        while self.s.get(self.i).is_some_and(|&b| is_ws(b)) {
            self.i += 1;
        }
    }

    #[inline]
    fn value(&mut self, depth: usize) -> Result<Span, JsonError> {
        let start = self.i;
        let kind = match self.peek() {
            Some(b'"') => return self.string(),
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Kind::Number
            }
            Some(b't') => {
                self.literal(b"true")?;
                Kind::True
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Kind::False
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Kind::Null
            }
            Some(b'{') => {
                self.nested(depth, b'}')?;
                Kind::Object
            }
            Some(b'[') => {
                self.nested(depth, b']')?;
                Kind::Array
            }
            _ => return Err(self.err("a value")),
        };
        Ok(Span { kind, start, end: self.i })
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), JsonError> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("true, false or null"))
        }
    }

    #[inline]
    fn number(&mut self) -> Result<(), JsonError> {
        let s = self.s;
        let mut i = self.i;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digit_run(s, i + 1),
            _ => return Err(self.err_at(i, "a digit")),
        }
        if s.get(i) == Some(&b'.') {
            let j = digit_run(s, i + 1);
            if j == i + 1 {
                return Err(self.err_at(j, "a digit after '.'"));
            }
            i = j;
        }
        if let Some(b'e' | b'E') = s.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = s.get(i) {
                i += 1;
            }
            let j = digit_run(s, i);
            if j == i {
                return Err(self.err_at(j, "a digit in the exponent"));
            }
            i = j;
        }
        if s.get(i).is_some_and(u8::is_ascii_digit) {
            return Err(self.err_at(i, "no leading zeros in a number"));
        }
        self.i = i;
        Ok(())
    }

    /// A string starting at the opening quote.
    #[inline]
    fn string(&mut self) -> Result<Span, JsonError> {
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        loop {
            self.i = plain_run(self.s, self.i);
            match self.next() {
                Some(b'"') => return Ok(Span { kind: Kind::String { escaped }, start, end: self.i }),
                Some(b'\\') => {
                    escaped = true;
                    match self.next() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            for _ in 0..4 {
                                if !matches!(self.next(), Some(b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F')) {
                                    return Err(self.err_at(self.i - 1, "4 hex digits after \\u"));
                                }
                            }
                        }
                        _ => return Err(self.err_at(self.i - 1, "a valid escape after '\\'")),
                    }
                }
                Some(_) => return Err(self.err_at(self.i - 1, "no control characters in a string")),
                None => return Err(self.err_at(self.s.len(), "a closing '\"'")),
            }
        }
    }

    /// An object or array (validated, not reported).
    fn nested(&mut self, depth: usize, close: u8) -> Result<(), JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.err("less nesting (at most 128 levels)"));
        }
        let is_object = close == b'}';
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if is_object {
                if self.peek() != Some(b'"') {
                    return Err(self.err("a string key"));
                }
                self.string()?;
                self.ws();
                self.expect(b':', "':' after a key")?;
                self.ws();
            }
            self.value(depth + 1)?;
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(c) if c == close => return Ok(()),
                _ => {
                    return Err(self.err_at(
                        self.i.saturating_sub(1),
                        if is_object { "',' or '}' in an object" } else { "',' or ']' in an array" },
                    ))
                }
            }
        }
    }
}

/// JSON's whitespace (RFC 8259): space, tab, newline, carriage return.
#[inline(always)]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Index of the first non-digit at or after `i`.
#[inline(always)]
fn digit_run(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].wrapping_sub(b'0') < 10 {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that ends a run of plain string bytes (a quote, a
/// backslash or a control character), or `s.len()`. Eight bytes at a time (SWAR): strings are
/// most of a flow record.
#[inline(always)]
fn plain_run(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= s.len() {
        let v = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        // A byte is zero in `x` <=> its high bit is set in `(x - ONES) & !x & HIGH`.
        let quote = v ^ (ONES * u64::from(b'"'));
        let slash = v ^ (ONES * u64::from(b'\\'));
        let special = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            // Bytes below 0x20 (control characters): high bit set after subtracting 0x20.
            | (v.wrapping_sub(ONES * 0x20) & !v);
        let special = special & HIGH;
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < s.len() && !matches!(s[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

/// Unescape the inside of a JSON string into `out` (cleared first). Lone surrogates become
/// U+FFFD. Meant for validated strings, but total: on bytes that were not validated (the
/// host's conditions skim records), a bad or cut escape becomes U+FFFD, never a panic.
pub fn unescape(inner: &[u8], out: &mut String) {
    out.clear();
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c != b'\\' {
            let run_end = inner[i..].iter().position(|&b| b == b'\\').map_or(inner.len(), |p| i + p);
            out.push_str(&String::from_utf8_lossy(&inner[i..run_end]));
            i = run_end;
            continue;
        }
        let Some(&e) = inner.get(i + 1) else {
            out.push('\u{FFFD}');
            break;
        };
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' if inner.len() >= i + 4 => {
                let hi = hex4(&inner[i..i + 4]);
                i += 4;
                if (0xD800..0xDC00).contains(&hi) && inner[i..].starts_with(b"\\u") && inner.len() >= i + 6 {
                    let lo = hex4(&inner[i + 2..i + 6]);
                    if (0xDC00..0xE000).contains(&lo) {
                        i += 6;
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        continue;
                    }
                }
                char::from_u32(hi).unwrap_or('\u{FFFD}')
            }
            _ => '\u{FFFD}',
        };
        out.push(ch);
    }
}

fn hex4(h: &[u8]) -> u32 {
    h.iter().fold(0, |acc, &c| acc * 16 + (c as char).to_digit(16).unwrap_or(0))
}

/// Write `s` as a JSON string literal (with quotes).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{:04x}", c).as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(s: &str) -> Result<Vec<(String, Kind, String)>, JsonError> {
        let mut v = Vec::new();
        scan_object(s.as_bytes(), |m| {
            let key = String::from_utf8(m.key.inner(s.as_bytes()).to_vec()).unwrap();
            let val = String::from_utf8(s.as_bytes()[m.value.start..m.value.end].to_vec()).unwrap();
            v.push((key, m.value.kind, val));
        })?;
        Ok(v)
    }

    #[test]
    fn reads_top_level_members() {
        let m = members(r#" {"a": 1.5e3, "b":"x\"y", "c": {"d": [1, {"e": null}]}, "t": true} "#).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0], ("a".into(), Kind::Number, "1.5e3".into()));
        assert_eq!(m[1].1, Kind::String { escaped: true });
        assert_eq!(m[2].1, Kind::Object);
        assert_eq!(m[3].1, Kind::True);
        assert_eq!(members("{}").unwrap(), vec![]);
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        let cases = [
            "{}",
            "{\"a\":1}",
            "{\"a\":-0.5e-7}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":+1}",
            "{\"a\":1,}",
            "{,}",
            "{\"a\" 1}",
            "{\"a\":[1,2,]}",
            "{\"a\":[]}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12G4\"}",
            "{\"a\":\"\\u1234\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":NaN}",
            "{\"a\":Infinity}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":{\"b\":{}}} x",
            "[1]",
            "",
            "   ",
            "{\"a\":1}{}",
            "{\"a\":\"x",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":1e+}",
            "{\"a\":[{\"b\":[true,false,null]}]}",
            "{1:2}",
        ];
        for c in cases {
            let ours = scan_object(c.as_bytes(), |_| {}).is_ok();
            let serde = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(c).is_ok();
            assert_eq!(ours, serde, "{c:?}");
        }
    }

    #[test]
    fn refuses_deep_nesting() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(scan_object(deep.as_bytes(), |_| {}).unwrap_err().expected.contains("nesting"));
    }

    #[test]
    fn unescapes_and_escapes() {
        let mut s = String::new();
        unescape(br#"a\"b\\c\u00e9\ud83d\ude00\n\ud800x"#, &mut s);
        assert_eq!(s, "a\"b\\c\u{e9}\u{1F600}\n\u{FFFD}x");
        // Bytes nobody validated (found by `flowtag-fuzz`): bad and cut escapes, no panic.
        for (raw, want) in [
            (&br"pro\o"[..], "pro\u{FFFD}"),
            (br"x\", "x\u{FFFD}"),
            (br"\u12", "\u{FFFD}12"),
            (br"\ud800\u", "\u{FFFD}\u{FFFD}"),
        ] {
            unescape(raw, &mut s);
            assert_eq!(s, want, "{:?}", String::from_utf8_lossy(raw));
        }
        let mut out = Vec::new();
        write_string(&mut out, "q\"\\\n\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), r#""q\"\\\n\u0001é""#);
    }
}
