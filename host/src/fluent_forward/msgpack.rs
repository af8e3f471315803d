//! JSON text straight to msgpack, in one pass over the bytes: keys keep their order, nothing is
//! parsed into a map first. Integers stay integers (within i64/u64), other numbers become
//! float64, strings are unescaped. Containers get the smallest msgpack header once their
//! length is known.

use super::time::EventTime;

/// Deeper nesting than this is refused (a record is not a stack-overflow vector).
const MAX_DEPTH: usize = 128;

/// Convert the JSON object `json` to a msgpack map appended to `out`; returns the object's
/// top-level `timestamp` when it is a number. On error `out` is left as it was.
pub fn object(json: &[u8], out: &mut Vec<u8>) -> Result<Option<EventTime>, String> {
    let start = out.len();
    let mut p = Parser { s: json, i: 0, out, timestamp: None };
    p.ws();
    if p.peek() != Some(b'{') {
        p.out.truncate(start);
        return Err("not a JSON object".into());
    }
    let result = p.value(0).and_then(|()| {
        p.ws();
        if p.i == p.s.len() {
            Ok(())
        } else {
            Err(format!("trailing bytes at {}", p.i))
        }
    });
    let timestamp = p.timestamp;
    match result {
        Ok(()) => Ok(timestamp),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

struct Parser<'a, 'o> {
    s: &'a [u8],
    i: usize,
    out: &'o mut Vec<u8>,
    timestamp: Option<EventTime>,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", b as char, self.i))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.container(depth, true),
            Some(b'[') => self.container(depth, false),
            Some(b'"') => {
                self.string()?;
                Ok(())
            }
            Some(b't') => self.literal(b"true", 0xc3),
            Some(b'f') => self.literal(b"false", 0xc2),
            Some(b'n') => self.literal(b"null", 0xc0),
            Some(b'-' | b'0'..=b'9') => {
                let text = self.number()?;
                write_number(text, self.out)
            }
            Some(c) => Err(format!("unexpected {:?} at {}", c as char, self.i)),
            None => Err("unexpected end".into()),
        }
    }

    fn literal(&mut self, word: &[u8], marker: u8) -> Result<(), String> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            self.out.push(marker);
            Ok(())
        } else {
            Err(format!("bad literal at {}", self.i))
        }
    }

    /// The text of a number, checked against JSON's grammar.
    fn number(&mut self) -> Result<&'a [u8], String> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i > from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        if !digits(self) {
            return Err(format!("bad number at {start}"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !digits(self) {
                return Err(format!("bad number at {start}"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(format!("bad number at {start}"));
            }
        }
        let s: &'a [u8] = self.s;
        Ok(&s[start..self.i])
    }

    /// An object (`map`) or an array; the header is written once the length is known.
    fn container(&mut self, depth: usize, map: bool) -> Result<(), String> {
        let (open, close) = if map { (b'{', b'}') } else { (b'[', b']') };
        self.expect(open)?;
        let header = self.out.len();
        self.out.extend_from_slice(&[0; 5]);
        let mut n: u32 = 0;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
        } else {
            loop {
                if map {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(format!("expected a key at {}", self.i));
                    }
                    let is_timestamp = self.string()?;
                    self.expect(b':')?;
                    if depth == 0 && is_timestamp {
                        self.ws();
                        if matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
                            let text = self.number()?;
                            self.timestamp = EventTime::parse_json(text);
                            write_number(text, self.out)?;
                        } else {
                            self.value(depth + 1)?;
                        }
                    } else {
                        self.value(depth + 1)?;
                    }
                } else {
                    self.value(depth + 1)?;
                }
                n += 1;
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(c) if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(format!("expected ',' or {:?} at {}", close as char, self.i)),
                }
            }
        }
        // The smallest header: fix (1 byte), 16-bit (3) or 32-bit (5); the body moves up.
        let (fix, wide16, wide32) = if map { (0x80, 0xde, 0xdf) } else { (0x90, 0xdc, 0xdd) };
        let head: Vec<u8> = if n < 16 {
            vec![fix | n as u8]
        } else if n <= u32::from(u16::MAX) {
            let mut h = vec![wide16];
            h.extend_from_slice(&(n as u16).to_be_bytes());
            h
        } else {
            let mut h = vec![wide32];
            h.extend_from_slice(&n.to_be_bytes());
            h
        };
        self.out.splice(header..header + 5, head);
        Ok(())
    }

    /// A string, unescaped and written as msgpack str; returns whether it is `timestamp`.
    fn string(&mut self) -> Result<bool, String> {
        self.i += 1; // the opening quote
        let start = self.i;
        // Fast path: no escapes.
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    let text = String::from_utf8_lossy(raw);
                    write_str(text.as_bytes(), self.out);
                    return Ok(text == "timestamp");
                }
                b'\\' => break,
                0..=0x1f => return Err(format!("control character in a string at {}", self.i)),
                _ => self.i += 1,
            }
        }
        let mut buf: Vec<u8> = self.s[start..self.i].to_vec();
        loop {
            let Some(c) = self.peek() else { return Err("unterminated string".into()) };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else { return Err("unterminated string".into()) };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => buf.push(e),
                        b'b' => buf.push(0x08),
                        b'f' => buf.push(0x0c),
                        b'n' => buf.push(b'\n'),
                        b'r' => buf.push(b'\r'),
                        b't' => buf.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let low = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut tmp = [0u8; 4];
                            buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err(format!("bad escape at {}", self.i - 1)),
                    }
                }
                0..=0x1f => return Err(format!("control character in a string at {}", self.i - 1)),
                _ => buf.push(c),
            }
        }
        let text = String::from_utf8_lossy(&buf);
        write_str(text.as_bytes(), self.out);
        Ok(text == "timestamp")
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        let v = std::str::from_utf8(h).ok().and_then(|h| u32::from_str_radix(h, 16).ok()).ok_or("bad \\u escape")?;
        self.i += 4;
        Ok(v)
    }
}

