//! The tagging thread of an `anomaly` transform: gathers its inbox into batches, tags each
//! batch with the model it holds (swapping in a pushed model between batches), counts, and
//! sends the tagged records on in order with their acknowledgements.

use std::time::Instant;

use bytes::Bytes;

use super::calibration::{Calibrator, ModelFacts};
use super::model::ModelManager;
use super::runtime::TagRuntime;
use super::AnomalyConfig;
use crate::event::{Event, Events};
use crate::fanout::{Closed, DeadLetters, Inbox, Output};
use crate::metrics::{self, ComponentMetrics};
use flowtag_plugin::Verdict;

pub fn spawn(worker: Worker) -> Result<std::thread::JoinHandle<()>, String> {
    let handle = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(format!("anomaly:{}", worker.id))
        .spawn(move || worker.run(handle))
        .map_err(|e| format!("cannot start a thread: {e}"))
}

pub struct Worker {
    id: String,
    cfg: AnomalyConfig,
    inbox: Inbox,
    out: Output,
    /// `ID.dead_letter`, when something reads it: records the model could not score go there.
    dead_letters: Option<DeadLetters>,
    metrics: ComponentMetrics,
    runtime: Box<dyn TagRuntime>,
    manager: ModelManager,
    /// Bytes the tags added per record in the last batch (it sizes the next batch's buffer).
    tag_bytes: usize,
    calibrator: Calibrator,
    /// Scored records since the drift gauge was last computed.
    since_drift: usize,
}

/// What the calibrator needs to know of the model a runtime serves.
fn facts(runtime: &dyn TagRuntime) -> ModelFacts {
    let m = runtime.manifest();
    ModelFacts {
        id: format!("{} {}", runtime.model_id(), m.model_sha256),
        higher_is_anomalous: m.output.higher_is_anomalous,
        quantiles: m.calibration.quantiles.clone(),
        target_fpr: m.training.get("target_fpr").and_then(|v| v.as_f64()),
    }
}

impl Worker {
    /// A worker serving `manager`'s current model; its calibration sample is kept in
    /// `data_dir` (when given). Fails, naming the key, when the runtime cannot calibrate.
    pub fn new(
        id: String,
        cfg: AnomalyConfig,
        inbox: Inbox,
        out: Output,
        dead_letters: Option<DeadLetters>,
        mut manager: ModelManager,
        data_dir: Option<&std::path::Path>,
    ) -> Result<Worker, String> {
        let mut runtime = manager.current();
        let metrics = ComponentMetrics::new(&id, "transform", "anomaly");
        let calibrator = Calibrator::new(cfg.calibration.clone(), facts(runtime.as_ref()), data_dir);
        if let Some(c) = calibrator.calibration() {
            runtime.set_calibration(&c).map_err(|e| format!("transforms.{id}.calibration: {e}"))?;
        }
        metrics::global().calibration_state.with_label_values(&[&id]).set(calibrator.state().gauge());
        Ok(Worker {
            id,
            cfg,
            inbox,
            out,
            dead_letters,
            metrics,
            runtime,
            manager,
            tag_bytes: 256,
            calibrator,
            since_drift: 0,
        })
    }

    /// Feed the last batch's scores to the calibrator; set what it decides; update the gauges.
    fn calibrate(&mut self) {
        if let Some(c) = self.calibrator.observe(self.runtime.results()) {
            if let Err(e) = self.runtime.set_calibration(&c) {
                tracing::warn!(component = %self.id, error = %e, "cannot set the local calibration; the previous one stays");
            } else {
                tracing::info!(component = %self.id, model = %self.runtime.model_id(), "tagging with this node's own calibration");
            }
        }
        self.since_drift += self.runtime.results().len();
        if self.since_drift >= 4096 {
            self.since_drift = 0;
            let m = metrics::global();
            m.calibration_state.with_label_values(&[&self.id]).set(self.calibrator.state().gauge());
            if let Some(psi) = self.calibrator.drift_psi() {
                m.score_drift_psi.with_label_values(&[&self.id]).set(psi);
            }
        }
    }

    /// A new model: a new calibration warm-up (its scores are not comparable to the last one's).
    fn swap(&mut self, mut next: Box<dyn TagRuntime>) {
        tracing::info!(component = %self.id, from = %self.runtime.model_id(), to = %next.model_id(), "model swapped");
        self.calibrator.reset(facts(next.as_ref()));
        if let Some(c) = self.calibrator.calibration() {
            if let Err(e) = next.set_calibration(&c) {
                tracing::warn!(component = %self.id, error = %e, "cannot calibrate the new model; it tags with its bundle's calibration");
            }
        }
        metrics::global().calibration_state.with_label_values(&[&self.id]).set(self.calibrator.state().gauge());
        self.runtime = next;
    }

    /// `name@version` of the model it starts with.
    pub fn model_id(&self) -> &str {
        self.runtime.model_id()
    }

