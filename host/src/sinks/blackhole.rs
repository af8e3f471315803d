//! The `blackhole` sink: takes every event and drops it, confirmed at once (as Vector's). For
//! measuring a pipeline without a far end's cost, and for outputs to be counted, not kept.
//!
//! ```toml
//! [sinks.nowhere]
//! type = "blackhole"
//! inputs = ["tag"]
//! print_interval = "10s"     # optional: log the totals so far at this interval
//! ```

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{BatchConfig, Batching, SendError, Sent, Service, SinkType};
use crate::component::ComponentConfig;
use crate::config::duration::Dur;
use crate::event::Event;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    pub inputs: Vec<String>,
    /// Where events wait for this sink ([`crate::buffer`]).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// Log the events and bytes taken so far at this interval (no log when unset).
    pub print_interval: Option<Dur>,
    #[serde(default)]
    pub batch: BatchConfig,
}

impl ComponentConfig for BlackholeConfig {
    const TYPE: &'static str = "blackhole";
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn buffer(&self) -> Option<&crate::buffer::BufferConfig> {
        Some(&self.buffer)
    }
    fn check(&self, id: &str) -> Result<(), String> {
        match self.print_interval {
            Some(d) if d.0.is_zero() => Err(format!("sinks.{id}.print_interval: must be more than 0")),
            _ => Ok(()),
        }
    }
}

impl SinkType for BlackholeConfig {
    const BATCH: Batching = Batching { max_events: 10_000, max_bytes: 16 << 20, timeout: Duration::from_millis(10) };
    fn batch(&self) -> &BatchConfig {
        &self.batch
    }
    fn build(&self, id: &str) -> Result<impl Service, String> {
        Ok(Blackhole {
            id: id.to_string(),
            interval: self.print_interval.map(|d| d.0),
            last: Instant::now(),
            events: 0,
            bytes: 0,
        })
    }
}

pub struct Blackhole {
    id: String,
    interval: Option<Duration>,
    last: Instant,
    events: u64,
    bytes: u64,
}

impl Service for Blackhole {
    async fn send(&mut self, events: &[Event]) -> Result<Sent, SendError> {
        self.events += events.len() as u64;
        self.bytes += events.iter().map(|e| e.data.len() as u64).sum::<u64>();
        if let Some(interval) = self.interval.filter(|i| self.last.elapsed() >= *i) {
            self.last = Instant::now();
            tracing::info!(sink = %self.id, events = self.events, bytes = self.bytes, ?interval, "blackhole totals");
        }
        Ok(Sent::Delivered)
    }
}
