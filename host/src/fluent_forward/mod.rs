//! The Fluent forward protocol (v1), as Fluentd and Fluent Bit speak it: msgpack arrays over
//! TCP in Message (`[tag, time, record, option?]`), Forward (`[tag, [[time, record], ...],
//! option?]`) and PackedForward (`[tag, <msgpack stream of [time, record]>, option?]`, gzip when
//! `option.compressed == "gzip"`) modes. A sender that puts `chunk` in the options expects
//! `{"ack": chunk}` back once the events are safe.
//!
//! An entry's time is an integer, a float or the `EventTime` extension ([`time`]); Fluent Bit's
//! v2 event format sends `[[time, metadata], record]` (its default with
//! `Retain_Metadata_In_Forward_Mode`), read here as well. [`handshake`] is the `shared_key`
//! exchange; [`msgpack`] turns JSON records into msgpack for the sink.

pub mod handshake;
pub mod msgpack;
pub mod time;

use flowtag_plugin::json as js;
use rmpv::Value;
pub use time::EventTime;

/// One decoded forward message.
#[derive(Debug, PartialEq)]
pub struct Message {
    pub tag: String,
    pub entries: Vec<Entry>,
    pub chunk: Option<String>,
}

/// One event: its time (when the sender gave a readable one), Fluent Bit's metadata map (v2
/// format), and the record.
#[derive(Debug, PartialEq)]
pub struct Entry {
    pub time: Option<EventTime>,
    pub metadata: Option<Value>,
    pub record: Value,
}

/// How many bytes the first msgpack value of `buf` takes (see [`Measure`]).
pub fn value_len(buf: &[u8]) -> Result<Option<usize>, String> {
    Measure::default().measure(buf)
}

/// A walk over the first msgpack value of a growing buffer, by its markers and lengths, without
/// building it. It stops where the bytes end and goes on from there when more have arrived, so
/// a reader that measures after every read walks each byte once, and decodes the value once,
/// when it is whole. Iterative (no recursion, whatever the nesting); a `bin` or `str` is
/// skipped by its length.
#[derive(Debug, Default)]
pub struct Measure {
    /// Where the walk stopped.
    at: usize,
    /// Values still to walk from there (0 before the walk starts).
    left: u64,
}

impl Measure {
    /// `Ok(Some(len))` when the value is whole in `buf` (the walk starts over for the next
    /// one), `Ok(None)` when `buf` ends before it does, `Err` on a byte that is no msgpack
    /// marker. `buf` must start with the bytes it had at the previous call.
    pub fn measure(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        if self.left == 0 {
            *self = Measure { at: 0, left: 1 };
        }
        let (mut at, mut left) = (self.at, self.left);
        let r = walk(buf, &mut at, &mut left);
        match r {
            Ok(Some(_)) | Err(_) => *self = Measure::default(),
            Ok(None) => *self = Measure { at, left },
        }
        r
    }
}

