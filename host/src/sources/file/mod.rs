//! The `file` source: tail files matched by globs, through rotation and truncation, and move
//! each file's checkpoint only when every sink has confirmed what was read.
//!
//! ```toml
//! [sources.flows]
//! type = "file"
//! include = ["/var/log/flows/*.csv"]
//! decoding = "cicflowmeter"
//! read_from = "beginning"   # or "end", for files present at start without a checkpoint
//! ```
//!
//! Files are identified by device and inode (plus a hash of their first bytes): a file renamed
//! by rotation is read to its end under its new name, the new file at the old path is a new
//! file, and a file that shrinks (`copytruncate`) is read again from the start. Reading runs on
//! its own thread and blocks when the pipeline is full, so a slow sink slows reading instead of
//! growing memory. See [`crate::event`] for how acknowledgements reach the checkpoints, and
//! [`progress`] for how a file's checkpoint follows them.
//!
//! The limit of copytruncate: a file truncated and written again is noticed when it is shorter
//! than what was read, or when its first 256 bytes changed. One rewritten with the same first
//! bytes (a CSV header and little else) and already as long as what was read before the next
//! look cannot be told from a file that grew: its new lines before the old length are missed.
//! Rotate by rename where that matters (logrotate's default).

pub mod checkpoint;
mod fingerprint;
mod progress;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use self::checkpoint::{Checkpoints, FileCheckpoint, FileKey, PREFIX_BYTES};
use self::fingerprint::{prefix_hash, prefix_of, same_start};
use self::progress::Progress;
use super::SourceContext;
use crate::config::duration::Dur;
use crate::config::yes;
use crate::decode::{Decoder, Decoding, Line};
use crate::event::{BatchAck, Completion, Event, Events, Notifier};
use crate::fanout::Output;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Glob patterns of files to read.
    pub include: Vec<String>,
    /// Glob patterns of files not to read.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub decoding: Decoding,
    /// Extra names for the fields of JSON access logs (`decoding = "json_access"`).
    #[serde(default)]
    pub access_fields: std::sync::Arc<crate::decode::AccessFields>,
    /// Where to start in files found at start-up that have no checkpoint.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How often the globs are matched again for new files.
    #[serde(default = "default_glob_interval")]
    pub glob_interval: Dur,
    /// How long to wait when every file is at its end.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// A longer line is cut: its first bytes go on as a malformed record, the rest is counted
    /// as discarded.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Lines per batch sent into the pipeline.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Move checkpoints only after the sinks confirmed (off: as soon as lines are read).
    #[serde(default = "yes")]
    pub acknowledgements: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

fn default_glob_interval() -> Dur {
    Dur::secs(1)
}
fn default_poll_interval() -> Dur {
    Dur::millis(100)
}
fn default_max_line_bytes() -> usize {
    1 << 20
}
fn default_batch_events() -> usize {
    1000
}

/// One file being read.
struct Watched {
    key: FileKey,
    path: PathBuf,
    file: File,
    /// Bytes of complete lines consumed so far.
    offset: u64,
    partial: Vec<u8>,
    /// Skipping the rest of an over-long line.
    skipping: bool,
    decoder: Decoder,
    /// The hash and length of the file's first bytes, taken as it grows to [`PREFIX_BYTES`].
    prefix: (u64, u64),
    /// The file's length and modification time when it was last looked at.
    seen: (u64, Option<std::time::SystemTime>),
    /// Still matched by the globs under its path.
    matched: bool,
    at_eof_since: Option<Instant>,
    /// Batches in flight and what the sinks confirmed.
    progress: Progress,
}

/// The reading thread's state.
struct Tailer {
    cfg: FileConfig,
    ctx: SourceContext,
    checkpoints: Checkpoints,
    files: BTreeMap<FileKey, Watched>,
    /// Sinks reachable from this source: (topology index, paths, id).
    paths: Vec<(usize, usize, String)>,
    completions: std::sync::mpsc::Receiver<Completion>,
    notifier: std::sync::mpsc::Sender<Completion>,
    next_batch: u64,
    batch_owner: BTreeMap<u64, FileKey>,
    started: bool,
    /// The read buffer, kept across batches (a fresh one costs a zeroing and page faults).
    buf: Vec<u8>,
}

