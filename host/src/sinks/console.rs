//! The `console` sink: JSON lines on standard output.

use std::io::Write;

use serde::Deserialize;

use super::{BatchConfig, SendError, Service};
use crate::event::Event;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub inputs: Vec<String>,
    #[serde(default)]
    pub batch: BatchConfig,
}

pub struct Console;

impl Console {
    pub fn new(_: &ConsoleConfig) -> Console {
        Console
    }
}

impl Service for Console {
    async fn send(&mut self, events: &[Event]) -> Result<(), SendError> {
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
