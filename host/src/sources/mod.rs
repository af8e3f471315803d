//! Sources: where events come from.
//!
//! | type | reads | acknowledges |
//! |---|---|---|
//! | `file` | files by glob, tailed, with checkpoints | checkpoints move after every sink confirmed |
//! | `stdin` | standard input | no (nothing to tell) |
//! | `tcp` | newline-delimited records | no (TCP has no application ack) |
//! | `http` | `POST` of newline-delimited records | answers 200 after the sinks confirmed |
//! | `fluent` | Fluent forward protocol | answers `chunk` acks after the sinks confirmed |

pub mod file;
pub mod fluent;
pub mod http;
pub mod stdin;
pub mod tcp;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::decode::{Decoder, Line};
use crate::event::{Event, Events};
use crate::health::Health;
use crate::metrics::ComponentMetrics;
use crate::topology::{Output, Shutdown, Wiring};

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    File(file::FileConfig),
    Stdin(stdin::StdinConfig),
    Tcp(tcp::TcpConfig),
    Http(http::HttpConfig),
    Fluent(fluent::FluentConfig),
}

impl SourceConfig {
    /// The error in a `[sources.ID]` table, with its key (see [`crate::config::explain_as`]);
    /// None for a table that reads, or whose `type` is unknown (serde names that one itself).
    pub fn explain(table: &toml::Table) -> Option<String> {
        use crate::config::explain_as;
        match table.get("type")?.as_str()? {
            "file" => explain_as::<file::FileConfig>(table),
            "stdin" => explain_as::<stdin::StdinConfig>(table),
            "tcp" => explain_as::<tcp::TcpConfig>(table),
            "http" => explain_as::<http::HttpConfig>(table),
            "fluent" => explain_as::<fluent::FluentConfig>(table),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::File(_) => "file",
            SourceConfig::Stdin(_) => "stdin",
            SourceConfig::Tcp(_) => "tcp",
            SourceConfig::Http(_) => "http",
            SourceConfig::Fluent(_) => "fluent",
        }
    }

    pub fn check(&self, id: &str) -> Result<(), String> {
        match self {
            SourceConfig::File(c) => c.check(id),
            _ => Ok(()),
        }
    }
}

/// What a source needs from the topology.
pub struct SourceContext {
    pub out: Output,
    /// Sinks this source reaches: (topology index, number of paths).
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
    sources_left: Arc<crate::topology::SourcesLeft>,
}

impl Drop for SourceContext {
    fn drop(&mut self) {
        self.sources_left.finished();
    }
}

impl SourceContext {
    pub fn new(
        id: &str,
        cfg: &SourceConfig,
        out: Output,
        paths: Vec<(usize, usize)>,
        check_json: bool,
        w: &Arc<Wiring>,
    ) -> SourceContext {
        SourceContext {
            out,
            paths,
            n_sinks: w.sink_ids.len(),
            sink_ids: w.sink_ids.clone(),
            shutdown: w.shutdown.clone(),
            data_dir: w.data_dir.clone(),
            metrics: ComponentMetrics::new(id, "source", cfg.type_name()),
            health: w.health.clone(),
            id: id.to_string(),
            check_json,
            sources_left: w.sources_left.clone(),
        }
    }
}

pub enum Started {
    Task(tokio::task::JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

pub async fn spawn(id: String, cfg: SourceConfig, ctx: SourceContext) -> Result<Started, String> {
    match cfg {
        SourceConfig::File(c) => {
            file::spawn(id.clone(), c, ctx).map(Started::Thread).map_err(|e| format!("sources.{id}: cannot start: {e}"))
        }
        SourceConfig::Stdin(c) => Ok(Started::Thread(stdin::spawn(c, ctx))),
        SourceConfig::Tcp(c) => tcp::spawn(&id, c, ctx).await.map(Started::Task),
        SourceConfig::Http(c) => http::spawn(&id, c, ctx).await.map(Started::Task),
        SourceConfig::Fluent(c) => fluent::spawn(&id, c, ctx).await.map(Started::Task),
    }
}

/// Decode newline-delimited `data` into events (for sources that receive bytes in pieces:
/// stdin, tcp, http). Counts malformed lines on `metrics`.
pub fn decode_lines(decoder: &mut Decoder, data: &[u8], metrics: &ComponentMetrics) -> Events {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut ends = Vec::new();
    let mut malformed = 0;
    for line in flowtag_plugin::lines(data) {
        match decoder.decode(line, &mut out) {
            Line::Record => ends.push(out.len()),
            Line::Skipped => {}
            Line::Malformed(_) => {
                malformed += 1;
                ends.push(out.len());
            }
        }
    }
    if malformed > 0 {
        metrics.error("decode", malformed);
    }
    let data = bytes::Bytes::from(out);
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let e = Event::new(data.slice(start..end));
            start = end;
            e
        })
        .collect()
}
