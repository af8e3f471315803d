//! The configuration file: TOML, typed, unknown keys refused, `${VAR}` from the environment.
//!
//! ```toml
//! data_dir = "/var/lib/flowtag"
//! [api]
//! address = "127.0.0.1:9598"
//! [sources.flows]
//! type = "file"
//! include = ["/var/log/flows/*.csv"]
//! decoding = "cicflowmeter"
//! [transforms.tag]
//! type = "anomaly"
//! inputs = ["flows"]
//! model = "/etc/flowtag/models/current"
//! [sinks.archive]
//! type = "file"
//! inputs = ["tag"]
//! path = "/var/lib/flowtag/out/tagged.jsonl"
//! ```
//!
//! Components are wired by `inputs`. [`Config::load`] parses, then checks the wiring: every
//! input names a source or transform, nothing feeds itself, every transform and sink has inputs.
//! Errors name the key and say what to write instead.

pub mod duration;
pub mod interpolate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::alerts::AlertConfig;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where checkpoints, model bundles and the compiled-module cache live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub transforms: BTreeMap<String, TransformConfig>,
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertConfig>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/flowtag")
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `flowtag=debug,hyper=warn`. `RUST_LOG` wins.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: default_level() }
    }
}

fn default_level() -> String {
    "info".into()
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `/metrics`, `/health`, `/ready`, `POST /model/rollback`.
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: true, address: default_api_address() }
    }
}

fn default_api_address() -> SocketAddr {
    "127.0.0.1:9598".parse().expect("valid address")
}

/// `url` must be an absolute http:// or https:// URL; errors name `key`.
pub fn check_http_url(key: &str, url: &str) -> Result<(), String> {
    match url.parse::<hyper::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Ok(()),
        _ => Err(format!("{key}: {url:?} is not an http:// or https:// URL")),
    }
}

pub fn yes() -> bool {
    true
}

/// A configuration that cannot be used, with the file and the reason.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A parse error told with its full key and, for a misspelt key or value, the likely fix.
///
/// Inside a typed component table (`type = "..."`) serde reports an error at the table
/// (`[transforms.tag]`) without the key, so each such table is read again as its own type, which
/// names the key (`transforms.tag.batch.max_events: invalid type: ...`); the table's line is
/// kept. Elsewhere toml points at the line, and the key is read off the text there
/// (`api.adress: unknown field ...`).
fn explain(text: &str, error: &toml::de::Error) -> String {
    let original = error.to_string().trim_end().to_string();
    let Ok(table) = toml::from_str::<toml::Table>(text) else { return original };
    let at = original.lines().next().unwrap_or_default().trim_start_matches("TOML parse error at ");
    let sections: [(&str, fn(&toml::Table) -> Option<String>); 3] =
        [("sources", SourceConfig::explain), ("transforms", TransformConfig::explain), ("sinks", SinkConfig::explain)];
    for (section, explain) in sections {
        let Some(components) = table.get(section).and_then(toml::Value::as_table) else { continue };
        for (id, component) in components {
            if let Some(why) = component.as_table().and_then(explain) {
                return format!("{section}.{id}{why} (the table at {at})");
            }
        }
    }
    let message = error.message().trim_end();
    let Some(path) = error.span().and_then(|span| key_path(text, span.start)) else { return original };
    let path = with_unknown_field(path, message);
    // toml's own rendering minus the message: the position and the line with a caret.
    let snippet = original.strip_suffix(message).unwrap_or(&original).trim_end();
    let snippet = snippet.strip_prefix("TOML parse error at ").unwrap_or(snippet);
    format!("{path}: {message}{} at {snippet}", suggestion(message))
}

/// Why `table` (a typed component's table without its `type`) does not read as a `T`:
/// `.key.path: message`, or `: message` for the table itself. None when it reads.
pub fn explain_as<T: serde::de::DeserializeOwned>(table: &toml::Table) -> Option<String> {
    let mut table = table.clone();
    table.remove("type");
    let error = toml::Value::Table(table).try_into::<T>().err()?.to_string();
    // toml names the key on a last line: "in `batch.max_events`".
    let (message, key) = match error.trim_end().rsplit_once("\nin `") {
        Some((message, key)) => (message.trim_end().to_string(), format!(".{}", key.trim_end_matches('`'))),
        None => (error.trim_end().to_string(), String::new()),
    };
    Some(format!("{}: {message}{}", with_unknown_field(key, &message), suggestion(&message)))
}

/// `path` (a key, or the table an unknown key was found in) ending in the unknown field that
/// `message` names, if it names one: `api` + "unknown field `adress`" is `api.adress`.
fn with_unknown_field(path: String, message: &str) -> String {
    match misspelt(message) {
        Some(("field", field)) if path != field && !path.ends_with(&format!(".{field}")) => format!("{path}.{field}"),
        _ => path,
    }
}

/// The word serde could not place, from "unknown field `adress`, expected ..." or "unknown
/// variant `fil`, expected ...": `("field", "adress")`.
fn misspelt(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown ")?;
    let (what, rest) = rest.split_once(" `")?;
    let (word, _) = rest.split_once('`')?;
    matches!(what, "field" | "variant").then_some((what, word))
}

