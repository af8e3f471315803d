//! How components pass events: every transform, sink and alert reads an [`Inbox`], a bounded
//! channel of batches; a source or transform writes to an [`Output`], which sends each batch to
//! the inbox of every component downstream.
//!
//! A full inbox makes its senders wait, so a slow sink slows everything upstream instead of
//! growing memory. An inbox is full at [`INBOX_BATCHES`] batches or [`INBOX_BYTES`] bytes of
//! records, whichever comes first: the bytes are reserved before a batch is queued and given
//! back when it is taken (a batch larger than the whole budget waits for an empty inbox). Alerts are the exception: they get a [`Tap`], a copy of each batch without
//! acknowledgements, offered without waiting (an alert that falls behind misses records,
//! counted), so an alert never holds a checkpoint or the log path.
//!
//! `flowtag_buffer_events{component}` and `flowtag_buffer_bytes{component}` count what waits in
//! each inbox.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use crate::event::{Event, Events};
use crate::metrics::{self, ComponentMetrics};

/// The output of what a component could not handle: `ID.dead_letter`.
pub const DEAD_LETTER: &str = "dead_letter";

/// Batches an inbox holds before its senders wait.
pub const INBOX_BATCHES: usize = 8;
/// Bytes of records an inbox holds before its senders wait.
pub const INBOX_BYTES: usize = 64 << 20;

/// A component's input.
pub struct Inbox {
    rx: mpsc::Receiver<Events>,
    gauge: prometheus::IntGauge,
    budget: Budget,
}

/// The sending side of one inbox.
#[derive(Clone)]
pub struct Target {
    tx: mpsc::Sender<Events>,
    gauge: prometheus::IntGauge,
    budget: Budget,
    /// A sink's memory buffer with `when_full = "drop_newest"`: what does not fit is dropped.
    drop: Option<DropWhenFull>,
}

/// Drops a batch that does not fit a sink's inbox: confirmed for that sink (it will never see
/// it), counted as discarded (`buffer_full`).
#[derive(Clone)]
pub struct DropWhenFull {
    pub sink: usize,
    pub metrics: ComponentMetrics,
}

impl DropWhenFull {
    fn drop_batch(&self, events: &Events) {
        crate::event::confirm_all(events, self.sink, crate::event::Delivery::Delivered);
        self.metrics.discarded("buffer_full", events.len());
    }
}

impl Target {
    /// Make this target drop what does not fit instead of waiting.
    pub fn dropping_when_full(mut self, drop: DropWhenFull) -> Target {
        self.drop = Some(drop);
        self
    }

    /// A dropping target takes `batch` without waiting: `Ok(true)` sent or dropped, `Ok(false)`
    /// the inbox is gone. `Err(batch)` for a target that waits.
    fn send_or_drop(&self, batch: Events) -> Result<bool, Events> {
        let Some(d) = &self.drop else { return Err(batch) };
        if self.tx.is_closed() {
            return Ok(false);
        }
        let w = self.budget.weight(&batch);
        let batch = if self.budget.try_reserve(w) {
            match self.tx.try_send(batch) {
                Ok(()) => return Ok(true),
                Err(mpsc::error::TrySendError::Full(b)) => {
                    self.budget.give_back(w);
                    b
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.budget.give_back(w);
                    return Ok(false);
                }
            }
        } else {
            batch
        };
        d.drop_batch(&batch);
        self.gauge.sub(batch.len() as i64);
        Ok(true)
    }
}

/// An inbox's bytes: reserved by senders, given back by the receiver.
#[derive(Clone)]
struct Budget {
    free: Arc<Semaphore>,
    max: u32,
    gauge: prometheus::IntGauge,
}

impl Budget {
    /// The bytes a batch reserves (at most the whole budget).
    fn weight(&self, events: &Events) -> u32 {
        events.iter().map(|e| e.data.len()).sum::<usize>().min(self.max as usize) as u32
    }

