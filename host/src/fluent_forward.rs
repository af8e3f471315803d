//! The Fluent forward protocol (v1), as Fluentd and Fluent Bit speak it: msgpack arrays over
//! TCP in Message (`[tag, time, record, option?]`), Forward (`[tag, [[time, record], ...],
//! option?]`) and PackedForward (`[tag, <msgpack stream of [time, record]>, option?]`, gzip when
//! `option.compressed == "gzip"`) modes. A sender that puts `chunk` in the options expects
//! `{"ack": chunk}` back once the events are safe. Times are integers or the `EventTime`
//! extension (type 0: seconds and nanoseconds, big-endian u32 each).
//!
//! Not supported: the handshake (`shared_key` authentication, `HELO`/`PING`/`PONG`) and TLS;
//! run the forward port on a trusted network.

use flowtag_plugin::json as js;
use rmpv::Value;

/// One decoded forward message.
#[derive(Debug, PartialEq)]
pub struct Message {
    pub tag: String,
    pub entries: Vec<(Option<f64>, Value)>,
    pub chunk: Option<String>,
}

fn time_of(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => i.as_f64(),
        Value::F32(f) => Some(f64::from(*f)),
        Value::F64(f) => Some(*f),
        Value::Ext(0, b) if b.len() == 8 => {
            let s = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let ns = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            Some(f64::from(s) + f64::from(ns) / 1e9)
        }
        _ => None,
    }
}

fn entry(v: Value) -> Result<(Option<f64>, Value), String> {
    match v {
        Value::Array(mut a) if a.len() == 2 => {
            let record = a.pop().expect("two");
            let time = a.pop().expect("two");
            Ok((time_of(&time), record))
        }
        _ => Err("an entry is not [time, record]".into()),
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
            (vec![(time_of(&time), record)], parts.into_iter().next())
        }
    };
    let chunk = option.as_ref().and_then(|o| get(o, "chunk")).and_then(|c| c.as_str().map(str::to_string));
    Ok(Message { tag, entries, chunk })
}

fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// A record (a msgpack map) as a JSON object; `tag` and `timestamp` are added unless the record
/// has them.
pub fn record_to_json(record: &Value, tag: &str, time: Option<f64>, out: &mut Vec<u8>) -> Result<(), String> {
    let Value::Map(fields) = record else { return Err("a record is not a map".into()) };
    out.push(b'{');
    let mut first = true;
    let mut has_tag = false;
    let mut has_time = false;
    for (k, v) in fields {
        let key = match k {
            Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => other.to_string(),
        };
        has_tag |= key == "tag";
        has_time |= key == "timestamp";
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
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"timestamp\":");
        out.extend_from_slice(ryu::Buffer::new().format(t).as_bytes());
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
        Value::Ext(_, _) => match time_of(v) {
            Some(t) => out.extend_from_slice(ryu::Buffer::new().format(t).as_bytes()),
            None => out.extend_from_slice(b"null"),
        },
    }
}

/// A JSON object as a msgpack map (for the forward sink).
pub fn json_to_msgpack(json: &serde_json::Value, out: &mut Vec<u8>) {
    use rmp::encode;
    match json {
        serde_json::Value::Null => encode::write_nil(out).expect("vec write"),
        serde_json::Value::Bool(b) => encode::write_bool(out, *b).expect("vec write"),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                encode::write_sint(out, i).expect("vec write");
            } else if let Some(u) = n.as_u64() {
                encode::write_uint(out, u).expect("vec write");
            } else {
                encode::write_f64(out, n.as_f64().unwrap_or(0.0)).expect("vec write");
            }
        }
        serde_json::Value::String(s) => encode::write_str(out, s).expect("vec write"),
        serde_json::Value::Array(a) => {
            encode::write_array_len(out, a.len() as u32).expect("vec write");
            a.iter().for_each(|v| json_to_msgpack(v, out));
        }
        serde_json::Value::Object(m) => {
            encode::write_map_len(out, m.len() as u32).expect("vec write");
            for (k, v) in m {
                encode::write_str(out, k).expect("vec write");
                json_to_msgpack(v, out);
            }
        }
    }
}

