//! Transforms: what happens between sources and sinks. `anomaly` is the tag filter; `route`,
//! `filter`, `sample` and `throttle` choose what goes where, on [`condition`]s.
//!
//! A transform type is one file or folder: its config, implementing [`TransformType`], and the
//! thread that runs it; the list below names it once.
//!
//! A transform that does not pass an event on (filtered out, sampled out, throttled, or sent
//! down another route) confirms it on behalf of every sink it would have reached from that
//! output ([`crate::event::confirm_not_sent`]), so a source's checkpoint never waits for it.

pub mod anomaly;
pub mod condition;
pub mod filter;
pub mod route;
pub mod sample;
pub mod throttle;

use std::collections::BTreeMap;

use crate::component::{ComponentConfig, Shared};
use crate::event::Events;
pub use crate::fanout::Port;
use crate::fanout::{Closed, Inbox, Output};
use crate::metrics::ComponentMetrics;

crate::component_types! {
    /// `[transforms.ID]`
    pub enum TransformConfig: TransformType {
        Anomaly(anomaly::AnomalyConfig),
        Route(route::RouteConfig),
        Filter(filter::FilterConfig),
        Sample(sample::SampleConfig),
        Throttle(throttle::ThrottleConfig),
    }
    start(start: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> => start_transform;
}

/// What the topology gives a transform to start it.
pub struct TransformStart<'a> {
    pub id: String,
    pub inbox: Inbox,
    /// The output `ID` (empty for a transform with named outputs).
    pub out: Output,
    /// `ID.dead_letter`, for a transform that has one, when something reads it.
    pub dead_letters: Option<crate::fanout::DeadLetters>,
    /// Every output by name (`""` for `ID` itself), with the sinks it reaches.
    pub ports: BTreeMap<String, Port>,
    /// Set when the transform runs on the thread of the one before it (see
    /// [`crate::fanout::Inline`]): only types that run through [`spawn_loop`].
    pub inline: Option<crate::fanout::Inline>,
    pub shared: &'a Shared,
}

/// The transform types that run as a step per batch ([`spawn_loop`]), which the topology may run
/// inline on the thread of the transform before them.
pub const STEP_TYPES: [&str; 4] = ["route", "filter", "sample", "throttle"];

/// Run `step` on each batch of `inbox` on the transform's own thread until the inbox closes or
/// everything downstream is gone; counts what came in. With `inline`, the step runs on the
/// thread of the transform before instead, and the handle returned is of a thread that has
/// nothing to do.
pub fn spawn_loop(
    id: &str,
    mut inbox: Inbox,
    inline: Option<crate::fanout::Inline>,
    metrics: ComponentMetrics,
    mut step: impl FnMut(Events) -> Result<(), Closed> + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, String> {
    if let Some(inline) = inline {
        drop(inbox);
        inline.set(Box::new(move |events: Events| {
            metrics.received(events.len(), events.iter().map(|e| e.data.len()).sum());
            step(events)
        }));
        return std::thread::Builder::new()
            .name(format!("transform-{id}"))
            .spawn(|| {})
            .map_err(|e| format!("cannot start a thread: {e}"));
    }
    std::thread::Builder::new()
        .name(format!("transform-{id}"))
        .spawn(move || {
            while let Some(events) = inbox.blocking_recv() {
                metrics.received(events.len(), events.iter().map(|e| e.data.len()).sum());
                if step(events).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start a thread: {e}"))
}

/// A transform type: its config, and how it starts.
pub trait TransformType: ComponentConfig {
    /// Start on its own thread, reading its inbox and writing its output; errors name the key.
    fn start(self, start: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String>;
}

fn start_transform<C: TransformType>(cfg: C, s: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> {
    cfg.start(s)
}

/// The output of a transform with one output: its port `""`.
fn single(ports: &BTreeMap<String, Port>) -> Port {
    ports.get("").cloned().expect("a transform without named outputs has the output \"\"")
}