/// The walk of [`Measure`]: from `at` with `left` values to go; on `Ok(None)`, `at` and `left`
/// are where to go on from (the start of the value that was cut).
fn walk(buf: &[u8], at_: &mut usize, left_: &mut u64) -> Result<Option<usize>, String> {
    let be = |b: &[u8]| b.iter().fold(0usize, |n, &x| (n << 8) | usize::from(x));
    let (mut at, mut left) = (*at_, *left_);
    while left > 0 {
        // Each value is walked whole or not at all: cut, the walk resumes at its start.
        *at_ = at;
        *left_ = left;
        let Some(&m) = buf.get(at) else { return Ok(None) };
        left -= 1;
        // (bytes of length field, then: payload bytes fixed, or items to add)
        let (head, skip, items): (usize, Option<usize>, u64) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, Some(0), 0),
            0x80..=0x8f => (0, Some(0), 2 * u64::from(m & 0x0f)),
            0x90..=0x9f => (0, Some(0), u64::from(m & 0x0f)),
            0xa0..=0xbf => (0, Some(usize::from(m & 0x1f)), 0),
            0xc4 | 0xd9 => (1, None, 0),
            0xc5 | 0xda => (2, None, 0),
            0xc6 | 0xdb => (4, None, 0),
            // ext 8/16/32: length, then a type byte.
            0xc7 => (1, None, 1),
            0xc8 => (2, None, 1),
            0xc9 => (4, None, 1),
            0xca => (0, Some(4), 0),
            0xcb => (0, Some(8), 0),
            0xcc | 0xd0 => (0, Some(1), 0),
            0xcd | 0xd1 => (0, Some(2), 0),
            0xce | 0xd2 => (0, Some(4), 0),
            0xcf | 0xd3 => (0, Some(8), 0),
            // fixext 1/2/4/8/16: a type byte and the data.
            0xd4 => (0, Some(2), 0),
            0xd5 => (0, Some(3), 0),
            0xd6 => (0, Some(5), 0),
            0xd7 => (0, Some(9), 0),
            0xd8 => (0, Some(17), 0),
            // array 16/32, map 16/32: counted below.
            0xdc => (2, Some(0), 0),
            0xdd => (4, Some(0), 0),
            0xde => (2, Some(0), 0),
            0xdf => (4, Some(0), 0),
            0xc1 => return Err(format!("byte 0x{m:02x} at {at} is not a msgpack marker")),
        };
        at += 1;
        let Some(field) = buf.get(at..at + head) else { return Ok(None) };
        let n = be(field);
        at += head;
        let payload = match (m, skip) {
            (0xdc | 0xdd, _) => {
                left += n as u64;
                0
            }
            (0xde | 0xdf, _) => {
                left += 2 * n as u64;
                0
            }
            (_, Some(fixed)) => {
                left += items;
                fixed
            }
            // bin, str, ext: the length field says; an ext has its type byte too.
            (_, None) => n + items as usize,
        };
        at = at.checked_add(payload).ok_or("a length past the end of memory")?;
        if at > buf.len() {
            return Ok(None);
        }
    }
    Ok(Some(at))
}

/// `[time, record]` or `[[time, metadata], record]`.
fn entry(v: Value) -> Result<Entry, String> {
    let Value::Array(mut a) = v else { return Err("an entry is not [time, record]".into()) };
    if a.len() != 2 {
        return Err("an entry is not [time, record]".into());
    }
    let record = a.pop().expect("two");
    match a.pop().expect("two") {
        Value::Array(mut head) if head.len() == 2 => {
            let metadata = head.pop().expect("two");
            let time = EventTime::from_msgpack(&head[0]);
            let metadata = match metadata {
                Value::Map(m) if m.is_empty() => None,
                Value::Nil => None,
                m => Some(m),
            };
            Ok(Entry { time, metadata, record })
        }
        Value::Array(_) => Err("an entry's header is not [time, metadata]".into()),
        time => Ok(Entry { time: EventTime::from_msgpack(&time), metadata: None, record }),
    }
}

pub fn parse(value: Value) -> Result<Message, String> {
    let Value::Array(mut parts) = value else { return Err("a forward message is a msgpack array".into()) };
    if parts.len() < 2 {
        return Err("a forward message has at least a tag and events".into());
    }
    let tag = match parts.remove(0) {
        Value::String(s) => s.into_str().ok_or("the tag is not UTF-8")?,
        _ => return Err("the tag is not a string".into()),
    };
    let second = parts.remove(0);
    let (entries, option) = match second {
        // Forward mode.
        Value::Array(items) => (items.into_iter().map(entry).collect::<Result<Vec<_>, _>>()?, parts.into_iter().next()),
        // PackedForward (and CompressedPackedForward).
        Value::Binary(_) | Value::String(_) => {
            let option = parts.into_iter().next();
            let raw = match second {
                Value::Binary(b) => b,
                Value::String(s) => s.into_bytes(),
                _ => unreachable!(),
            };
            let gzip = option.as_ref().and_then(|o| get(o, "compressed")).and_then(Value::as_str) == Some("gzip");
            let raw = if gzip {
                crate::sources::http::gunzip(&raw, 256 << 20).map_err(|e| format!("gzip entries: {e}"))?
            } else {
                raw
            };
            let mut cursor = std::io::Cursor::new(&raw[..]);
            let mut entries = Vec::new();
            while (cursor.position() as usize) < raw.len() {
                let v = rmpv::decode::read_value(&mut cursor).map_err(|e| format!("packed entries: {e}"))?;
                entries.push(entry(v)?);
            }
            (entries, option)
        }
        // Message mode: [tag, time, record, option?].
        time => {
            if parts.is_empty() {
                return Err("a message-mode event has no record".into());
            }
            let record = parts.remove(0);
            (vec![Entry { time: EventTime::from_msgpack(&time), metadata: None, record }], parts.into_iter().next())
        }
    };
    let chunk = option.as_ref().and_then(|o| get(o, "chunk")).and_then(|c| c.as_str().map(str::to_string));
    Ok(Message { tag, entries, chunk })
}

fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// An entry's record (a msgpack map) as a JSON object; `tag` and `timestamp` (to the
/// nanosecond) are added unless the record has them, and Fluent Bit's metadata goes under
/// `metadata_key` (when the entry has some and the record has no such field).
pub fn record_to_json(entry: &Entry, tag: &str, metadata_key: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let Value::Map(fields) = &entry.record else { return Err("a record is not a map".into()) };
    let time = entry.time;
    out.push(b'{');
    let mut first = true;
    let mut has_tag = false;
    let mut has_time = false;
    let mut has_metadata = false;
    for (k, v) in fields {
        let key = match k {
            Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => other.to_string(),
        };
        has_tag |= key == "tag";
        has_time |= key == "timestamp";
        has_metadata |= key == metadata_key;
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        js::write_string(out, &key);
        out.push(b':');
        value_to_json(v, out);
    }
    if !has_tag {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.extend_from_slice(b"\"tag\":");
        js::write_string(out, tag);
    }
    if let (false, Some(t)) = (has_time, time) {
        out.extend_from_slice(b",\"timestamp\":");
        t.write_json(out);
    }
    if let (false, Some(m)) = (has_metadata, &entry.metadata) {
        out.push(b',');
        js::write_string(out, metadata_key);
        out.push(b':');
        value_to_json(m, out);
    }
    out.push(b'}');
    Ok(())
}

