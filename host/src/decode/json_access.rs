//! JSON access logs (`decoding = "json_access"`, and JSON lines in a `combined` stream): one JSON
//! object per request, as nginx writes it with `log_format ... escape=json`, Envoy and Istio with
//! a JSON access-log format, Traefik with `accessLog.format = "json"`. Each is read into the same
//! fields the `combined` decoder gives (`method`, `target`, `path`, `query`, `protocol`,
//! `status`, `bytes`, `client_address`, `user_agent`, `referrer`, `vhost`, `time`, and `body`
//! where the log has one), then every member of the line that was not read into one of them, as
//! it was, so nothing is lost (a member whose name is one of the fields written, but which was not
//! read into it, is kept as `original.<name>`).
//!
//! Each field is looked up under the names a source's `access_fields` table gives for it, then
//! under the names below (the first name present wins):
//!
//! | field | names |
//! |---|---|
//! | `method` | `method`, `request_method` (nginx), `RequestMethod` (Traefik) |
//! | `target` | `target`, `request_uri` (nginx), `path` (Envoy, Istio: path and query), `RequestPath` (Traefik), `url` |
//! | `uri`, `args` | `uri`, `args` (nginx `$uri` and `$args`, joined with `?` when there is no target) |
//! | `request` | `request` (nginx `$request`, `METHOD target PROTOCOL`, read when method or target are missing) |
//! | `protocol` | `protocol`, `server_protocol` (nginx), `RequestProtocol` (Traefik) |
//! | `status` | `status`, `response_code` (Envoy), `DownstreamStatus` (Traefik) |
//! | `bytes` | `bytes`, `body_bytes_sent` (nginx), `bytes_sent` (Envoy), `DownstreamContentSize` (Traefik) |
//! | `client_address` | `client_address`, `remote_addr` (nginx), `downstream_remote_address` (Envoy), `ClientHost` (Traefik), `client_ip` |
//! | `user_agent` | `user_agent`, `http_user_agent` (nginx), `request_User-Agent` (Traefik) |
//! | `referrer` | `referrer`, `http_referer` (nginx), `referer`, `request_Referer` (Traefik) |
//! | `vhost` | `vhost`, `host` (nginx), `authority` (Envoy), `RequestHost` (Traefik), `server_name` |
//! | `time` | `time`, `time_iso8601`, `time_local` (nginx), `start_time` (Envoy), `StartUTC` (Traefik) |
//! | `body` | `body`, `request_body` (nginx) |
//!
//! `status` and `bytes` are written as numbers when their text is one (nginx's `escape=json`
//! formats quote every value); `-` and empty values are left out, as in `combined`.

use std::borrow::Cow;

use serde::Deserialize;

use flowtag_plugin::json as js;

/// Extra names for the fields of a JSON access log, tried before the built-in ones: e.g.
/// `target = ["uri_with_args"]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessFields {
    #[serde(default)]
    pub method: Vec<String>,
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    pub request: Vec<String>,
    #[serde(default)]
    pub protocol: Vec<String>,
    #[serde(default)]
    pub status: Vec<String>,
    #[serde(default)]
    pub bytes: Vec<String>,
    #[serde(default)]
    pub client_address: Vec<String>,
    #[serde(default)]
    pub user_agent: Vec<String>,
    #[serde(default)]
    pub referrer: Vec<String>,
    #[serde(default)]
    pub vhost: Vec<String>,
    #[serde(default)]
    pub time: Vec<String>,
    #[serde(default)]
    pub body: Vec<String>,
}

/// The fields, in the order they are written, with their built-in names.
const FIELDS: [(&str, &[&str]); 12] = [
    ("vhost", &["vhost", "host", "authority", "RequestHost", "server_name"]),
    ("client_address", &["client_address", "remote_addr", "downstream_remote_address", "ClientHost", "client_ip"]),
    ("time", &["time", "time_iso8601", "time_local", "start_time", "StartUTC"]),
    ("method", &["method", "request_method", "RequestMethod"]),
    ("target", &["target", "request_uri", "path", "RequestPath", "url"]),
    ("protocol", &["protocol", "server_protocol", "RequestProtocol"]),
    ("status", &["status", "response_code", "DownstreamStatus"]),
    ("bytes", &["bytes", "body_bytes_sent", "bytes_sent", "DownstreamContentSize"]),
    ("referrer", &["referrer", "http_referer", "referer", "request_Referer"]),
    ("user_agent", &["user_agent", "http_user_agent", "request_User-Agent"]),
    ("body", &["body", "request_body"]),
    ("request", &["request"]),
];

impl AccessFields {
    fn configured(&self, field: &str) -> &[String] {
        match field {
            "method" => &self.method,
            "target" => &self.target,
            "request" => &self.request,
            "protocol" => &self.protocol,
            "status" => &self.status,
            "bytes" => &self.bytes,
            "client_address" => &self.client_address,
            "user_agent" => &self.user_agent,
            "referrer" => &self.referrer,
            "vhost" => &self.vhost,
            "time" => &self.time,
            "body" => &self.body,
            _ => &[],
        }
    }
}