/// `EventTime` for a Unix time in seconds.
pub fn write_event_time(out: &mut Vec<u8>, secs: f64) {
    let s = secs.max(0.0).floor();
    let ns = ((secs - s) * 1e9).round().min(999_999_999.0) as u32;
    rmp::encode::write_ext_meta(out, 8, 0).expect("vec write");
    out.extend_from_slice(&(s as u32).to_be_bytes());
    out.extend_from_slice(&ns.to_be_bytes());
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
        assert_eq!(m.entries[0].0, Some(10.000000005));
        assert_eq!(m.chunk.as_deref(), Some("abc"));
        let mut packed = mp(&Value::Array(vec![1.into(), rec.clone()]));
        packed.extend(mp(&Value::Array(vec![2.into(), rec.clone()])));
        let m = parse(Value::Array(vec!["t".into(), Value::Binary(packed)])).unwrap();
        assert_eq!(m.entries.len(), 2);
        let mut out = Vec::new();
        record_to_json(&m.entries[1].1, &m.tag, m.entries[1].0, &mut out).unwrap();
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(j, serde_json::json!({"dur": 0.5, "proto": "tcp", "tag": "t", "timestamp": 2.0}));
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(parse(Value::from(3)).is_err());
        assert!(parse(Value::Array(vec![Value::from(1), Value::from(2)])).is_err());
        assert!(parse(Value::Array(vec!["t".into(), Value::Array(vec![Value::from(1)])])).is_err());
    }
}

/// The Forward Protocol v1 handshake (`shared_key`): the server sends `HELO` with a nonce, the
/// client answers `PING` with its hostname, a salt and `sha512_hex(salt + hostname + nonce +
/// shared_key)`, and the server answers `PONG` with the result and its own digest of the same
/// form (so the client knows the server holds the key too). User authentication (`username`,
/// `password`) is not used: both are sent empty, as the specification allows.
pub mod handshake {
    use rmpv::Value;
    use sha2::{Digest, Sha512};

