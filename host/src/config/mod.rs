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
mod explain;
mod graph;
pub mod interpolate;

use explain::explain;
pub use explain::explain_as;

use std::collections::BTreeMap;
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
    /// What the config allows that a security reviewer should hear about (certificate checks
    /// switched off), as `key: why`; `flowtag validate` prints them, `flowtag run` logs them.
    #[serde(skip)]
    pub warnings: Vec<String>,
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
    /// The bearer token that `POST` endpoints (they change state) require, from the
    /// environment (`token = "${FLOWTAG_API_TOKEN}"`) or a file (`token_file`, re-read when a
    /// request's token does not match, so a rotated Secret takes effect). Required when
    /// `address` is not a loopback address.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: true, address: default_api_address(), token: None, token_file: None }
    }
}

impl ApiConfig {
    fn check(&self) -> Result<(), String> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => return Err("api.token_file: give token or token_file, not both".into()),
            (Some(t), None) if t.trim().is_empty() => return Err("api.token: empty".into()),
            (None, None) if self.enabled && !self.address.ip().is_loopback() => {
                return Err(format!(
                    "api.token: the API listens on {}, beyond this machine, and POST /model/rollback changes what the node serves: set api.token = \"${{FLOWTAG_API_TOKEN}}\" (or api.token_file), or listen on 127.0.0.1",
                    self.address
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

fn default_api_address() -> SocketAddr {
    "127.0.0.1:9598".parse().expect("valid address")
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

/// Every `tls.verify_certificate = false` in a config, anywhere it may appear (sinks, alerts,
/// model updates), as a warning naming its key.
fn insecure_tls(table: &toml::Table, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        let Some(inner) = value.as_table() else { continue };
        if key == "tls" && inner.get("verify_certificate").and_then(toml::Value::as_bool) == Some(false) {
            out.push(format!(
                "{path}.verify_certificate = false: any certificate is accepted, so whoever sits on the path can read the data and the credentials sent there; use tls.ca_file for a private CA instead"
            ));
        }
        out.extend(insecure_tls(inner, &path));
    }
    out
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
        let mut config: Config = toml::from_str(&text).map_err(|e| explain(&text, &e))?;
        config.api.check()?;
        config.check()?;
        if let Ok(table) = toml::from_str::<toml::Table>(&text) {
            config.warnings = insecure_tls(&table, "");
        }
        config.warnings.extend(config.dead_ends());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_beyond_loopback_needs_a_token() {
        let open = format!("[api]\naddress = \"0.0.0.0:9598\"\n{WIRING}");
        let e = Config::from_toml(&open).unwrap_err();
        assert!(e.starts_with("api.token: the API listens on 0.0.0.0:9598"), "{e}");
        let with = format!("[api]\naddress = \"0.0.0.0:9598\"\ntoken = \"t0k3n\"\n{WIRING}");
        assert!(Config::from_toml(&with).is_ok());
        assert!(Config::from_toml(WIRING).is_ok(), "loopback needs none");
        let both = format!("[api]\ntoken = \"a\"\ntoken_file = \"/x\"\n{WIRING}");
        assert!(Config::from_toml(&both).unwrap_err().starts_with("api.token_file"));
    }

    #[test]
    fn switched_off_certificate_checks_are_warned_about_by_key() {
        let c = Config::from_toml(&format!(
            "{WIRING}[sinks.web]\ntype = \"http\"\ninputs = [\"flows\"]\nuri = \"https://x\"\ntls.verify_certificate = false\n"
        ))
        .unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("sinks.web.tls.verify_certificate = false"), "{:?}", c.warnings);
        assert!(Config::from_toml(WIRING).unwrap().warnings.is_empty());
    }

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
    fn a_syntax_error_is_told_as_toml_tells_it() {
        let e = error("data_dir = \"/tmp/x\n");
        assert!(e.starts_with("TOML parse error at line 1"), "{e}");
    }
}
