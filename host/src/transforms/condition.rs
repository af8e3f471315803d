//! Conditions on records, for `route`, `filter`, `sample` and `throttle`: one small typed
//! language, parsed and checked when the config loads (errors point at the column), evaluated on
//! a record's JSON bytes without building a tree or allocating.
//!
//! ```text
//! anomaly.verdict == "anomalous"
//! anomaly.score >= 0.99 && proto == "udp"
//! proto in ["tcp", "udp"]
//! exists(anomaly.error) || !(service == "dns")
//! ."Destination Port" == 53            # a key that is not an identifier, quoted after a dot
//! anomaly.flagged                      # a field alone: true when it is JSON `true`
//! ```
//!
//! A field is a path of keys into nested objects. Comparisons are typed: `==` holds when the
//! field exists, has the literal's type and its value (a number in a string, as a Fluent Bit
//! parser hands numbers over, counts as a number); `!=` is its negation; `<`, `<=`, `>`, `>=`
//! take a number literal and hold only for numbers; `in` takes a list of literals; `exists`
//! holds for any value, `null` included. A missing field, a value of another type or a record
//! that is not a JSON object makes a comparison false. `&&` binds tighter than `||`; `!`
//! negates.
//!
//! Records reaching a condition have been checked as JSON upstream (by the tag filter, or by
//! their source), so evaluation skims them: it walks the top-level members up to the last key
//! it needs, skipping values without validating them, and stops.

use flowtag_plugin::json::{self as js, Kind, Span};