    /// `sha512_hex(salt + hostname + nonce + shared_key)`.
    pub fn digest(salt: &[u8], hostname: &str, nonce: &[u8], shared_key: &str) -> String {
        let mut h = Sha512::new();
        h.update(salt);
        h.update(hostname.as_bytes());
        h.update(nonce);
        h.update(shared_key.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("writing to memory");
        out
    }

    fn bytes(v: &Value) -> Option<&[u8]> {
        v.as_slice().or_else(|| v.as_str().map(str::as_bytes))
    }

    /// `["HELO", {"nonce": nonce, "auth": "", "keepalive": true}]`.
    pub fn helo(nonce: &[u8]) -> Vec<u8> {
        encode(&Value::Array(vec![
            "HELO".into(),
            Value::Map(vec![
                ("nonce".into(), Value::Binary(nonce.to_vec())),
                ("auth".into(), Value::Binary(Vec::new())),
                ("keepalive".into(), true.into()),
            ]),
        ]))
    }

    /// The nonce of a `HELO`.
    pub fn read_helo(v: &Value) -> Result<Vec<u8>, String> {
        let a = v.as_array().filter(|a| a.len() == 2 && a[0].as_str() == Some("HELO"));
        let options = a.and_then(|a| a[1].as_map()).ok_or_else(|| format!("expected HELO, got {v}"))?;
        let nonce = options.iter().find(|(k, _)| k.as_str() == Some("nonce")).and_then(|(_, v)| bytes(v));
        nonce.map(<[u8]>::to_vec).ok_or_else(|| "HELO without a nonce".into())
    }

    /// `["PING", hostname, salt, digest, "", ""]`.
    pub fn ping(hostname: &str, salt: &[u8], nonce: &[u8], shared_key: &str) -> Vec<u8> {
        encode(&Value::Array(vec![
            "PING".into(),
            hostname.into(),
            Value::Binary(salt.to_vec()),
            digest(salt, hostname, nonce, shared_key).into(),
            "".into(),
            "".into(),
        ]))
    }

    /// Check a `PING` against the nonce sent: the client's hostname and salt when its digest is
    /// right, else why not.
    pub fn check_ping(v: &Value, nonce: &[u8], shared_key: &str) -> Result<(String, Vec<u8>), String> {
        let a = v
            .as_array()
            .filter(|a| a.len() == 6 && a[0].as_str() == Some("PING"))
            .ok_or_else(|| "expected PING".to_string())?;
        let hostname = a[1].as_str().ok_or("PING: hostname is not a string")?.to_string();
        let salt = bytes(&a[2]).ok_or("PING: salt is not a string")?.to_vec();
        let given = a[3].as_str().ok_or("PING: digest is not a string")?;
        if !crate::net::same_secret(given, &digest(&salt, &hostname, nonce, shared_key)) {
            return Err(format!("shared_key mismatch (client {hostname:?})"));
        }
        Ok((hostname, salt))
    }

    /// `["PONG", ok, reason, hostname, digest]` (an empty digest when refused).
    pub fn pong(ok: bool, reason: &str, hostname: &str, salt: &[u8], nonce: &[u8], shared_key: &str) -> Vec<u8> {
        let d = if ok { digest(salt, hostname, nonce, shared_key) } else { String::new() };
        encode(&Value::Array(vec!["PONG".into(), ok.into(), reason.into(), hostname.into(), d.into()]))
    }

    /// Check a `PONG`: accepted, and the server proved it holds the key.
    pub fn check_pong(v: &Value, salt: &[u8], nonce: &[u8], shared_key: &str) -> Result<(), String> {
        let a = v
            .as_array()
            .filter(|a| a.len() == 5 && a[0].as_str() == Some("PONG"))
            .ok_or_else(|| format!("expected PONG, got {v}"))?;
        if a[1].as_bool() != Some(true) {
            return Err(format!("the server refused the handshake: {}", a[2].as_str().unwrap_or("no reason given")));
        }
        let hostname = a[3].as_str().unwrap_or("");
        let given = a[4].as_str().unwrap_or("");
        if !crate::net::same_secret(given, &digest(salt, hostname, nonce, shared_key)) {
            return Err(format!("the server {hostname:?} does not hold the shared_key"));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn decode(b: &[u8]) -> Value {
            rmpv::decode::read_value(&mut &b[..]).unwrap()
        }

        #[test]
        fn the_digest_is_sha512_hex_of_salt_hostname_nonce_key() {
            // Python: hashlib.sha512(b"salt" + b"node-1" + b"nonce-123" + b"k3y").hexdigest()
            assert_eq!(
                digest(b"salt", "node-1", b"nonce-123", "k3y"),
                "403cd8c57a8993ac8fc04903f666523f1e163c31672fd15672b266151b4e5c2cb656761f29bf4f0a885254448820ef17eaf159d2d8bd1fc9ae86db3a9e555b53"
            );
        }

        #[test]
        fn a_client_and_a_server_with_the_same_key_agree_and_a_wrong_key_is_refused() {
            let nonce = b"nonce-123";
            let sent = decode(&helo(nonce));
            assert_eq!(read_helo(&sent).unwrap(), nonce);
            let ping_ok = decode(&ping("node-1", b"salt", nonce, "k3y"));
            let (host, salt) = check_ping(&ping_ok, nonce, "k3y").unwrap();
            assert_eq!((host.as_str(), salt.as_slice()), ("node-1", &b"salt"[..]));
            let answer = decode(&pong(true, "", "agg", &salt, nonce, "k3y"));
            check_pong(&answer, &salt, nonce, "k3y").unwrap();
            // The server's digest must be of the key: a server without it is caught.
            assert!(check_pong(&answer, &salt, nonce, "other").is_err());
            let wrong = decode(&ping("node-1", b"salt", nonce, "wrong"));
            assert!(check_ping(&wrong, nonce, "k3y").unwrap_err().contains("shared_key mismatch"));
            let refused = decode(&pong(false, "shared_key mismatch", "", b"", nonce, "k3y"));
            assert!(check_pong(&refused, b"salt", nonce, "k3y").unwrap_err().contains("refused"));
        }
    }
}