fn value_to_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::F32(f) if f.is_finite() => out.extend_from_slice(ryu::Buffer::new().format(*f).as_bytes()),
        Value::F64(f) if f.is_finite() => out.extend_from_slice(ryu::Buffer::new().format(*f).as_bytes()),
        Value::F32(_) | Value::F64(_) => out.extend_from_slice(b"null"),
        Value::String(s) => js::write_string(out, &String::from_utf8_lossy(s.as_bytes())),
        Value::Binary(b) => js::write_string(out, &String::from_utf8_lossy(b)),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value_to_json(item, out);
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let key = match k {
                    Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => other.to_string(),
                };
                js::write_string(out, &key);
                out.push(b':');
                value_to_json(v, out);
            }
            out.push(b'}');
        }
        Value::Ext(_, _) => match EventTime::from_msgpack(v) {
            Some(t) => t.write_json(out),
            None => out.extend_from_slice(b"null"),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn value_len_measures_what_rmpv_reads_and_says_when_more_is_needed() {
        use rmpv::Value as V;
        let values = [
            V::from(1),
            V::from(-100_000),
            V::from(u64::MAX),
            V::from(1.5f32),
            V::from(2.5),
            V::Nil,
            V::from(true),
            V::from("x".repeat(40)),
            V::from("y".repeat(300)),
            V::from("z".repeat(70_000)),
            V::Binary(vec![7; 300]),
            V::Ext(0, vec![1, 2, 3, 4, 5, 6, 7, 8]),
            V::Ext(5, vec![1, 2, 3]),
            V::Ext(9, vec![0; 20]),
            V::Array((0..20).map(V::from).collect()),
            V::Map((0..20).map(|i| (V::from(i), V::from(vec![V::Nil]))).collect()),
            V::Array(vec![
                V::from("tag"),
                V::Array(vec![V::Array(vec![V::from(1), V::Map(vec![(V::from("a"), V::from(1))])])]),
            ]),
        ];
        for v in &values {
            let mut b = Vec::new();
            rmpv::encode::write_value(&mut b, v).unwrap();
            assert_eq!(value_len(&b), Ok(Some(b.len())), "{v:?}");
            for cut in 0..b.len() {
                assert_eq!(value_len(&b[..cut]), Ok(None), "{v:?} cut at {cut}");
            }
            b.extend_from_slice(b"\x93trailing");
            assert_eq!(value_len(&b), Ok(Some(b.len() - 9)));
        }
        assert!(value_len(b"\xc1").is_err());
        // Measured as the bytes arrive, a few at a time: the same answer, each byte walked once.
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, &values[16]).unwrap();
        rmpv::encode::write_value(&mut b, &values[15]).unwrap();
        let first = value_len(&b).unwrap().unwrap();
        let mut m = Measure::default();
        let mut got = None;
        for end in 1..=b.len() {
            if let Some(n) = m.measure(&b[..end]).unwrap() {
                got = Some((end, n));
                break;
            }
        }
        assert_eq!(got, Some((first, first)));
        assert_eq!(m.measure(&b[first..]).unwrap(), Some(b.len() - first), "the next value starts afresh");
        // A header that claims more than there is: not whole yet, and nothing reserved.
        assert_eq!(value_len(b"\xdd\xff\xff\xff\xff\x01"), Ok(None));
        assert_eq!(value_len(b"\xc6\xff\xff\xff\xff"), Ok(None));
    }

    use super::*;

    fn mp(v: &Value) -> Vec<u8> {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, v).unwrap();
        b
    }

    #[test]
    fn all_three_modes_parse() {
        let rec = Value::Map(vec![("dur".into(), 0.5.into()), ("proto".into(), "tcp".into())]);
        let m = parse(Value::Array(vec!["flows".into(), 1_700_000_000.into(), rec.clone()])).unwrap();
        assert_eq!((m.tag.as_str(), m.entries.len(), m.chunk), ("flows", 1, None));
        let et = Value::Ext(0, [0u8, 0, 0, 10, 0, 0, 0, 5].to_vec());
        let fwd = Value::Array(vec![
            "t".into(),
            Value::Array(vec![Value::Array(vec![et.clone(), rec.clone()]), Value::Array(vec![2.into(), rec.clone()])]),
            Value::Map(vec![("chunk".into(), "abc".into())]),
        ]);
        let m = parse(fwd).unwrap();
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.entries[0].time, Some(EventTime { secs: 10, nanos: 5 }));
        assert_eq!(m.chunk.as_deref(), Some("abc"));
        let mut packed = mp(&Value::Array(vec![1.into(), rec.clone()]));
        packed.extend(mp(&Value::Array(vec![2.into(), rec.clone()])));
        let m = parse(Value::Array(vec!["t".into(), Value::Binary(packed)])).unwrap();
        assert_eq!(m.entries.len(), 2);
        let mut out = Vec::new();
        record_to_json(&m.entries[1], &m.tag, "fluent_metadata", &mut out).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"dur":0.5,"proto":"tcp","tag":"t","timestamp":2}"#);
    }

    #[test]
    fn fluent_bit_v2_entries_keep_time_and_metadata() {
        let rec = Value::Map(vec![("proto".into(), "tcp".into())]);
        let et = Value::Ext(0, [0x65u8, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15].to_vec());
        let meta = Value::Map(vec![("otlp".into(), Value::Map(vec![("k".into(), 1.into())]))]);
        let v2 = Value::Array(vec![
            "t".into(),
            Value::Array(vec![
                Value::Array(vec![Value::Array(vec![et.clone(), meta]), rec.clone()]),
                Value::Array(vec![Value::Array(vec![et, Value::Map(vec![])]), rec]),
            ]),
        ]);
        let m = parse(v2).unwrap();
        let t = EventTime { secs: 0x6553_f100, nanos: 123_456_789 };
        assert_eq!(m.entries[0].time, Some(t));
        let mut out = Vec::new();
        record_to_json(&m.entries[0], &m.tag, "fluent_metadata", &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"proto":"tcp","tag":"t","timestamp":1700000000.123456789,"fluent_metadata":{"otlp":{"k":1}}}"#
        );
        out.clear();
        record_to_json(&m.entries[1], &m.tag, "fluent_metadata", &mut out).unwrap();
        assert!(!String::from_utf8_lossy(&out).contains("fluent_metadata"), "empty metadata is not written");
        let bad = Value::Array(vec![
            "t".into(),
            Value::Array(vec![Value::Array(vec![Value::Array(vec![1.into()]), 2.into()])]),
        ]);
        assert!(parse(bad).is_err());
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(parse(Value::from(3)).is_err());
        assert!(parse(Value::Array(vec![Value::from(1), Value::from(2)])).is_err());
        assert!(parse(Value::Array(vec!["t".into(), Value::Array(vec![Value::from(1)])])).is_err());
    }
}
