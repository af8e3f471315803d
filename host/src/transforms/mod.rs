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
    /// Start on its own thread, reading `inbox` and writing `out`; errors name the key.
    fn start(
        self,
        id: String,
        inbox: Inbox,
        out: Output,
        shared: &Shared,
    ) -> Result<std::thread::JoinHandle<()>, String>;
}

fn start_transform<C: TransformType>(cfg: C, s: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> {
    cfg.start(s.id, s.inbox, s.out, s.shared)
}
