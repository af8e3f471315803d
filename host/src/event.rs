//! Events and their acknowledgements: what flows through the pipeline, and how a source learns
//! that every sink has its events.
//!
//! # The delivery promise
//!
//! An event is one record, as the bytes of a JSON object. A source that can acknowledge (file,
//! http, fluent) gives each batch it reads a [`BatchAck`]; every event of the batch carries it.
//! Each sink the batch can reach owes the batch one confirmation per event per path; a sink
//! confirms events only after the far end confirmed them (a file flushed, an HTTP 2xx, a Splunk
//! indexer ack, a forward-protocol `ack`). When a sink has confirmed all of a batch, the source
//! hears of it ([`Completion`]); when every sink has, the batch is done and a file source may move
//! its checkpoint past it. An event never confirmed (the process was killed, a sink never came
//! back) keeps its batch open, so the checkpoint stays before it and it is read again.
//!
//! A component that sends an event down one of its outputs and not the others (a route, a
//! source's or tag filter's dead letters) confirms it for the sinks only the others reach
//! ([`confirm_not_sent`]). A sink's dead letters start afresh: the refused events get a new
//! acknowledgement, and the sink confirms the originals when that one is done, so a dead letter
//! lost to a crash means its event is read again.
//!
//! A source may mark a batch as already delivered to some sinks (after a restart, the part of a
//! file a sink confirmed before the crash): those sinks skip the batch's events and owe nothing
//! for them, which is what bounds duplicates to what was in flight at each sink.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// One record: a JSON object, and the batch acknowledgement it belongs to, if any.
#[derive(Clone, Debug)]
pub struct Event {
    pub data: Bytes,
    pub ack: Option<Arc<BatchAck>>,
    /// Where the tag filter wrote its tags in `data` (start and end of the value of the
    /// record's last member), so conditions on the tags read no other byte. Set by the anomaly
    /// transform's native runtime; a component that changes `data` drops it.
    pub tags: Option<(u32, u32)>,
}

impl Event {
    pub fn new(data: Bytes) -> Event {
        Event { data, ack: None, tags: None }
    }

    pub fn with_ack(data: Bytes, ack: &Arc<BatchAck>) -> Event {
        Event { data, ack: Some(ack.clone()), tags: None }
    }

    /// Whether `sink` must skip this event because it was delivered there before a restart.
    pub fn delivered_to(&self, sink: usize) -> bool {
        self.ack.as_ref().is_some_and(|a| a.already_delivered(sink))
    }
}

/// What travels between components: a batch of events.
pub type Events = Vec<Event>;

/// A sink's verdict on events it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The far end confirmed them.
    Delivered,
    /// The far end refused them for good (counted as discarded); the batch is still finished.
    Rejected,
}

/// Sent to a source when a sink has finished one of its batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub batch: u64,
    pub sink: usize,
    /// All sinks are done with the batch.
    pub done: bool,
    /// Some events were rejected rather than delivered.
    pub rejected: bool,
}

/// The acknowledgement state of one source batch.
#[derive(Debug)]
pub struct BatchAck {
    pub id: u64,
    /// Per sink (topology index): confirmations still owed; `usize::MAX` marks sinks the batch
    /// does not reach.
    owed: Vec<AtomicUsize>,
    /// Sinks that got the batch before a restart and must skip it.
    skip: Vec<bool>,
    sinks_left: AtomicUsize,
    rejected: AtomicBool,
    notify: Notifier,
}

/// Where a batch's completions go: a source on a tokio task or on its own thread.
#[derive(Clone, Debug)]
pub enum Notifier {
    Tokio(mpsc::UnboundedSender<Completion>),
    Std(std::sync::mpsc::Sender<Completion>),
}

impl Notifier {
    fn send(&self, c: Completion) {
        // The source may be gone (shutting down): then nobody needs to know.
        let _ = match self {
            Notifier::Tokio(tx) => tx.send(c).map_err(|_| ()),
            Notifier::Std(tx) => tx.send(c).map_err(|_| ()),
        };
    }
}