/// A parsed condition.
#[derive(Clone, Debug)]
pub struct Condition {
    expr: Expr,
    /// Every field path the condition reads.
    fields: Vec<Vec<String>>,
    /// The distinct first keys of those paths.
    tops: Vec<String>,
    /// For each field, its first key's index in `tops`.
    top_of: Vec<usize>,
    /// For each of `tops`, a searcher for it quoted (`"key"`), built once; `None` for a key
    /// with a quote or a backslash.
    quoted: Vec<Option<memchr::memmem::Finder<'static>>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare { field: usize, op: Op, value: Literal },
    In { field: usize, values: Vec<Literal> },
    Exists(usize),
    IsTrue(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl std::str::FromStr for Condition {
    type Err = String;

    /// Parse `text`; an error says what was expected at which column (1-based).
    fn from_str(text: &str) -> Result<Condition, String> {
        let mut p = Parser { text, at: 0, fields: Vec::new() };
        p.skip_ws();
        if p.at == text.len() {
            return Err("empty condition".into());
        }
        let expr = p.or()?;
        p.skip_ws();
        if p.at != text.len() {
            return Err(p.error("`&&`, `||` or the end of the condition"));
        }
        let mut tops: Vec<String> = Vec::new();
        let mut top_of = Vec::new();
        for f in &p.fields {
            let i = tops.iter().position(|t| *t == f[0]).unwrap_or_else(|| {
                tops.push(f[0].clone());
                tops.len() - 1
            });
            top_of.push(i);
        }
        let quoted = tops.iter().map(|t| quoted_finder(t)).collect();
        Ok(Condition { expr, fields: p.fields, tops, top_of, quoted })
    }
}

impl<'de> serde::Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| serde::de::Error::custom(format!("condition {text:?}: {e}")))
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    fields: Vec<Vec<String>>,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn error(&self, expected: &str) -> String {
        let found = match self.rest().chars().next() {
            None => "the end".to_string(),
            Some(_) => format!("`{}`", self.rest().chars().take(12).collect::<String>()),
        };
        format!("at column {}: expected {expected}, found {found}", self.text[..self.at].chars().count() + 1)
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("`)`"));
            }
            return Ok(inner);
        }
        if self.rest().starts_with("exists") && self.text[self.at + 6..].trim_start().starts_with('(') {
            self.at += 6;
            self.eat("(");
            let field = self.field()?;
            if !self.eat(")") {
                return Err(self.error("`)` after the field of exists(...)"));
            }
            return Ok(Expr::Exists(field));
        }
        let field = self.field()?;
        self.skip_ws();
        let op = [("==", Op::Eq), ("!=", Op::Ne), ("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
            .into_iter()
            .find(|(t, _)| self.rest().starts_with(t));
        if let Some((token, op)) = op {
            self.at += token.len();
            self.skip_ws();
            let column = self.at;
            let value = self.literal()?;
            if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && !matches!(value, Literal::Num(_)) {
                self.at = column;
                return Err(self.error(&format!("a number after `{token}`")));
            }
            return Ok(Expr::Compare { field, op, value });
        }
        if self.rest().starts_with("in") && !self.rest()[2..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
            self.at += 2;
            if !self.eat("[") {
                return Err(self.error("`[` starting the list after `in`"));
            }
            let mut values = vec![self.literal_ws()?];
            while self.eat(",") {
                values.push(self.literal_ws()?);
            }
            if !self.eat("]") {
                return Err(self.error("`,` or `]` in the list"));
            }
            return Ok(Expr::In { field, values });
        }
        Ok(Expr::IsTrue(field))
    }

    fn literal_ws(&mut self) -> Result<Literal, String> {
        self.skip_ws();
        self.literal()
    }

    fn literal(&mut self) -> Result<Literal, String> {
        let rest = self.rest();
        if rest.starts_with('"') {
            let s = self.quoted()?;
            return Ok(Literal::Str(s));
        }
        for (word, lit) in [("true", Literal::Bool(true)), ("false", Literal::Bool(false)), ("null", Literal::Null)] {
            if rest.starts_with(word) && !rest[word.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                self.at += word.len();
                return Ok(lit);
            }
        }
        let len = rest.find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c))).unwrap_or(rest.len());
        match rest[..len].parse::<f64>() {
            Ok(n) if len > 0 && n.is_finite() => {
                self.at += len;
                Ok(Literal::Num(n))
            }
            _ => Err(self.error("a string in double quotes, a number, true, false or null")),
        }
    }

    /// A double-quoted string with JSON's escapes.
    fn quoted(&mut self) -> Result<String, String> {
        let start = self.at;
        let bytes = self.text.as_bytes();
        let mut i = self.at + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    let raw = &self.text[start..=i];
                    self.at = i + 1;
                    return serde_json::from_str::<String>(raw).map_err(|e| {
                        self.at = start;
                        self.error(&format!("a valid string ({e})"))
                    });
                }
                _ => i += 1,
            }
        }
        Err(self.error("a closing `\"`"))
    }

    /// A field path: `a.b.c`, segments being identifiers or, after a dot, quoted strings
    /// (`."Destination Port"`); registered, its index returned.
    fn field(&mut self) -> Result<usize, String> {
        self.skip_ws();
        let mut path = Vec::new();
        let mut leading_dot = self.rest().starts_with('.');
        loop {
            if leading_dot {
                self.at += 1;
            }
            let rest = self.rest();
            if leading_dot && rest.starts_with('"') {
                path.push(self.quoted()?);
            } else {
                let len = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '@'))
                    .unwrap_or(rest.len());
                if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                    return Err(self.error("a field name (letters, digits, `_`, `-`; quote others: .\"a key\")"));
                }
                path.push(rest[..len].to_string());
                self.at += len;
            }
            if self.rest().starts_with('.') {
                leading_dot = true;
            } else {
                break;
            }
        }
        self.fields.push(path);
        Ok(self.fields.len() - 1)
    }
}

/// A field's value as found in a record.
#[derive(Clone, Copy)]
struct Found<'r> {
    span: Span,
    base: &'r [u8],
}

