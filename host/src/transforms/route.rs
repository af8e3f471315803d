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
            let mut sent = 0;
            for (r, (_, port)) in routes.iter().enumerate() {
                let mine = |i: usize| hits[i * k + r];
                sent += deliver(&events, port, mine)?;
            }
            sent += deliver(&events, &unmatched, |i| !matched(i))?;
            counted.sent(sent);
            Ok(())
        })
    }
}

/// Send the records `take` selects to `port`, confirm the others for its sinks; how many went.
fn deliver(events: &[Event], port: &Port, take: impl Fn(usize) -> bool) -> Result<usize, crate::fanout::Closed> {
    let going: Vec<Event> = events.iter().enumerate().filter(|(i, _)| take(*i)).map(|(_, e)| e.clone()).collect();
    port.skip(events.iter().enumerate().filter(|(i, _)| !take(*i)).map(|(_, e)| e));
    let n = going.len();
    port.send(going)?;
    Ok(n)
}