    /// Wait for `n` bytes; false when the inbox is gone.
    async fn reserve(&self, n: u32) -> bool {
        match self.free.acquire_many(n).await {
            Ok(permit) => {
                permit.forget();
                self.gauge.add(i64::from(n));
                true
            }
            Err(_) => false,
        }
    }

    fn try_reserve(&self, n: u32) -> bool {
        match self.free.try_acquire_many(n) {
            Ok(permit) => {
                permit.forget();
                self.gauge.add(i64::from(n));
                true
            }
            Err(_) => false,
        }
    }

    fn give_back(&self, n: u32) {
        self.free.add_permits(n as usize);
        self.gauge.sub(i64::from(n));
    }
}

/// A new inbox for component `id`, holding up to `batches` batches and [`INBOX_BYTES`] bytes,
/// and its sending side.
pub fn inbox(id: &str, batches: usize) -> (Target, Inbox) {
    inbox_with_bytes(id, batches, INBOX_BYTES)
}

/// [`inbox`] holding up to `bytes` bytes.
pub fn inbox_with_bytes(id: &str, batches: usize, bytes: usize) -> (Target, Inbox) {
    let (tx, rx) = mpsc::channel(batches);
    let m = metrics::global();
    let gauge = m.buffer_events.with_label_values(&[id]);
    let max = bytes.clamp(1, u32::MAX as usize) as u32;
    let budget =
        Budget { free: Arc::new(Semaphore::new(max as usize)), max, gauge: m.buffer_bytes.with_label_values(&[id]) };
    (Target { tx, gauge: gauge.clone(), budget: budget.clone(), drop: None }, Inbox { rx, gauge, budget })
}

/// A new inbox for alert `id` of type `kind`, and the tap that feeds it.
pub fn tap(id: &str, kind: &'static str, batches: usize) -> (Tap, Inbox) {
    let (target, inbox) = inbox(id, batches);
    (Tap { id: id.to_string(), kind, target }, inbox)
}

impl Inbox {
    pub async fn recv(&mut self) -> Option<Events> {
        let events = self.rx.recv().await?;
        Some(self.taken(events))
    }

    pub fn blocking_recv(&mut self) -> Option<Events> {
        let events = self.rx.blocking_recv()?;
        Some(self.taken(events))
    }

    pub fn try_recv(&mut self) -> Result<Events, mpsc::error::TryRecvError> {
        let events = self.rx.try_recv()?;
        Ok(self.taken(events))
    }

    fn taken(&self, events: Events) -> Events {
        self.gauge.sub(events.len() as i64);
        self.budget.give_back(self.budget.weight(&events));
        events
    }
}

impl Drop for Inbox {
    /// Senders waiting for bytes learn that nobody will take them.
    fn drop(&mut self) {
        self.budget.free.close();
    }
}

/// Block this thread on `future` (a sender outside the runtime waiting for an inbox's bytes).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => return v,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

/// An alert's copy of a component's output.
#[derive(Clone)]
pub struct Tap {
    /// The alert's id and type, for the count of what it missed.
    pub id: String,
    pub kind: &'static str,
    target: Target,
}

/// Every target downstream is gone: nothing more can be delivered.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

/// Where a component sends its events: the inboxes of everything downstream.
#[derive(Clone, Default)]
pub struct Output {
    targets: Vec<Target>,
    taps: Vec<Tap>,
    /// The output's name as inputs name it (`ID`, `ID.NAME`), for live taps ([`crate::tap`]).
    name: Option<std::sync::Arc<str>>,
    /// The one transform downstream, run here on the sender's thread instead of its own.
    inline: Option<Inline>,
}

/// What a transform does with each batch, when it runs on the thread of the transform before it.
pub type Step = Box<dyn FnMut(Events) -> Result<(), Closed> + Send>;

/// A transform that runs inline: the output of the transform before it calls its step with each
/// batch, on that transform's thread, instead of queueing the batch for a thread of its own
/// (no hand-off; the records are still in that thread's cache). The topology runs a `route`,
/// `filter`, `sample` or `throttle` this way when it is the only reader of another
/// transform's output and reads nothing else. When every output holding it is dropped (the
/// transform before has finished), the step and its outputs go too, which closes what is
/// downstream as a thread of its own would have.
#[derive(Clone, Default)]
pub struct Inline(std::sync::Arc<std::sync::Mutex<Option<Step>>>);

