//! The `console` sink: JSON lines on standard output.

use std::io::Write;
use std::time::Duration;

use serde::Deserialize;

use super::{BatchConfig, Batching, SendError, Sent, Service, SinkType};
use crate::component::ComponentConfig;
use crate::event::Event;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub inputs: Vec<String>,
    /// Where events wait for this sink ([`crate::buffer`]).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    #[serde(default)]
    pub batch: BatchConfig,
}

impl ComponentConfig for ConsoleConfig {
    const TYPE: &'static str = "console";
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn buffer(&self) -> Option<&crate::buffer::BufferConfig> {
        Some(&self.buffer)
    }
}

impl SinkType for ConsoleConfig {
    const BATCH: Batching = Batching { max_events: 1000, max_bytes: 1 << 20, timeout: Duration::from_millis(100) };
    fn batch(&self) -> &BatchConfig {
        &self.batch
    }
    fn build(&self, _id: &str) -> Result<impl Service, String> {
        Ok(Console)
    }
}

pub struct Console;

impl Service for Console {
    async fn send(&mut self, events: &[Event]) -> Result<Sent, SendError> {
        self.write(events).await.map(|()| Sent::Delivered)
    }
}

impl Console {
    /// Deliver one request; `Ok` once the far end has it.
    async fn write(&mut self, events: &[Event]) -> Result<(), SendError> {
        let mut buf = Vec::with_capacity(events.iter().map(|e| e.data.len() + 1).sum());
        for e in events {
            buf.extend_from_slice(&e.data);
            buf.push(b'\n');
        }
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        lock.write_all(&buf).and_then(|_| lock.flush()).map_err(|e| SendError::Retry(format!("stdout: {e}")))
    }
}