impl BatchAck {
    /// A batch of `len` events that reaches the sinks in `paths` (topology sink index, number of
    /// paths from the source to it); `skip` lists sinks that already have it.
    pub fn new(
        id: u64,
        len: usize,
        paths: &[(usize, usize)],
        n_sinks: usize,
        skip: &[usize],
        notify: Notifier,
    ) -> Arc<BatchAck> {
        let owed: Vec<AtomicUsize> = (0..n_sinks).map(|_| AtomicUsize::new(usize::MAX)).collect();
        let mut skip_flags = vec![false; n_sinks];
        let mut left = 0;
        for &(sink, n_paths) in paths {
            if skip.contains(&sink) {
                skip_flags[sink] = true;
                continue;
            }
            owed[sink].store(len * n_paths, Ordering::Relaxed);
            left += 1;
        }
        let ack = Arc::new(BatchAck {
            id,
            owed,
            skip: skip_flags,
            sinks_left: AtomicUsize::new(left),
            rejected: AtomicBool::new(false),
            notify,
        });
        // Every sink already had it (or it reaches none): finished at once.
        if left == 0 {
            ack.notify.send(Completion { batch: id, sink: usize::MAX, done: true, rejected: false });
        } else if len == 0 {
            for &(sink, _) in paths {
                if !ack.skip[sink] {
                    ack.finish(sink);
                }
            }
        }
        ack
    }

    pub fn already_delivered(&self, sink: usize) -> bool {
        self.skip.get(sink).copied().unwrap_or(false)
    }

    /// `sink` is done with `n` of this batch's events.
    pub fn confirm(&self, sink: usize, n: usize, delivery: Delivery) {
        if delivery == Delivery::Rejected {
            self.rejected.store(true, Ordering::Relaxed);
        }
        let Some(owed) = self.owed.get(sink) else { return };
        let before = owed.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(before != usize::MAX && before >= n, "sink {sink} confirmed more than it was owed");
        if before == n {
            self.finish(sink);
        }
    }

    fn finish(&self, sink: usize) {
        let done = self.sinks_left.fetch_sub(1, Ordering::AcqRel) == 1;
        let rejected = self.rejected.load(Ordering::Relaxed);
        self.notify.send(Completion { batch: self.id, sink, done, rejected });
    }
}

/// `record` as a dead letter of `component`: the record with a last member
/// `"dead_letter": {"component": ..., "cause": ..., "reason": ...}`. A record that is not a JSON
/// object (it should always be one) goes in whole as the string `message`.
pub fn dead_letter(record: &[u8], component: &str, cause: &str, reason: &str) -> Vec<u8> {
    use flowtag_plugin::json::write_string;
    let trimmed = record.trim_ascii();
    let mut out = Vec::with_capacity(record.len() + reason.len() + component.len() + 64);
    match (trimmed.first(), trimmed.last()) {
        (Some(b'{'), Some(b'}')) => {
            let body = &trimmed[..trimmed.len() - 1];
            out.extend_from_slice(body);
            if !body[1..].trim_ascii().is_empty() {
                out.push(b',');
            }
        }
        _ => {
            out.extend_from_slice(b"{\"message\":");
            write_string(&mut out, &String::from_utf8_lossy(record));
            out.push(b',');
        }
    }
    out.extend_from_slice(b"\"dead_letter\":{\"component\":");
    write_string(&mut out, component);
    out.extend_from_slice(b",\"cause\":");
    write_string(&mut out, cause);
    out.extend_from_slice(b",\"reason\":");
    write_string(&mut out, reason);
    out.extend_from_slice(b"}}");
    out
}

/// Confirm `events` for `sink`, grouping consecutive events of the same batch.
pub fn confirm_all<'a>(events: impl IntoIterator<Item = &'a Event>, sink: usize, delivery: Delivery) {
    let mut run: Option<(&Arc<BatchAck>, usize)> = None;
    for e in events {
        let Some(ack) = &e.ack else { continue };
        match &mut run {
            Some((a, n)) if Arc::ptr_eq(a, ack) => *n += 1,
            _ => {
                if let Some((a, n)) = run.take() {
                    a.confirm(sink, n, delivery);
                }
                run = Some((ack, 1));
            }
        }
    }
    if let Some((a, n)) = run {
        a.confirm(sink, n, delivery);
    }
}

