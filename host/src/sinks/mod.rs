//! Sinks: where tagged events go, each confirming events only once the far end has them.
//!
//! | type | delivers to | confirms after |
//! |---|---|---|
//! | `console` | standard output | written and flushed |
//! | `blackhole` | nowhere: counts and drops (for benchmarks) | at once |
//! | `file` | a file, JSON lines | written and flushed (optionally fsynced) |
//! | `http` | any HTTP endpoint, JSON lines (gzip optional) | a 2xx answer |
//! | `splunk_hec` | Splunk HTTP Event Collector | HEC success, and with indexer acknowledgements the ack |
//! | `fluent` | Fluentd / Fluent Bit, forward protocol | the forward `ack` of the chunk |
//!
//! Every sink gathers events into requests (`batch.max_events`, `batch.max_bytes`,
//! `batch.timeout`), sends one request at a time, and on a failure that may pass (a connection
//! refused, a 5xx, a timeout) retries with exponential backoff and jitter, without end: while
//! it waits, its inbox fills and the pipeline holds, in bounded memory, until the far end is
//! back. A request the far end refuses for good (a 4xx other than 408/429) goes to the sink's
//! `ID.dead_letter` output when something reads it (`http`, `splunk_hec`), each event marked
//! with the answer, and counts as done only once that output's sinks confirmed it; otherwise it
//! is dropped on purpose: counted in `flowtag_component_discarded_events_total{reason="rejected"}`
//! and logged with the far end's answer. After a restart, a sink skips events it had confirmed
//! before (see [`crate::event`]).
//!
//! A sink type is one file: its config (implementing [`SinkType`]) and its [`Service`]; the list
//! below names it once.

pub mod blackhole;
pub mod console;
pub mod driver;
pub mod file;
pub mod fluent;
pub mod http;
pub mod splunk_hec;

use std::time::Duration;

use crate::buffer::{start_disk, BufferKind, DiskStart};
use crate::component::ComponentConfig;
use crate::fanout::{DeadLetters, Inbox};
use crate::health::Health;
use crate::metrics::ComponentMetrics;
use crate::shutdown::Shutdown;
pub use driver::{classify, drive, BatchConfig, Batching, RequestConfig, SendError, Sent, Service, SinkContext};

crate::component_types! {
    /// `[sinks.ID]`
    pub enum SinkConfig: SinkType {
        Console(console::ConsoleConfig),
        Blackhole(blackhole::BlackholeConfig),
        File(file::FileSinkConfig),
        Http(http::HttpSinkConfig),
        SplunkHec(splunk_hec::HecConfig),
        Fluent(fluent::FluentSinkConfig),
    }
    start(start: SinkStart) -> Result<tokio::task::JoinHandle<()>, String> => start_sink;
}

/// A sink type: its config, and how it builds the service that delivers a request.
pub trait SinkType: ComponentConfig {
    /// Batch limits where `batch` says nothing.
    const BATCH: Batching;

    fn batch(&self) -> &BatchConfig;

    fn request(&self) -> RequestConfig {
        RequestConfig::default()
    }

    /// The service, ready to send; errors name the key (`sinks.ID....`).
    fn build(&self, id: &str) -> Result<impl Service, String>;
}

/// What the topology gives a sink to start it.
pub struct SinkStart {
    pub id: String,
    /// Its position among the sinks (events record confirmations by it).
    pub index: usize,
    /// How many sinks the pipeline has.
    pub n_sinks: usize,
    pub inbox: Inbox,
    /// `ID.dead_letter`, for a sink type that has one, when something reads it.
    pub dead_letters: Option<DeadLetters>,
    pub shutdown: Shutdown,
    /// Where the sink says whether it delivers (`/ready`).
    pub health: Health,
    /// The pipeline's `data_dir` (disk buffers live in `buffers/<id>/` there).
    pub data_dir: std::path::PathBuf,
}

fn start_sink<C: SinkType>(cfg: C, s: SinkStart) -> Result<tokio::task::JoinHandle<()>, String> {
    let service = cfg.build(&s.id)?;
    let metrics = ComponentMetrics::new(&s.id, "sink", C::TYPE);
    let (inbox, buffer_threads) = match cfg.buffer() {
        Some(b) if b.kind == BufferKind::Disk => {
            let dir = s.data_dir.join("buffers").join(&s.id);
            let start = DiskStart {
                id: &s.id,
                index: s.index,
                n_sinks: s.n_sinks,
                dir: &dir,
                max_size: b.max_size.unwrap_or(crate::buffer::MIN_DISK),
                when_full: b.when_full,
                shutdown: s.shutdown.clone(),
                metrics: metrics.clone(),
            };
            start_disk(start, s.inbox)?
        }
        _ => (s.inbox, Vec::new()),
    };
    let ctx = SinkContext {
        metrics,
        id: s.id,
        index: s.index,
        n_sinks: s.n_sinks,
        dead_letters: s.dead_letters,
        inbox,
        shutdown: s.shutdown,
        health: s.health,
        batching: cfg.batch().with_defaults(C::BATCH),
        request: cfg.request(),
    };
    Ok(tokio::spawn(async move {
        drive(service, ctx).await;
        // A disk buffer's threads end once the sink is done with what they handed it; the
        // last one writes the ledger.
        if !buffer_threads.is_empty() {
            let _ = tokio::task::spawn_blocking(move || buffer_threads.into_iter().for_each(|t| drop(t.join()))).await;
        }
    }))
}

/// The usual limits of a sink that sends over the network: 1,000 events or 1 MiB, or what
/// arrived within a second.
pub const NETWORK_BATCH: Batching = Batching { max_events: 1000, max_bytes: 1 << 20, timeout: Duration::from_secs(1) };
