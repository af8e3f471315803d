//! Sources: where events come from.
//!
//! | type | reads | acknowledges |
//! |---|---|---|
//! | `file` | files by glob, tailed, with checkpoints | checkpoints move after every sink confirmed |
//! | `stdin` | standard input | no (nothing to tell) |
//! | `tcp` | newline-delimited records | no (TCP has no application ack) |
//! | `http` | `POST` of newline-delimited records | answers 200 after the sinks confirmed |
//! | `fluent` | Fluent forward protocol | answers `chunk` acks after the sinks confirmed |
//! | `netflow` | NetFlow v5, v9 and IPFIX over UDP | no (UDP has no acknowledgement) |
//!
//! A source type is one file (or folder): its config, implementing [`SourceType`], and its
//! reading loop; the list below names it once.

pub mod file;
pub mod fluent;
pub mod http;
pub mod netflow;
pub mod stdin;
pub mod syslog;
pub mod tcp;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::component::{ComponentConfig, Shared};
use crate::decode::{Decoder, Line};
use crate::event::{Event, Events};
use crate::fanout::{DeadLetters, Output};
use crate::health::Health;
use crate::metrics::ComponentMetrics;
use crate::shutdown::{Shutdown, SourcesLeft};

crate::component_types! {
    /// `[sources.ID]`
    pub enum SourceConfig: SourceType {
        File(file::FileConfig),
        Stdin(stdin::StdinConfig),
        Tcp(tcp::TcpConfig),
        Http(http::HttpConfig),
        Fluent(fluent::FluentConfig),
        Netflow(netflow::NetflowConfig),
        Syslog(syslog::SyslogConfig),
    }
    start(ctx: SourceContext) -> Pending => start_source;
}

/// A source type: its config, and how it starts reading.
pub trait SourceType: ComponentConfig + Send + 'static {
    /// Start reading (bind the port, open the files); errors name the key.
    fn start(self, ctx: SourceContext) -> impl Future<Output = Result<Started, String>> + Send;
}

/// A source being started.
pub type Pending = Pin<Box<dyn Future<Output = Result<Started, String>> + Send>>;

fn start_source<C: SourceType>(cfg: C, ctx: SourceContext) -> Pending {
    Box::pin(cfg.start(ctx))
}

/// What a running source is given.
pub struct SourceContext {
    /// The output `ID`.
    pub out: Output,
    /// `ID.dead_letter`, when something reads it: records that could not be decoded go there
    /// instead of on (see [`SourceContext::outlets`]).
    pub dead_letters: Option<DeadLetters>,
    /// Sinks this source reaches, over all its outputs: (topology index, number of paths).
    pub paths: Vec<(usize, usize)>,
    pub n_sinks: usize,
    pub sink_ids: Vec<String>,
    pub shutdown: Shutdown,
    pub data_dir: PathBuf,
    pub metrics: ComponentMetrics,
    pub health: Health,
    pub id: String,
    /// Whether JSON lines must be validated here (some sink reads this source directly).
    pub check_json: bool,
    sources_left: Arc<SourcesLeft>,
}

impl Drop for SourceContext {
    fn drop(&mut self) {
        self.sources_left.finished();
    }
}

impl SourceContext {
    pub fn new(
        id: &str,
        type_name: &'static str,
        out: Output,
        dead_letters: Option<DeadLetters>,
        paths: Vec<(usize, usize)>,
        check_json: bool,
        w: &Shared,
    ) -> SourceContext {
        SourceContext {
            out,
            dead_letters,
            paths,
            n_sinks: w.sink_ids.len(),
            sink_ids: w.sink_ids.clone(),
            shutdown: w.shutdown.clone(),
            data_dir: w.data_dir.clone(),
            metrics: ComponentMetrics::new(id, "source", type_name),
            health: w.health.clone(),
            id: id.to_string(),
            check_json,
            sources_left: w.sources_left.clone(),
        }
    }
}