/// " (did you mean `address`?)" when serde's list of what it expected holds a close spelling.
fn suggestion(message: &str) -> String {
    let Some((_, word)) = misspelt(message) else { return String::new() };
    let Some((_, expected)) = message.split_once(", expected ") else { return String::new() };
    // The expected names are the backquoted words: "one of `a`, `b`" or "`a` or `b`".
    let candidates = expected.split('`').skip(1).step_by(2);
    closest(word, candidates).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default()
}

/// The dotted key of the line holding byte `at` of a TOML document: the table header above it
/// and the key before the line's `=` (`api.adress`), or the header itself on a header line.
/// Read off the text line by line, so only for the usual layout (one key per line, headers on
/// their own lines); None when the line is not of that shape.
fn key_path(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?.trim();
    // `[table]` or `[[array]]`, nothing after it but a comment (so not a line of an array).
    let header = |l: &str| {
        let l = l.trim();
        let (inner, after) =
            l.strip_prefix("[[").and_then(|h| h.split_once("]]")).or_else(|| l.strip_prefix('[')?.split_once(']'))?;
        let after = after.trim();
        (after.is_empty() || after.starts_with('#')).then(|| inner.trim().to_string())
    };
    if line.starts_with('[') {
        return header(line);
    }
    let table = text[..line_start].lines().rev().find_map(header).unwrap_or_default();
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    Some(if table.is_empty() { key.to_string() } else { format!("{table}.{key}") })
}

/// What a component is, for wiring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Source,
    Transform,
    Sink,
    Alert,
}