/// Confirm `events`, which a transform dropped or sent elsewhere on purpose, for every sink
/// they would have reached from one of its outputs (`reach`: topology sink index, paths): those
/// sinks will never see them, and the batch must not wait for them.
pub fn confirm_not_sent<'a>(events: impl IntoIterator<Item = &'a Event> + Clone, reach: &[(usize, usize)]) {
    for &(sink, paths) in reach {
        let mut run: Option<(&Arc<BatchAck>, usize)> = None;
        for e in events.clone() {
            let Some(ack) = &e.ack else { continue };
            if ack.already_delivered(sink) {
                continue;
            }
            match &mut run {
                Some((a, n)) if Arc::ptr_eq(a, ack) => *n += paths,
                _ => {
                    if let Some((a, n)) = run.take() {
                        a.confirm(sink, n, Delivery::Delivered);
                    }
                    run = Some((ack, paths));
                }
            }
        }
        if let Some((a, n)) = run {
            a.confirm(sink, n, Delivery::Delivered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_finishes_when_every_sink_confirmed_every_event() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ack = BatchAck::new(7, 3, &[(0, 1), (2, 2)], 3, &[], Notifier::Tokio(tx));
        let events: Vec<Event> = (0..3).map(|i| Event::with_ack(Bytes::from(format!("{{\"i\":{i}}}")), &ack)).collect();
        confirm_all(&events, 0, Delivery::Delivered);
        assert_eq!(rx.try_recv().unwrap(), Completion { batch: 7, sink: 0, done: false, rejected: false });
        // Sink 2 is reached by two paths: it owes six confirmations.
        confirm_all(&events, 2, Delivery::Delivered);
        assert!(rx.try_recv().is_err());
        confirm_all(&events, 2, Delivery::Rejected);
        assert_eq!(rx.try_recv().unwrap(), Completion { batch: 7, sink: 2, done: true, rejected: true });
    }

    #[test]
    fn events_a_transform_did_not_send_are_confirmed_for_the_sinks_they_would_have_reached() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Sink 0 reached once, sink 1 by two paths.
        let ack = BatchAck::new(3, 2, &[(0, 1), (1, 2)], 2, &[], Notifier::Tokio(tx));
        let events: Vec<Event> = (0..2).map(|_| Event::with_ack(Bytes::from_static(b"{}"), &ack)).collect();
        confirm_all(&events, 0, Delivery::Delivered);
        assert!(!rx.try_recv().unwrap().done);
        // One path to sink 1 delivered them, the other dropped them.
        confirm_all(&events, 1, Delivery::Delivered);
        assert!(rx.try_recv().is_err());
        confirm_not_sent(&events, &[(1, 1)]);
        assert_eq!(rx.try_recv().unwrap(), Completion { batch: 3, sink: 1, done: true, rejected: false });
    }

    #[test]
    fn a_dead_letter_is_the_record_with_why_as_its_last_member() {
        let v: serde_json::Value =
            serde_json::from_slice(&dead_letter(br#" {"a":1} "#, "siem", "refused", "HTTP 400: \"bad\"")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": 1, "dead_letter": {"component": "siem", "cause": "refused", "reason": "HTTP 400: \"bad\""}})
        );
        let v: serde_json::Value = serde_json::from_slice(&dead_letter(b"{}", "x", "decode", "why")).unwrap();
        assert_eq!(v["dead_letter"]["reason"], "why");
        let v: serde_json::Value = serde_json::from_slice(&dead_letter(b"not json", "x", "decode", "why")).unwrap();
        assert_eq!(v["message"], "not json");
    }

    #[test]
    fn skipped_sinks_owe_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ack = BatchAck::new(1, 2, &[(0, 1), (1, 1)], 2, &[0], Notifier::Tokio(tx));
        let e = Event::with_ack(Bytes::from_static(b"{}"), &ack);
        assert!(e.delivered_to(0) && !e.delivered_to(1));
        confirm_all([&e, &e], 1, Delivery::Delivered);
        assert_eq!(rx.try_recv().unwrap(), Completion { batch: 1, sink: 1, done: true, rejected: false });
        let (tx, mut rx) = mpsc::unbounded_channel();
        BatchAck::new(2, 5, &[(0, 1)], 1, &[0], Notifier::Tokio(tx));
        assert!(rx.try_recv().unwrap().done);
    }
}
