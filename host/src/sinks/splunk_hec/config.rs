//! `[sinks.ID] type = "splunk_hec"`: the settings, their defaults and checks.

use std::path::PathBuf;

use serde::Deserialize;

use crate::component::ComponentConfig;
use crate::config::duration::Dur;
use crate::net::client::Compression;
use crate::net::tls::TlsConfig;
use crate::sinks::{BatchConfig, RequestConfig};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    pub inputs: Vec<String>,
    /// Where events wait for this sink ([`crate::buffer`]).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// Base URL of the collector, e.g. `https://splunk:8088`.
    pub endpoint: String,
    pub token: Option<String>,
    /// A file holding the token (a mounted Kubernetes Secret); read at start, and again whenever
    /// HEC refuses the token (a rotated Secret is taken up without a restart).
    pub token_file: Option<PathBuf>,
    pub index: Option<String>,
    pub source: Option<String>,
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// `host` of every event; default the node's hostname.
    pub host: Option<String>,
    /// Record fields (dotted paths into nested objects) sent as HEC indexed fields.
    #[serde(default)]
    pub indexed_fields: Vec<String>,
    /// A record field holding the event time in Unix seconds.
    pub timestamp_key: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub acknowledgements: HecAcks,
    /// At start, ask `/services/collector/health/1.0` whether HEC accepts data and the token.
    #[serde(default)]
    pub healthcheck: Healthcheck,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub batch: BatchConfig,
}

/// `healthcheck.enabled` (default true), as in Vector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    #[serde(default = "crate::config::yes")]
    pub enabled: bool,
}

impl Default for Healthcheck {
    fn default() -> Self {
        Healthcheck { enabled: true }
    }
}

/// Indexer acknowledgements: whether to wait for them, how often to ask, how long to wait.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecAcks {
    #[serde(default = "crate::config::yes")]
    pub enabled: bool,
    #[serde(default = "default_query_interval")]
    pub query_interval: Dur,
    #[serde(default = "default_ack_timeout")]
    pub timeout: Dur,
    /// Requests that may await their acknowledgement at once.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
}

impl Default for HecAcks {
    fn default() -> Self {
        HecAcks {
            enabled: true,
            query_interval: default_query_interval(),
            timeout: default_ack_timeout(),
            max_pending: default_max_pending(),
        }
    }
}

fn default_sourcetype() -> String {
    "flowtag".into()
}
fn default_query_interval() -> Dur {
    Dur::secs(1)
}
fn default_ack_timeout() -> Dur {
    Dur::secs(60)
}
fn default_max_pending() -> usize {
    100
}

impl ComponentConfig for HecConfig {
    const TYPE: &'static str = "splunk_hec";
    const DEAD_LETTER: bool = true;

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn buffer(&self) -> Option<&crate::buffer::BufferConfig> {
        Some(&self.buffer)
    }

    fn check(&self, id: &str) -> Result<(), String> {
        crate::net::check_url(&format!("sinks.{id}.endpoint"), &self.endpoint)?;
        match (&self.token, &self.token_file) {
            (None, None) => {
                Err(format!("sinks.{id}.token: required (token = \"${{SPLUNK_HEC_TOKEN}}\", or token_file = ...)"))
            }
            (Some(_), Some(_)) => Err(format!("sinks.{id}.token_file: give token or token_file, not both")),
            (Some(t), None) if t.trim().is_empty() => Err(format!("sinks.{id}.token: empty")),
            _ if self.acknowledgements.max_pending == 0 => {
                Err(format!("sinks.{id}.acknowledgements.max_pending: must be at least 1"))
            }
            _ => Ok(()),
        }
    }
}

impl HecConfig {
    /// The token, from the config or its file.
    pub fn read_token(&self) -> Result<String, String> {
        crate::net::secret("token", self.token.as_deref(), self.token_file.as_deref())?
            .ok_or_else(|| "token: required".into())
    }
}