impl Found<'_> {
    fn bytes(&self) -> &[u8] {
        self.span.inner(self.base)
    }

    fn number(&self) -> Option<f64> {
        match self.span.kind {
            Kind::Number => std::str::from_utf8(self.bytes()).ok()?.parse().ok(),
            Kind::String { escaped: false } => std::str::from_utf8(self.bytes()).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    fn equals(&self, lit: &Literal) -> bool {
        match (lit, self.span.kind) {
            (Literal::Str(s), Kind::String { escaped: false }) => self.bytes() == s.as_bytes(),
            (Literal::Str(s), Kind::String { escaped: true }) => {
                let mut text = String::new();
                js::unescape(self.bytes(), &mut text);
                text == *s
            }
            (Literal::Num(n), _) => self.number() == Some(*n),
            (Literal::Bool(true), Kind::True) | (Literal::Bool(false), Kind::False) | (Literal::Null, Kind::Null) => {
                true
            }
            _ => false,
        }
    }
}

/// What evaluating a condition reuses from record to record.
#[derive(Default)]
pub struct Scratch {
    tops: Vec<Option<Span>>,
}

impl Condition {
    /// Whether `record` (a JSON object's bytes) satisfies the condition.
    pub fn eval(&self, record: &[u8], scratch: &mut Scratch) -> bool {
        self.eval_at(record, None, scratch)
    }

    /// Whether an event satisfies the condition: where the tag filter said its tags are, a
    /// field under the tag key is read there without a search.
    pub fn eval_event(&self, event: &crate::event::Event, scratch: &mut Scratch) -> bool {
        self.eval_at(&event.data, event.tags, scratch)
    }

    /// `last`: the span of the value of `record`'s last member, when known.
    fn eval_at(&self, record: &[u8], last: Option<(u32, u32)>, scratch: &mut Scratch) -> bool {
        scratch.tops.clear();
        scratch.tops.resize(self.tops.len(), None);
        let tops = &self.tops;
        let slots = &mut scratch.tops;
        let mut left = tops.len();
        // The tag filter appends its tags as the last member: look there first.
        for (slot, finder) in slots.iter_mut().zip(&self.quoted) {
            let Some(finder) = finder else { continue };
            let span = match last {
                Some(span) => known_last_member(record, span, finder.needle()),
                None => last_member(record, finder),
            };
            if let Some(span) = span {
                *slot = Some(span);
                left -= 1;
            }
        }
        if left == 0 {
            return self.expr_holds(&self.expr, record, &scratch.tops);
        }
        let skimmed = skim(record, |key, escaped, value| {
            if let Some(i) = tops.iter().position(|t| key_is(key, escaped, t)) {
                if slots[i].is_none() {
                    slots[i] = Some(value);
                    left -= 1;
                }
            }
            left > 0
        });
        if skimmed.is_none() {
            slots.iter_mut().for_each(|s| *s = None);
        }
        self.expr_holds(&self.expr, record, &scratch.tops)
    }

    fn find<'r>(&self, field: usize, record: &'r [u8], tops: &[Option<Span>]) -> Option<Found<'r>> {
        let mut span = tops[self.top_of[field]]?;
        let mut base: &'r [u8] = record;
        for key in &self.fields[field][1..] {
            if span.kind != Kind::Object {
                return None;
            }
            let inner = &base[span.start..span.end];
            let mut next = None;
            skim(inner, |k, escaped, value| {
                if key_is(k, escaped, key) {
                    next = Some(value);
                }
                next.is_none()
            })?;
            span = next?;
            base = inner;
        }
        Some(Found { span, base })
    }

    fn expr_holds(&self, e: &Expr, record: &[u8], tops: &[Option<Span>]) -> bool {
        match e {
            Expr::Or(a, b) => self.expr_holds(a, record, tops) || self.expr_holds(b, record, tops),
            Expr::And(a, b) => self.expr_holds(a, record, tops) && self.expr_holds(b, record, tops),
            Expr::Not(a) => !self.expr_holds(a, record, tops),
            Expr::Exists(f) => self.find(*f, record, tops).is_some(),
            Expr::IsTrue(f) => self.find(*f, record, tops).is_some_and(|v| v.span.kind == Kind::True),
            Expr::In { field, values } => {
                self.find(*field, record, tops).is_some_and(|v| values.iter().any(|l| v.equals(l)))
            }
            Expr::Compare { field, op, value } => {
                let found = self.find(*field, record, tops);
                match op {
                    Op::Eq => found.is_some_and(|v| v.equals(value)),
                    Op::Ne => !found.is_some_and(|v| v.equals(value)),
                    _ => {
                        let (Some(x), Literal::Num(y)) = (found.and_then(|v| v.number()), value) else { return false };
                        match op {
                            Op::Lt => x < *y,
                            Op::Le => x <= *y,
                            Op::Gt => x > *y,
                            _ => x >= *y,
                        }
                    }
                }
            }
        }
    }
}

/// A field path (`srcip`, `anomaly.score`, `."Source IP"`) read from records: for keys that
/// choose (`sample`, `throttle`).
#[derive(Clone, Debug)]
pub struct Field(Condition);