impl Config {
    /// Read, interpolate, parse and check a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        Config::from_toml(&text).map_err(err)
    }

    /// Parse and check config text (with `${VAR}` taken from the process environment).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let text = interpolate::interpolate(text, |name| std::env::var(name).ok())?;
        let config: Config = toml::from_str(&text).map_err(|e| explain(&text, &e))?;
        config.check()?;
        Ok(config)
    }

    /// Every component id with its kind.
    pub fn components(&self) -> BTreeMap<&str, Kind> {
        let mut all = BTreeMap::new();
        all.extend(self.sources.keys().map(|k| (k.as_str(), Kind::Source)));
        all.extend(self.transforms.keys().map(|k| (k.as_str(), Kind::Transform)));
        all.extend(self.sinks.keys().map(|k| (k.as_str(), Kind::Sink)));
        all.extend(self.alerts.keys().map(|k| (k.as_str(), Kind::Alert)));
        all
    }

    /// The inputs of a transform, sink or alert.
    pub fn inputs_of(&self, id: &str) -> &[String] {
        if let Some(t) = self.transforms.get(id) {
            t.inputs()
        } else if let Some(s) = self.sinks.get(id) {
            s.inputs()
        } else if let Some(a) = self.alerts.get(id) {
            &a.inputs
        } else {
            &[]
        }
    }

    fn check(&self) -> Result<(), String> {
        let mut seen = BTreeMap::new();
        for (section, ids) in [
            ("sources", self.sources.keys().collect::<Vec<_>>()),
            ("transforms", self.transforms.keys().collect()),
            ("sinks", self.sinks.keys().collect()),
            ("alerts", self.alerts.keys().collect()),
        ] {
            for id in ids {
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(format!("{section}.{id}: component ids use letters, digits, `_` and `-` only"));
                }
                if let Some(other) = seen.insert(id.clone(), section) {
                    return Err(format!("{section}.{id}: the id `{id}` is also used in [{other}]; ids must be unique"));
                }
            }
        }
        if self.sources.is_empty() {
            return Err("no [sources]: add at least one, e.g. [sources.flows] with type = \"file\"".into());
        }
        if self.sinks.is_empty() {
            return Err("no [sinks]: add at least one, e.g. [sinks.out] with type = \"console\"".into());
        }
        let all = self.components();
        for (id, kind) in &all {
            let section = match kind {
                Kind::Source => continue,
                Kind::Transform => "transforms",
                Kind::Sink => "sinks",
                Kind::Alert => "alerts",
            };
            let inputs = self.inputs_of(id);
            if inputs.is_empty() {
                return Err(format!("{section}.{id}.inputs: empty; name the sources or transforms that feed it"));
            }
            for input in inputs {
                match all.get(input.as_str()) {
                    Some(Kind::Source | Kind::Transform) => {}
                    Some(Kind::Sink) => {
                        return Err(format!("{section}.{id}.inputs: `{input}` is a sink; sinks have no output"))
                    }
                    Some(Kind::Alert) => {
                        return Err(format!("{section}.{id}.inputs: `{input}` is an alert; alerts have no output"))
                    }
                    None => {
                        let hint = closest(input, all.keys().copied())
                            .map(|c| format!(" (did you mean `{c}`?)"))
                            .unwrap_or_default();
                        return Err(format!("{section}.{id}.inputs: no source or transform is called `{input}`{hint}"));
                    }
                }
            }
        }
        self.check_acyclic()?;
        for (id, t) in &self.transforms {
            t.check(id)?;
        }
        for (id, s) in &self.sinks {
            s.check(id)?;
        }
        for (id, a) in &self.alerts {
            a.check(id)?;
        }
        for (id, s) in &self.sources {
            s.check(id)?;
        }
        Ok(())
    }

    fn check_acyclic(&self) -> Result<(), String> {
        // Depth-first search over transforms; sources have no inputs and sinks no outputs.
        fn visit<'a>(
            c: &'a Config,
            id: &'a str,
            stack: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Result<(), String> {
            if done.contains(id) {
                return Ok(());
            }
            if let Some(at) = stack.iter().position(|s| *s == id) {
                let cycle: Vec<&str> = stack[at..].iter().copied().chain([id]).collect();
                return Err(format!("transforms.{id}.inputs: a cycle: {}", cycle.join(" -> ")));
            }
            stack.push(id);
            for input in c.inputs_of(id) {
                if c.transforms.contains_key(input) {
                    visit(c, input, stack, done)?;
                }
            }
            stack.pop();
            done.insert(id);
            Ok(())
        }
        let mut done = BTreeSet::new();
        for id in self.transforms.keys() {
            visit(self, id, &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }

    /// For each source, the sinks it reaches and by how many paths.
    pub fn paths_from(&self, source: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for sink in self.sinks.keys() {
            let n = self.count_paths(source, sink);
            if n > 0 {
                counts.insert(sink.clone(), n);
            }
        }
        counts
    }

    fn count_paths(&self, from: &str, to: &str) -> usize {
        self.inputs_of(to)
            .iter()
            .map(|input| {
                if input == from {
                    1
                } else if self.transforms.contains_key(input) {
                    self.count_paths(from, input)
                } else {
                    0
                }
            })
            .sum()
    }
}

/// The id among `candidates` closest to `word` (edit distance at most 2).
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates.map(|c| (distance(word, c), c)).filter(|(d, _)| *d <= 2).min().map(|(_, c)| c)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIRING: &str = "[sources.flows]\ntype = \"stdin\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"flows\"]\n";

    fn error(text: &str) -> String {
        Config::from_toml(text).expect_err(text)
    }

    #[test]
    fn a_misspelt_key_is_named_with_its_path_and_the_likely_fix() {
        let e = error(&format!("[api]\nadress = \"127.0.0.1:1\"\n{WIRING}"));
        assert!(e.starts_with("api.adress: unknown field `adress`"), "{e}");
        assert!(e.contains("(did you mean `address`?) at line 2, column 1"), "{e}");
        assert!(e.contains("2 | adress = \"127.0.0.1:1\""), "{e}");
        let e = error(&format!("datadir = \"/x\"\n{WIRING}"));
        assert!(e.starts_with("datadir: unknown field `datadir`") && e.contains("(did you mean `data_dir`?)"), "{e}");
        let e = error(&format!("api = {{ adress = \"x\" }}\n{WIRING}"));
        assert!(e.starts_with("api.adress: unknown field"), "{e}");
        // Inside a typed component table, read again as its own type.
        let e = error(&WIRING.replace("type = \"stdin\"", "type = \"stdin\"\ndecodng = \"json\""));
        assert!(e.starts_with("sources.flows.decodng: unknown field `decodng`"), "{e}");
        assert!(e.contains("(did you mean `decoding`?) (the table at line 1, column 1)"), "{e}");
    }

    #[test]
    fn a_misspelt_value_is_named_with_its_key() {
        let e = error(&format!("[log]\nformat = \"jsn\"\n{WIRING}"));
        assert!(e.starts_with("log.format: unknown variant `jsn`") && e.contains("(did you mean `json`?)"), "{e}");
        let e = error(&WIRING.replace("\"stdin\"", "\"stdn\""));
        assert!(
            e.starts_with("sources.flows.type: unknown variant `stdn`") && e.contains("(did you mean `stdin`?)"),
            "{e}"
        );
    }

    #[test]
    fn no_suggestion_when_nothing_is_close() {
        let e = error(&format!("[api]\nport = 9598\n{WIRING}"));
        assert!(e.starts_with("api.port: unknown field `port`"), "{e}");
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn key_paths_are_read_off_the_line() {
        let text = "a = 1\n[t.u]\nk = [\n  [\"x\"],\n]\nm = 2\n[[arr]]\nn = 3\n";
        let at = |needle: &str| text.find(needle).unwrap();
        assert_eq!(key_path(text, at("a =")).as_deref(), Some("a"));
        assert_eq!(key_path(text, at("[t.u]")).as_deref(), Some("t.u"));
        // A line of an array is not a header.
        assert_eq!(key_path(text, at("m = 2")).as_deref(), Some("t.u.m"));
        assert_eq!(key_path(text, at("n = 3")).as_deref(), Some("arr.n"));
        assert_eq!(key_path(text, at("]\nm")), None);
    }

    #[test]
    fn a_syntax_error_is_told_as_toml_tells_it() {
        let e = error("data_dir = \"/tmp/x\n");
        assert!(e.starts_with("TOML parse error at line 1"), "{e}");
    }
}
