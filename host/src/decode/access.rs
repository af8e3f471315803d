//! Web server access logs in the Common and Combined Log Formats (nginx's default `combined`,
//! Apache's `common`, `combined` and `vhost_combined`), one request per line:
//!
//! ```text
//! [vhost[:port] ]client ident user [time] "request" status bytes[ "referer" "user-agent"]
//! ```
//!
//! To `{"vhost", "client_address", "ident", "user", "time", "method", "target", "path",
//! "query", "protocol", "status", "bytes", "referrer", "user_agent"}`: a `-` field is left out
//! (`bytes` `-`, Apache's zero, is 0), `vhost` only when the line has one, `query` only when
//! the target has one. A request line that is not `METHOD target PROTOCOL` (a TLS handshake sent
//! to a plain-text port, a bare `-`) is kept whole as `request`. Quoted fields take Apache's
//! `\"` and `\\` and both servers' `\xHH` escapes; bytes that are not UTF-8 become U+FFFD. Fields
//! after the user agent (custom formats) are ignored.

use std::io::Write as _;

use flowtag_plugin::json as js;

/// One field of a log line: bare, `[bracketed]` or `"quoted"` (unescaped).
enum Field<'a> {
    Bare(&'a [u8]),
    Bracketed(&'a [u8]),
    Quoted(Vec<u8>),
}

impl Field<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Field::Bare(b) | Field::Bracketed(b) => b,
            Field::Quoted(v) => v,
        }
    }
}

/// The fields of `line`, at most `max` of them.
fn fields(line: &[u8], max: usize) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::with_capacity(12);
    let mut i = 0;
    while i < line.len() && out.len() < max {
        match line[i] {
            b' ' | b'\t' => i += 1,
            b'[' => {
                let end = memchr::memchr(b']', &line[i..]).ok_or("a '[' field is not closed")?;
                out.push(Field::Bracketed(&line[i + 1..i + end]));
                i += end + 1;
            }
            b'"' => {
                let mut v = Vec::new();
                let mut j = i + 1;
                loop {
                    match line.get(j) {
                        None => return Err("a quoted field is not closed".into()),
                        Some(b'"') => break,
                        Some(b'\\') => match (line.get(j + 1), line.get(j + 2..j + 4)) {
                            (Some(b'x'), Some(h)) if h.iter().all(u8::is_ascii_hexdigit) => {
                                let hex = std::str::from_utf8(h).expect("hex digits");
                                v.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                                j += 4;
                            }
                            (Some(&c @ (b'"' | b'\\')), _) => {
                                v.push(c);
                                j += 2;
                            }
                            _ => {
                                v.push(b'\\');
                                j += 1;
                            }
                        },
                        Some(&c) => {
                            v.push(c);
                            j += 1;
                        }
                    }
                }
                out.push(Field::Quoted(v));
                i = j + 1;
            }
            _ => {
                let end = line[i..].iter().position(|&c| c == b' ' || c == b'\t').map_or(line.len(), |p| i + p);
                out.push(Field::Bare(&line[i..end]));
                i = end;
            }
        }
    }
    Ok(out)
}

fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn member(out: &mut Vec<u8>, first: &mut bool, key: &str, value: &[u8]) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    js::write_string(out, key);
    out.push(b':');
    js::write_string(out, &text(value));
}

