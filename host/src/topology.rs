//! Wiring a config into running components, and stopping them without losing events.
//!
//! Every transform, sink and alert has an inbox ([`crate::fanout`]). A source or transform
//! sends each batch to the inboxes of every component that names it in `inputs`. Components
//! know nothing of this module: each gets its inbox, its output and the [`Shared`] resources.
//!
//! Stopping (SIGTERM, or a reload) drains: sources stop reading and drop their outputs; each
//! transform tags what is in its inbox, flushes and drops its outputs; each sink delivers what
//! it holds; file sources wait for the last confirmations and write their checkpoints. Then the
//! next topology (a reload) starts from those checkpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::buffer::{BufferKind, WhenFull};
use crate::component::Shared;
use crate::config::Config;
use crate::fanout::{self, DeadLetters, Inbox, Inline, Output, Tap, Target, DEAD_LETTER, INBOX_BATCHES};
use crate::health::Health;
use crate::metrics::{self, ComponentMetrics};
use crate::shutdown::{Shutdown, SourcesLeft};
use crate::sinks::SinkStart;
use crate::sources;
use crate::transforms::anomaly::model::Controls;
use crate::transforms::{Port, TransformStart, STEP_TYPES};

/// The running pipeline.
pub struct Running {
    pub shutdown: Shutdown,
    sources_left: Arc<SourcesLeft>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// A pipeline with nothing in it: what stands in while a reload swaps two.
    pub fn idle() -> Running {
        Running {
            shutdown: Shutdown::new(Duration::ZERO),
            sources_left: Arc::new(SourcesLeft::new(0)),
            tasks: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// Resolves when every source has finished on its own (stdin closed).
    pub async fn sources_finished(&self) {
        self.sources_left.all_finished().await
    }

    /// Stop and drain; returns when every component has finished or the drain timeout passed.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let drain = self.shutdown.drain_timeout();
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
            for t in self.threads {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        };
        if tokio::time::timeout(drain + Duration::from_secs(5), all).await.is_err() {
            tracing::error!(
                "components did not finish draining in time; unconfirmed events will be read again on restart"
            );
        }
    }
}

/// Start every component of `config`. `controls` receives the model controls of its tag
/// transforms (the API's rollback).
pub async fn start(config: &Config, health: Health, controls: Controls, drain: Duration) -> Result<Running, String> {
    let shutdown = Shutdown::new(drain);
    let sink_ids: Vec<String> = config.sinks.keys().cloned().collect();
    let sources_left = Arc::new(SourcesLeft::new(config.sources.len()));
    let shared = Shared {
        sources_left: sources_left.clone(),
        data_dir: config.data_dir.clone(),
        shutdown: shutdown.clone(),
        health,
        sink_ids: sink_ids.clone(),
        models: controls,
    };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("data_dir: cannot create {}: {e}", config.data_dir.display()))?;