struct Member<'a> {
    key: Cow<'a, str>,
    value: js::Span,
    used: bool,
}

/// Decode one JSON access-log line into the fields above, appended to `out`.
pub(super) fn decode(line: &[u8], fields: &AccessFields, out: &mut Vec<u8>) -> Result<bool, String> {
    // nginx's `escape=json` passes bytes past ASCII through as they are, so a request line that
    // is not UTF-8 (a TLS handshake sent to a plain-text port) makes a line that is not either:
    // those bytes are read as U+FFFD, as the `combined` decoder reads them.
    let lossy;
    let line = match std::str::from_utf8(line) {
        Ok(_) => line,
        Err(_) => {
            lossy = String::from_utf8_lossy(line).into_owned();
            lossy.as_bytes()
        }
    };
    let mut members: Vec<Member<'_>> = Vec::with_capacity(16);
    let mut scratch = String::new();
    js::scan_utf8_object(line, |m| {
        let inner = m.key.inner(line);
        let key: Cow<'_, str> = if matches!(m.key.kind, js::Kind::String { escaped: true }) {
            js::unescape(inner, &mut scratch);
            Cow::Owned(scratch.clone())
        } else {
            String::from_utf8_lossy(inner)
        };
        members.push(Member { key, value: m.value, used: false });
    })
    .map_err(|e| e.to_string())?;
    // The value each field found (the last member of a name wins, as for JSON keys).
    let mut found: [Option<usize>; FIELDS.len()] = [None; FIELDS.len()];
    for (f, (name, builtin)) in FIELDS.iter().enumerate() {
        let names = fields.configured(name).iter().map(String::as_str).chain(builtin.iter().copied());
        for n in names {
            if let Some(i) = members.iter().rposition(|m| m.key == n && !m.used) {
                found[f] = Some(i);
                members[i].used = true;
                break;
            }
        }
    }
    let text = |i: Option<usize>, members: &[Member<'_>]| i.and_then(|i| value_text(line, members[i].value));
    let index = |name: &str| FIELDS.iter().position(|(n, _)| *n == name).expect("a known field");
    let mut values: Vec<Option<String>> = (0..FIELDS.len()).map(|f| text(found[f], &members)).collect();
    let (method, target, protocol, request) = (index("method"), index("target"), index("protocol"), index("request"));
    // nginx's `$request`: the request line, when method or target are not logged on their own.
    if values[method].is_none() || values[target].is_none() {
        if let Some(req) = values[request].clone() {
            let parts: Vec<&str> = req.split(' ').filter(|p| !p.is_empty()).collect();
            if let [m, t, p] = parts.as_slice() {
                values[method].get_or_insert_with(|| m.to_string());
                values[target].get_or_insert_with(|| t.to_string());
                values[protocol].get_or_insert_with(|| p.to_string());
                values[request] = None;
            }
        } else {
            values[request] = None;
        }
    } else {
        // Read into method, target and protocol: kept only as the raw member below.
        if let Some(i) = found[request] {
            members[i].used = false;
        }
        values[request] = None;
    }
    // nginx's `$uri` and `$args`, when there is no target.
    if values[target].is_none() {
        let uri = members.iter().rposition(|m| m.key == "uri" && !m.used);
        if let Some(u) = uri {
            members[u].used = true;
            let args = members.iter().rposition(|m| m.key == "args" && !m.used);
            let mut t = text(Some(u), &members).unwrap_or_default();
            if let Some(a) = args {
                members[a].used = true;
            }
            if let Some(a) = text(args, &members) {
                t.push('?');
                t.push_str(&a);
            }
            values[target] = (!t.is_empty()).then_some(t);
        }
    }
    out.push(b'{');
    let mut first = true;
    let mut written: Vec<&str> = Vec::with_capacity(FIELDS.len() + 2);
    let mut key = |out: &mut Vec<u8>, k: &'static str| {
        written.push(k);
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        js::write_string(out, k);
        out.push(b':');
    };
    for (f, (name, _)) in FIELDS.iter().enumerate() {
        let Some(v) = &values[f] else { continue };
        key(out, name);
        match *name {
            "status" | "bytes" if super::is_json_number(v.as_bytes()) => out.extend_from_slice(v.as_bytes()),
            _ => js::write_string(out, v),
        }
        if *name == "target" {
            let (path, query) = v.split_once('?').map_or((v.as_str(), None), |(p, q)| (p, Some(q)));
            key(out, "path");
            js::write_string(out, path);
            if let Some(q) = query {
                key(out, "query");
                js::write_string(out, q);
            }
        }
    }
    for m in members.iter().filter(|m| !m.used) {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        if written.contains(&&*m.key) {
            js::write_string(out, &format!("original.{}", m.key));
        } else {
            js::write_string(out, &m.key);
        }
        out.push(b':');
        out.extend_from_slice(&line[m.value.start..m.value.end]);
    }
    out.push(b'}');
    Ok(true)
}