impl std::str::FromStr for Field {
    type Err = String;

    fn from_str(path: &str) -> Result<Field, String> {
        let cond: Condition = format!("exists({path})").parse().map_err(|e: String| {
            // Columns in the error count from the path, not from the `exists(` around it.
            match e.strip_prefix("at column ").and_then(|r| r.split_once(':')) {
                Some((col, rest)) => {
                    format!("at column {}:{rest}", col.parse::<usize>().unwrap_or(8).saturating_sub(7))
                }
                None => e,
            }
        })?;
        Ok(Field(cond))
    }
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| serde::de::Error::custom(format!("field {text:?}: {e}")))
    }
}

impl Field {
    /// The field's value in `record` as its JSON text (strings without their quotes, still
    /// escaped), if it has one.
    pub fn raw<'r>(&self, record: &'r [u8], scratch: &mut Scratch) -> Option<&'r [u8]> {
        let c = &self.0;
        scratch.tops.clear();
        scratch.tops.resize(1, None);
        let top = &c.tops[0];
        let slot = &mut scratch.tops[0];
        skim(record, |key, escaped, value| {
            if key_is(key, escaped, top) {
                *slot = Some(value);
            }
            slot.is_none()
        })?;
        c.find(0, record, &scratch.tops).map(|f| f.span.inner(f.base))
    }
}

/// The values of the top-level `keys` of `record` in one skim, as their JSON text (strings
/// without their quotes), into `out` (one slot per key, as long as `keys`; `None` where
/// missing).
pub fn top_values<'r>(record: &'r [u8], keys: &[&str], out: &mut [Option<&'r [u8]>]) {
    out.iter_mut().for_each(|v| *v = None);
    let mut left = keys.len();
    let found = skim(record, |key, escaped, value| {
        if let Some(i) = keys.iter().position(|k| key_is(key, escaped, k)) {
            if out[i].is_none() {
                out[i] = Some(value.inner(record));
                left -= 1;
            }
        }
        left > 0
    });
    if found.is_none() {
        out.iter_mut().for_each(|v| *v = None);
    }
}

/// Whether a key (its bytes between the quotes, `escaped` if it has a backslash) is `want`.
fn key_is(raw: &[u8], escaped: bool, want: &str) -> bool {
    if escaped {
        let mut text = String::new();
        js::unescape(raw, &mut text);
        text == want
    } else {
        raw == want.as_bytes()
    }
}

/// A searcher for `"key"`, for [`last_member`]; `None` for a key with a quote or a backslash,
/// which is never looked for that way.
fn quoted_finder(key: &str) -> Option<memchr::memmem::Finder<'static>> {
    if key.contains(['"', '\\']) {
        return None;
    }
    Some(memchr::memmem::Finder::new(format!("\"{key}\"").as_bytes()).into_owned())
}

/// The value of a key when it is the last top-level member of the object `s` (as the tag
/// filter's `anomaly` is), found by its last occurrence in quotes (`quoted`, from
/// [`quoted_finder`]; searched forward, which is vectorised, where a search from the end is
/// not). In valid JSON the bytes `"key":` with a real (unescaped) first quote are a member's key
/// at some depth; its value ending right before the object's final `}` makes it the last member
/// at the top. `None` when the last occurrence is not that: the caller then skims the record.
fn last_member(s: &[u8], quoted: &memchr::memmem::Finder<'_>) -> Option<Span> {
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if s[end] != b'}' {
        return None;
    }
    let quote = quoted.find_iter(&s[..end]).last()?;
    let backslashes = s[..quote].iter().rev().take_while(|&&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        return None;
    }
    let colon = ws(s, quote + quoted.needle().len());
    if s.get(colon) != Some(&b':') {
        return None;
    }
    let value = value_span(s, ws(s, colon + 1))?;
    (ws(s, value.end) == end).then_some(value)
}

/// The last member's value, given where it is (`start..end` of `s`), if that member's key is
/// `quoted` (the key in quotes, as the tag filter writes it: no space before the colon).
fn known_last_member(s: &[u8], (start, end): (u32, u32), quoted: &[u8]) -> Option<Span> {
    let (start, end) = (start as usize, end as usize);
    let key_at = start.checked_sub(quoted.len() + 1)?;
    let value = s.get(start..end)?;
    let kind = match value.first()? {
        b'{' => Kind::Object,
        _ => return None,
    };
    (s[start - 1] == b':' && &s[key_at..start - 1] == quoted).then_some(Span { kind, start, end })
}