/// Bytes asked of each `read`; what a batch does not use is read again by the next.
const READ_BYTES: usize = 64 * 1024;

impl crate::component::ComponentConfig for FileConfig {
    const TYPE: &'static str = "file";
    const DEAD_LETTER: bool = true;
    fn check(&self, id: &str) -> Result<(), String> {
        if self.include.is_empty() {
            return Err(format!(
                "sources.{id}.include: empty; give at least one glob such as \"/var/log/flows/*.csv\""
            ));
        }
        for (key, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for p in patterns {
                glob::Pattern::new(p).map_err(|e| format!("sources.{id}.{key}: {p:?} is not a valid glob: {e}"))?;
            }
        }
        if self.batch_events == 0 || self.max_line_bytes < 64 {
            return Err(format!("sources.{id}: batch_events must be at least 1 and max_line_bytes at least 64"));
        }
        Ok(())
    }
}

impl super::SourceType for FileConfig {
    async fn start(self, ctx: SourceContext) -> Result<super::Started, String> {
        let id = ctx.id.clone();
        spawn(id.clone(), self, ctx).map(super::Started::Thread).map_err(|e| format!("sources.{id}: cannot start: {e}"))
    }
}

pub fn spawn(id: String, cfg: FileConfig, ctx: SourceContext) -> std::io::Result<std::thread::JoinHandle<()>> {
    let checkpoints = Checkpoints::load(&ctx.data_dir.join("sources").join(&id))?;
    let (notifier, completions) = std::sync::mpsc::channel();
    let paths = ctx.paths.iter().map(|(i, n)| (*i, *n, ctx.sink_ids[*i].clone())).collect();
    let tailer = Tailer {
        cfg,
        ctx,
        checkpoints,
        files: BTreeMap::new(),
        paths,
        completions,
        notifier,
        next_batch: 0,
        batch_owner: BTreeMap::new(),
        started: false,
        buf: vec![0u8; READ_BYTES],
    };
    std::thread::Builder::new().name(format!("file:{id}")).spawn(move || tailer.run())
}

