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

use super::{classify, BatchConfig, Batching, RequestConfig, SendError, Sent, Service, SinkType, NETWORK_BATCH};
use crate::component::ComponentConfig;
use crate::event::Event;
use crate::net::client::{self, Compression, HttpClient};
use crate::net::tls::TlsConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    pub inputs: Vec<String>,
    /// Where events wait for this sink ([`crate::buffer`]).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
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

impl ComponentConfig for HttpSinkConfig {
    const TYPE: &'static str = "http";
    const DEAD_LETTER: bool = true;
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn buffer(&self) -> Option<&crate::buffer::BufferConfig> {
        Some(&self.buffer)
    }
    fn check(&self, id: &str) -> Result<(), String> {
        crate::net::check_url(&format!("sinks.{id}.uri"), &self.uri)?;
        for name in self.headers.keys() {
            hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("sinks.{id}.headers: {name:?} is not a valid header name"))?;
        }
        Ok(())
    }
}

impl SinkType for HttpSinkConfig {
    const BATCH: Batching = NETWORK_BATCH;
    fn batch(&self) -> &BatchConfig {
        &self.batch
    }
    fn request(&self) -> RequestConfig {
        self.request.clone()
    }
    fn build(&self, id: &str) -> Result<impl Service, String> {
        HttpSink::new(self).map_err(|e| format!("sinks.{id}.{e}"))
    }
}

pub struct HttpSink {
    client: HttpClient,
    cfg: HttpSinkConfig,
}

impl HttpSink {
    pub fn new(cfg: &HttpSinkConfig) -> Result<HttpSink, String> {
        Ok(HttpSink { client: client::build(&cfg.tls)?, cfg: cfg.clone() })
    }
}

impl Service for HttpSink {
    async fn send(&mut self, events: &[Event]) -> Result<Sent, SendError> {
        self.write(events).await.map(|()| Sent::Delivered)
    }
}

impl HttpSink {
    /// Deliver one request; `Ok` once the far end has it.
    async fn write(&mut self, events: &[Event]) -> Result<(), SendError> {
        let mut body: Vec<u8> = Vec::with_capacity(events.iter().map(|e| e.data.len() + 1).sum());
        for e in events {
            body.extend_from_slice(&e.data);
            body.push(b'\n');
        }
        let mut req = Request::post(&self.cfg.uri).header("content-type", "application/x-ndjson");
        for (k, v) in &self.cfg.headers {
            req = req.header(k, v);
        }
        let (body, encoding) = self.cfg.compression.apply(body);
        if let Some(encoding) = encoding {
            req = req.header("content-encoding", encoding);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Reject(format!("building the request: {e}")))?;
        classify(&client::send(&self.client, req, self.cfg.request.timeout.0).await?)
    }
}