/// Decode one access-log line into a JSON object appended to `out`.
pub(super) fn decode(line: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
    let f = fields(line, 11)?;
    // With a leading vhost the time is the fifth field, else the fourth.
    let vhost = match (f.get(3), f.get(4)) {
        (Some(Field::Bracketed(_)), _) => false,
        (_, Some(Field::Bracketed(_))) => true,
        _ => return Err("not a Common/Combined Log Format line (no [time] field)".into()),
    };
    let f = &f[usize::from(vhost)..];
    if f.len() < 7 {
        return Err(format!("{} fields: a Common Log Format line has at least 7", f.len()));
    }
    let Field::Quoted(request) = &f[4] else { return Err("the request line is not quoted".into()) };
    let status = std::str::from_utf8(f[5].bytes())
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("status {:?} is not a number", text(f[5].bytes())))?;
    let bytes = match f[6].bytes() {
        b"-" => 0,
        b => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("size {:?} is not a number", text(b)))?,
    };
    let start = out.len();
    out.push(b'{');
    let mut first = true;
    if vhost {
        member(out, &mut first, "vhost", line.split(|&c| c == b' ').next().unwrap_or_default());
    }
    for (key, field) in [("client_address", &f[0]), ("ident", &f[1]), ("user", &f[2])] {
        if field.bytes() != b"-" {
            member(out, &mut first, key, field.bytes());
        }
    }
    member(out, &mut first, "time", f[3].bytes());
    let parts: Vec<&[u8]> = request.split(|&c| c == b' ').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [method, target, protocol] if protocol.starts_with(b"HTTP/") && method.iter().all(u8::is_ascii_alphabetic) => {
            member(out, &mut first, "method", method);
            member(out, &mut first, "target", target);
            let (path, query) = match memchr::memchr(b'?', target) {
                Some(q) => (&target[..q], Some(&target[q + 1..])),
                None => (&target[..], None),
            };
            member(out, &mut first, "path", path);
            if let Some(q) = query {
                member(out, &mut first, "query", q);
            }
            member(out, &mut first, "protocol", protocol);
        }
        _ => member(out, &mut first, "request", request),
    }
    let _ = write!(out, ",\"status\":{status},\"bytes\":{bytes}");
    for (key, field) in [("referrer", f.get(7)), ("user_agent", f.get(8))] {
        match field {
            Some(Field::Quoted(v)) if v != b"-" => member(out, &mut first, key, v),
            Some(Field::Quoted(_)) | None => {}
            Some(_) => {
                out.truncate(start);
                return Err(format!("the {key} field is not quoted"));
            }
        }
    }
    out.push(b'}');
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> serde_json::Value {
        let mut out = Vec::new();
        assert_eq!(decode(line.as_bytes(), &mut out), Ok(true), "{line}");
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn nginx_combined() {
        let r = one(
            r#"127.0.0.1 - - [05/Dec/2026:10:41:07 +0000] "GET /search?q=%27+or+1%3D1--&x=1 HTTP/1.1" 200 615 "-" "curl/7.88.1""#,
        );
        assert_eq!(r["client_address"], "127.0.0.1");
        assert_eq!(r["time"], "05/Dec/2026:10:41:07 +0000");
        assert_eq!(
            (&r["method"], &r["path"], &r["query"]),
            (&"GET".into(), &"/search".into(), &"q=%27+or+1%3D1--&x=1".into())
        );
        assert_eq!((r["status"].as_u64(), r["bytes"].as_u64()), (Some(200), Some(615)));
        assert_eq!(r["user_agent"], "curl/7.88.1");
        assert!(r.get("referrer").is_none() && r.get("user").is_none() && r.get("vhost").is_none());
        // nginx escapes a quote in a field as \x22.
        let r = one(
            r#"10.0.0.9 - - [05/Dec/2026:10:41:07 +0000] "GET /a\x22b HTTP/1.1" 404 0 "http://x/?a=\x22" "Mozilla/5.0 (X11)""#,
        );
        assert_eq!((&r["target"], &r["referrer"]), (&"/a\"b".into(), &"http://x/?a=\"".into()));
    }

    #[test]
    fn apache_common_and_vhost_combined_with_escapes() {
        let r = one(r#"192.0.2.7 - alice [05/Dec/2026:10:41:07 +0100] "POST /login HTTP/1.0" 302 -"#);
        assert_eq!((&r["user"], &r["bytes"], &r["method"]), (&"alice".into(), &0.into(), &"POST".into()));
        let r = one(
            r#"www.example.com:443 192.0.2.7 - - [05/Dec/2026:10:41:07 +0100] "GET /q?x=\"<script>\" HTTP/1.1" 200 12 "-" "a \\ b""#,
        );
        assert_eq!((&r["vhost"], &r["client_address"]), (&"www.example.com:443".into(), &"192.0.2.7".into()));
        assert_eq!((&r["query"], &r["user_agent"]), (&"x=\"<script>\"".into(), &"a \\ b".into()));
    }

    #[test]
    fn odd_request_lines_are_kept_whole() {
        let r = one(r#"192.0.2.7 - - [05/Dec/2026:10:41:07 +0000] "\x16\x03\x01\x00\xfa\x01" 400 157 "-" "-""#);
        assert_eq!(r["request"], "\u{16}\u{3}\u{1}\u{0}\u{fffd}\u{1}");
        assert!(r.get("method").is_none() && r.get("user_agent").is_none());
        let r = one(r#"192.0.2.7 - - [05/Dec/2026:10:41:07 +0000] "-" 408 0 "-" "-""#);
        assert_eq!(r["request"], "-");
    }

    #[test]
    fn malformed_lines_name_the_problem() {
        for (line, why) in [
            ("hello world", "no [time] field"),
            (r#"1.2.3.4 - - [t] "GET / HTTP/1.1" abc 1"#, "status \"abc\""),
            (r#"1.2.3.4 - - [t] "GET / HTTP/1.1 200 1"#, "not closed"),
            (r#"1.2.3.4 - - [t] GET 200 1"#, "not quoted"),
            (r#"1.2.3.4 - - [t] "GET / HTTP/1.1" 200 1 "-" Mozilla"#, "user_agent field is not quoted"),
        ] {
            let mut out = b"x".to_vec();
            let err = decode(line.as_bytes(), &mut out).unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
            assert_eq!(out, b"x", "nothing written");
        }
    }
}