fn write_str(s: &[u8], out: &mut Vec<u8>) {
    rmp::encode::write_str_len(out, s.len() as u32).expect("vec write");
    out.extend_from_slice(s);
}

fn write_number(text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let s = std::str::from_utf8(text).map_err(|_| "bad number")?;
    let integral = !s.contains(['.', 'e', 'E']);
    if integral {
        if let Ok(i) = s.parse::<i64>() {
            rmp::encode::write_sint(out, i).expect("vec write");
            return Ok(());
        }
        if let Ok(u) = s.parse::<u64>() {
            rmp::encode::write_uint(out, u).expect("vec write");
            return Ok(());
        }
    }
    let f: f64 = s.parse().map_err(|_| format!("bad number {s}"))?;
    rmp::encode::write_f64(out, f).expect("vec write");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn convert(json: &str) -> (Value, Option<EventTime>) {
        let mut out = Vec::new();
        let t = object(json.as_bytes(), &mut out).unwrap();
        let v = rmpv::decode::read_value(&mut &out[..]).unwrap();
        (v, t)
    }

    #[test]
    fn keys_keep_their_order_and_values_their_types() {
        let (v, t) = convert(
            r#" {"z": 1, "a": -2, "m": 1.5, "big": 18446744073709551615, "s": "x\"y\u00e9\ud83d\ude00\n",
                "nested": {"k": [true, false, null, [], {}]}, "e": 1e3} "#,
        );
        let m = v.as_map().unwrap();
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["z", "a", "m", "big", "s", "nested", "e"]);
        assert_eq!(m[0].1, Value::from(1));
        assert_eq!(m[1].1, Value::from(-2));
        assert_eq!(m[2].1, Value::F64(1.5));
        assert_eq!(m[3].1, Value::from(u64::MAX));
        assert_eq!(m[4].1.as_str(), Some("x\"yé😀\n"));
        assert_eq!(
            m[5].1,
            Value::Map(vec![(
                "k".into(),
                Value::Array(vec![true.into(), false.into(), Value::Nil, Value::Array(vec![]), Value::Map(vec![])])
            )])
        );
        assert_eq!(m[6].1, Value::F64(1000.0));
        assert_eq!(t, None);
    }

    #[test]
    fn the_top_level_timestamp_is_read_exactly() {
        let (_, t) = convert(r#"{"nested": {"timestamp": 5}, "timestamp": 1700000000.123456789}"#);
        assert_eq!(t, Some(EventTime { secs: 1_700_000_000, nanos: 123_456_789 }));
    }

    #[test]
    fn long_containers_get_wide_headers() {
        let items: Vec<String> = (0..70_000).map(|i| i.to_string()).collect();
        let json = format!("{{\"a\": [{}], \"b\": [{}]}}", items.join(","), items[..20].join(","));
        let (v, _) = convert(&json);
        assert_eq!(v.as_map().unwrap()[0].1.as_array().unwrap().len(), 70_000);
        assert_eq!(v.as_map().unwrap()[1].1.as_array().unwrap().len(), 20);
    }

    #[test]
    fn malformed_json_is_an_error_and_writes_nothing() {
        for bad in ["[1]", "{\"a\":}", "{\"a\":1", "{\"a\":01x}", "{\"a\":\"\u{1}\"}", "{} x", "{\"a\":tru}"] {
            let mut out = vec![7u8];
            assert!(object(bad.as_bytes(), &mut out).is_err(), "{bad}");
            assert_eq!(out, [7u8]);
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(object(deep.as_bytes(), &mut Vec::new()).unwrap_err().contains("deeper"));
    }
}