impl Inline {
    /// The step to run (set once, when the transform starts; before any batch flows).
    pub fn set(&self, step: Step) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(step);
    }

    fn run(&self, events: Events) -> Result<(), Closed> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(step) => step(events),
            None => Err(Closed),
        }
    }
}

impl Output {
    pub fn new(targets: Vec<Target>, taps: Vec<Tap>) -> Output {
        Output { targets, taps, name: None, inline: None }
    }

    /// [`Output::new`] for the output `name`, which `GET /tap` can watch.
    pub fn named(name: &str, targets: Vec<Target>, taps: Vec<Tap>) -> Output {
        Output { targets, taps, name: Some(name.into()), inline: None }
    }

    /// The output `name` whose one reader, a transform, runs inline (see [`Inline`]).
    pub fn inline(name: &str, inline: Inline, taps: Vec<Tap>) -> Output {
        Output { targets: Vec::new(), taps, name: Some(name.into()), inline: Some(inline) }
    }

    /// Whether anything reads this output (a component or an alert).
    pub fn is_connected(&self) -> bool {
        !self.targets.is_empty() || !self.taps.is_empty() || self.inline.is_some()
    }

    /// A transform downstream that runs here: it takes the batch (after the taps' copies).
    fn run_inline(&self, events: Events) -> Result<Events, Result<(), Closed>> {
        match &self.inline {
            Some(inline) => {
                self.tap(&events);
                Err(inline.run(events))
            }
            None => Ok(events),
        }
    }

    /// Send to every target, waiting while one is full. (Only transforms, on threads of their
    /// own, have outputs that run a transform inline; this is for sources on the runtime.)
    pub async fn send(&self, events: Events) -> Result<(), Closed> {
        let events = match self.run_inline(events) {
            Ok(events) => events,
            Err(done) => return done,
        };
        let mut fan = FanOut::start(self, events);
        while let Some((target, batch)) = fan.next() {
            let batch = match target.send_or_drop(batch) {
                Ok(ok) => {
                    fan.sent(ok);
                    continue;
                }
                Err(batch) => batch,
            };
            let w = target.budget.weight(&batch);
            let reserved = target.budget.reserve(w).await;
            let ok = reserved && target.tx.send(batch).await.is_ok();
            if reserved && !ok {
                target.budget.give_back(w);
            }
            fan.sent(ok);
        }
        fan.finish()
    }

    /// [`Output::send`] from a thread outside the runtime.
    pub fn blocking_send(&self, events: Events) -> Result<(), Closed> {
        let events = match self.run_inline(events) {
            Ok(events) => events,
            Err(done) => return done,
        };
        let mut fan = FanOut::start(self, events);
        while let Some((target, batch)) = fan.next() {
            let batch = match target.send_or_drop(batch) {
                Ok(ok) => {
                    fan.sent(ok);
                    continue;
                }
                Err(batch) => batch,
            };
            let w = target.budget.weight(&batch);
            let reserved = block_on(target.budget.reserve(w));
            let ok = reserved && target.tx.blocking_send(batch).is_ok();
            if reserved && !ok {
                target.budget.give_back(w);
            }
            fan.sent(ok);
        }
        fan.finish()
    }

