//! The checks of a config as a graph: unique ids, every input names a source or transform,
//! nothing feeds itself, every transform and sink has inputs; and the paths from each source to
//! the sinks, which tell a source how many confirmations an event needs.

use std::collections::{BTreeMap, BTreeSet};

use super::{Config, Kind};

impl Config {
    pub(super) fn check(&self) -> Result<(), String> {
        let mut seen = BTreeMap::new();
        for (section, ids) in [
            ("sources", self.sources.keys().collect::<Vec<_>>()),
            ("transforms", self.transforms.keys().collect()),
            ("sinks", self.sinks.keys().collect()),
            ("alerts", self.alerts.keys().collect()),
        ] {
            for id in ids {
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(format!("{section}.{id}: component ids use letters, digits, `_` and `-` only"));
                }
                if let Some(other) = seen.insert(id.clone(), section) {
                    return Err(format!("{section}.{id}: the id `{id}` is also used in [{other}]; ids must be unique"));
                }
            }
        }
        if self.sources.is_empty() {
            return Err("no [sources]: add at least one, e.g. [sources.flows] with type = \"file\"".into());
        }
        if self.sinks.is_empty() {
            return Err("no [sinks]: add at least one, e.g. [sinks.out] with type = \"console\"".into());
        }
        let all = self.components();
        for (id, kind) in &all {
            let section = match kind {
                Kind::Source => continue,
                Kind::Transform => "transforms",
                Kind::Sink => "sinks",
                Kind::Alert => "alerts",
            };
            let inputs = self.inputs_of(id);
            if inputs.is_empty() {
                return Err(format!("{section}.{id}.inputs: empty; name the sources or transforms that feed it"));
            }
            for input in inputs {
                let (from, port) = match input.split_once('.') {
                    Some((from, port)) => (from, Some(port)),
                    None => (input.as_str(), None),
                };
                match all.get(from) {
                    Some(Kind::Source | Kind::Transform) => {
                        let outputs = self.outputs_of(from);
                        if !outputs.contains(input) {
                            let what = match port {
                                Some(port) => format!("`{from}` has no output `{port}`"),
                                None => format!("`{from}` has only named outputs"),
                            };
                            return Err(format!("{section}.{id}.inputs: {what}; name one of {}", outputs.join(", ")));
                        }
                    }
                    Some(Kind::Sink) => {
                        return Err(format!("{section}.{id}.inputs: `{input}` is a sink; sinks have no output"))
                    }
                    Some(Kind::Alert) => {
                        return Err(format!("{section}.{id}.inputs: `{input}` is an alert; alerts have no output"))
                    }
                    None => {
                        let hint = closest(from, all.keys().copied())
                            .map(|c| format!(" (did you mean `{c}`?)"))
                            .unwrap_or_default();
                        return Err(format!("{section}.{id}.inputs: no source or transform is called `{from}`{hint}"));
                    }
                }
            }
        }
        self.check_acyclic()?;
        for (id, t) in &self.transforms {
            t.check(id)?;
        }
        for (id, s) in &self.sinks {
            s.check(id)?;
        }
        for (id, a) in &self.alerts {
            a.check(id)?;
        }
        for (id, s) in &self.sources {
            s.check(id)?;
        }
        Ok(())
    }

    fn check_acyclic(&self) -> Result<(), String> {
        // Depth-first search over transforms; sources have no inputs and sinks no outputs.
        fn visit<'a>(
            c: &'a Config,
            id: &'a str,
            stack: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Result<(), String> {
            if done.contains(id) {
                return Ok(());
            }
            if let Some(at) = stack.iter().position(|s| *s == id) {
                let cycle: Vec<&str> = stack[at..].iter().copied().chain([id]).collect();
                return Err(format!("transforms.{id}.inputs: a cycle: {}", cycle.join(" -> ")));
            }
            stack.push(id);
            for input in c.inputs_of(id) {
                let from = input.split_once('.').map_or(input.as_str(), |(from, _)| from);
                if c.transforms.contains_key(from) {
                    visit(c, from, stack, done)?;
                }
            }
            stack.pop();
            done.insert(id);
            Ok(())
        }
        let mut done = BTreeSet::new();
        for id in self.transforms.keys() {
            visit(self, id, &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }

    /// For each source, the sinks it reaches and by how many paths.
    pub fn paths_from(&self, source: &str) -> BTreeMap<String, usize> {
        self.reach(source)
    }

    /// The outputs of a source or transform as inputs name them: `ID`, or `ID.NAME` for each
    /// named output.
    pub fn outputs_of(&self, id: &str) -> Vec<String> {
        let named = self.transforms.get(id).map(|t| t.outputs()).unwrap_or_default();
        if named.is_empty() {
            vec![id.to_string()]
        } else {
            named.iter().map(|n| format!("{id}.{n}")).collect()
        }
    }

    /// The sinks an output (`ID` or `ID.NAME`) reaches, and by how many paths: an event leaving
    /// there owes each of them that many confirmations.
    pub fn reach(&self, output: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for sink in self.sinks.keys() {
            let n = self.paths_after(output, sink);
            if n > 0 {
                counts.insert(sink.clone(), n);
            }
        }
        counts
    }

    fn paths_after(&self, output: &str, sink: &str) -> usize {
        let fed = |inputs: &[String]| inputs.iter().filter(|i| *i == output).count();
        let direct = self.sinks.get(sink).map_or(0, |s| fed(s.inputs()));
        let through: usize = self
            .transforms
            .iter()
            .filter(|(_, t)| fed(t.inputs()) > 0)
            .map(|(id, t)| {
                fed(t.inputs()) * self.outputs_of(id).iter().map(|o| self.paths_after(o, sink)).sum::<usize>()
            })
            .sum();
        direct + through
    }
}

/// The id among `candidates` closest to `word` (edit distance at most 2).
pub(super) fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates.map(|c| (distance(word, c), c)).filter(|(d, _)| *d <= 2).min().map(|(_, c)| c)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
