//! A sink's buffer: where its events wait for it.
//!
//! ```toml
//! [sinks.siem]
//! type = "http"
//! inputs = ["tag"]
//! uri = "https://collector.example.com/ingest"
//! buffer.type = "disk"           # "memory" (the default) or "disk"
//! buffer.max_size = 1073741824   # bytes; required for "disk" (at least 1 MiB)
//! buffer.when_full = "block"     # or "drop_newest"
//! ```
//!
//! - `memory`: the sink's inbox, bounded by 8 batches and `max_size` bytes (64 MiB by default).
//!   Events are confirmed to their source when the sink's far end has them; a crash loses
//!   nothing a source can read again (a file), and an `http` or `fluent` sender is answered
//!   only then.
//! - `disk` ([`disk`]): events are written to `data_dir/buffers/<sink id>/` and confirmed to their
//!   source once they are durably there; the sink reads them from disk and they leave the
//!   buffer when the far end confirmed them. A crash or power loss loses none of them (they are
//!   delivered after the restart, some perhaps twice), and an outage of the far end holds no
//!   memory and no source, up to `max_size`.
//!
//! `when_full`: `block` (the default) holds the pipeline upstream until there is room, as
//! Vector does; `drop_newest` drops what does not fit (for a memory buffer, each batch that
//! finds the inbox full), confirmed for that sink so the source goes on, and counted in
//! `flowtag_component_discarded_events_total{reason="buffer_full"}`.

pub mod disk;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

use crate::event::{confirm_all, BatchAck, Completion, Delivery, Event, Notifier};
use crate::fanout::{self, Inbox, Output};
use crate::metrics::{self, ComponentMetrics};
use crate::shutdown::Shutdown;

/// `[sinks.ID.buffer]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    #[serde(default, rename = "type")]
    pub kind: BufferKind,
    /// Bytes; required for `disk`.
    pub max_size: Option<u64>,
    #[serde(default)]
    pub when_full: WhenFull,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    #[default]
    Memory,
    Disk,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    #[default]
    Block,
    DropNewest,
}

/// The smallest disk buffer.
pub const MIN_DISK: u64 = 1 << 20;

impl BufferConfig {
    pub fn check(&self, id: &str) -> Result<(), String> {
        match (self.kind, self.max_size) {
            (BufferKind::Disk, None) => Err(format!(
                "sinks.{id}.buffer.max_size: a disk buffer needs its size in bytes (at least {MIN_DISK}), e.g. 1073741824 for 1 GiB"
            )),
            (BufferKind::Disk, Some(n)) if n < MIN_DISK => {
                Err(format!("sinks.{id}.buffer.max_size: {n} bytes; a disk buffer needs at least {MIN_DISK}"))
            }
            (BufferKind::Memory, Some(n)) if n < 1024 => {
                Err(format!("sinks.{id}.buffer.max_size: {n} bytes; a memory buffer needs at least 1024"))
            }
            _ => Ok(()),
        }
    }

    /// The bytes the sink's inbox holds: a memory buffer's size, or the default (in front of a
    /// disk buffer, the inbox is only the hand-off to the buffer's writer).
    pub fn inbox_bytes(&self) -> usize {
        match (self.kind, self.max_size) {
            (BufferKind::Memory, Some(n)) => n.min(u32::MAX as u64) as usize,
            _ => fanout::INBOX_BYTES,
        }
    }
}

/// Batches the reader of a disk buffer hands the sink at once.
const READ_EVENTS: usize = 1000;
const READ_BYTES: usize = 1 << 20;

/// What [`start_disk`] needs of the sink.
pub struct DiskStart<'a> {
    pub id: &'a str,
    pub index: usize,
    pub n_sinks: usize,
    pub dir: &'a Path,
    pub max_size: u64,
    pub when_full: WhenFull,
    pub shutdown: Shutdown,
    pub metrics: ComponentMetrics,
}

