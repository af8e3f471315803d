//! The loop every sink runs, and what it is made of: batching limits, request timeouts and
//! retry backoff, the [`Service`] a sink type implements, and how a failed request is handled.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use rand::Rng;
use serde::Deserialize;

use crate::config::duration::Dur;
use crate::event::{confirm_all, BatchAck, Delivery, Event, Notifier};
use crate::fanout::{DeadLetters, Inbox};
use crate::health::Health;
use crate::metrics::{self, ComponentMetrics};
use crate::shutdown::Shutdown;

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
    /// The limits to apply: the config's, and `defaults` where it says nothing.
    pub fn with_defaults(&self, defaults: Batching) -> Batching {
        Batching {
            max_events: self.max_events.unwrap_or(defaults.max_events).max(1),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes).max(1),
            timeout: self.timeout.map(|d| d.0).unwrap_or(defaults.timeout),
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

impl From<crate::net::Error> for SendError {
    /// No answer (refused, reset, TLS, timeout): retried.
    fn from(e: crate::net::Error) -> SendError {
        SendError::Retry(e.to_string())
    }
}

/// How an HTTP status is handled: 2xx delivered; 408, 429 and 5xx retried; other 4xx refused.
pub fn classify(answer: &crate::net::client::Answer) -> Result<(), SendError> {
    match answer.status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::Retry(format!("HTTP {}: {}", answer.status, answer.snippet()))),
        s => Err(SendError::Reject(format!("HTTP {s}: {}", answer.snippet()))),
    }
}

/// What a service says of a request the far end accepted.
#[derive(Debug)]
pub enum Sent {
    /// The far end has the events: confirm them now.
    Delivered,
    /// Accepted; the far end confirms later (Splunk's indexer acknowledgements). The request's
    /// events are confirmed when this resolves `Ok`, sent again on `Err(Retry)`, dropped as
    /// refused on `Err(Reject)`.
    Pending(oneshot::Receiver<Result<(), SendError>>),
}

/// What delivers one request of events.
pub trait Service: Send + 'static {
    fn send(&mut self, events: &[Event]) -> impl Future<Output = Result<Sent, SendError>> + Send;

    /// How many accepted requests may await their later confirmation at once; past it the sink
    /// waits before it sends more. Only services that answer [`Sent::Pending`] use it.
    fn max_pending(&self) -> usize {
        1
    }

    /// Whether the far end is there and takes our credentials, asked once at start; `Err`
    /// says why not. A failure is logged and makes `/ready` answer 503 until a request is
    /// delivered; the sink still runs (and retries), as Vector's sinks do.
    fn healthcheck(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
}

/// What a running sink is given.
pub struct SinkContext {
    pub id: String,
    pub index: usize,
    /// How many sinks the pipeline has (the dead letters' acknowledgements count them).
    pub n_sinks: usize,
    /// `ID.dead_letter`, when something reads it: refused events go there, and count as done
    /// here only once every sink there has confirmed them.
    pub dead_letters: Option<DeadLetters>,
    pub inbox: Inbox,
    pub metrics: ComponentMetrics,
    pub shutdown: Shutdown,
    pub batching: Batching,
    pub request: RequestConfig,
    /// `/ready` answers 503 while a request of this sink keeps failing, naming why.
    pub health: Health,
}

/// Failed attempts in a row after which a sink reports itself not ready.
const UNHEALTHY_AFTER: u32 = 3;

/// A request awaiting its outcome, with its events: accepted by the far end and awaiting its
/// confirmation, or refused and awaiting its dead letters' delivery.
type Awaiting = Pin<Box<dyn Future<Output = (Vec<Event>, Outcome)> + Send>>;

/// What became of a request that was waiting.
enum Outcome {
    /// The far end's later confirmation (or refusal, or a timeout to retry).
    Answer(Result<(), SendError>),
    /// Refused, and sent to `ID.dead_letter`: `done` when every sink there confirmed the dead
    /// letters; not done when they were dropped unconfirmed (a sink there gave up at shutdown).
    DeadLettered { why: String, done: bool },
}

