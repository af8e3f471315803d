//! The `splunk_hec` sink: Splunk's HTTP Event Collector, event endpoint, with indexer
//! acknowledgements.
//!
//! ```toml
//! [sinks.siem]
//! type = "splunk_hec"
//! inputs = ["tag"]
//! endpoint = "https://splunk:8088"
//! token = "${SPLUNK_HEC_TOKEN}"          # or token_file = "/var/run/secrets/hec/token"
//! index = "netflow"
//! sourcetype = "flowtag:flow"
//! indexed_fields = ["anomaly.verdict", "anomaly.model"]
//! compression = "gzip"
//! acknowledgements.enabled = true
//! ```
//!
//! Each request is `POST <endpoint>/services/collector/event` with `Authorization: Splunk
//! <token>` and an `X-Splunk-Request-Channel`, carrying one HEC event object per record: the
//! record as `event`, plus `time` (from `timestamp_key`), `host`, `source`, `sourcetype`,
//! `index`, and `fields` (the indexed fields, read from the record by dotted path). Without
//! acknowledgements, HEC's `{"code": 0}` confirms the events. With them, the answer's `ackId` is
//! polled on `POST /services/collector/ack?channel=<channel>` (`{"acks": [id]}`) until Splunk
//! says the data is indexed (`{"acks": {"<id>": true}}`); if it does not within
//! `acknowledgements.timeout`, the request is sent again, as Splunk's documentation advises.
//!
//! Answers: 5xx, 429 and the token errors (401/403: a rotated secret may fix them) are retried;
//! other 4xx (malformed data, a wrong index) refuse the events.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use rand::Rng;
use serde::Deserialize;

use super::http::Compression;
use super::http_client::{self, HttpClient, TlsConfig};
use super::{BatchConfig, RequestConfig, SendError, Service};
use crate::config::duration::Dur;
use crate::event::Event;
use flowtag_plugin::json as js;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    pub inputs: Vec<String>,
    /// Base URL of the collector, e.g. `https://splunk:8088`.
    pub endpoint: String,
    pub token: Option<String>,
    /// A file holding the token (a mounted Kubernetes Secret); read at start.
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
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub batch: BatchConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecAcks {
    #[serde(default = "crate::config::yes")]
    pub enabled: bool,
    #[serde(default = "default_query_interval")]
    pub query_interval: Dur,
    #[serde(default = "default_ack_timeout")]
    pub timeout: Dur,
}

impl Default for HecAcks {
    fn default() -> Self {
        HecAcks { enabled: true, query_interval: default_query_interval(), timeout: default_ack_timeout() }
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

impl HecConfig {
    pub fn check(&self, id: &str) -> Result<(), String> {
        let uri: hyper::Uri =
            self.endpoint.parse().map_err(|e| format!("sinks.{id}.endpoint: {:?} is not a URL: {e}", self.endpoint))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("sinks.{id}.endpoint: must start with https:// (or http://)"));
        }
        match (&self.token, &self.token_file) {
            (None, None) => {
                Err(format!("sinks.{id}.token: required (token = \"${{SPLUNK_HEC_TOKEN}}\", or token_file = ...)"))
            }
            (Some(_), Some(_)) => Err(format!("sinks.{id}.token_file: give token or token_file, not both")),
            (Some(t), None) if t.trim().is_empty() => Err(format!("sinks.{id}.token: empty")),
            _ => Ok(()),
        }
    }
}

pub struct HecSink {
    client: HttpClient,
    cfg: HecConfig,
    token: String,
    channel: String,
    /// Everything but `event` of each HEC event object, ready to copy.
    meta: Vec<u8>,
}