/// Put a disk buffer between `inbox` (what the pipeline sends sink `index`) and the sink: the
/// returned inbox is what the sink reads. Threads: a writer (inbox to disk, then confirms to
/// the sources), a reader (disk to the sink, each batch with an acknowledgement of its own) and
/// one that records the sink's confirmations.
pub fn start_disk(s: DiskStart<'_>, mut inbox: Inbox) -> Result<(Inbox, Vec<JoinHandle<()>>), String> {
    let id = s.id.to_string();
    let (mut writer, mut reader, shared, recovered) = disk::open(s.dir, disk::Options::new(s.max_size))
        .map_err(|e| format!("sinks.{id}.buffer: cannot open the disk buffer in {}: {e}", s.dir.display()))?;
    if recovered.records > 0 || recovered.torn_bytes > 0 || recovered.corrupt_bytes > 0 {
        tracing::info!(sink = %id, records = recovered.records, torn_bytes = recovered.torn_bytes,
            corrupt_bytes = recovered.corrupt_bytes, "disk buffer reopened; its records go to the sink first");
    }
    let m = metrics::global();
    let report = {
        let shared = shared.clone();
        let gauges = (m.disk_buffer_bytes.with_label_values(&[&id]), m.disk_buffer_events.with_label_values(&[&id]));
        move || {
            let (bytes, events) = shared.usage();
            gauges.0.set(bytes as i64);
            gauges.1.set(events as i64);
        }
    };
    report();
    let (target, sink_inbox) = fanout::inbox(&format!("{id}.buffer"), fanout::INBOX_BATCHES);
    let to_sink = Output::new(vec![target], Vec::new());
    let (acks_tx, acks_rx) = std::sync::mpsc::channel::<Completion>();
    let mut threads = Vec::new();

    let (w_shared, w_shutdown, w_metrics, w_report, w_id) =
        (shared.clone(), s.shutdown.clone(), s.metrics.clone(), report.clone(), id.clone());
    let (index, when_full) = (s.index, s.when_full);
    threads.push(spawn(&format!("{id}-buf-write"), move || {
        let drained = || w_shutdown.is_drained();
        while let Some(events) = inbox.blocking_recv() {
            let (skip, events): (Vec<Event>, Vec<Event>) = events.into_iter().partition(|e| e.delivered_to(index));
            if !skip.is_empty() {
                w_metrics.discarded("already_delivered", skip.len());
            }
            // In chunks that fit the buffer; a record larger than the whole buffer is dropped.
            let mut rest = &events[..];
            while !rest.is_empty() {
                let mut take = 0;
                let mut payload = 0;
                while take < rest.len() {
                    let more = payload + rest[take].data.len();
                    if take > 0 && disk::Shared::framed(take + 1, more) > max_chunk(&w_shared) {
                        break;
                    }
                    payload = more;
                    take += 1;
                }
                let (chunk, after) = rest.split_at(take);
                rest = after;
                let size = disk::Shared::framed(chunk.len(), payload);
                if !w_shared.could_fit(size) {
                    tracing::error!(sink = %w_id, bytes = size, "an event larger than the whole disk buffer; dropped");
                    w_metrics.discarded("too_large", chunk.len());
                    confirm_all(chunk, index, Delivery::Delivered);
                    continue;
                }
                if !w_shared.fits(size) {
                    if when_full == WhenFull::DropNewest {
                        w_metrics.discarded("buffer_full", chunk.len());
                        confirm_all(chunk, index, Delivery::Delivered);
                        continue;
                    }
                    if let Err(e) = writer.seal() {
                        tracing::error!(sink = %w_id, error = %e, "disk buffer: cannot seal a segment");
                    }
                    if !w_shared.wait_for_room(size, drained) {
                        // Past the drain timeout: these stay unconfirmed and are read again.
                        tracing::error!(sink = %w_id, "disk buffer full at shutdown; the rest stays unconfirmed");
                        w_shared.close();
                        return;
                    }
                }
                let records: Vec<&[u8]> = chunk.iter().map(|e| &e.data[..]).collect();
                match writer.append(&records) {
                    Ok(()) => confirm_all(chunk, index, Delivery::Delivered),
                    Err(e) => {
                        // Not confirmed: a file source reads them again after a restart.
                        w_metrics.error("buffer_write", 1);
                        tracing::error!(sink = %w_id, error = %e, "cannot write to the disk buffer; these events stay unconfirmed");
                    }
                }
                w_report();
            }
        }
        w_shared.close();
    })?);

    let (r_shutdown, r_report, r_id) = (s.shutdown.clone(), report.clone(), id.clone());
    let n_sinks = s.n_sinks;
    threads.push(spawn(&format!("{id}-buf-read"), move || {
        let notify = Notifier::Std(acks_tx);
        loop {
            match reader.next(READ_EVENTS, READ_BYTES, Duration::from_millis(200)) {
                Ok(disk::Next::Batch { first, records }) => {
                    let ack = BatchAck::new(first, records.len(), &[(index, 1)], n_sinks, &[], notify.clone());
                    let events: Vec<Event> = records.into_iter().map(|b| Event::with_ack(b, &ack)).collect();
                    if to_sink.blocking_send(events).is_err() {
                        return;
                    }
                }
                Ok(disk::Next::Empty) => {
                    if r_shutdown.is_drained() {
                        return;
                    }
                }
                Ok(disk::Next::Closed) => return,
                Err(e) => {
                    // The disk refuses a read (a damaged record is skipped inside `next`):
                    // try again, unless stopping.
                    tracing::error!(sink = %r_id, error = %e, "cannot read the disk buffer");
                    if r_shutdown.is_stopping() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            r_report();
        }
    })?);

    let (a_shared, a_id) = (shared.clone(), id.clone());
    threads.push(spawn(&format!("{id}-buf-ack"), move || {
        // Ends when every acknowledgement is gone: the reader stopped and the sink finished.
        for c in acks_rx {
            if let Err(e) = a_shared.confirm(c.batch) {
                tracing::error!(sink = %a_id, error = %e, "disk buffer: cannot record a confirmation");
            }
            report();
        }
        if let Err(e) = a_shared.persist() {
            tracing::error!(sink = %a_id, error = %e, "disk buffer: cannot write the ledger at exit");
        }
    })?);
    Ok((sink_inbox, threads))
}

/// The most bytes one append writes: a quarter of the buffer, so a full buffer frees room for
/// the next one when a segment goes.
fn max_chunk(shared: &Arc<disk::Shared>) -> u64 {
    shared.max_size() / 4
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(f)
        .map_err(|e| format!("cannot start a thread: {e}"))
}
