//! The `filter` transform: records that satisfy a [`Condition`] go on, the rest are dropped
//! (counted as discarded, reason `filtered`, and confirmed for the sinks downstream).
//!
//! ```toml
//! [transforms.only_bad]
//! type = "filter"
//! inputs = ["tag"]
//! condition = 'anomaly.verdict == "anomalous"'
//! ```

use serde::Deserialize;

use super::condition::{Condition, Scratch};
use super::{single, spawn_loop, TransformStart};
use crate::metrics::ComponentMetrics;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub inputs: Vec<String>,
    /// What a record must satisfy to go on (see [`super::condition`]).
    pub condition: Condition,
}

impl crate::component::ComponentConfig for FilterConfig {
    const TYPE: &'static str = "filter";
    fn inputs(&self) -> &[String] {
        &self.inputs
    }
}

impl super::TransformType for FilterConfig {
    fn start(self, s: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> {
        let port = single(&s.ports);
        let metrics = ComponentMetrics::new(&s.id, "transform", "filter");
        let counted = metrics.clone();
        let mut scratch = Scratch::default();
        spawn_loop(&s.id, s.inbox, s.inline, metrics, move |events| {
            let (keep, drop): (Vec<_>, Vec<_>) =
                events.into_iter().partition(|e| self.condition.eval_event(e, &mut scratch));
            port.pass(keep, drop, &counted, "filtered")
        })
    }
}
