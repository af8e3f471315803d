//! Transforms: what happens between sources and sinks. flowtag has one, `anomaly`, the tag
//! filter.

pub mod anomaly;
pub mod runtime;

use std::sync::Arc;

use serde::Deserialize;

use crate::topology::{Inbox, Output, Wiring};

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    Anomaly(anomaly::AnomalyConfig),
}

impl TransformConfig {
    /// The error in a `[transforms.ID]` table, with its key (see [`crate::config::explain_as`]);
    /// None for a table that reads, or whose `type` is unknown (serde names that one itself).
    pub fn explain(table: &toml::Table) -> Option<String> {
        match table.get("type")?.as_str()? {
            "anomaly" => crate::config::explain_as::<anomaly::AnomalyConfig>(table),
            _ => None,
        }
    }

    pub fn inputs(&self) -> &[String] {
        match self {
            TransformConfig::Anomaly(c) => &c.inputs,
        }
    }

    pub fn check(&self, id: &str) -> Result<(), String> {
        match self {
            TransformConfig::Anomaly(c) => c.check(id),
        }
    }
}

pub fn spawn(
    id: String,
    cfg: TransformConfig,
    inbox: Inbox,
    out: Output,
    wiring: Arc<Wiring>,
) -> Result<std::thread::JoinHandle<()>, String> {
    match cfg {
        TransformConfig::Anomaly(c) => anomaly::spawn(id, c, inbox, out, wiring),
    }
}