/// Walk the top-level members of the JSON object `s` without validating it (records reaching a
/// condition were checked upstream: by the tag filter, or as JSON by their source), calling
/// `member(key, key_escaped, value)` until it returns false. `None` if `s` does not even look
/// like an object. Never reads out of bounds, whatever `s` holds.
fn skim(s: &[u8], mut member: impl FnMut(&[u8], bool, Span) -> bool) -> Option<()> {
    let mut i = ws(s, 0);
    if s.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(s, i + 1);
    if s.get(i) == Some(&b'}') {
        return Some(());
    }
    loop {
        if s.get(i) != Some(&b'"') {
            return None;
        }
        let (key_end, key_escaped) = string_end(s, i)?;
        let key = &s[i + 1..key_end - 1];
        i = ws(s, key_end);
        if s.get(i) != Some(&b':') {
            return None;
        }
        let v = ws(s, i + 1);
        let value = value_span(s, v)?;
        if !member(key, key_escaped, value) {
            return Some(());
        }
        i = ws(s, value.end);
        match s.get(i) {
            Some(b',') => i = ws(s, i + 1),
            Some(b'}') => return Some(()),
            _ => return None,
        }
    }
}

fn ws(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (one past the closing quote) of the string opening at `s[at]`, and whether it has
/// escapes.
fn string_end(s: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        i += memchr::memchr2(b'"', b'\\', s.get(i..)?)?;
        if s[i] == b'"' {
            return Some((i + 1, escaped));
        }
        escaped = true;
        i += 2;
    }
}

