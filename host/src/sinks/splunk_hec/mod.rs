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
//! ([`encoder`]). Without acknowledgements, HEC's `{"code": 0}` confirms the events. With them,
//! the answer's `ackId` is polled ([`acks`]) until Splunk says the data is indexed; if it does
//! not within `acknowledgements.timeout`, the request is sent again. What each answer means is
//! in [`service`].
//!
//! | file | answers |
//! |---|---|
//! | `config.rs` | the settings and their checks |
//! | `encoder.rs` | the bytes of a request body |
//! | `service.rs` | what an answer means |
//! | `acks.rs` | when an accepted request is indexed |

pub mod acks;
pub mod config;
pub mod encoder;
pub mod service;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use rand::Rng;

use crate::event::Event;
use crate::net::client::{self, HttpClient};
use crate::sinks::{BatchConfig, Batching, RequestConfig, SendError, Service, SinkType, NETWORK_BATCH};
pub use config::{HecAcks, HecConfig};
use encoder::Encoder;
use service::Outcome;

impl SinkType for HecConfig {
    const BATCH: Batching = NETWORK_BATCH;

    fn batch(&self) -> &BatchConfig {
        &self.batch
    }

    fn request(&self) -> RequestConfig {
        self.request.clone()
    }

    fn build(&self, id: &str) -> Result<impl Service, String> {
        HecSink::new(self).map_err(|e| format!("sinks.{id}.{e}"))
    }
}

pub struct HecSink {
    client: HttpClient,
    cfg: HecConfig,
    requests: Requests,
    channel: String,
    encoder: Encoder,
}

/// Builds HEC requests: the endpoint and the token.
pub struct Requests {
    endpoint: String,
    token: String,
}

impl Requests {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.trim_end_matches('/'))
    }

    pub fn post(
        &self,
        url: &str,
        channel: &str,
        body: Vec<u8>,
        encoding: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, SendError> {
        let mut req = Request::post(url)
            .header("authorization", format!("Splunk {}", self.token))
            .header("x-splunk-request-channel", channel)
            .header("content-type", "application/json");
        if let Some(encoding) = encoding {
            req = req.header("content-encoding", encoding);
        }
        req.body(Full::new(Bytes::from(body))).map_err(|e| SendError::Reject(format!("building the request: {e}")))
    }
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
    /// Errors name the key under `sinks.ID.`.
    pub fn new(cfg: &HecConfig) -> Result<HecSink, String> {
        let token = cfg.read_token()?;
        let host = cfg.host.clone().unwrap_or_else(hostname);
        Ok(HecSink {
            client: client::build(&cfg.tls).map_err(|e| format!("tls: {e}"))?,
            requests: Requests { endpoint: cfg.endpoint.clone(), token },
            encoder: Encoder::new(cfg, &host),
            cfg: cfg.clone(),
            channel: uuid4(),
        })
    }
}

impl Service for HecSink {
    async fn send(&mut self, events: &[Event]) -> Result<(), SendError> {
        let (body, encoding) = self.cfg.compression.apply(self.encoder.encode(events));
        let url = self.requests.url("/services/collector/event");
        let req = self.requests.post(&url, &self.channel, body, encoding)?;
        let answer = client::send(&self.client, req, self.cfg.request.timeout.0).await?;
        let ack_id = match service::outcome(&answer) {
            Outcome::Accepted { ack_id } => ack_id,
            Outcome::NewChannel(why) => {
                self.channel = uuid4();
                return Err(SendError::Retry(why));
            }
            Outcome::Failed(e) => return Err(e),
        };
        if !self.cfg.acknowledgements.enabled {
            return Ok(());
        }
        let ack_id = ack_id.ok_or_else(|| {
            SendError::Retry(format!(
                "HEC answered without an ackId although acknowledgements are on: {}",
                answer.snippet()
            ))
        })?;
        acks::wait_for(&self.client, &self.requests, &self.cfg, &self.channel, ack_id).await
    }
}
