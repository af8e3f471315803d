//! The network layer every component shares: an HTTP(S) [`client`] (sinks, alerts, model
//! updates), an HTTP/1 [`server`] loop (the API, the `http` source), and [`tls`] settings.
//!
//! Errors from this layer name the cause underneath: a refused certificate says why it was
//! refused, a refused connection names the address (see [`Error`]).

pub mod client;
pub mod server;
pub mod tls;

use std::fmt;

/// `url` must be an absolute `http://` or `https://` URL with a host; errors name `key`.
pub fn check_url(key: &str, url: &str) -> Result<hyper::Uri, String> {
    match url.parse::<hyper::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Ok(u),
        Ok(_) => Err(format!("{key}: {url:?} must be an absolute http:// or https:// URL")),
        Err(e) => Err(format!("{key}: {url:?} is not a URL: {e}")),
    }
}

/// `url` as it may appear in a log: scheme and host only. A webhook URL carries its secret in
/// its path (Slack's `/services/T…/B…/…`), so no URL an operator configured is logged whole.
pub fn redact(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => match (u.scheme_str(), u.authority()) {
            (Some(scheme), Some(host)) => format!("{scheme}://{host}/…"),
            _ => "(a URL)".into(),
        },
        Err(_) => "(a URL)".into(),
    }
}

/// This node's name: `NODE_NAME` (the DaemonSet sets it), `HOSTNAME`, or the kernel's.
pub fn hostname() -> String {
    std::env::var("NODE_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// A secret given inline (from the environment, through `${VAR}`) or as a file (a mounted
/// Kubernetes Secret, read at each call so a rotation takes effect), trimmed; `None` when
/// neither is set. Errors name `key` (or `key_file`), never the secret.
pub fn secret(key: &str, inline: Option<&str>, file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    let value = match (inline, file) {
        (Some(v), _) => v.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("{key}_file: {}: {e}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(format!("{key}: empty"));
    }
    Ok(Some(value))
}

/// `a == b` for secrets (tokens, passwords), in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request that got no answer: what was tried, and every cause underneath.
#[derive(Debug, Clone)]
pub struct Error {
    /// What was being done, e.g. `https://splunk:8088/services/collector/event`.
    pub context: String,
    /// The causes, outermost first (e.g. `client error (Connect)`, `invalid peer certificate:
    /// UnknownIssuer`).
    pub causes: Vec<String>,
}

impl Error {
    pub fn new(context: impl Into<String>, error: &(dyn std::error::Error + 'static)) -> Error {
        Error { context: context.into(), causes: causes(error) }
    }

    pub fn message(context: impl Into<String>, message: impl Into<String>) -> Error {
        Error { context: context.into(), causes: vec![message.into()] }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.causes.join(": "))
    }
}

impl std::error::Error for Error {}

/// An error's message and the messages of its sources, without repeats (hyper and rustls often
/// repeat their inner error in their own message).
pub fn causes(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !out.iter().any(|seen| seen.contains(&text)) {
            out.push(text);
        }
        next = e.source();
    }
    out
}

/// An error and its causes as one line: `outer: inner: innermost`.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    causes(error).join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn errors_name_their_causes() {
        let e = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"));
        let err = Error::new("https://127.0.0.1:1/x", &e);
        assert_eq!(err.to_string(), "https://127.0.0.1:1/x: client error (Connect): connection refused");
    }

    #[test]
    fn redacted_urls_keep_only_scheme_and_host() {
        assert_eq!(redact("https://hooks.slack.com/services/T0/B0/secretpart"), "https://hooks.slack.com/…");
        assert_eq!(redact("http://127.0.0.1:9093/api/v2/alerts"), "http://127.0.0.1:9093/…");
        assert_eq!(redact("not a url at all"), "(a URL)");
    }

    #[test]
    fn urls_are_checked_once_with_one_wording() {
        assert!(check_url("k", "https://splunk:8088").is_ok());
        let no_scheme = check_url("sinks.s.endpoint", "splunk:8088").unwrap_err();
        assert!(no_scheme.starts_with("sinks.s.endpoint: \"splunk:8088\""), "{no_scheme}");
        assert!(check_url("k", "ftp://host/").unwrap_err().contains("http:// or https://"));
        assert!(check_url("k", "http://").unwrap_err().starts_with("k: "));
    }
}
