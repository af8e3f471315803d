//! The `route` transform: named routes, each a [`Condition`]; a record goes to every route it
//! satisfies (`ID.NAME`), and to `ID._unmatched` when it satisfies none.
//!
//! ```toml
//! [transforms.pick]
//! type = "route"
//! inputs = ["tag"]
//! route.anomalous = 'anomaly.verdict == "anomalous"'
//! route.noisy = 'anomaly.score >= 0.9 && proto == "udp"'
//! # outputs: pick.anomalous, pick.noisy, pick._unmatched
//! ```
//!
//! A record is confirmed, for the sinks it would have reached, on every output it does not
//! take, so routing never holds a checkpoint.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::condition::{Condition, Scratch};
use super::{spawn_loop, Port, TransformStart};
use crate::event::Event;
use crate::metrics::ComponentMetrics;

/// The output of records that satisfy no route.
pub const UNMATCHED: &str = "_unmatched";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub inputs: Vec<String>,
    /// Route name → condition.
    pub route: BTreeMap<String, Condition>,
}

impl crate::component::ComponentConfig for RouteConfig {
    const TYPE: &'static str = "route";
    fn inputs(&self) -> &[String] {
        &self.inputs
    }
    fn outputs(&self) -> Vec<String> {
        self.route.keys().cloned().chain([UNMATCHED.to_string()]).collect()
    }
    fn check(&self, id: &str) -> Result<(), String> {
        if self.route.is_empty() {
            return Err(format!("transforms.{id}.route: no routes; add route.NAME = 'condition'"));
        }
        for name in self.route.keys() {
            if name.is_empty()
                || name.starts_with('_')
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "transforms.{id}.route.{name}: route names use letters, digits, `_` and `-`, and do not start with `_`"
                ));
            }
        }
        Ok(())
    }
}

impl super::TransformType for RouteConfig {
    fn start(self, s: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> {
        let routes: Vec<(Condition, Port)> =
            self.route.into_iter().map(|(name, c)| (c, s.ports[&name].clone())).collect();
        let unmatched = s.ports[UNMATCHED].clone();
        let metrics = ComponentMetrics::new(&s.id, "transform", "route");
        let counted = metrics.clone();
        let mut scratch = Scratch::default();
        // Which routes each record of a batch satisfies, reused.
        let mut hits: Vec<bool> = Vec::new();
        spawn_loop(&s.id, s.inbox, s.inline, metrics, move |events| {
            let k = routes.len();
            hits.clear();
            for e in &events {
                for (c, _) in &routes {
                    hits.push(c.eval_event(e, &mut scratch));
                }
            }
            let matched = |i: usize| hits[i * k..(i + 1) * k].iter().any(|&h| h);
            // Confirm, for each output's sinks, the records that do not go there.
            for (r, (_, port)) in routes.iter().enumerate() {
                port.skip(events.iter().enumerate().filter(|(i, _)| !hits[i * k + r]).map(|(_, e)| e));
            }
            unmatched.skip(events.iter().enumerate().filter(|(i, _)| matched(*i)).map(|(_, e)| e));
            // Each record moves to the last output it goes to and is copied for the others: a
            // copy touches the batch's shared reference counts, which the sinks' threads are
            // releasing at the same time.
            let mut outs: Vec<Vec<Event>> = (0..=k).map(|_| Vec::new()).collect();
            for (i, e) in events.into_iter().enumerate() {
                let row = &hits[i * k..(i + 1) * k];
                match row.iter().rposition(|&h| h) {
                    None => outs[k].push(e),
                    Some(last) => {
                        for r in (0..last).filter(|&r| row[r]) {
                            outs[r].push(e.clone());
                        }
                        outs[last].push(e);
                    }
                }
            }
            let mut sent = 0;
            for (out, port) in outs.into_iter().zip(routes.iter().map(|(_, p)| p).chain([&unmatched])) {
                sent += out.len();
                port.send(out)?;
            }
            counted.sent(sent);
            Ok(())
        })
    }
}
