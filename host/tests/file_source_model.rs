//! The file source's promises, tried by random sequences of what happens to log files in real
//! life, in the spirit of Vector's file-watcher interpreter: lines written, the file rotated by
//! rename, rotated by copytruncate, deleted, new files appearing under the glob, and the source
//! restarted from its checkpoints. The source runs in-process; the test is its only sink and
//! confirms what it receives.
//!
//! After every step the test waits until the source has delivered every line written so far:
//! nothing may be lost. Logrotate's own rule is kept: a file is rotated or deleted only after the
//! reader has seen it (a file created and deleted between two glob scans was never there for
//! any tailer). What may repeat: nothing without a restart, and across a restart with every line
//! confirmed, nothing either; the test counts duplicates and requires none.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use flowtag_host::component::Shared;
use flowtag_host::event::{confirm_all, Delivery};
use flowtag_host::fanout::{self, Inbox, Output};
use flowtag_host::health::Health;
use flowtag_host::shutdown::{Shutdown, SourcesLeft};
use flowtag_host::sources::{SourceConfig, SourceContext, Started};
use flowtag_host::transforms::anomaly::model::Controls;

/// What the test does to the files.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Append lines to `flows.log` (created if absent).
    Write(usize),
    /// `mv flows.log flows.log.N` (the new name is not under the glob).
    RotateRename,
    /// `cp flows.log flows.log.N && truncate -s 0 flows.log`, then lines written at once.
    CopyTruncate(usize),
    /// `rm flows.log`.
    Delete,
    /// A new file under the glob, with lines.
    NewFile(usize),
    /// Stop the source (it writes its checkpoints) and start it again.
    Restart,
}

fn random_op(rng: &mut StdRng) -> Op {
    match rng.gen_range(0..10) {
        0..=3 => Op::Write(rng.gen_range(1..40)),
        4 => Op::RotateRename,
        5 => Op::CopyTruncate(rng.gen_range(1..10)),
        6 => Op::Delete,
        7 | 8 => Op::NewFile(rng.gen_range(1..20)),
        _ => Op::Restart,
    }
}

struct Files {
    dir: PathBuf,
    next_line: u64,
    next_name: u64,
}

impl Files {
    fn append(&mut self, name: &str, lines: usize) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(name)).unwrap();
        let mut text = String::new();
        for _ in 0..lines {
            text.push_str(&format!(
                "{{\"n\":{},\"file\":\"{name}\",\"pad\":\"{}\"}}\n",
                self.next_line,
                "x".repeat(20)
            ));
            self.next_line += 1;
        }
        f.write_all(text.as_bytes()).unwrap();
        f.flush().unwrap();
    }

    fn archive_name(&mut self) -> PathBuf {
        self.next_name += 1;
        self.dir.join(format!("flows.log.{}", self.next_name))
    }
}

/// The source running in-process, and its output.
struct Running {
    shutdown: Shutdown,
    thread: std::thread::JoinHandle<()>,
    inbox: Inbox,
}

fn start(rt: &tokio::runtime::Runtime, dir: &Path, data_dir: &Path) -> Running {
    let cfg: SourceConfig = toml::from_str(&format!(
        "type = \"file\"\ninclude = [\"{}/*.log\"]\nglob_interval = \"30ms\"\npoll_interval = \"5ms\"\nbatch_events = 16",
        dir.display()
    ))
    .unwrap();
    let shutdown = Shutdown::new(Duration::from_secs(5));
    let shared = Shared {
        data_dir: data_dir.to_path_buf(),
        shutdown: shutdown.clone(),
        health: Health::default(),
        sink_ids: vec!["test".into()],
        sources_left: Arc::new(SourcesLeft::new(1)),
        models: Controls::default(),
    };
    let (target, inbox) = fanout::inbox("model-test", 4);
    let ctx =
        SourceContext::new("flows", "file", Output::new(vec![target], vec![]), None, vec![(0, 1)], false, &shared);
    let started = rt.block_on(cfg.start(ctx)).unwrap();
    let Started::Thread(thread) = started else { panic!("the file source runs on a thread") };
    Running { shutdown, thread, inbox }
}