    /// [`Output::blocking_send`], calling `idle` whenever a target is full: a file source
    /// keeps recording confirmations (and moving checkpoints) while it waits for room.
    pub fn blocking_send_with(&self, events: Events, mut idle: impl FnMut()) -> Result<(), Closed> {
        let events = match self.run_inline(events) {
            Ok(events) => events,
            Err(done) => return done,
        };
        let mut fan = FanOut::start(self, events);
        while let Some((target, batch)) = fan.next() {
            let mut batch = match target.send_or_drop(batch) {
                Ok(ok) => {
                    fan.sent(ok);
                    continue;
                }
                Err(batch) => batch,
            };
            let w = target.budget.weight(&batch);
            let mut reserved = true;
            while !target.budget.try_reserve(w) {
                if target.tx.is_closed() {
                    reserved = false;
                    break;
                }
                idle();
            }
            let ok = reserved
                && loop {
                    match target.tx.try_send(batch) {
                        Ok(()) => break true,
                        Err(mpsc::error::TrySendError::Full(back)) => {
                            batch = back;
                            idle();
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break false,
                    }
                };
            if reserved && !ok {
                target.budget.give_back(w);
            }
            fan.sent(ok);
        }
        fan.finish()
    }

    /// Copy `events` to the alerts, without their acknowledgements and without waiting, and
    /// to any live tap of this output.
    fn tap(&self, events: &Events) {
        if let Some(name) = &self.name {
            crate::tap::global().offer(name, events);
        }
        for tap in &self.taps {
            let copy: Events = events.iter().map(|e| Event::new(e.data.clone())).collect();
            let n = copy.len() as i64;
            let w = tap.target.budget.weight(&copy);
            let missed = |lost: usize| {
                metrics::global()
                    .discarded
                    .with_label_values(&[&tap.id, "alert", tap.kind, "alert_behind"])
                    .inc_by(lost as u64)
            };
            if !tap.target.budget.try_reserve(w) {
                missed(copy.len());
                continue;
            }
            match tap.target.tx.try_send(copy) {
                Ok(()) => tap.target.gauge.add(n),
                Err(mpsc::error::TrySendError::Full(lost)) => {
                    tap.target.budget.give_back(w);
                    missed(lost.len());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => tap.target.budget.give_back(w),
            }
        }
    }
}

/// One output of a component: where its events go, and the sinks they reach from there
/// (topology index, paths), which an event not sent there is confirmed for.
#[derive(Clone)]
pub struct Port {
    pub out: Output,
    pub reach: Vec<(usize, usize)>,
}

impl Port {
    /// Send `events` on, or when there are none, nothing. Those a component did not send
    /// here are [`Port::skip`]ped.
    pub fn send(&self, events: Events) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        self.out.blocking_send(events)
    }

    /// Confirm `events` for the sinks this output reaches: they will not come this way.
    pub fn skip<'a>(&self, events: impl IntoIterator<Item = &'a Event> + Clone) {
        crate::event::confirm_not_sent(events, &self.reach);
    }

    /// The end of a batch for a transform that keeps some records and drops the others
    /// (`reason` in the discarded count): the dropped are confirmed and counted, the kept sent.
    pub fn pass(&self, keep: Events, drop: Events, metrics: &ComponentMetrics, reason: &str) -> Result<(), Closed> {
        if !drop.is_empty() {
            self.skip(&drop);
            metrics.discarded(reason, drop.len());
        }
        let n = keep.len();
        self.send(keep)?;
        metrics.sent(n);
        Ok(())
    }
}

/// Where a source or transform sends what it could not handle, when something reads its
/// `ID.dead_letter`: [`DeadLetters::split`] takes those events out of a batch, marks each with
/// why (see [`crate::event::dead_letter`]) and confirms each side for the sinks only the other
/// side reaches, as a route does.
#[derive(Clone)]
pub struct DeadLetters {
    /// `ID.dead_letter`, and the sinks it reaches.
    pub port: Port,
    /// The sinks the component's other outputs reach.
    others: Vec<(usize, usize)>,
    metrics: ComponentMetrics,
}

impl DeadLetters {
    pub fn new(port: Port, others: Vec<(usize, usize)>, metrics: ComponentMetrics) -> DeadLetters {
        DeadLetters { port, others, metrics }
    }

