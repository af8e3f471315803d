//! Sinks: where tagged events go, each confirming events only once the far end has them.
//!
//! | type | delivers to | confirms after |
//! |---|---|---|
//! | `console` | standard output | written and flushed |
//! | `file` | a file, JSON lines | written and flushed (optionally fsynced) |
//! | `http` | any HTTP endpoint, JSON lines (gzip optional) | a 2xx answer |
//! | `splunk_hec` | Splunk HTTP Event Collector | HEC success, and with indexer acknowledgements the ack |
//! | `fluent` | Fluentd / Fluent Bit, forward protocol | the forward `ack` of the chunk |
//!
//! Every sink gathers events into requests (`batch.max_events`, `batch.max_bytes`,
//! `batch.timeout`), sends one request at a time, and on a failure that may pass (a connection
//! refused, a 5xx, a timeout) retries with exponential backoff and jitter, without end: while
//! it waits, its inbox fills and the pipeline holds, in bounded memory, until the far end is
//! back. A request the far end refuses for good (a 4xx other than 408/429) is dropped on
//! purpose: counted in `flowtag_component_discarded_events_total{reason="rejected"}` and
//! logged with the far end's answer. After a restart, a sink skips events it had confirmed
//! before (see [`crate::event`]).

pub mod console;
pub mod file;
pub mod fluent;
pub mod http;
pub mod http_client;
pub mod splunk_hec;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Deserialize;

use crate::config::duration::Dur;
use crate::event::{confirm_all, Delivery, Event};
use crate::metrics::{self, ComponentMetrics};
use crate::topology::{Inbox, Shutdown, Wiring};

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    Console(console::ConsoleConfig),
    File(file::FileSinkConfig),
    Http(http::HttpSinkConfig),
    SplunkHec(splunk_hec::HecConfig),
    Fluent(fluent::FluentSinkConfig),
}

impl SinkConfig {
    /// The error in a `[sinks.ID]` table, with its key (see [`crate::config::explain_as`]);
    /// None for a table that reads, or whose `type` is unknown (serde names that one itself).
    pub fn explain(table: &toml::Table) -> Option<String> {
        use crate::config::explain_as;
        match table.get("type")?.as_str()? {
            "console" => explain_as::<console::ConsoleConfig>(table),
            "file" => explain_as::<file::FileSinkConfig>(table),
            "http" => explain_as::<http::HttpSinkConfig>(table),
            "splunk_hec" => explain_as::<splunk_hec::HecConfig>(table),
            "fluent" => explain_as::<fluent::FluentSinkConfig>(table),
            _ => None,
        }
    }

    pub fn inputs(&self) -> &[String] {
        match self {
            SinkConfig::Console(c) => &c.inputs,
            SinkConfig::File(c) => &c.inputs,
            SinkConfig::Http(c) => &c.inputs,
            SinkConfig::SplunkHec(c) => &c.inputs,
            SinkConfig::Fluent(c) => &c.inputs,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Console(_) => "console",
            SinkConfig::File(_) => "file",
            SinkConfig::Http(_) => "http",
            SinkConfig::SplunkHec(_) => "splunk_hec",
            SinkConfig::Fluent(_) => "fluent",
        }
    }

    pub fn check(&self, id: &str) -> Result<(), String> {
        match self {
            SinkConfig::Http(c) => c.check(id),
            SinkConfig::SplunkHec(c) => c.check(id),
            SinkConfig::Fluent(c) => c.check(id),
            _ => Ok(()),
        }
    }
}

/// How a sink groups events into requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub max_events: Option<usize>,
    pub max_bytes: Option<usize>,
    pub timeout: Option<Dur>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_events: None, max_bytes: None, timeout: None }
    }
}

/// Limits a sink applies with its own defaults where the config says nothing.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    pub max_events: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl BatchConfig {
    pub fn with_defaults(&self, max_events: usize, max_bytes: usize, timeout: Duration) -> Batching {
        Batching {
            max_events: self.max_events.unwrap_or(max_events).max(1),
            max_bytes: self.max_bytes.unwrap_or(max_bytes).max(1),
            timeout: self.timeout.map(|d| d.0).unwrap_or(timeout),
        }
    }
}

/// Timeouts and retry backoff of a sink's requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    #[serde(default = "default_request_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_initial_backoff")]
    pub retry_initial_backoff: Dur,
    #[serde(default = "default_max_backoff")]
    pub retry_max_backoff: Dur,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            timeout: default_request_timeout(),
            retry_initial_backoff: default_initial_backoff(),
            retry_max_backoff: default_max_backoff(),
        }
    }
}

fn default_request_timeout() -> Dur {
    Dur::secs(30)
}
fn default_initial_backoff() -> Dur {
    Dur::millis(500)
}
fn default_max_backoff() -> Dur {
    Dur::secs(30)
}