/// The loop every sink runs: gather a request, send it until it is accepted or refused,
/// confirm (now, or when the far end confirms later, with up to `max_pending` requests
/// awaiting that), repeat; when the inbox closes, send what is left, wait for what is
/// pending, and finish.
pub async fn drive<S: Service>(mut service: S, mut ctx: SinkContext) {
    ctx.health.ready(&ctx.id);
    let checked = tokio::select! {
        r = service.healthcheck() => r,
        _ = ctx.shutdown.stopped() => Ok(()),
    };
    match checked {
        Ok(()) => {}
        Err(why) => {
            tracing::error!(sink = %ctx.id, error = %why, "health check failed; delivering anyway, with retries");
            ctx.health.pending(&ctx.id, format!("health check failed: {why}"));
        }
    }
    let mut carry: Vec<Event> = Vec::new();
    let mut closed = false;
    let mut pending: FuturesUnordered<Awaiting> = FuturesUnordered::new();
    while !(closed && carry.is_empty()) {
        // Confirmations that arrived meanwhile; and room for one more request.
        while let Some(Some((events, outcome))) = pending.next().now_or_never() {
            if !settle(&mut service, &mut ctx, events, outcome, &mut pending).await {
                return;
            }
        }
        while pending.len() >= service.max_pending().max(1) {
            let Some((events, outcome)) = pending.next().await else { break };
            if !settle(&mut service, &mut ctx, events, outcome, &mut pending).await {
                return;
            }
        }
        let mut batch = std::mem::take(&mut carry);
        let mut bytes: usize = batch.iter().map(|e| e.data.len()).sum();
        if batch.is_empty() {
            let received = tokio::select! {
                events = ctx.inbox.recv() => events,
                Some((events, outcome)) = pending.next(), if !pending.is_empty() => {
                    if !settle(&mut service, &mut ctx, events, outcome, &mut pending).await {
                        return;
                    }
                    continue;
                }
            };
            match received {
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
        if !deliver(&mut service, &mut ctx, send, &mut pending).await {
            return;
        }
    }
    // The inbox is closed: wait for what the far end has yet to confirm.
    while !pending.is_empty() {
        let next = tokio::select! {
            next = pending.next() => next,
            _ = ctx.shutdown.drained() => {
                tracing::error!(sink = %ctx.id, requests = pending.len(), "no confirmation before the drain timeout; those events stay unconfirmed");
                return;
            }
        };
        match next {
            Some((events, outcome)) => {
                if !settle(&mut service, &mut ctx, events, outcome, &mut pending).await {
                    return;
                }
            }
            None => break,
        }
    }
}

/// Send `events` until the far end accepts or refuses them; confirm, or queue the acceptance
/// in `pending`. `false` when the sink gives up (shutting down), leaving them unconfirmed.
async fn deliver<S: Service>(
    service: &mut S,
    ctx: &mut SinkContext,
    events: Vec<Event>,
    pending: &mut FuturesUnordered<Awaiting>,
) -> bool {
    let retries = metrics::global().sink_retries.with_label_values(&[&ctx.id]);
    let mut attempt = 0u32;
    // Past the drain timeout at shutdown, the sink gives up: not confirmed, a file source reads
    // these again after the restart.
    let give_up = |ctx: &SinkContext, events: &[Event]| {
        tracing::error!(sink = %ctx.id, events = events.len(), "giving up at shutdown; the events stay unconfirmed");
        false
    };
    loop {
        let sent = tokio::select! {
            sent = service.send(&events) => sent,
            _ = ctx.shutdown.drained() => return give_up(ctx, &events),
        };
        match sent {
            Ok(Sent::Delivered) => {
                ctx.health.ready(&ctx.id);
                confirmed(ctx, &events, Ok(()));
                return true;
            }
            Ok(Sent::Pending(rx)) => {
                ctx.health.ready(&ctx.id);
                pending.push(Box::pin(async move {
                    let result = rx
                        .await
                        .unwrap_or_else(|_| Err(SendError::Retry("the acknowledgement tracker stopped".into())));
                    (events, Outcome::Answer(result))
                }));
                return true;
            }
            Err(SendError::Reject(why)) => return refused(ctx, events, why, pending).await,
            Err(SendError::Retry(why)) => {
                attempt += 1;
                retries.inc();
                ctx.metrics.error("request", 1);
                if attempt >= UNHEALTHY_AFTER {
                    ctx.health.pending(&ctx.id, format!("cannot deliver ({attempt} attempts): {why}"));
                }
                let wait = ctx.request.backoff(attempt);
                tracing::warn!(sink = %ctx.id, attempt, error = %why, retry_in = ?wait, "request failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.shutdown.drained() => return give_up(ctx, &events),
                }
            }
        }
    }
}

/// A pending request's outcome: confirm its events, or send them again.
async fn settle<S: Service>(
    service: &mut S,
    ctx: &mut SinkContext,
    events: Vec<Event>,
    outcome: Outcome,
    pending: &mut FuturesUnordered<Awaiting>,
) -> bool {
    match outcome {
        Outcome::Answer(Ok(())) => confirmed(ctx, &events, Ok(())),
        Outcome::Answer(Err(SendError::Reject(why))) => return refused(ctx, events, why, pending).await,
        Outcome::DeadLettered { done: true, .. } => confirm_all(&events, ctx.index, Delivery::Rejected),
        Outcome::DeadLettered { why, done: false } => {
            tracing::error!(sink = %ctx.id, events = events.len(), reason = %why, "refused events were not confirmed at the dead letter output; they stay unconfirmed");
        }
        Outcome::Answer(Err(SendError::Retry(why))) => {
            metrics::global().sink_retries.with_label_values(&[&ctx.id]).inc();
            ctx.metrics.error("request", 1);
            tracing::warn!(sink = %ctx.id, events = events.len(), error = %why, "sending the events again");
            return deliver(service, ctx, events, pending).await;
        }
    }
    true
}

/// The far end refused `events` for good: with `ID.dead_letter` read, send them there and wait
/// (in `pending`) for its sinks to confirm them before they count as done here, so a crash
/// before that reads them again; otherwise drop them, counted. `false` when the pipeline is
/// closed.
async fn refused(
    ctx: &mut SinkContext,
    events: Vec<Event>,
    why: String,
    pending: &mut FuturesUnordered<Awaiting>,
) -> bool {
    let Some(dead_letters) = &ctx.dead_letters else {
        confirmed(ctx, &events, Err(why));
        return true;
    };
    tracing::error!(sink = %ctx.id, events = events.len(), reason = %why, "events refused by the far end; sent to its dead_letter output");
    ctx.metrics.error("rejected", 1);
    ctx.metrics.dead_letters("refused", events.len());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ack = BatchAck::new(0, events.len(), &dead_letters.port.reach, ctx.n_sinks, &[], Notifier::Tokio(tx));
    let letters: Vec<Event> = events
        .iter()
        .map(|e| Event::with_ack(crate::event::dead_letter(&e.data, &ctx.id, "refused", &why).into(), &ack))
        .collect();
    drop(ack);
    if dead_letters.port.out.send(letters).await.is_err() {
        tracing::error!(sink = %ctx.id, "the dead_letter output is closed; the refused events stay unconfirmed");
        return false;
    }
    pending.push(Box::pin(async move {
        let done = loop {
            match rx.recv().await {
                Some(c) if c.done => break true,
                Some(_) => {}
                None => break false,
            }
        };
        (events, Outcome::DeadLettered { why, done })
    }));
    true
}

/// The far end took `events` (`Ok`) or refused them for good (`Err`, why).
fn confirmed(ctx: &SinkContext, events: &[Event], outcome: Result<(), String>) {
    match outcome {
        Ok(()) => {
            confirm_all(events, ctx.index, Delivery::Delivered);
            ctx.metrics.sent(events.len());
        }
        Err(why) => {
            tracing::error!(sink = %ctx.id, events = events.len(), reason = %why, "events refused by the far end; dropped");
            ctx.metrics.discarded("rejected", events.len());
            ctx.metrics.error("rejected", 1);
            confirm_all(events, ctx.index, Delivery::Rejected);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;

    use super::*;
    use crate::event::{BatchAck, Completion, Notifier};
    use crate::fanout;

    /// A far end that answers from a script, and records every request it got.
    struct Scripted {
        answers: VecDeque<Result<(), SendError>>,
        requests: Arc<Mutex<Vec<Vec<String>>>>,
    }

    impl Service for Scripted {
        async fn send(&mut self, events: &[Event]) -> Result<Sent, SendError> {
            let texts = events.iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect();
            self.requests.lock().unwrap().push(texts);
            self.answers.pop_front().unwrap_or(Ok(())).map(|()| Sent::Delivered)
        }
    }

    fn context(id: &str, inbox: fanout::Inbox, max_events: usize) -> SinkContext {
        SinkContext {
            id: id.into(),
            index: 0,
            n_sinks: 2,
            dead_letters: None,
            inbox,
            metrics: ComponentMetrics::new(id, "sink", "test"),
            shutdown: Shutdown::new(Duration::from_secs(1)),
            batching: Batching { max_events, max_bytes: 1 << 20, timeout: Duration::from_millis(20) },
            health: Health::default(),
            request: RequestConfig {
                timeout: Dur::secs(1),
                retry_initial_backoff: Dur::millis(1),
                retry_max_backoff: Dur::millis(2),
            },
        }
    }

    /// A batch of `n` events with one acknowledgement, and where its completion is told.
    fn acked(id: u64, n: usize) -> (Vec<Event>, tokio::sync::mpsc::UnboundedReceiver<Completion>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let ack = BatchAck::new(id, n, &[(0, 1)], 1, &[], Notifier::Tokio(tx));
        let events = (0..n).map(|i| Event::with_ack(Bytes::from(format!("{{\"b\":{id},\"i\":{i}}}")), &ack)).collect();
        (events, rx)
    }

    #[tokio::test]
    async fn retries_until_delivered_then_confirms_in_requests_of_at_most_max_events() {
        let (target, inbox) = fanout::inbox("driver-test-retry", 4);
        let out = fanout::Output::new(vec![target], vec![]);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let service = Scripted {
            answers: VecDeque::from([Err(SendError::Retry("503".into())), Err(SendError::Retry("reset".into()))]),
            requests: requests.clone(),
        };
        let sink = tokio::spawn(drive(service, context("driver-test-retry", inbox, 3)));
        let (events, mut done) = acked(1, 5);
        out.send(events).await.unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), done.recv()).await.unwrap().unwrap();
        assert!(c.done && !c.rejected, "{c:?}");
        drop(out);
        sink.await.unwrap();
        let requests = requests.lock().unwrap();
        // Two failures of the first request, then it and the rest: the same three events
        // each time, in order.
        let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 3, 3, 2]);
        assert_eq!(requests[0], requests[2]);
        let delivered: Vec<&String> = requests[2..].iter().flatten().collect();
        let want: Vec<String> = (0..5).map(|i| format!("{{\"b\":1,\"i\":{i}}}")).collect();
        assert_eq!(delivered, want.iter().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_refused_request_is_confirmed_as_rejected_and_not_sent_again() {
        let (target, inbox) = fanout::inbox("driver-test-reject", 4);
        let out = fanout::Output::new(vec![target], vec![]);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let service =
            Scripted { answers: VecDeque::from([Err(SendError::Reject("400".into()))]), requests: requests.clone() };
        let sink = tokio::spawn(drive(service, context("driver-test-reject", inbox, 100)));
        let (events, mut done) = acked(7, 2);
        out.send(events).await.unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), done.recv()).await.unwrap().unwrap();
        assert!(c.done && c.rejected, "{c:?}");
        drop(out);
        sink.await.unwrap();
        assert_eq!(requests.lock().unwrap().len(), 1);
    }

    /// Refused events with `ID.dead_letter` read: they go there marked with why, and their
    /// source batch finishes only when the sink there (index 1) confirmed them.
    #[tokio::test]
    async fn refused_events_count_as_done_only_once_their_dead_letters_are_confirmed() {
        let (target, inbox) = fanout::inbox("driver-test-dead", 4);
        let out = fanout::Output::new(vec![target], vec![]);
        let (dl_target, mut dl_inbox) = fanout::inbox("driver-test-dead-letters", 4);
        let port = fanout::Port { out: fanout::Output::new(vec![dl_target], vec![]), reach: vec![(1, 1)] };
        let mut ctx = context("driver-test-dead", inbox, 100);
        let metrics = ctx.metrics.clone();
        ctx.dead_letters = Some(DeadLetters::new(port, vec![], metrics));
        let service = Scripted {
            answers: VecDeque::from([
                Err(SendError::Reject("HTTP 400: bad event".into())),
                Err(SendError::Reject("HTTP 400: bad event".into())),
            ]),
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        let sink = tokio::spawn(drive(service, ctx));
        let (events, mut done) = acked(3, 2);
        out.send(events).await.unwrap();
        let letters = tokio::time::timeout(Duration::from_secs(5), dl_inbox.recv()).await.unwrap().unwrap();
        assert_eq!(letters.len(), 2);
        let v: serde_json::Value = serde_json::from_slice(&letters[1].data).unwrap();
        assert_eq!(v["i"], 1);
        assert_eq!(
            v["dead_letter"],
            serde_json::json!({"component": "driver-test-dead", "cause": "refused", "reason": "HTTP 400: bad event"})
        );
        // Not done while the dead letters wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(done.try_recv().is_err(), "the batch finished before its dead letters were confirmed");
        confirm_all(&letters, 1, Delivery::Delivered);
        let c = tokio::time::timeout(Duration::from_secs(5), done.recv()).await.unwrap().unwrap();
        assert!(c.done && c.rejected, "{c:?}");
        // Dead letters dropped unconfirmed (the sink there gave up): the events stay open.
        let (events, mut done) = acked(4, 1);
        out.send(events).await.unwrap();
        let letters = tokio::time::timeout(Duration::from_secs(5), dl_inbox.recv()).await.unwrap().unwrap();
        drop(letters);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(done.try_recv().is_err(), "events whose dead letters were lost must stay unconfirmed");
        drop(out);
        sink.await.unwrap();
    }

    #[tokio::test]
    async fn events_a_sink_confirmed_before_a_restart_are_not_sent_again() {
        let (target, inbox) = fanout::inbox("driver-test-skip", 4);
        let out = fanout::Output::new(vec![target], vec![]);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = tokio::spawn(drive(
            Scripted { answers: VecDeque::new(), requests: requests.clone() },
            context("driver-test-skip", inbox, 100),
        ));
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let skipped = BatchAck::new(1, 2, &[(0, 1)], 1, &[0], Notifier::Tokio(tx));
        let mut events: Vec<Event> =
            (0..2).map(|i| Event::with_ack(Bytes::from(format!("{{\"old\":{i}}}")), &skipped)).collect();
        events.push(Event::new(Bytes::from_static(b"{\"new\":1}")));
        out.send(events).await.unwrap();
        drop(out);
        sink.await.unwrap();
        assert_eq!(*requests.lock().unwrap(), vec![vec!["{\"new\":1}".to_string()]]);
    }
}