/// The value starting at `s[v]`.
fn value_span(s: &[u8], v: usize) -> Option<Span> {
    let kind = match *s.get(v)? {
        b'"' => {
            let (end, escaped) = string_end(s, v)?;
            return Some(Span { kind: Kind::String { escaped }, start: v, end });
        }
        open @ (b'{' | b'[') => {
            // In valid JSON the other kind of bracket is balanced inside: count only this kind.
            let close = if open == b'{' { b'}' } else { b']' };
            let mut depth = 0usize;
            let mut in_string = false;
            let mut i = v;
            // One byte at a time: the values here (the tags) are short and full of strings,
            // where a search call per string costs more than the walk.
            while i < s.len() {
                let b = s[i];
                if in_string {
                    if b == b'\\' {
                        i += 1;
                    } else if b == b'"' {
                        in_string = false;
                    }
                } else if b == b'"' {
                    in_string = true;
                } else if b == open {
                    depth += 1;
                } else if b == close {
                    depth -= 1;
                    if depth == 0 {
                        let kind = if open == b'{' { Kind::Object } else { Kind::Array };
                        return Some(Span { kind, start: v, end: i + 1 });
                    }
                }
                i += 1;
            }
            return None;
        }
        b't' => Kind::True,
        b'f' => Kind::False,
        b'n' => Kind::Null,
        _ => Kind::Number,
    };
    let len = s[v..]
        .iter()
        .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(s.len() - v);
    (len > 0).then_some(Span { kind, start: v, end: v + len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(cond: &str, record: &str) -> bool {
        let c: Condition = cond.parse().unwrap_or_else(|e| panic!("{cond}: {e}"));
        c.eval(record.as_bytes(), &mut Scratch::default())
    }

    const R: &str = r#"{"proto":"udp","dport":"53","n":7,"ok":true,"nothing":null,"Destination Port":443,
        "anomaly":{"verdict":"anomalous","score":0.995,"reasons":[{"feature":"sbytes"}]},"esc":"a\"b"}"#;

    /// Where the tag filter says its tags are, conditions read them and agree with a search:
    /// on scored, unscored and non-object records, and on records that had their own tag key.
    #[test]
    fn the_tag_filters_offsets_find_what_a_search_finds() {
        use flowtag_plugin::{Bundle, Filter, FilterOptions};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin/tests/fixtures/iforest");
        let bundle = Bundle::read_path(&dir).unwrap();
        let mut filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
        let fields = r#""proto":"tcp","service":"http","state":"FIN","spkts":10,"dpkts":8,"sbytes":4000,"dbytes":9000,"rate":36"#;
        let records: Vec<String> = vec![
            format!(r#"{{"dur":0.5,{fields}}}"#),
            format!(r#"{{"dur":900,{fields}, "x":{{"anomaly":{{"verdict":"anomalous"}}}} }}"#),
            format!(r#"{{"anomaly":{{"verdict":"anomalous"}},"dur":0.5,{fields}}}"#),
            format!(r#"{{"dur":"oops",{fields}}}"#),
            "not json".to_string(),
            "{}".to_string(),
        ];
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        filter.tag_batch(&refs, &mut out, &mut ends);
        let conditions: Vec<Condition> = [
            r#"anomaly.verdict == "anomalous""#,
            r#"anomaly.verdict == "normal" && anomaly.score >= 0"#,
            "exists(anomaly.error)",
            r#"proto == "tcp" || anomaly.verdict == "unscored""#,
            "exists(anomaly)",
        ]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
        let mut start = 0;
        let mut scratch = Scratch::default();
        for (r, &end) in filter.results().iter().zip(&ends) {
            let data = bytes::Bytes::copy_from_slice(&out[start..end]);
            start = end;
            let tags = r.tags.expect("the native filter says where its tags are");
            let whole: serde_json::Value = serde_json::from_slice(&data).unwrap();
            let span: serde_json::Value = serde_json::from_slice(&data[tags.0 as usize..tags.1 as usize]).unwrap();
            assert_eq!(span, whole["anomaly"], "{}", String::from_utf8_lossy(&data));
            let event = crate::event::Event { data: data.clone(), ack: None, tags: Some(tags) };
            for c in &conditions {
                assert_eq!(
                    c.eval_event(&event, &mut scratch),
                    c.eval(&data, &mut scratch),
                    "{}",
                    String::from_utf8_lossy(&data)
                );
            }
        }
        assert_eq!(filter.results().len(), records.len());
    }

    #[test]
    fn each_operator_on_each_type() {
        assert!(holds(r#"proto == "udp""#, R));
        assert!(!holds(r#"proto == "tcp""#, R));
        assert!(holds(r#"proto != "tcp""#, R));
        assert!(holds("n == 7 && n >= 7 && n <= 7 && n > 6.5 && n < 8", R));
        assert!(!holds("n > 7 || n < 7", R));
        assert!(holds("dport == 53 && dport > 50", R), "a number in a string is a number");
        assert!(holds("ok", R) && holds("ok == true", R) && !holds("ok == false", R));
        assert!(holds("nothing == null && exists(nothing)", R));
        assert!(holds(r#"proto in ["tcp", "udp"]"#, R));
        assert!(!holds(r#"proto in ["tcp", "icmp"]"#, R));
        assert!(holds(r#"anomaly.verdict == "anomalous" && anomaly.score >= 0.99"#, R));
        assert!(holds(r#"."Destination Port" == 443"#, R));
        assert!(holds(r#"esc == "a\"b""#, R), "escaped strings compare unescaped");
        assert!(holds(r#"!(proto == "tcp") && !exists(anomaly.error)"#, R));
        assert!(holds(r#"proto == "tcp" || proto == "udp" && n == 7"#, R), "&& binds tighter");
        assert!(!holds(r#"(proto == "tcp" || proto == "udp") && n == 8"#, R));
    }

    #[test]
    fn missing_fields_wrong_types_and_broken_records_are_false() {
        assert!(!holds(r#"missing == "x""#, R));
        assert!(holds(r#"missing != "x""#, R));
        assert!(!holds("missing > 0", R));
        assert!(!holds("proto > 0", R), "a string that is not a number");
        assert!(!holds(r#"n == "7""#, R), "a number is not a string");
        assert!(!holds("anomaly.verdict.deeper == 1", R), "a path through a string");
        assert!(!holds("proto", R), "a string is not true");
        assert!(!holds("exists(proto)", "not json"));
        assert!(!holds(r#"later == 1"#, r#"{"proto":"udp","#), "a record cut short");
        assert!(!holds("exists(x)", r#"{"a":"unterminated"#));
        assert!(!holds("exists(x)", r#"{"a":{"b":[1,2}"#));
    }

    #[test]
    fn the_last_member_is_found_from_the_end_only_when_it_is_at_the_top() {
        fn span<'a>(s: &'a str, k: &str) -> Option<&'a str> {
            last_member(s.as_bytes(), &quoted_finder(k).unwrap()).map(|v| &s[v.start..v.end])
        }
        assert_eq!(span(r#"{"a":1,"anomaly":{"verdict":"normal"}}"#, "anomaly"), Some(r#"{"verdict":"normal"}"#));
        assert_eq!(span(r#"{"a":1,"anomaly" : 5 } "#, "anomaly"), Some("5"));
        assert_eq!(span(r#"{"x":{"anomaly":1}}"#, "anomaly"), None, "nested");
        assert_eq!(span(r#"{"anomaly":1,"b":2}"#, "anomaly"), None, "not last");
        assert_eq!(span(r#"{"t":"anomaly","b":2}"#, "anomaly"), None, "a value");
        assert_eq!(span(r#"{"anomaly":1,"t":"anomaly"}"#, "anomaly"), None);
        assert_eq!(span(r#"{"x\"anomaly":1}"#, "anomaly"), None, "inside an escaped key");
        // Whatever the last-member lookup answers, the condition's result is the skim's.
        assert!(holds("anomaly == 1", r#"{"anomaly":1,"b":2}"#));
        assert!(holds("b == 2", r#"{"anomaly":1,"b":2}"#));
    }

    #[test]
    fn skimming_never_reads_out_of_bounds() {
        let c: Condition = r#"a.b == "x" || exists(z)"#.parse().unwrap();
        let mut scratch = Scratch::default();
        let record = br#"{"a":{"b":"x\"y","c":[1,{"d":"}"}]},"e":true, "z" : null }"#;
        for end in 0..=record.len() {
            c.eval(&record[..end], &mut scratch);
        }
        assert!(c.eval(record, &mut scratch));
        // Keys with escapes that are not JSON (found by `flowtag-fuzz`): read, not a panic.
        let c: Condition = r#"proto in ["tcp", "udp"] && !exists(x)"#.parse().unwrap();
        for record in [&br#"{"pro\o": "udp", "proto": "tcp"}"#[..], br#"{"\dur": 0.39,"proto":"udp"}"#, br#"{"a\"#] {
            c.eval(record, &mut scratch);
        }
        assert!(c.eval(br#"{"pro\o": "udp", "proto": "tcp"}"#, &mut scratch));
    }

    #[test]
    fn fields_read_raw_values() {
        let mut scratch = Scratch::default();
        let f = |p: &str| p.parse::<Field>().unwrap();
        assert_eq!(f("proto").raw(R.as_bytes(), &mut scratch), Some(&b"udp"[..]));
        assert_eq!(f("anomaly.score").raw(R.as_bytes(), &mut scratch), Some(&b"0.995"[..]));
        assert_eq!(f(r#"."Destination Port""#).raw(R.as_bytes(), &mut scratch), Some(&b"443"[..]));
        assert_eq!(f("missing").raw(R.as_bytes(), &mut scratch), None);
        assert!(
            "a b".parse::<Field>().unwrap_err().starts_with("at column 3"),
            "{}",
            "a b".parse::<Field>().unwrap_err()
        );
    }

    #[test]
    fn errors_point_at_the_column() {
        let err = |c: &str| c.parse::<Condition>().unwrap_err();
        assert_eq!(err(""), "empty condition");
        assert!(
            err("score >= \"high\"").starts_with("at column 10: expected a number after `>=`"),
            "{}",
            err("score >= \"high\"")
        );
        assert!(err("proto == ").starts_with("at column 10: expected a string"), "{}", err("proto == "));
        assert!(err("proto == \"udp\" &").starts_with("at column 16:"), "{}", err("proto == \"udp\" &"));
        assert!(err("proto in [\"a\" \"b\"]").contains("`,` or `]`"), "{}", err("proto in [\"a\" \"b\"]"));
        assert!(err("(a == 1").contains("`)`"));
        assert!(err("== 1").starts_with("at column 1: expected a field name"));
        assert!(err("a == \"unterminated").contains("closing"));
    }
}