impl RequestConfig {
    /// Wait before retry `attempt` (1-based): exponential, capped, with jitter (half fixed, half
    /// random), so many nodes do not retry in lock-step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.retry_initial_backoff.0.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = base.min(self.retry_max_backoff.0);
        let half = capped / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum SendError {
    /// May succeed later: retry.
    Retry(String),
    /// The far end refused the events for good.
    Reject(String),
}

/// What delivers one request of events.
pub trait Service: Send + 'static {
    fn send(&mut self, events: &[Event]) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// What every sink gets from the topology.
pub struct SinkContext {
    pub id: String,
    pub index: usize,
    pub inbox: Inbox,
    pub metrics: ComponentMetrics,
    pub shutdown: Shutdown,
    pub batching: Batching,
    pub request: RequestConfig,
}

pub async fn spawn(
    id: String,
    index: usize,
    cfg: SinkConfig,
    inbox: Inbox,
    wiring: Arc<Wiring>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let metrics = ComponentMetrics::new(&id, "sink", cfg.type_name());
    let shutdown = wiring.shutdown.clone();
    let ctx = |batching: Batching, request: RequestConfig| SinkContext {
        id: id.clone(),
        index,
        inbox,
        metrics,
        shutdown,
        batching,
        request,
    };
    Ok(match cfg {
        SinkConfig::Console(c) => {
            let b = c.batch.with_defaults(1000, 1 << 20, Duration::from_millis(100));
            tokio::spawn(drive(console::Console::new(&c), ctx(b, RequestConfig::default())))
        }
        SinkConfig::File(c) => {
            let b = c.batch.with_defaults(1000, 4 << 20, Duration::from_millis(100));
            let service = file::FileSink::open(&c).map_err(|e| format!("sinks.{id}.path: {e}"))?;
            tokio::spawn(drive(service, ctx(b, RequestConfig::default())))
        }
        SinkConfig::Http(c) => {
            let b = c.batch.with_defaults(1000, 1 << 20, Duration::from_secs(1));
            let service = http::HttpSink::new(&c).map_err(|e| format!("sinks.{id}: {e}"))?;
            tokio::spawn(drive(service, ctx(b, c.request.clone())))
        }
        SinkConfig::SplunkHec(c) => {
            let b = c.batch.with_defaults(1000, 1 << 20, Duration::from_secs(1));
            let service = splunk_hec::HecSink::new(&c).map_err(|e| format!("sinks.{id}: {e}"))?;
            tokio::spawn(drive(service, ctx(b, c.request.clone())))
        }
        SinkConfig::Fluent(c) => {
            let b = c.batch.with_defaults(1000, 4 << 20, Duration::from_secs(1));
            tokio::spawn(drive(fluent::FluentSink::new(&c), ctx(b, c.request.clone())))
        }
    })
}

/// The loop every sink runs: gather a request, send it until it is delivered or refused,
/// confirm, repeat; when the inbox closes, send what is left and finish.
pub async fn drive<S: Service>(mut service: S, mut ctx: SinkContext) {
    let retries = metrics::global().sink_retries.with_label_values(&[&ctx.id]);
    let mut carry: Vec<Event> = Vec::new();
    let mut closed = false;
    while !(closed && carry.is_empty()) {
        let mut batch = std::mem::take(&mut carry);
        let mut bytes: usize = batch.iter().map(|e| e.data.len()).sum();
        if batch.is_empty() {
            match ctx.inbox.recv().await {
                Some(events) => {
                    bytes += events.iter().map(|e| e.data.len()).sum::<usize>();
                    batch.extend(events);
                }
                None => break,
            }
        }
        let deadline = tokio::time::Instant::now() + ctx.batching.timeout;
        while batch.len() < ctx.batching.max_events && bytes < ctx.batching.max_bytes && !closed {
            match tokio::time::timeout_at(deadline, ctx.inbox.recv()).await {
                Ok(Some(events)) => {
                    bytes += events.iter().map(|e| e.data.len()).sum::<usize>();
                    batch.extend(events);
                }
                Ok(None) => closed = true,
                Err(_) => break,
            }
        }
        // Keep the request within its limits; the rest goes in the next one.
        if batch.len() > ctx.batching.max_events {
            carry = batch.split_off(ctx.batching.max_events);
        }
        // Events this sink had confirmed before a restart are not sent again.
        let (skip, send): (Vec<Event>, Vec<Event>) = batch.into_iter().partition(|e| e.delivered_to(ctx.index));
        if !skip.is_empty() {
            ctx.metrics.discarded("already_delivered", skip.len());
        }
        if send.is_empty() {
            continue;
        }
        ctx.metrics.received(send.len(), send.iter().map(|e| e.data.len()).sum());
        let mut attempt = 0u32;
        let started = Instant::now();
        loop {
            match service.send(&send).await {
                Ok(()) => {
                    confirm_all(&send, ctx.index, Delivery::Delivered);
                    ctx.metrics.sent(send.len());
                    break;
                }
                Err(SendError::Reject(why)) => {
                    tracing::error!(sink = %ctx.id, events = send.len(), reason = %why, "events refused by the far end; dropped");
                    ctx.metrics.discarded("rejected", send.len());
                    ctx.metrics.error("rejected", 1);
                    confirm_all(&send, ctx.index, Delivery::Rejected);
                    break;
                }
                Err(SendError::Retry(why)) => {
                    attempt += 1;
                    retries.inc();
                    ctx.metrics.error("request", 1);
                    if ctx.shutdown.is_stopping() && started.elapsed() > ctx.shutdown.drain_timeout() {
                        // Not confirmed: a file source reads these again after the restart.
                        tracing::error!(sink = %ctx.id, events = send.len(), "giving up at shutdown; the events stay unconfirmed");
                        return;
                    }
                    let wait = ctx.request.backoff(attempt);
                    tracing::warn!(sink = %ctx.id, attempt, error = %why, retry_in = ?wait, "request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
