//! Transforms: what happens between sources and sinks. flowtag has one, `anomaly`, the tag
//! filter.
//!
//! A transform type is one file or folder: its config, implementing [`TransformType`], and the
//! thread that runs it; the list below names it once.

pub mod anomaly;

use crate::component::{ComponentConfig, Shared};
use crate::fanout::{Inbox, Output};

crate::component_types! {
    /// `[transforms.ID]`
    pub enum TransformConfig: TransformType {
        Anomaly(anomaly::AnomalyConfig),
    }
    start(start: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> => start_transform;
}

/// What the topology gives a transform to start it.
pub struct TransformStart<'a> {
    pub id: String,
    pub inbox: Inbox,
    pub out: Output,
    pub shared: &'a Shared,
}

/// A transform type: its config, and how it starts.
pub trait TransformType: ComponentConfig {
    /// Start on its own thread, reading its inbox and writing its output; errors name the key.
    fn start(self, start: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String>;
}

fn start_transform<C: TransformType>(cfg: C, s: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> {
    cfg.start(s)
}
