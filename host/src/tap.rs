//! Live copies of the events leaving a component, for `GET /tap` and `flowtag tap` (like
//! `vector tap`). The pipeline names every output it wires ([`Registry::set_outputs`]); a tap
//! subscribes to one output by name and gets copies of its events (the bytes only) in a bounded
//! channel, offered without waiting: a tap that falls behind misses events, the pipeline never
//! slows for it. With no tap open, an output pays one atomic load per batch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::event::Event;

/// The process's taps.
pub fn global() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

#[derive(Default)]
pub struct Registry {
    open: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    outputs: BTreeSet<String>,
    next: u64,
    taps: BTreeMap<u64, Subscriber>,
}

struct Subscriber {
    output: String,
    /// Keep 1 event in `every`.
    every: u64,
    seen: u64,
    tx: mpsc::Sender<Bytes>,
}

/// An open tap; closes when dropped.
#[derive(Debug)]
pub struct Tap {
    id: u64,
    pub rx: mpsc::Receiver<Bytes>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        let r = global();
        if r.inner.lock().expect("tap lock").taps.remove(&self.id).is_some() {
            r.open.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Registry {
    /// The outputs of the running pipeline, as inputs name them (`ID`, `ID.NAME`).
    pub fn set_outputs(&self, outputs: impl IntoIterator<Item = String>) {
        self.inner.lock().expect("tap lock").outputs = outputs.into_iter().collect();
    }

    /// Tap `output`, keeping 1 event in `every`, holding up to `capacity` unread; `Err` names
    /// the outputs there are when `output` is not one of them.
    pub fn open(&self, output: &str, every: u64, capacity: usize) -> Result<Tap, String> {
        let mut inner = self.inner.lock().expect("tap lock");
        if !inner.outputs.contains(output) {
            let known: Vec<&str> = inner.outputs.iter().map(String::as_str).collect();
            return Err(format!("no output {output:?}; the pipeline has {}", known.join(", ")));
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = inner.next;
        inner.next += 1;
        inner.taps.insert(id, Subscriber { output: output.to_string(), every: every.max(1), seen: 0, tx });
        self.open.fetch_add(1, Ordering::Release);
        Ok(Tap { id, rx })
    }

    /// Offer copies of `events`, leaving `output`, to its taps.
    pub fn offer(&self, output: &str, events: &[Event]) {
        if self.open.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("tap lock");
        for s in inner.taps.values_mut().filter(|s| s.output == output) {
            for e in events {
                s.seen += 1;
                if (s.seen - 1) % s.every == 0 {
                    // Full: this tap misses the event.
                    let _ = s.tx.try_send(e.data.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_gets_copies_of_its_output_only_sampled_and_bounded() {
        let r = global();
        r.set_outputs(["a".to_string(), "b".to_string()]);
        assert!(r.open("c", 1, 4).unwrap_err().contains("no output \"c\"; the pipeline has a, b"));
        let mut tap = r.open("a", 2, 2).unwrap();
        let events: Vec<Event> = (0..10).map(|i| Event::new(Bytes::from(format!("{{\"i\":{i}}}")))).collect();
        r.offer("b", &events);
        r.offer("a", &events);
        assert_eq!(tap.rx.try_recv().unwrap(), Bytes::from_static(b"{\"i\":0}"));
        assert_eq!(tap.rx.try_recv().unwrap(), Bytes::from_static(b"{\"i\":2}"));
        assert!(tap.rx.try_recv().is_err(), "bounded: the rest were missed");
        drop(tap);
        assert_eq!(r.open.load(Ordering::Acquire), 0);
    }
}