/// A member's value as text: `None` for `null`, objects, arrays, `""` and `-`.
fn value_text(line: &[u8], value: js::Span) -> Option<String> {
    let v = match value.kind {
        js::Kind::String { escaped: true } => {
            let mut s = String::new();
            js::unescape(value.inner(line), &mut s);
            s
        }
        js::Kind::String { escaped: false } | js::Kind::Number | js::Kind::True | js::Kind::False => {
            String::from_utf8_lossy(value.inner(line)).into_owned()
        }
        js::Kind::Null | js::Kind::Object | js::Kind::Array => return None,
    };
    (!v.is_empty() && v != "-").then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str, fields: &AccessFields) -> serde_json::Value {
        let mut out = Vec::new();
        assert_eq!(decode(line.as_bytes(), fields, &mut out), Ok(true), "{line}");
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn nginx_escape_json() {
        // log_format json escape=json '{"time_local":"$time_local","remote_addr":"$remote_addr",
        //   "request":"$request","status":"$status","body_bytes_sent":"$body_bytes_sent",
        //   "http_referer":"$http_referer","http_user_agent":"$http_user_agent","request_time":"$request_time"}';
        let line = r#"{"time_local":"05/Dec/2026:10:41:07 +0000","remote_addr":"127.0.0.1","request":"GET /s?q=%27+or+1 HTTP/1.1","status":"200","body_bytes_sent":"615","http_referer":"","http_user_agent":"curl/8.0 \"x\"","request_time":"0.001"}"#;
        let r = one(line, &AccessFields::default());
        assert_eq!(
            (&r["method"], &r["target"], &r["path"], &r["query"]),
            (&"GET".into(), &"/s?q=%27+or+1".into(), &"/s".into(), &"q=%27+or+1".into())
        );
        assert_eq!((r["status"].as_u64(), r["bytes"].as_u64()), (Some(200), Some(615)));
        assert_eq!(
            (&r["client_address"], &r["user_agent"], &r["protocol"]),
            (&"127.0.0.1".into(), &"curl/8.0 \"x\"".into(), &"HTTP/1.1".into())
        );
        assert!(r.get("referrer").is_none(), "an empty value is left out");
        assert_eq!(r["request_time"], "0.001", "other members are kept as they were");
        assert!(r.get("request").is_none() && r.get("remote_addr").is_none());
    }

    #[test]
    fn envoy_istio_and_traefik() {
        let envoy = r#"{"start_time":"2026-12-05T10:41:07.123Z","method":"POST","path":"/api/login?next=%2F","protocol":"HTTP/2","response_code":401,"bytes_sent":12,"user_agent":"Go-http-client/2.0","authority":"shop.example","downstream_remote_address":"10.1.2.3:51234","request_id":"abc"}"#;
        let r = one(envoy, &AccessFields::default());
        assert_eq!(
            (&r["method"], &r["target"], &r["query"]),
            (&"POST".into(), &"/api/login?next=%2F".into(), &"next=%2F".into())
        );
        assert_eq!((&r["status"], &r["bytes"], &r["vhost"]), (&401.into(), &12.into(), &"shop.example".into()));
        assert_eq!((&r["client_address"], &r["request_id"]), (&"10.1.2.3:51234".into(), &"abc".into()));
        let traefik = r#"{"ClientHost":"192.0.2.9","RequestMethod":"GET","RequestPath":"/../../etc/passwd","RequestProtocol":"HTTP/1.1","DownstreamStatus":404,"DownstreamContentSize":19,"RequestHost":"a.example","StartUTC":"2026-12-05T10:41:07Z","request_User-Agent":"sqlmap/1.7"}"#;
        let r = one(traefik, &AccessFields::default());
        assert_eq!(
            (&r["target"], &r["user_agent"], &r["status"]),
            (&"/../../etc/passwd".into(), &"sqlmap/1.7".into(), &404.into())
        );
    }

    #[test]
    fn configured_names_come_first_and_uri_args_join() {
        let fields = AccessFields { target: vec!["full_uri".into()], ..Default::default() };
        let r = one(r#"{"full_uri":"/x?y=1","path":"/other","method":"GET"}"#, &fields);
        assert_eq!((&r["target"], &r["path"]), (&"/x?y=1".into(), &"/x".into()));
        assert_eq!(r["original.path"], "/other", "an unread member named like a field is kept, renamed");
        let r = one(r#"{"uri":"/a b","args":"c=1","request_method":"GET"}"#, &AccessFields::default());
        assert_eq!(r["target"], "/a b?c=1");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_as_replacement_characters() {
        let mut line = br#"{"request":"\u0016\u0003"#.to_vec();
        line.extend_from_slice(b"\xfa\xfb\",\"status\":\"400\"}");
        let mut out = Vec::new();
        assert_eq!(decode(&line, &AccessFields::default(), &mut out), Ok(true));
        let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((&r["request"], &r["status"]), (&"\u{16}\u{3}\u{fffd}\u{fffd}".into(), &400.into()));
    }

    #[test]
    fn not_an_object_is_an_error() {
        let mut out = Vec::new();
        assert!(decode(b"[1,2]", &AccessFields::default(), &mut out).is_err());
        assert!(decode(b"{\"a\":", &AccessFields::default(), &mut out).is_err());
    }
}
