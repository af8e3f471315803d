//! The `file` sink: JSON lines appended to a file.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! inputs = ["tag"]
//! path = "/var/lib/flowtag/out/tagged.jsonl"
//! fsync = false
//! ```
//!
//! Events are confirmed once written and flushed to the operating system (`fsync = true`: once
//! on disk). A file moved away (rotated by logrotate) is noticed and a new one created.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{BatchConfig, Batching, SendError, Sent, Service, SinkType};
use crate::component::ComponentConfig;
use crate::event::Event;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub inputs: Vec<String>,
    /// Where events wait for this sink ([`crate::buffer`]).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    pub path: PathBuf,
    #[serde(default)]
    pub fsync: bool,
    #[serde(default)]
    pub batch: BatchConfig,
}

impl ComponentConfig for FileSinkConfig {
    const TYPE: &'static str = "file";
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn buffer(&self) -> Option<&crate::buffer::BufferConfig> {
        Some(&self.buffer)
    }
}

impl SinkType for FileSinkConfig {
    const BATCH: Batching = Batching { max_events: 1000, max_bytes: 4 << 20, timeout: Duration::from_millis(100) };
    fn batch(&self) -> &BatchConfig {
        &self.batch
    }
    fn build(&self, id: &str) -> Result<impl Service, String> {
        FileSink::open(self).map_err(|e| format!("sinks.{id}.path: {}: {e}", self.path.display()))
    }
}

pub struct FileSink {
    path: PathBuf,
    file: File,
    inode: u64,
    fsync: bool,
    buf: Vec<u8>,
}

impl FileSink {
    pub fn open(cfg: &FileSinkConfig) -> std::io::Result<FileSink> {
        let file = open(&cfg.path)?;
        let inode = file.metadata()?.ino();
        Ok(FileSink { path: cfg.path.clone(), file, inode, fsync: cfg.fsync, buf: Vec::new() })
    }
}

fn open(path: &PathBuf) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl Service for FileSink {
    async fn send(&mut self, events: &[Event]) -> Result<Sent, SendError> {
        self.write(events).await.map(|()| Sent::Delivered)
    }
}

impl FileSink {
    /// Deliver one request; `Ok` once the far end has it.
    async fn write(&mut self, events: &[Event]) -> Result<(), SendError> {
        let err = |e: std::io::Error| SendError::Retry(format!("{}: {e}", self.path.display()));
        // Rotated or deleted: write to a new file at the path.
        let moved = std::fs::metadata(&self.path).map(|m| m.ino() != self.inode).unwrap_or(true);
        if moved {
            self.file = open(&self.path).map_err(err)?;
            self.inode = self.file.metadata().map_err(err)?.ino();
        }
        self.buf.clear();
        for e in events {
            self.buf.extend_from_slice(&e.data);
            self.buf.push(b'\n');
        }
        self.file.write_all(&self.buf).map_err(err)?;
        self.file.flush().map_err(err)?;
        if self.fsync {
            self.file.sync_data().map_err(err)?;
        }
        Ok(())
    }
}
