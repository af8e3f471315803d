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
//! <token>` and an `X-Splunk-Request-Channel`, carrying one HEC event object per record
//! ([`encoder`]). Without acknowledgements, HEC's `{"code": 0}` confirms the events. With them
//! (the default), the answer's `ackId` goes to the acknowledgement tracker ([`acks`]) and the
//! sink sends its next request at once: up to `acknowledgements.max_pending` requests await
//! their acknowledgement together, so a node is not held to one request per indexing delay.
//! Each request's events are confirmed upstream when Splunk says they are indexed; a request not
//! acknowledged within `acknowledgements.timeout` is sent again (only that one). An answer
//! without `ackId` while acknowledgements are on means the token has them off: warned about
//! once, and accepted requests count as delivered, never resent. What each answer means is in
//! [`service`]. At start, `GET /services/collector/health/1.0` with the token says whether
//! HEC takes data and the token (`healthcheck.enabled = false` skips it); a failure is logged
//! and `/ready` answers 503 until a request is delivered.
//!
//! | file | answers |
//! |---|---|
//! | `config.rs` | the settings and their checks |
//! | `encoder.rs` | the bytes of a request body |
//! | `service.rs` | what an answer means (events, health) |
//! | `acks.rs` | when an accepted request is indexed |

pub mod acks;
pub mod config;
pub mod encoder;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use rand::Rng;

use crate::event::Event;
use crate::net::client::{self, HttpClient};
use crate::sinks::{BatchConfig, Batching, RequestConfig, SendError, Sent, Service, SinkType};
pub use config::{HecAcks, HecConfig};
use encoder::Encoder;
use service::Outcome;

impl SinkType for HecConfig {
    /// About 1 MiB of ~700-byte flow records per request.
    const BATCH: Batching = Batching { max_events: 2000, max_bytes: 1 << 20, timeout: Duration::from_secs(1) };

    fn batch(&self) -> &BatchConfig {
        &self.batch
    }

    fn request(&self) -> RequestConfig {
        self.request.clone()
    }

    fn build(&self, id: &str) -> Result<impl Service, String> {
        HecSink::new(id, self).map_err(|e| format!("sinks.{id}.{e}"))
    }
}

pub struct HecSink {
    client: HttpClient,
    cfg: HecConfig,
    requests: Arc<Requests>,
    channel: String,
    encoder: Encoder,
    /// With acknowledgements on: the pending ids, polled by their own task.
    acks: Option<acks::Tracker>,
    /// Splunk answered without an `ackId` although acknowledgements are on: they are off for
    /// this token, and an accepted request is delivered.
    acks_off_warned: bool,
}

/// Builds HEC requests: the endpoint and the token.
pub struct Requests {
    endpoint: String,
    /// Replaced when `token_file` is read again (HEC refused the token: the Secret may have
    /// been rotated).
    token: std::sync::Mutex<String>,
}

impl Requests {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.trim_end_matches('/'))
    }

    fn authorized(&self, req: hyper::http::request::Builder) -> hyper::http::request::Builder {
        let token = self.token.lock().expect("token lock").clone();
        req.header("authorization", format!("Splunk {token}"))
    }

    pub fn post(
        &self,
        url: &str,
        channel: &str,
        body: Vec<u8>,
        encoding: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, SendError> {
        let mut req = self
            .authorized(Request::post(url))
            .header("x-splunk-request-channel", channel)
            .header("content-type", "application/json");
        if let Some(encoding) = encoding {
            req = req.header("content-encoding", encoding);
        }
        req.body(Full::new(Bytes::from(body))).map_err(|e| SendError::Reject(format!("building the request: {e}")))
    }
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
    /// Errors name the key under `sinks.ID.`; `id` names the sink in the tracker's logs.
    pub fn new(id: &str, cfg: &HecConfig) -> Result<HecSink, String> {
        let token = cfg.read_token()?;
        let host = cfg.host.clone().unwrap_or_else(crate::net::hostname);
        let client = client::build(&cfg.tls)?;
        let requests = Arc::new(Requests { endpoint: cfg.endpoint.clone(), token: std::sync::Mutex::new(token) });
        let acks = cfg.acknowledgements.enabled.then(|| {
            acks::Tracker::start(acks::Poll {
                client: client.clone(),
                requests: requests.clone(),
                interval: cfg.acknowledgements.query_interval.0,
                timeout: cfg.acknowledgements.timeout.0,
                request_timeout: cfg.request.timeout.0,
                sink: id.to_string(),
            })
        });
        Ok(HecSink {
            client,
            requests,
            encoder: Encoder::new(cfg, &host),
            cfg: cfg.clone(),
            channel: uuid4(),
            acks,
            acks_off_warned: false,
        })
    }
}

impl Service for HecSink {
    async fn send(&mut self, events: &[Event]) -> Result<Sent, SendError> {
        let (body, encoding) = self.cfg.compression.apply(self.encoder.encode(events));
        let url = self.requests.url("/services/collector/event");
        let req = self.requests.post(&url, &self.channel, body, encoding)?;
        let answer = client::send(&self.client, req, self.cfg.request.timeout.0).await?;
        if matches!(answer.status, 401 | 403) && self.cfg.token_file.is_some() {
            // A rotated Secret: the next attempt uses what the file holds now.
            match self.cfg.read_token() {
                Ok(token) => *self.requests.token.lock().expect("token lock") = token,
                Err(e) => tracing::warn!(sink = %self.cfg.endpoint, error = %e, "cannot read the token again"),
            }
        }
        let ack_id = match service::outcome(&answer) {
            Outcome::Accepted { ack_id } => ack_id,
            Outcome::NewChannel(why) => {
                self.channel = uuid4();
                return Err(SendError::Retry(why));
            }
            Outcome::Failed(e) => return Err(e),
        };
        match (&self.acks, ack_id) {
            (Some(tracker), Some(id)) => Ok(Sent::Pending(tracker.register(&self.channel, id))),
            (Some(_), None) => {
                // Acknowledgements are off for this token (Splunk's default for a new token):
                // the accepted request is delivered; sending it again would duplicate it.
                if !std::mem::replace(&mut self.acks_off_warned, true) {
                    tracing::warn!(
                        endpoint = %self.cfg.endpoint,
                        "Splunk answered without an ackId: indexer acknowledgement is off for this token; accepted events count as delivered (set acknowledgements.enabled = false, or enable it on the token)"
                    );
                }
                Ok(Sent::Delivered)
            }
            (None, _) => Ok(Sent::Delivered),
        }
    }

    fn max_pending(&self) -> usize {
        self.cfg.acknowledgements.max_pending
    }

    async fn healthcheck(&mut self) -> Result<(), String> {
        if !self.cfg.healthcheck.enabled {
            return Ok(());
        }
        let url = self.requests.url("/services/collector/health/1.0");
        let req = self
            .requests
            .authorized(Request::get(&url))
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("building the request: {e}"))?;
        let answer = client::send(&self.client, req, self.cfg.request.timeout.0).await.map_err(|e| e.to_string())?;
        service::health(&answer)
    }
}