    /// Split `events` into those that go on and the dead letters: the events at the indices of
    /// `bad` (ascending, each with why), rewritten as dead letters of `cause` (the kind of
    /// failure: `decode`, `unscored`, `refused`).
    pub fn split(&self, events: Events, bad: &[(usize, String)], cause: &str) -> (Events, Events) {
        if bad.is_empty() {
            return (events, Vec::new());
        }
        let mut keep = Vec::with_capacity(events.len() - bad.len().min(events.len()));
        let mut dead = Vec::with_capacity(bad.len());
        let mut next = bad.iter().peekable();
        for (i, e) in events.into_iter().enumerate() {
            match next.peek() {
                Some((at, why)) if *at == i => {
                    next.next();
                    let data = crate::event::dead_letter(&e.data, &self.metrics.id, cause, why);
                    dead.push(Event { data: data.into(), ack: e.ack, tags: None });
                }
                _ => keep.push(e),
            }
        }
        self.port.skip(&keep);
        crate::event::confirm_not_sent(&dead, &self.others);
        self.metrics.dead_letters(cause, dead.len());
        (keep, dead)
    }
}

/// One batch on its way to every target: what the three ways of sending share. Each target gets
/// a copy, the last one the batch itself (a copy costs two reference-count updates per event);
/// the inbox gauges count the events before they are sent and take back those a closed target
/// never got.
struct FanOut<'a> {
    targets: std::slice::Iter<'a, Target>,
    events: Option<Events>,
    n: i64,
    current: Option<&'a Target>,
    delivered: bool,
    none: bool,
}