fn hostname() -> String {
    std::env::var("NODE_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// A random UUID (version 4), as HEC channels are.
fn uuid4() -> String {
    let mut b: [u8; 16] = rand::thread_rng().gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

impl HecSink {
    pub fn new(cfg: &HecConfig) -> Result<HecSink, String> {
        let token = match (&cfg.token, &cfg.token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("token_file: {}: {e}", path.display()))?
                .trim()
                .to_string(),
            (None, None) => unreachable!("checked"),
        };
        let host = cfg.host.clone().unwrap_or_else(hostname);
        let mut meta = Vec::new();
        meta.extend_from_slice(b",\"host\":");
        js::write_string(&mut meta, &host);
        meta.extend_from_slice(b",\"sourcetype\":");
        js::write_string(&mut meta, &cfg.sourcetype);
        if let Some(source) = &cfg.source {
            meta.extend_from_slice(b",\"source\":");
            js::write_string(&mut meta, source);
        }
        if let Some(index) = &cfg.index {
            meta.extend_from_slice(b",\"index\":");
            js::write_string(&mut meta, index);
        }
        Ok(HecSink { client: http_client::build(&cfg.tls)?, cfg: cfg.clone(), token, channel: uuid4(), meta })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.endpoint.trim_end_matches('/'))
    }

    fn request(&self, url: &str, body: Vec<u8>, gzip: bool) -> Result<Request<Full<Bytes>>, SendError> {
        let mut req = Request::post(url)
            .header("authorization", format!("Splunk {}", self.token))
            .header("x-splunk-request-channel", &self.channel)
            .header("content-type", "application/json");
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        req.body(Full::new(Bytes::from(body))).map_err(|e| SendError::Reject(format!("building the request: {e}")))
    }

    /// The HEC event objects of a batch.
    fn encode(&self, events: &[Event]) -> Vec<u8> {
        let mut body = Vec::with_capacity(events.iter().map(|e| e.data.len() + self.meta.len() + 64).sum());
        for e in events {
            body.extend_from_slice(b"{\"event\":");
            body.extend_from_slice(&e.data);
            body.extend_from_slice(&self.meta);
            let fields = (!self.cfg.indexed_fields.is_empty() || self.cfg.timestamp_key.is_some())
                .then(|| serde_json::from_slice::<serde_json::Value>(&e.data).ok())
                .flatten();
            if let Some(record) = &fields {
                if let Some(t) = self
                    .cfg
                    .timestamp_key
                    .as_deref()
                    .and_then(|k| lookup(record, k))
                    .and_then(serde_json::Value::as_f64)
                {
                    body.extend_from_slice(b",\"time\":");
                    body.extend_from_slice(ryu::Buffer::new().format(t).as_bytes());
                }
                let mut first = true;
                for path in &self.cfg.indexed_fields {
                    let Some(v) = lookup(record, path) else { continue };
                    body.extend_from_slice(if std::mem::take(&mut first) { b",\"fields\":{" } else { b"," });
                    js::write_string(&mut body, path);
                    body.push(b':');
                    // HEC indexed fields are strings, numbers or arrays of them.
                    match v {
                        serde_json::Value::String(_) | serde_json::Value::Number(_) => {
                            body.extend_from_slice(v.to_string().as_bytes())
                        }
                        other => js::write_string(&mut body, &other.to_string()),
                    }
                }
                if !first {
                    body.push(b'}');
                }
            }
            body.extend_from_slice(b"}\n");
        }
        body
    }

    /// Poll the ack endpoint until `ack_id` is indexed.
    async fn wait_for_ack(&self, ack_id: u64) -> Result<(), SendError> {
        let started = Instant::now();
        let url = self.url(&format!("/services/collector/ack?channel={}", self.channel));
        loop {
            tokio::time::sleep(self.cfg.acknowledgements.query_interval.0).await;
            let body = format!("{{\"acks\":[{ack_id}]}}").into_bytes();
            let req = self.request(&url, body, false)?;
            match http_client::send(&self.client, req, self.cfg.request.timeout.0).await {
                Ok((200, answer)) => {
                    let v: serde_json::Value = serde_json::from_slice(&answer)
                        .map_err(|e| SendError::Retry(format!("ack answer is not JSON: {e}")))?;
                    if v["acks"][ack_id.to_string()].as_bool() == Some(true) {
                        return Ok(());
                    }
                }
                Ok((status, answer)) => {
                    tracing::warn!(status, answer = %String::from_utf8_lossy(&answer), "HEC ack poll failed");
                }
                Err(SendError::Retry(e) | SendError::Reject(e)) => tracing::warn!(error = %e, "HEC ack poll failed"),
            }
            if started.elapsed() >= self.cfg.acknowledgements.timeout.0 {
                return Err(SendError::Retry(format!(
                    "Splunk did not acknowledge ackId {ack_id} within {}; sending the events again",
                    self.cfg.acknowledgements.timeout
                )));
            }
        }
    }
}

/// A value by dotted path (`anomaly.verdict`); a key that itself contains dots is found too.
fn lookup<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(direct) = v.get(path) {
        return Some(direct);
    }
    let (head, rest) = path.split_once('.')?;
    lookup(v.get(head)?, rest)
}

impl Service for HecSink {
    async fn send(&mut self, events: &[Event]) -> Result<(), SendError> {
        let mut body = self.encode(events);
        let gzip = self.cfg.compression == Compression::Gzip;
        if gzip {
            body = http_client::gzip(&body);
        }
        let req = self.request(&self.url("/services/collector/event"), body, gzip)?;
        let (status, answer) = http_client::send(&self.client, req, self.cfg.request.timeout.0).await?;
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&answer).ok();
        let code = parsed.as_ref().and_then(|v| v["code"].as_i64());
        let text = || String::from_utf8_lossy(&answer[..answer.len().min(512)]).into_owned();
        match (status, code) {
            (200, Some(0)) | (200, None) => {}
            (401 | 403, _) => return Err(SendError::Retry(format!("HEC token refused (HTTP {status}): {}", text()))),
            // The channel is unknown or missing: a new one, then again.
            (400, Some(10 | 11)) => {
                self.channel = uuid4();
                return Err(SendError::Retry(format!("HEC channel refused: {}", text())));
            }
            (400, Some(14)) => {
                return Err(SendError::Retry(format!(
                    "HEC has indexer acknowledgement disabled for this token: {} (set acknowledgements.enabled = false, or enable it in Splunk)",
                    text()
                )))
            }
            _ => http_client::classify(status, &answer)?,
        }
        if !self.cfg.acknowledgements.enabled {
            return Ok(());
        }
        let ack_id = parsed.as_ref().and_then(|v| v["ackId"].as_u64()).ok_or_else(|| {
            SendError::Retry(format!("HEC answered without an ackId although acknowledgements are on: {}", text()))
        })?;
        self.wait_for_ack(ack_id).await
    }
}