/// Receive (and confirm) until every line written has arrived; `false` on timeout.
fn drain_until(running: &mut Running, seen: &mut BTreeMap<u64, u32>, written: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while (seen.len() as u64) < written && Instant::now() < deadline {
        match running.inbox.try_recv() {
            Ok(events) => {
                for e in &events {
                    let v: serde_json::Value = serde_json::from_slice(&e.data).expect("a line as written");
                    *seen.entry(v["n"].as_u64().expect("n")).or_default() += 1;
                }
                confirm_all(&events, 0, Delivery::Delivered);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    (seen.len() as u64) >= written
}

fn stop(rt: &tokio::runtime::Runtime, mut running: Running, seen: &mut BTreeMap<u64, u32>) {
    running.shutdown.trigger();
    // Keep receiving and confirming while it drains, as a sink would.
    let finished = rt.block_on(async {
        for _ in 0..500 {
            while let Ok(events) = running.inbox.try_recv() {
                for e in &events {
                    let v: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
                    *seen.entry(v["n"].as_u64().unwrap()).or_default() += 1;
                }
                confirm_all(&events, 0, Delivery::Delivered);
            }
            if running.thread.is_finished() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    });
    assert!(finished, "the source did not stop within 5 s");
    running.thread.join().unwrap();
}

fn run_sequence(seed: u64, steps: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Files { dir: dir.clone(), next_line: 0, next_name: 0 };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut running = start(&rt, &dir, &data_dir);
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    let mut history = Vec::new();
    for _ in 0..steps {
        let op = random_op(&mut rng);
        history.push(op);
        let live = dir.join("flows.log");
        match op {
            Op::Write(n) => files.append("flows.log", n),
            Op::RotateRename => {
                if live.exists() {
                    std::fs::rename(&live, files.archive_name()).unwrap();
                }
            }
            Op::CopyTruncate(n) => {
                if live.exists() {
                    std::fs::copy(&live, files.archive_name()).unwrap();
                    std::fs::OpenOptions::new().write(true).truncate(true).open(&live).unwrap();
                    files.append("flows.log", n);
                }
            }
            Op::Delete => {
                if live.exists() {
                    std::fs::remove_file(&live).unwrap();
                }
            }
            Op::NewFile(n) => {
                let name = format!("other-{}.log", files.next_name);
                files.next_name += 1;
                files.append(&name, n);
            }
            Op::Restart => {
                stop(&rt, running, &mut seen);
                running = start(&rt, &dir, &data_dir);
            }
        }
        let complete = drain_until(&mut running, &mut seen, files.next_line, Duration::from_secs(5));
        if !complete {
            let missing: Vec<u64> = (0..files.next_line).filter(|n| !seen.contains_key(n)).take(20).collect();
            panic!("seed {seed}: lines lost after {history:?}: {missing:?} never arrived");
        }
    }
    stop(&rt, running, &mut seen);
    let duplicates: Vec<(u64, u32)> = seen.iter().filter(|(_, &c)| c > 1).map(|(&n, &c)| (n, c)).collect();
    assert!(duplicates.is_empty(), "seed {seed}: lines delivered twice after {history:?}: {duplicates:?}");
    assert_eq!(seen.len() as u64, files.next_line, "seed {seed}: lines that were never written arrived");
}

/// `FLOWTAG_MODEL_SEQUENCES` sets how many random sequences run (default 12; more for a long
/// search).
#[test]
fn random_rotations_truncations_deletions_and_restarts_lose_nothing() {
    let sequences: u64 = std::env::var("FLOWTAG_MODEL_SEQUENCES").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    for seed in 1..=sequences {
        run_sequence(seed, 25);
    }
}
