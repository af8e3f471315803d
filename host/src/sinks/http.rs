//! The `http` sink: JSON lines in the body of a `POST`, optionally gzip-compressed.
//!
//! ```toml
//! [sinks.collector]
//! type = "http"
//! inputs = ["tag"]
//! uri = "https://collector.example.com/ingest"
//! compression = "gzip"
//! headers = { Authorization = "Bearer ${COLLECTOR_TOKEN}" }
//! ```
//!
//! A 2xx answer confirms the request's events; 408, 429 and 5xx are retried; any other status
//! refuses them (dropped, counted, logged with the answer).

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde::Deserialize;

use super::http_client::{self, HttpClient, TlsConfig};
use super::{BatchConfig, RequestConfig, SendError, Service};
use crate::event::Event;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    pub inputs: Vec<String>,
    pub uri: String,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub batch: BatchConfig,
}

impl HttpSinkConfig {
    pub fn check(&self, id: &str) -> Result<(), String> {
        let uri: hyper::Uri =
            self.uri.parse().map_err(|e| format!("sinks.{id}.uri: {:?} is not a URI: {e}", self.uri))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("sinks.{id}.uri: must start with http:// or https://"));
        }
        for name in self.headers.keys() {
            hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("sinks.{id}.headers: {name:?} is not a valid header name"))?;
        }
        Ok(())
    }
}

pub struct HttpSink {
    client: HttpClient,
    cfg: HttpSinkConfig,
}

impl HttpSink {
    pub fn new(cfg: &HttpSinkConfig) -> Result<HttpSink, String> {
        Ok(HttpSink { client: http_client::build(&cfg.tls)?, cfg: cfg.clone() })
    }
}

impl Service for HttpSink {
    async fn send(&mut self, events: &[Event]) -> Result<(), SendError> {
        let mut body = Vec::with_capacity(events.iter().map(|e| e.data.len() + 1).sum());
        for e in events {
            body.extend_from_slice(&e.data);
            body.push(b'\n');
        }
        let mut req = Request::post(&self.cfg.uri).header("content-type", "application/x-ndjson");
        for (k, v) in &self.cfg.headers {
            req = req.header(k, v);
        }
        if self.cfg.compression == Compression::Gzip {
            body = http_client::gzip(&body);
            req = req.header("content-encoding", "gzip");
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Reject(format!("building the request: {e}")))?;
        let (status, answer) = http_client::send(&self.client, req, self.cfg.request.timeout.0).await?;
        http_client::classify(status, &answer)
    }
}