impl<'a> FanOut<'a> {
    fn start(out: &'a Output, events: Events) -> FanOut<'a> {
        out.tap(&events);
        FanOut {
            n: events.len() as i64,
            targets: out.targets.iter(),
            events: Some(events),
            current: None,
            delivered: false,
            none: out.targets.is_empty(),
        }
    }

    /// The next target and its batch.
    fn next(&mut self) -> Option<(&'a Target, Events)> {
        let target = self.targets.next()?;
        let batch = if self.targets.len() == 0 {
            self.events.take().expect("the last target takes the batch")
        } else {
            self.events.as_ref().expect("kept until the last target").clone()
        };
        target.gauge.add(self.n);
        self.current = Some(target);
        Some((target, batch))
    }

    /// Whether the current target took its batch.
    fn sent(&mut self, ok: bool) {
        if ok {
            self.delivered = true;
        } else if let Some(target) = self.current {
            target.gauge.sub(self.n);
        }
    }

    fn finish(self) -> Result<(), Closed> {
        if self.delivered || self.none {
            Ok(())
        } else {
            Err(Closed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(n: usize) -> Events {
        (0..n).map(|i| Event::new(Bytes::from(format!("{{\"i\":{i}}}")))).collect()
    }

    #[tokio::test]
    async fn every_target_gets_every_batch_in_order_and_taps_a_copy() {
        let (a, mut inbox_a) = inbox("fanout-test-a", 4);
        let (b, mut inbox_b) = inbox("fanout-test-b", 4);
        let (tap, mut tap_rx) = tap("fanout-test-alert", "slack", 4);
        let out = Output::new(vec![a, b], vec![tap]);
        out.send(batch(3)).await.unwrap();
        out.send(batch(1)).await.unwrap();
        for inbox in [&mut inbox_a, &mut inbox_b] {
            assert_eq!(inbox.recv().await.unwrap().len(), 3);
            assert_eq!(inbox.recv().await.unwrap().len(), 1);
        }
        let copy = tap_rx.recv().await.unwrap();
        assert_eq!(copy.len(), 3);
        assert!(copy.iter().all(|e| e.ack.is_none()), "taps hold no acknowledgements");
    }

    #[test]
    fn blocking_sends_report_closed_only_when_every_target_is_gone() {
        let (a, inbox_a) = inbox("fanout-test-c", 1);
        let (b, mut inbox_b) = inbox("fanout-test-d", 1);
        let out = Output::new(vec![a, b], vec![]);
        drop(inbox_a);
        assert_eq!(out.blocking_send(batch(2)), Ok(()));
        assert_eq!(inbox_b.blocking_recv().unwrap().len(), 2);
        drop(inbox_b);
        assert_eq!(out.blocking_send(batch(2)), Err(Closed));
        assert_eq!(Output::default().blocking_send(batch(1)), Ok(()), "no target: nothing to refuse");
    }

    #[test]
    fn a_dropping_target_drops_what_does_not_fit_confirms_it_for_its_sink_and_counts_it() {
        use crate::event::{BatchAck, Notifier};
        let rec = |i: usize| Event::new(Bytes::from(format!("{{\"i\":{i:05}}}")));
        let metrics = ComponentMetrics::new("fanout-test-drop", "sink", "file");
        let (a, mut inbox_a) = inbox_with_bytes("fanout-test-drop", 100, 40);
        let a = a.dropping_when_full(DropWhenFull { sink: 0, metrics });
        let out = Output::new(vec![a], vec![]);
        let (tx, rx) = std::sync::mpsc::channel();
        let ack = BatchAck::new(1, 4, &[(0, 1)], 1, &[], Notifier::Std(tx));
        let with_ack = |i| Event { ack: Some(ack.clone()), ..rec(i) };
        out.blocking_send(vec![with_ack(1), with_ack(2)]).unwrap();
        // 22 bytes more would pass 40: dropped at once, not waited for.
        out.blocking_send(vec![with_ack(3), with_ack(4)]).unwrap();
        let discarded =
            metrics::global().discarded.with_label_values(&["fanout-test-drop", "sink", "file", "buffer_full"]);
        assert_eq!(discarded.get(), 2);
        assert!(rx.try_recv().is_err(), "the two in the inbox are not confirmed yet");
        assert_eq!(inbox_a.blocking_recv().unwrap().len(), 2);
        assert!(inbox_a.try_recv().is_err(), "the dropped batch never arrives");
        // Once the sink confirms the two it has, the batch is done: the dropped two were
        // confirmed for it when dropped.
        crate::event::confirm_all(&[with_ack(1), with_ack(2)], 0, crate::event::Delivery::Delivered);
        assert!(rx.try_recv().unwrap().done);
        assert_eq!(metrics::global().buffer_events.with_label_values(&["fanout-test-drop"]).get(), 0);
    }

    #[test]
    fn an_inbox_is_bounded_in_bytes_too() {
        // 40 bytes: room for 3 records of 11 bytes ({"i":0} etc. are 7; these are padded).
        let rec = |i: usize| Event::new(Bytes::from(format!("{{\"i\":{i:05}}}")));
        let (a, mut inbox_a) = inbox_with_bytes("fanout-test-bytes", 100, 40);
        let out = Output::new(vec![a], vec![]);
        out.blocking_send(vec![rec(1), rec(2)]).unwrap();
        let gauge = metrics::global().buffer_bytes.with_label_values(&["fanout-test-bytes"]);
        assert_eq!(gauge.get(), 22);
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = sent.clone();
        let sender = std::thread::spawn(move || {
            out.blocking_send(vec![rec(3), rec(4)]).unwrap(); // 22 more: over 40, waits
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            out.blocking_send((0..10).map(rec).collect()).unwrap(); // 110 > 40: waits for an empty inbox
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!sent.load(std::sync::atomic::Ordering::SeqCst), "the sender waits for room in bytes");
        assert_eq!(inbox_a.blocking_recv().unwrap().len(), 2);
        assert_eq!(inbox_a.blocking_recv().unwrap().len(), 2);
        assert_eq!(inbox_a.blocking_recv().unwrap().len(), 10);
        sender.join().unwrap();
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn blocking_send_with_idles_while_a_target_is_full() {
        let (a, mut inbox_a) = inbox("fanout-test-e", 1);
        let out = Output::new(vec![a], vec![]);
        out.blocking_send(batch(1)).unwrap();
        let mut idles = 0;
        let r = out.blocking_send_with(batch(2), || {
            idles += 1;
            if idles == 3 {
                assert_eq!(inbox_a.try_recv().unwrap().len(), 1);
            }
        });
        assert_eq!(r, Ok(()));
        assert_eq!(idles, 3);
        assert_eq!(inbox_a.try_recv().unwrap().len(), 2);
    }
}