    // Inboxes first, so outputs can be wired to them.
    let mut inboxes: BTreeMap<String, Inbox> = BTreeMap::new();
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let consumers = config.transforms.keys().chain(config.sinks.keys()).cloned().collect::<Vec<_>>();
    for id in &consumers {
        let buffer = config.sinks.get(id).and_then(|s| s.buffer());
        let bytes = buffer.map_or(fanout::INBOX_BYTES, |b| b.inbox_bytes());
        let (mut target, inbox) = fanout::inbox_with_bytes(id, INBOX_BATCHES, bytes);
        if let (Some(b), Some(sink)) = (buffer, config.sinks.get(id)) {
            if b.kind == BufferKind::Memory && b.when_full == WhenFull::DropNewest {
                let index = sink_ids.iter().position(|s| s == id).expect("a sink");
                let metrics = ComponentMetrics::new(id, "sink", sink.type_name());
                target = target.dropping_when_full(fanout::DropWhenFull { sink: index, metrics });
            }
        }
        inboxes.insert(id.clone(), inbox);
        targets.insert(id.clone(), target);
    }
    let mut taps: Vec<Tap> = Vec::new();
    let mut alert_inboxes = Vec::new();
    for (id, cfg) in &config.alerts {
        let (tap, inbox) = fanout::tap(id, cfg.type_name(), INBOX_BATCHES);
        taps.push(tap);
        alert_inboxes.push((id.clone(), cfg.clone(), inbox));
    }
    let readers = |output: &str| -> Vec<&String> {
        consumers.iter().filter(|c| config.inputs_of(c).iter().any(|i| i == output)).collect()
    };
    // Transforms that run on the thread of the transform before them (see `fanout::Inline`):
    // a step type whose one input is a transform's output that nothing else reads. Sources
    // send from the async runtime, where a step must not run. By the output they read.
    let inline: BTreeMap<String, (String, Inline)> = config
        .transforms
        .iter()
        .filter_map(|(id, cfg)| {
            let [input] = cfg.inputs() else { return None };
            let from = input.split_once('.').map_or(input.as_str(), |(from, _)| from);
            let fits = STEP_TYPES.contains(&cfg.type_name())
                && config.transforms.contains_key(from)
                && readers(input).len() == 1;
            fits.then(|| (input.clone(), (id.clone(), Inline::default())))
        })
        .collect();
    // An output as inputs name it: `ID`, or `ID.NAME` for a named one.
    let output_of = |output: &str| {
        let taps = taps.iter().filter(|t| config.inputs_of(&t.id).iter().any(|i| i == output)).cloned().collect();
        match inline.get(output) {
            Some((_, step)) => Output::inline(output, step.clone(), taps),
            None => Output::named(output, readers(output).into_iter().map(|c| targets[c].clone()).collect(), taps),
        }
    };
    // Sinks by topology index, with their path counts.
    let indexed = |counts: BTreeMap<String, usize>| -> Vec<(usize, usize)> {
        counts.into_iter().map(|(sink, n)| (sink_ids.iter().position(|s| *s == sink).expect("known sink"), n)).collect()
    };
    let reach_of = |output: &str| indexed(config.reach(output));
    // `ID.dead_letter` when something reads it, with the sinks the component's other outputs
    // reach.
    let dead_letters_of = |id: &str, metrics: ComponentMetrics| -> Option<DeadLetters> {
        let output = format!("{id}.{DEAD_LETTER}");
        let outputs = config.outputs_of(id);
        if !outputs.contains(&output) {
            return None;
        }
        let out = output_of(&output);
        if !out.is_connected() {
            return None;
        }
        let others = outputs.iter().filter(|o| **o != output).flat_map(|o| reach_of(o)).collect();
        Some(DeadLetters::new(Port { out, reach: reach_of(&output) }, others, metrics))
    };

    crate::tap::global().set_outputs(
        config
            .sources
            .keys()
            .chain(config.transforms.keys())
            .chain(config.sinks.keys())
            .flat_map(|id| config.outputs_of(id)),
    );
    let mut running = Running { shutdown: shutdown.clone(), tasks: Vec::new(), threads: Vec::new(), sources_left };
    for (index, (id, cfg)) in config.sinks.iter().enumerate() {
        let inbox = inboxes.remove(id).expect("every sink has an inbox");
        let start = SinkStart {
            id: id.clone(),
            index,
            n_sinks: sink_ids.len(),
            inbox,
            dead_letters: dead_letters_of(id, ComponentMetrics::new(id, "sink", cfg.type_name())),
            shutdown: shutdown.clone(),
            health: shared.health.clone(),
            data_dir: config.data_dir.clone(),
        };
        running.tasks.push(cfg.clone().start(start)?);
    }
    for (id, cfg, inbox) in alert_inboxes {
        running.tasks.push(crate::alerts::spawn(id, cfg, inbox, shutdown.clone(), &config.data_dir)?);
    }
    for (id, cfg) in &config.transforms {
        let inbox = inboxes.remove(id).expect("every transform has an inbox");
        let ports = config
            .outputs_of(id)
            .into_iter()
            .map(|output| {
                let name = output.split_once('.').map_or("", |(_, n)| n).to_string();
                (name, Port { out: output_of(&output), reach: reach_of(&output) })
            })
            .collect();
        let start = TransformStart {
            id: id.clone(),
            inbox,
            out: output_of(id),
            dead_letters: dead_letters_of(id, ComponentMetrics::new(id, "transform", cfg.type_name())),
            ports,
            inline: inline.values().find(|(t, _)| t == id).map(|(_, step)| step.clone()),
            shared: &shared,
        };
        running.threads.push(cfg.clone().start(start)?);
    }

    for (id, cfg) in &config.sources {
        let paths = indexed(config.paths_from(id));
        // Records must be checked as JSON unless only tag filters, which validate records
        // themselves, read them.
        let check_json = config.sinks.values().any(|s| s.inputs().iter().any(|i| i == id))
            || config.transforms.values().any(|t| t.type_name() != "anomaly" && t.inputs().iter().any(|i| i == id));
        let dead_letters = dead_letters_of(id, ComponentMetrics::new(id, "source", cfg.type_name()));
        let ctx =
            sources::SourceContext::new(id, cfg.type_name(), output_of(id), dead_letters, paths, check_json, &shared);
        match cfg.clone().start(ctx).await? {
            sources::Started::Task(t) => running.tasks.push(t),
            sources::Started::Thread(t) => running.threads.push(t),
        }
    }
    metrics::global().up.set(1);
    Ok(running)
}