impl Tailer {
    fn run(mut self) {
        let mut last_glob = Instant::now() - self.cfg.glob_interval.0;
        while !self.ctx.shutdown.is_stopping() {
            if last_glob.elapsed() >= self.cfg.glob_interval.0 {
                self.scan();
                last_glob = Instant::now();
                self.started = true;
            }
            let read_any = self.read_round();
            if read_any.is_err() {
                // The pipeline is gone: stop reading, keep what is confirmed.
                break;
            }
            self.drain_completions(if read_any == Ok(true) { Duration::ZERO } else { self.cfg.poll_interval.0 });
        }
        // Stop reading; wait for what is in flight to be confirmed (the topology drains the
        // sinks), then write the final checkpoints.
        drop(std::mem::replace(&mut self.notifier, std::sync::mpsc::channel().0));
        let deadline = Instant::now() + self.ctx.shutdown.drain_timeout();
        while self.files.values().any(|f| f.progress.in_flight()) && Instant::now() < deadline {
            match self.completions.recv_timeout(Duration::from_millis(50)) {
                Ok(c) => self.complete(c),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.save(true);
    }

    /// Match the globs; open new files, notice vanished ones.
    fn scan(&mut self) {
        let exclude: Vec<glob::Pattern> = self.cfg.exclude.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
        for f in self.files.values_mut() {
            f.matched = false;
        }
        for pattern in &self.cfg.include.clone() {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                if exclude.iter().any(|p| p.matches_path(&path)) || !path.is_file() {
                    continue;
                }
                self.open(&path);
            }
        }
        // Files no longer under a matched path (rotated away) are read to their end, then closed.
        let grace = self.cfg.glob_interval.0 * 2;
        let gone: Vec<FileKey> = self
            .files
            .values()
            .filter(|f| !f.matched && f.at_eof_since.is_some_and(|t| t.elapsed() >= grace) && !f.progress.in_flight())
            .map(|f| f.key)
            .collect();
        for key in gone {
            if let Some(f) = self.files.remove(&key) {
                tracing::debug!(path = %f.path.display(), "finished a rotated or deleted file");
            }
        }
        // Checkpoints of files neither open nor at their recorded path any more (deleted, or
        // rotated away, perhaps while flowtag was down) are forgotten.
        let files = &self.files;
        if self.checkpoints.prune(|key| files.contains_key(key)) > 0 {
            self.save(false);
        }
    }

    fn open(&mut self, path: &Path) {
        let Ok(meta) = std::fs::metadata(path) else { return };
        let key = FileKey { dev: meta.dev(), inode: meta.ino() };
        if let Some(f) = self.files.get_mut(&key) {
            f.matched = true;
            f.path = path.to_path_buf();
            return;
        }
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.ctx.metrics.error("open", 1);
                tracing::warn!(path = %path.display(), error = %e, "cannot open file");
                return;
            }
        };
        let prefix = prefix_of(&file);
        let len = meta.len();
        // Resume from a checkpoint that belongs to this very file; else per `read_from` for
        // files present at start, from the beginning for files that appear later.
        let cp = self
            .checkpoints
            .get(&key)
            .filter(|cp| {
                cp.prefix_len <= prefix.1 && (cp.prefix_len == 0 || prefix_hash(&file, cp.prefix_len) == cp.prefix)
            })
            .cloned();
        let (offset, sink_confirmed) = match &cp {
            Some(cp) if cp.offset <= len => {
                let per_sink = self
                    .paths
                    .iter()
                    .map(|(_, _, id)| cp.sinks.get(id).copied().unwrap_or(cp.offset).max(cp.offset))
                    .collect();
                (cp.offset, per_sink)
            }
            _ if !self.started && self.cfg.read_from == ReadFrom::End => (len, vec![len; self.paths.len()]),
            _ => (0, vec![0; self.paths.len()]),
        };
        let mut decoder = Decoder::new(self.cfg.decoding)
            .with_json_check(self.ctx.check_json)
            .with_access_fields(self.cfg.access_fields.clone());
        if offset > 0 {
            prime_decoder(&mut file, &mut decoder, offset);
        }
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return;
        }
        tracing::info!(path = %path.display(), offset, "reading file");
        self.files.insert(
            key,
            Watched {
                key,
                path: path.to_path_buf(),
                file,
                offset,
                partial: Vec::new(),
                skipping: false,
                decoder,
                prefix,
                seen: (len, meta.modified().ok()),
                matched: true,
                at_eof_since: None,
                progress: Progress::new(offset, sink_confirmed),
            },
        );
    }

    /// Read what is new in every file; `Ok(true)` if anything was read, `Err` if the pipeline
    /// is closed.
    fn read_round(&mut self) -> Result<bool, ()> {
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        let mut any = false;
        for key in keys {
            // Bounded work per file per round, so one busy file cannot starve the others.
            for _ in 0..8 {
                match self.read_batch(key)? {
                    true => any = true,
                    false => break,
                }
            }
        }
        Ok(any)
    }

    /// Read up to one batch from one file and send it.
    fn read_batch(&mut self, key: FileKey) -> Result<bool, ()> {
        let max_line = self.cfg.max_line_bytes;
        let batch_events = self.cfg.batch_events;
        let Some(f) = self.files.get_mut(&key) else { return Ok(false) };
        // Truncated (copytruncate): start over. Told by a file shorter than what was read, or,
        // when it changed since the last look, by a start that is no longer the same (it was
        // truncated and written again to the old length or past it before this look).
        if let Ok(meta) = f.file.metadata() {
            let len = meta.len();
            let seen = (len, meta.modified().ok());
            let changed = seen != f.seen;
            f.seen = seen;
            let rewritten = changed && !same_start(&f.file, f.prefix);
            if len < f.offset + f.partial.len() as u64 || rewritten {
                tracing::warn!(path = %f.path.display(), "file was truncated; reading it again from the start");
                let _ = f.file.seek(SeekFrom::Start(0));
                f.offset = 0;
                f.partial.clear();
                f.decoder = Decoder::new(self.cfg.decoding)
                    .with_json_check(self.ctx.check_json)
                    .with_access_fields(self.cfg.access_fields.clone());
                f.progress.reset();
                f.prefix = prefix_of(&f.file);
                let _ = f.file.seek(SeekFrom::Start(0));
            } else if changed && f.prefix.1 < PREFIX_BYTES as u64 {
                f.prefix = prefix_of(&f.file);
            }
        }
        // The next offset at which some sink's confirmed range ends: a batch must not straddle
        // it, so that sink can skip whole batches.
        let cut = f.progress.next_cut(f.offset);
        let mut out: Vec<u8> = Vec::with_capacity(batch_events * 256);
        let mut ends: Vec<usize> = Vec::with_capacity(batch_events);
        let start = f.offset;
        let buf = &mut self.buf;
        // Records that could not be decoded: their index in `ends`, and why.
        let mut bad: Vec<(usize, String)> = Vec::new();
        let mut cut_lines = 0;
        'read: while ends.len() < batch_events {
            let n = match f.file.read(buf) {
                Ok(0) => {
                    f.at_eof_since.get_or_insert_with(Instant::now);
                    break;
                }
                Ok(n) => n,
                Err(e) => {
                    self.ctx.metrics.error("read", 1);
                    tracing::warn!(path = %f.path.display(), error = %e, "read failed");
                    break;
                }
            };
            f.at_eof_since = None;
            let mut chunk = &buf[..n];
            while let Some(nl) = memchr::memchr(b'\n', chunk) {
                // The line's bytes: what an earlier read left in `partial`, plus this chunk's.
                let consumed = (f.partial.len() + nl + 1) as u64;
                if f.skipping {
                    f.skipping = false;
                } else {
                    let line: &[u8] = if f.partial.is_empty() {
                        &chunk[..nl]
                    } else {
                        f.partial.extend_from_slice(&chunk[..nl]);
                        &f.partial
                    };
                    match f.decoder.decode(line, &mut out) {
                        Line::Record => ends.push(out.len()),
                        Line::Skipped => {}
                        Line::Malformed(why) => {
                            bad.push((ends.len(), why));
                            ends.push(out.len());
                        }
                    }
                }
                f.offset += consumed;
                f.partial.clear();
                chunk = &chunk[nl + 1..];
                let at_cut = cut.is_some_and(|c| f.offset >= c);
                if ends.len() >= batch_events || at_cut {
                    // Put back what was read beyond this batch.
                    let back = chunk.len() as i64;
                    if back > 0 {
                        let _ = f.file.seek(SeekFrom::Current(-back));
                    }
                    break 'read;
                }
            }
            if f.skipping {
                f.offset += chunk.len() as u64;
            } else {
                f.partial.extend_from_slice(chunk);
                if f.partial.len() > max_line {
                    // Too long: its start goes on as a malformed record, the rest is skipped.
                    let head = &f.partial[..max_line];
                    let why = format!("line longer than max_line_bytes ({max_line}); the rest was discarded");
                    crate::decode::malformed(head, &why, &mut out);
                    bad.push((ends.len(), why));
                    ends.push(out.len());
                    cut_lines += 1;
                    f.offset += f.partial.len() as u64;
                    f.partial.clear();
                    f.skipping = true;
                }
            }
        }
        if cut_lines > 0 {
            self.ctx.metrics.discarded("line_too_long", cut_lines);
        }
        if !bad.is_empty() {
            self.ctx.metrics.error("decode", bad.len());
        }
        let end = f.offset;
        if ends.is_empty() {
            if end > start {
                // Only headers or blank lines: nothing to confirm, the checkpoint may move.
                self.advance_unbatched(key, end);
            }
            return Ok(end > start);
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let f = self.files.get_mut(&key).expect("file is open");
        let skip: Vec<usize> = f.progress.confirmed_through(end).map(|slot| self.paths[slot].0).collect();
        let data = Bytes::from(out);
        let events: Vec<Event> = if self.cfg.acknowledgements {
            let paths: Vec<(usize, usize)> = self.paths.iter().map(|(i, n, _)| (*i, *n)).collect();
            f.progress.sent(id, end);
            self.batch_owner.insert(id, key);
            let ack =
                BatchAck::new(id, ends.len(), &paths, self.ctx.n_sinks, &skip, Notifier::Std(self.notifier.clone()));
            slices(&data, &ends).map(|d| Event::with_ack(d, &ack)).collect()
        } else {
            slices(&data, &ends).map(Event::new).collect()
        };
        let n = events.len();
        self.ctx.metrics.received(n, data.len());
        // While the pipeline is full, keep recording confirmations so checkpoints follow the
        // sinks (this bounds what a crash makes us read twice).
        let outlets: Vec<(Output, Events)> =
            self.ctx.outlets(events, &bad).into_iter().map(|(out, events)| (out.clone(), events)).collect();
        for (out, events) in outlets {
            if out.blocking_send_with(events, || self.drain_completions(Duration::from_millis(20))).is_err() {
                return Err(());
            }
        }
        self.ctx.metrics.sent(n);
        if !self.cfg.acknowledgements {
            self.advance_unbatched(key, end);
        }
        Ok(true)
    }

    /// Move a file's checkpoint without acknowledgements (header lines, or acks off).
    fn advance_unbatched(&mut self, key: FileKey, end: u64) {
        if self.files.get_mut(&key).is_some_and(|f| f.progress.advance_unconfirmed(end)) {
            self.save(false);
        }
    }

    fn drain_completions(&mut self, wait: Duration) {
        let mut got = false;
        if !wait.is_zero() {
            if let Ok(c) = self.completions.recv_timeout(wait) {
                self.complete(c);
                got = true;
            }
        }
        while let Ok(c) = self.completions.try_recv() {
            self.complete(c);
            got = true;
        }
        if got {
            self.save(false);
        }
    }

    fn complete(&mut self, c: Completion) {
        let Some(&key) = self.batch_owner.get(&c.batch) else { return };
        let Some(f) = self.files.get_mut(&key) else { return };
        let slot = if c.sink == usize::MAX {
            None
        } else {
            match self.paths.iter().position(|(i, _, _)| *i == c.sink) {
                Some(slot) => Some(slot),
                None => return,
            }
        };
        for done in f.progress.complete(c.batch, slot) {
            self.batch_owner.remove(&done);
        }
    }

    fn save(&mut self, sync: bool) {
        for f in self.files.values() {
            let sinks =
                self.paths.iter().zip(&f.progress.sink_confirmed).map(|((_, _, id), o)| (id.clone(), *o)).collect();
            self.checkpoints.set(
                f.key,
                FileCheckpoint {
                    path: f.path.clone(),
                    prefix: f.prefix.0,
                    prefix_len: f.prefix.1,
                    offset: f.progress.confirmed,
                    sinks,
                },
            );
        }
        if let Err(e) = self.checkpoints.save(sync) {
            self.ctx.metrics.error("checkpoint", 1);
            tracing::error!(error = %e, "cannot write checkpoints");
        }
    }
}

fn slices<'a>(data: &'a Bytes, ends: &'a [usize]) -> impl Iterator<Item = Bytes> + 'a {
    ends.iter().scan(0, move |start, &end| {
        let s = data.slice(*start..end);
        *start = end;
        Some(s)
    })
}

/// Feed the lines before `offset` that describe columns (a CSV header, Zeek `#` directives) to
/// a decoder that resumes mid-file.
fn prime_decoder(file: &mut File, decoder: &mut Decoder, offset: u64) {
    if decoder.kind() == Decoding::Json || file.seek(SeekFrom::Start(0)).is_err() {
        return;
    }
    let mut head = Vec::new();
    let _ = file.take(offset.min(1 << 20)).read_to_end(&mut head);
    let mut scratch = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let directive = line.trim_ascii_start().first() == Some(&b'#');
        if decoder.kind() == Decoding::Zeek && !directive {
            break;
        }
        scratch.clear();
        decoder.decode(line, &mut scratch);
        // CSV: the first line is the header (for raw UNSW, a record that fixes the names).
        if decoder.kind() != Decoding::Zeek {
            break;
        }
    }
}