impl SourceContext {
    /// Where a batch's events go: the records at `bad` (ascending, each with why it could not
    /// be decoded) to `ID.dead_letter` when something reads it, the rest (or, when nothing
    /// reads it, all) to `ID`. Only outputs with events are listed.
    pub fn outlets(&self, events: Events, bad: &[(usize, String)]) -> Vec<(&Output, Events)> {
        let (keep, dead) = match &self.dead_letters {
            Some(d) => d.split(events, bad, "decode"),
            None => (events, Vec::new()),
        };
        let mut outlets = Vec::with_capacity(2);
        if !keep.is_empty() {
            outlets.push((&self.out, keep));
        }
        if let Some(d) = self.dead_letters.as_ref().filter(|_| !dead.is_empty()) {
            outlets.push((&d.port.out, dead));
        }
        outlets
    }

    /// [`SourceContext::outlets`], sent; `Err` when the pipeline is closed.
    pub async fn send(&self, events: Events, bad: &[(usize, String)]) -> Result<(), crate::fanout::Closed> {
        for (out, events) in self.outlets(events, bad) {
            out.send(events).await?;
        }
        Ok(())
    }
}

pub enum Started {
    Task(tokio::task::JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

/// The listening socket of a network source on `address`, ready to accept (TLS when `tls` is
/// set), the source marked ready; errors name the key under `sources.ID`.
pub async fn bind(
    ctx: &SourceContext,
    address: std::net::SocketAddr,
    tls: Option<&crate::net::tls::ServerTlsConfig>,
    what: &str,
) -> Result<(tokio::net::TcpListener, Option<crate::net::server::TlsAcceptor>), String> {
    let id = &ctx.id;
    let tls = tls.map(|t| t.acceptor()).transpose().map_err(|e| format!("sources.{id}.{e}"))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("sources.{id}.address: cannot listen on {address}: {e}"))?;
    tracing::info!(%address, tls = tls.is_some(), "{what} listening");
    ctx.health.ready(id);
    Ok((listener, tls))
}

/// Serve each connection to a stream source (`tcp`, `fluent`) with `handler` until shutdown;
/// a failed TLS handshake is counted as an error of type `tls`.
pub async fn listen<H, F>(
    ctx: SourceContext,
    address: std::net::SocketAddr,
    tls: Option<&crate::net::tls::ServerTlsConfig>,
    connections: crate::net::server::Connections,
    what: &str,
    handler: H,
) -> Result<tokio::task::JoinHandle<()>, String>
where
    H: Fn(Box<dyn crate::net::tls::Stream>, std::net::SocketAddr, Arc<SourceContext>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (listener, tls) = bind(&ctx, address, tls, what).await?;
    let ctx = Arc::new(ctx);
    let counted = ctx.clone();
    Ok(tokio::spawn(crate::net::server::accept(
        listener,
        tls,
        connections.limit,
        Some(connections.idle_timeout.0),
        ctx.shutdown.clone(),
        move |_| counted.metrics.error("tls", 1),
        move |stream, peer| handler(stream, peer, ctx.clone()),
    )))
}

/// Decode newline-delimited `data` into events (for sources that receive bytes in pieces:
/// stdin, tcp, http), with the indices of those that could not be decoded and why (see
/// [`SourceContext::outlets`]). Counts malformed lines on `metrics`.
pub fn decode_lines(decoder: &mut Decoder, data: &[u8], metrics: &ComponentMetrics) -> (Events, Vec<(usize, String)>) {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut ends = Vec::new();
    let mut bad = Vec::new();
    for line in flowtag_plugin::lines(data) {
        match decoder.decode(line, &mut out) {
            Line::Record => ends.push(out.len()),
            Line::Skipped => {}
            Line::Malformed(why) => {
                bad.push((ends.len(), why));
                ends.push(out.len());
            }
        }
    }
    if !bad.is_empty() {
        metrics.error("decode", bad.len());
    }
    (events_at(out, &ends), bad)
}

/// The records in `out` that end at `ends`, as events sharing one buffer.
pub fn events_at(out: Vec<u8>, ends: &[usize]) -> Events {
    let data = bytes::Bytes::from(out);
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let e = Event::new(data.slice(start..end));
            start = end;
            e
        })
        .collect()
}
