//! The `throttle` transform: at most `threshold` records per key per `window` go on; the rest are
//! dropped, counted (discarded, reason `throttled`) and confirmed for the sinks downstream.
//! Records that satisfy `exclude` always go on.
//!
//! ```toml
//! [transforms.calm]
//! type = "throttle"
//! inputs = ["tag"]
//! threshold = 1000
//! window = "1s"
//! key_field = "srcip"                         # optional: per source host; default one budget
//! exclude = 'anomaly.verdict == "anomalous"'
//! ```
//!
//! Windows are fixed (they start at multiples of `window` since the transform started). At most
//! `max_keys` keys are counted in a window; records of further keys share one budget.

use std::collections::HashMap;
use std::time::Instant;

use serde::Deserialize;

use super::condition::{Condition, Field, Scratch};
use super::sample::Keyer;
use super::{single, spawn_loop, TransformStart};
use crate::config::duration::Dur;
use crate::metrics::ComponentMetrics;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    pub inputs: Vec<String>,
    /// Records per key per window.
    pub threshold: u64,
    pub window: Dur,
    /// The field whose value is the key; default one budget for all records.
    pub key_field: Option<Field>,
    pub exclude: Option<Condition>,
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_max_keys() -> usize {
    100_000
}

impl crate::component::ComponentConfig for ThrottleConfig {
    const TYPE: &'static str = "throttle";
    fn inputs(&self) -> &[String] {
        &self.inputs
    }
    fn check(&self, id: &str) -> Result<(), String> {
        if self.window.0.is_zero() {
            return Err(format!("transforms.{id}.window: must be longer than zero"));
        }
        if self.max_keys == 0 {
            return Err(format!("transforms.{id}.max_keys: must be at least 1"));
        }
        Ok(())
    }
}

/// Counts per key in the current window.
pub struct Budget {
    threshold: u64,
    max_keys: usize,
    window: std::time::Duration,
    started: Instant,
    current: u64,
    counts: HashMap<u64, u64>,
    /// Records of keys beyond `max_keys`, this window.
    overflow: u64,
}

impl Budget {
    pub fn new(threshold: u64, window: std::time::Duration, max_keys: usize) -> Budget {
        Budget { threshold, max_keys, window, started: Instant::now(), current: 0, counts: HashMap::new(), overflow: 0 }
    }

    /// Whether one more record of `key` may go on at `now`.
    pub fn admit(&mut self, key: u64, now: Instant) -> bool {
        let window = (now.duration_since(self.started).as_nanos() / self.window.as_nanos().max(1)) as u64;
        if window != self.current {
            self.current = window;
            self.counts.clear();
            self.overflow = 0;
        }
        let room = self.counts.len() < self.max_keys;
        let n = match self.counts.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) if room => e.insert(0),
            std::collections::hash_map::Entry::Vacant(_) => &mut self.overflow,
        };
        if *n >= self.threshold {
            return false;
        }
        *n += 1;
        true
    }
}

impl super::TransformType for ThrottleConfig {
    fn start(self, s: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> {
        let port = single(&s.ports);
        let metrics = ComponentMetrics::new(&s.id, "transform", "throttle");
        let counted = metrics.clone();
        let mut keyer = self.key_field.as_ref().map(|f| Keyer::new(Some(f)));
        let mut budget = Budget::new(self.threshold, self.window.0, self.max_keys);
        let mut scratch = Scratch::default();
        spawn_loop(&s.id, s.inbox, s.inline, metrics, move |events| {
            let now = Instant::now();
            let (mut keep, mut drop) = (Vec::with_capacity(events.len()), Vec::new());
            for e in events {
                let excluded = self.exclude.as_ref().is_some_and(|c| c.eval_event(&e, &mut scratch));
                // An excluded record is neither keyed nor counted.
                if excluded || budget.admit(keyer.as_mut().map_or(0, |k| k.hash(&e.data)), now) {
                    keep.push(e);
                } else {
                    drop.push(e);
                }
            }
            port.pass(keep, drop, &counted, "throttled")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_key_gets_its_threshold_per_window() {
        let mut b = Budget::new(2, Duration::from_secs(1), 2);
        let t0 = b.started;
        assert!(b.admit(1, t0) && b.admit(1, t0) && !b.admit(1, t0));
        assert!(b.admit(2, t0) && b.admit(2, t0) && !b.admit(2, t0));
        // A third key beyond max_keys shares the overflow budget with a fourth.
        assert!(b.admit(3, t0) && b.admit(4, t0) && !b.admit(3, t0));
        // The next window starts afresh.
        let t1 = t0 + Duration::from_millis(1500);
        assert!(b.admit(1, t1) && b.admit(1, t1) && !b.admit(1, t1));
    }
}
