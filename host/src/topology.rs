//! Wiring a config into running components, and stopping them without losing events.
//!
//! Every transform, sink and alert has an inbox: a bounded channel of event batches. A source
//! or transform sends each batch to the inboxes of every component that names it in `inputs`,
//! waiting when one is full, so a slow sink slows everything upstream instead of growing memory.
//!
//! Stopping (SIGTERM, or a reload) drains: sources stop reading and drop their outputs; each
//! transform tags what is in its inbox, flushes and drops its outputs; each sink delivers what
//! it holds; file sources wait for the last confirmations and write their checkpoints. Then the
//! next topology (a reload) starts from those checkpoints.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::event::{Event, Events};
use crate::health::Health;
use crate::metrics;
use crate::sinks;
use crate::sources;
use crate::transforms;

/// Tells components to stop, and how long draining may take.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
    drain: Duration,
}

impl Shutdown {
    pub fn new(drain: Duration) -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown { flag: Arc::new(AtomicBool::new(false)), tx: Arc::new(tx), rx, drain }
    }

    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.tx.send(true);
    }

    pub fn is_stopping(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves when stopping starts.
    pub async fn stopped(&self) {
        let mut rx = self.rx.clone();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn drain_timeout(&self) -> Duration {
        self.drain
    }
}

/// Where a component sends its events: the inboxes of everything downstream.
#[derive(Clone)]
pub struct Output {
    targets: Vec<(mpsc::Sender<Events>, prometheus::IntGauge)>,
    /// Alerts: a copy of each batch without acknowledgements, never waited for.
    taps: Vec<(String, &'static str, mpsc::Sender<Events>)>,
}

impl Output {
    /// Send to every target, waiting while one is full. `Err` when every target is gone.
    pub async fn send(&self, events: Events) -> Result<(), ()> {
        self.tap(&events);
        let n = events.len() as i64;
        let mut delivered = false;
        let last = self.targets.len().saturating_sub(1);
        let mut events = Some(events);
        for (i, (tx, gauge)) in self.targets.iter().enumerate() {
            let batch = take_or_clone(&mut events, i == last);
            gauge.add(n);
            if tx.send(batch).await.is_ok() {
                delivered = true;
            } else {
                gauge.sub(n);
            }
        }
        if delivered || self.targets.is_empty() {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Copy `events` to the alerts, without their acknowledgements (alerts never hold a
    /// checkpoint) and without waiting: an alert that falls behind misses records, counted.
    fn tap(&self, events: &Events) {
        for (id, ty, tx) in &self.taps {
            let copy: Events = events.iter().map(|e| Event::new(e.data.clone())).collect();
            if let Err(mpsc::error::TrySendError::Full(lost)) = tx.try_send(copy) {
                metrics::global()
                    .discarded
                    .with_label_values(&[id, "alert", ty, "alert_behind"])
                    .inc_by(lost.len() as u64);
            }
        }
    }

    /// [`Output::blocking_send`], calling `idle` whenever a target is full: a file source
    /// keeps recording confirmations (and moving checkpoints) while it waits for room.
    pub fn blocking_send_with(&self, events: Events, mut idle: impl FnMut()) -> Result<(), ()> {
        self.tap(&events);
        let n = events.len() as i64;
        let mut delivered = false;
        let last = self.targets.len().saturating_sub(1);
        let mut events = Some(events);
        for (i, (tx, gauge)) in self.targets.iter().enumerate() {
            gauge.add(n);
            let mut batch = take_or_clone(&mut events, i == last);
            loop {
                match tx.try_send(batch) {
                    Ok(()) => {
                        delivered = true;
                        break;
                    }
                    Err(mpsc::error::TrySendError::Full(back)) => {
                        batch = back;
                        idle();
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        gauge.sub(n);
                        break;
                    }
                }
            }
        }
        if delivered || self.targets.is_empty() {
            Ok(())
        } else {
            Err(())
        }
    }

    /// [`Output::send`] from a thread outside the runtime.
    pub fn blocking_send(&self, events: Events) -> Result<(), ()> {
        self.tap(&events);
        let n = events.len() as i64;
        let mut delivered = false;
        let last = self.targets.len().saturating_sub(1);
        let mut events = Some(events);
        for (i, (tx, gauge)) in self.targets.iter().enumerate() {
            gauge.add(n);
            if tx.blocking_send(take_or_clone(&mut events, i == last)).is_ok() {
                delivered = true;
            } else {
                gauge.sub(n);
            }
        }
        if delivered || self.targets.is_empty() {
            Ok(())
        } else {
            Err(())
        }
    }
}

/// The batch for one target: a copy, or for the last target the batch itself (copying costs
/// two reference-count updates per event).
fn take_or_clone(events: &mut Option<Events>, last: bool) -> Events {
    if last {
        events.take().expect("the last target takes the batch")
    } else {
        events.as_ref().expect("kept until the last target").clone()
    }
}

/// A component's input.
pub struct Inbox {
    rx: mpsc::Receiver<Events>,
    gauge: prometheus::IntGauge,
}

impl Inbox {
    pub async fn recv(&mut self) -> Option<Events> {
        let events = self.rx.recv().await?;
        self.gauge.sub(events.len() as i64);
        Some(events)
    }

    pub fn blocking_recv(&mut self) -> Option<Events> {
        let events = self.rx.blocking_recv()?;
        self.gauge.sub(events.len() as i64);
        Some(events)
    }

    pub fn try_recv(&mut self) -> Result<Events, mpsc::error::TryRecvError> {
        let events = self.rx.try_recv()?;
        self.gauge.sub(events.len() as i64);
        Ok(events)
    }
}

/// Batches a component's inbox holds before its senders wait.
const INBOX_BATCHES: usize = 8;

/// The running pipeline.
pub struct Running {
    pub shutdown: Shutdown,
    sources_left: Arc<SourcesLeft>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Resolves when every source has finished on its own (stdin closed).
    pub async fn sources_finished(&self) {
        loop {
            let notified = self.sources_left.notify.notified();
            if self.sources_left.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Stop and drain; returns when every component has finished or the drain timeout passed.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let drain = self.shutdown.drain_timeout();
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
            for t in self.threads {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        };
        if tokio::time::timeout(drain + Duration::from_secs(5), all).await.is_err() {
            tracing::error!(
                "components did not finish draining in time; unconfirmed events will be read again on restart"
            );
        }
    }
}

/// Counts sources still running; stdin-like sources that finish let the pipeline end.
#[derive(Default)]
pub struct SourcesLeft {
    count: std::sync::atomic::AtomicUsize,
    notify: tokio::sync::Notify,
}

impl SourcesLeft {
    pub fn finished(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }
}

/// What components get from the topology.
pub struct Wiring {
    pub sources_left: Arc<SourcesLeft>,
    pub data_dir: PathBuf,
    pub shutdown: Shutdown,
    pub health: Health,
    /// Sink ids by topology index.
    pub sink_ids: Vec<String>,
}

/// Start every component of `config`.
pub async fn start(config: &Config, health: Health, drain: Duration) -> Result<Running, String> {
    let shutdown = Shutdown::new(drain);
    let sink_ids: Vec<String> = config.sinks.keys().cloned().collect();
    let sources_left = Arc::new(SourcesLeft { count: config.sources.len().into(), notify: Default::default() });
    let wiring = Arc::new(Wiring {
        sources_left: sources_left.clone(),
        data_dir: config.data_dir.clone(),
        shutdown: shutdown.clone(),
        health,
        sink_ids: sink_ids.clone(),
    });
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("data_dir: cannot create {}: {e}", config.data_dir.display()))?;

    // Inboxes first, so outputs can be wired to them.
    let mut inboxes: BTreeMap<String, Inbox> = BTreeMap::new();
    let mut senders: BTreeMap<String, (mpsc::Sender<Events>, prometheus::IntGauge)> = BTreeMap::new();
    let consumers = config.transforms.keys().chain(config.sinks.keys()).cloned().collect::<Vec<_>>();
    for id in &consumers {
        let (tx, rx) = mpsc::channel(INBOX_BATCHES);
        let gauge = metrics::global().buffer_events.with_label_values(&[id]);
        inboxes.insert(id.clone(), Inbox { rx, gauge: gauge.clone() });
        senders.insert(id.clone(), (tx, gauge));
    }
    let mut taps: Vec<(String, &'static str, mpsc::Sender<Events>)> = Vec::new();
    let mut alert_inboxes = Vec::new();
    for (id, cfg) in &config.alerts {
        let (tx, rx) = mpsc::channel(INBOX_BATCHES);
        let gauge = metrics::global().buffer_events.with_label_values(&[id]);
        taps.push((id.clone(), cfg.type_name(), tx));
        alert_inboxes.push((id.clone(), cfg.clone(), Inbox { rx, gauge }));
    }
    let output_of = |id: &str| Output {
        targets: consumers
            .iter()
            .filter(|c| config.inputs_of(c).iter().any(|i| i == id))
            .map(|c| senders[c].clone())
            .collect(),
        taps: taps.iter().filter(|(a, _, _)| config.inputs_of(a).iter().any(|i| i == id)).cloned().collect(),
    };

    let mut running = Running { shutdown: shutdown.clone(), tasks: Vec::new(), threads: Vec::new(), sources_left };
    for (index, (id, cfg)) in config.sinks.iter().enumerate() {
        let inbox = inboxes.remove(id).expect("every sink has an inbox");
        running.tasks.push(sinks::spawn(id.clone(), index, cfg.clone(), inbox, wiring.clone()).await?);
    }
    for (id, cfg, inbox) in alert_inboxes {
        running.tasks.push(crate::alerts::spawn(id, cfg, inbox, shutdown.clone(), &config.data_dir)?);
    }
    for (id, cfg) in &config.transforms {
        let inbox = inboxes.remove(id).expect("every transform has an inbox");
        running.threads.push(transforms::spawn(id.clone(), cfg.clone(), inbox, output_of(id), wiring.clone())?);
    }

    for (id, cfg) in &config.sources {
        let paths: Vec<(usize, usize)> = config
            .paths_from(id)
            .into_iter()
            .map(|(sink, n)| (sink_ids.iter().position(|s| *s == sink).expect("known sink"), n))
            .collect();
        // Every other consumer is a tag filter, which validates records itself.
        let check_json = config.sinks.values().any(|s| s.inputs().iter().any(|i| i == id));
        let ctx = sources::SourceContext::new(id, cfg, output_of(id), paths, check_json, &wiring);
        match sources::spawn(id.clone(), cfg.clone(), ctx).await? {
            sources::Started::Task(t) => running.tasks.push(t),
            sources::Started::Thread(t) => running.threads.push(t),
        }
    }
    metrics::global().up.set(1);
    Ok(running)
}
