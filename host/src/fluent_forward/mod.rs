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
