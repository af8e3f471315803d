//! Stopping: the signal every component watches, and the count of sources still running.
//!
//! A pipeline stops by draining (see [`crate::topology`]): [`Shutdown::trigger`] tells sources to
//! stop reading; everything downstream finishes what it holds within
//! [`Shutdown::drain_timeout`], after which ([`Shutdown::drained`]) a sink that still cannot
//! deliver gives up and leaves its events unconfirmed. Components only watch these; the
//! topology triggers them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Tells components to stop, and how long draining may take.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
    drain: Duration,
    triggered_at: Arc<std::sync::OnceLock<tokio::time::Instant>>,
}

impl Shutdown {
    pub fn new(drain: Duration) -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(tx),
            rx,
            drain,
            triggered_at: Default::default(),
        }
    }

    pub fn trigger(&self) {
        let _ = self.triggered_at.set(tokio::time::Instant::now());
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

    /// Whether the drain timeout has passed since stopping started (for threads that poll).
    pub fn is_drained(&self) -> bool {
        self.triggered_at.get().is_some_and(|at| at.elapsed() >= self.drain)
    }

    /// Resolves once the drain timeout has passed since stopping started: time to give up.
    pub async fn drained(&self) {
        self.stopped().await;
        let since = self.triggered_at.get().copied().unwrap_or_else(tokio::time::Instant::now);
        match since.checked_add(self.drain) {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Counts sources still running: when stdin-like sources have all finished, the pipeline ends.
#[derive(Default)]
pub struct SourcesLeft {
    count: AtomicUsize,
    notify: tokio::sync::Notify,
}

impl SourcesLeft {
    pub fn new(sources: usize) -> SourcesLeft {
        SourcesLeft { count: AtomicUsize::new(sources), notify: Default::default() }
    }

    /// One source has finished.
    pub fn finished(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    /// Resolves when every source has finished.
    pub async fn all_finished(&self) {
        loop {
            let notified = self.notify.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopped_resolves_for_clones_triggered_before_or_after() {
        let s = Shutdown::new(Duration::from_secs(1));
        let early = s.clone();
        let waiter = tokio::spawn(async move { early.stopped().await });
        assert!(!s.is_stopping());
        s.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").unwrap();
        // A clone made after the trigger sees it at once.
        tokio::time::timeout(Duration::from_secs(5), s.clone().stopped()).await.expect("already stopped");
        assert!(s.is_stopping());
    }

    #[tokio::test]
    async fn sources_left_resolves_after_the_last_source() {
        let left = Arc::new(SourcesLeft::new(2));
        left.finished();
        let waiting = tokio::time::timeout(Duration::from_millis(50), left.all_finished()).await;
        assert!(waiting.is_err(), "one source still runs");
        left.finished();
        tokio::time::timeout(Duration::from_secs(5), left.all_finished()).await.expect("all finished");
    }
}