    /// Tag until the inbox closes (or everything downstream is gone), then finish what is left.
    pub fn run(mut self, handle: tokio::runtime::Handle) {
        // Timers (the batch timeout) need the runtime's context on this thread.
        let _runtime = handle.enter();
        let max = self.cfg.batch.max_events;
        let mut pending: Events = Vec::with_capacity(max * 2);
        let mut out_buf: Vec<u8> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        loop {
            // Wait for something, then gather up to `max_events` or until the timeout.
            if pending.is_empty() {
                match self.inbox.blocking_recv() {
                    Some(events) => pending.extend(events),
                    None => break,
                }
            }
            let deadline = Instant::now() + self.cfg.batch.timeout.0;
            let mut closed = false;
            while pending.len() < max {
                match self.inbox.try_recv() {
                    Ok(events) => pending.extend(events),
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match handle.block_on(tokio::time::timeout(left, self.inbox.recv())) {
                            Ok(Some(events)) => pending.extend(events),
                            Ok(None) => {
                                closed = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            // A new model goes live between batches: each record is tagged by exactly one.
            if let Some(next) = self.manager.take_update() {
                self.swap(next);
            }
            let take = pending.len().min(max);
            let batch: Events = pending.drain(..take).collect();
            let tagged = self.tag(&batch, &mut out_buf, &mut ends);
            self.calibrate();
            self.metrics.received(batch.len(), batch.iter().map(|e| e.data.len()).sum());
            let n = tagged.len();
            if self.send(tagged).is_err() {
                tracing::warn!(component = %self.id, "downstream is gone; stopping");
                break;
            }
            self.metrics.sent(n);
            if closed && pending.is_empty() {
                break;
            }
        }
        // Input closed: tag what is left, then the output closes with this thread.
        while !pending.is_empty() {
            let take = pending.len().min(self.cfg.batch.max_events);
            let batch: Events = pending.drain(..take).collect();
            let tagged = self.tag(&batch, &mut out_buf, &mut ends);
            self.calibrate();
            if self.send(tagged).is_err() {
                break;
            }
        }
        self.calibrator.save();
    }

    /// Send the batch just tagged on; with `ID.dead_letter` read, the records the model could
    /// not score go there instead, with the tag's `error` as the reason.
    fn send(&self, tagged: Events) -> Result<(), Closed> {
        let Some(dead_letters) = &self.dead_letters else { return self.out.blocking_send(tagged) };
        let mut bad = Vec::new();
        for (i, (r, e)) in self.runtime.results().iter().zip(&tagged).enumerate() {
            if r.verdict == Verdict::Unscored {
                bad.push((i, tag_error(&e.data, &self.cfg.key)));
            }
        }
        let (keep, dead) = dead_letters.split(tagged, &bad, "unscored");
        dead_letters.port.send(dead)?;
        if keep.is_empty() {
            return Ok(());
        }
        self.out.blocking_send(keep)
    }

    fn tag(&mut self, batch: &[Event], out_buf: &mut Vec<u8>, ends: &mut Vec<usize>) -> Events {
        let records: Vec<&[u8]> = batch.iter().map(|e| &e.data[..]).collect();
        out_buf.clear();
        ends.clear();
        // The buffer goes downstream with the events, so each batch starts a new one: sized
        // from the records and the tag bytes per record of the last batch (plus a quarter), it
        // is allocated once instead of grown and copied a dozen times.
        let input: usize = records.iter().map(|r| r.len()).sum();
        out_buf.reserve(input + records.len() * (self.tag_bytes + self.tag_bytes / 4));
        let started = Instant::now();
        let result = self.runtime.tag(&records, out_buf, ends);
        let m = metrics::global();
        m.inference.with_label_values(&[&self.id]).observe(started.elapsed().as_secs_f64());
        let model = self.runtime.model_id().to_string();
        if let Some(failure) = &result.failure {
            self.metrics.error("batch_failed", 1);
            tracing::warn!(component = %self.id, error = %failure, "a batch could not be scored; its records go on with an error tag");
        }
        if result.unscored > 0 {
            self.metrics.error("unscored", result.unscored);
        }
        m.anomalies.with_label_values(&[&self.id, &model]).inc_by(result.anomalous as u64);
        m.scored.with_label_values(&[&self.id, &model]).inc_by((result.anomalous + result.normal) as u64);
        // Observed locally and flushed once per batch, not with atomics per record.
        let hist = m.score.with_label_values(&[&self.id, &model]).local();
        // Counted per batch: a metric lookup per anomalous record costs more than the count.
        let mut top: Vec<(u16, u64)> = Vec::new();
        for r in self.runtime.results() {
            if r.verdict != Verdict::Unscored {
                hist.observe(r.score);
            }
            if let (Verdict::Anomalous, Some(feature)) = (r.verdict, r.top_reason) {
                match top.iter_mut().find(|(f, _)| *f == feature) {
                    Some((_, n)) => *n += 1,
                    None => top.push((feature, 1)),
                }
            }
        }
        hist.flush();
        let names = self.runtime.feature_names();
        for (feature, n) in top {
            let name = names.get(usize::from(feature)).map_or("unknown", String::as_str);
            m.top_reasons.with_label_values(&[&self.id, &model, name]).inc_by(n);
        }
        self.tag_bytes = out_buf.len().saturating_sub(input).div_ceil(records.len().max(1));
        let data = Bytes::from(std::mem::take(out_buf));
        let mut start = 0;
        let results = self.runtime.results();
        let tagged = batch
            .iter()
            .zip(ends.iter())
            .enumerate()
            .map(|(i, (e, &end))| {
                let tags = results.get(i).and_then(|r| r.tags);
                let ev = Event { data: data.slice(start..end), ack: e.ack.clone(), tags };
                start = end;
                ev
            })
            .collect();
        tagged
    }
}

/// The `error` of the tag under `key` in a tagged record (the last member, where the filter
/// wrote it).
fn tag_error(record: &[u8], key: &str) -> String {
    let mut tag = [None];
    crate::transforms::condition::top_values(record, &[key], &mut tag);
    tag[0]
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(t).ok())
        .and_then(|t| t.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| "the model could not score it".to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::event::{confirm_all, BatchAck, Delivery, Notifier};
    use crate::fanout;
    use crate::shutdown::Shutdown;
    use crate::transforms::anomaly::model::Controls;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin/tests/fixtures").join(name)
    }

    /// The transform in-process: records in through its inbox, tagged records out in order with
    /// their acknowledgements, a malformed record tagged rather than dropped, and the top-reason
    /// counter equal to the reasons in the records it wrote.
    #[test]
    fn tags_in_order_keeps_acknowledgements_and_counts_top_reasons() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let _guard = rt.enter();
        let id = "worker-test";
        let cfg: AnomalyConfig = toml::from_str(&format!(
            "inputs = [\"x\"]\nmodel = {:?}\nreasons = \"anomalous\"\nbatch.max_events = 64\nbatch.timeout = \"5ms\"",
            fixture("iforest")
        ))
        .unwrap();
        let data = tempfile::tempdir().unwrap();
        let shutdown = Shutdown::new(Duration::from_secs(1));
        let manager =
            ModelManager::start(id, &cfg, data.path(), &data.path().join("wasm"), shutdown, &Controls::default())
                .unwrap();
        let (in_target, inbox) = fanout::inbox(id, 4);
        let (out_target, mut out_inbox) = fanout::inbox("worker-test-out", 64);
        let worker =
            Worker::new(id.into(), cfg, inbox, fanout::Output::new(vec![out_target], vec![]), None, manager, None)
                .unwrap();
        let model = worker.model_id().to_string();
        let thread = spawn(worker).unwrap();

        let text = std::fs::read_to_string(fixture("records.jsonl")).unwrap();
        let mut records: Vec<String> = text.lines().take(300).map(str::to_string).collect();
        records.insert(150, r#"{"dur": "not a number at all", "proto": 7}"#.to_string());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let input = fanout::Output::new(vec![in_target], vec![]);
        for (b, chunk) in records.chunks(50).enumerate() {
            let ack = BatchAck::new(b as u64, chunk.len(), &[(0, 1)], 1, &[], Notifier::Std(done_tx.clone()));
            let events = chunk.iter().map(|r| Event::with_ack(Bytes::from(r.clone()), &ack)).collect();
            input.blocking_send(events).unwrap();
        }
        drop(input);
        let mut out: Vec<Event> = Vec::new();
        while let Some(events) = out_inbox.blocking_recv() {
            out.extend(events);
        }
        thread.join().unwrap();

        assert_eq!(out.len(), records.len());
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for (record, event) in records.iter().zip(&out) {
            let tagged: serde_json::Value = serde_json::from_slice(&event.data).unwrap();
            let original: serde_json::Value = serde_json::from_str(record).unwrap_or_default();
            if original.is_object() && original.get("rate").is_some() {
                assert_eq!(tagged["rate"], original["rate"], "records keep their order and fields");
            }
            let tag = &tagged["anomaly"];
            assert!(tag["verdict"].is_string(), "{tagged}");
            if tag["verdict"] == "anomalous" {
                if let Some(first) = tag["reasons"][0]["feature"].as_str() {
                    *reasons.entry(first.to_string()).or_default() += 1;
                }
            }
        }
        let malformed: serde_json::Value = serde_json::from_slice(&out[150].data).unwrap();
        assert_eq!(malformed["anomaly"]["verdict"], "unscored");
        assert!(malformed["anomaly"]["error"].is_string());
        assert!(!reasons.is_empty(), "the fixture has anomalous records with reasons");
        let m = metrics::global();
        for (feature, n) in &reasons {
            assert_eq!(m.top_reasons.with_label_values(&[id, &model, feature]).get(), *n, "{feature}");
        }

        // The acknowledgements went through: confirming the output finishes every batch.
        confirm_all(&out, 0, Delivery::Delivered);
        let finished: Vec<u64> = done_rx.try_iter().filter(|c| c.done).map(|c| c.batch).collect();
        assert_eq!(finished, (0..records.chunks(50).count() as u64).collect::<Vec<_>>());
    }
}
