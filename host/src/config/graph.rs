//! The checks of a config as a graph: unique ids, every input names a source or transform,
//! nothing feeds itself, every transform and sink has inputs; and the paths from each source to
//! the sinks, which tell a source how many confirmations an event needs.

use std::collections::{BTreeMap, BTreeSet};

use super::{Config, Kind};
use crate::fanout::DEAD_LETTER;

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
                    Some(kind @ (Kind::Source | Kind::Transform | Kind::Sink)) => {
                        let outputs = self.outputs_of(from);
                        if outputs.is_empty() {
                            return Err(format!(
                                "{section}.{id}.inputs: `{input}` is a sink of type `{}`, which has no output",
                                self.sinks[from].type_name()
                            ));
                        }
                        if !outputs.contains(input) {
                            let what = match port {
                                Some(port) => format!("`{from}` has no output `{port}`"),
                                None if *kind == Kind::Sink => format!("`{from}` is a sink"),
                                None => format!("`{from}` has only named outputs"),
                            };
                            return Err(format!("{section}.{id}.inputs: {what}; name one of {}", outputs.join(", ")));
                        }
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
            if let Some(b) = s.buffer() {
                b.check(id)?;
            }
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
        // Depth-first search over transforms and sinks (whose dead letters may feed others);
        // sources have no inputs.
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
                let section = if c.sinks.contains_key(id) { "sinks" } else { "transforms" };
                return Err(format!("{section}.{id}.inputs: a cycle: {}", cycle.join(" -> ")));
            }
            stack.push(id);
            for input in c.inputs_of(id) {
                let from = input.split_once('.').map_or(input.as_str(), |(from, _)| from);
                if c.transforms.contains_key(from) || c.sinks.contains_key(from) {
                    visit(c, from, stack, done)?;
                }
            }
            stack.pop();
            done.insert(id);
            Ok(())
        }
        let mut done = BTreeSet::new();
        for id in self.transforms.keys().chain(self.sinks.keys()) {
            visit(self, id, &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }

    /// Dead-letter outputs that something reads but that reach no sink: what goes there (in
    /// place of going on) is kept nowhere.
    pub(super) fn dead_ends(&self) -> Vec<String> {
        let read: BTreeSet<&String> = self.components().keys().flat_map(|id| self.inputs_of(id)).collect();
        read.into_iter()
            .filter(|o| o.ends_with(&format!(".{DEAD_LETTER}")) && self.reach(o).is_empty())
            .map(|o| format!("{o} reaches no sink: the records it takes in place of going on are kept nowhere"))
            .collect()
    }

    /// The sinks a source reaches, and by how many paths, over all its outputs (its records
    /// and its dead letters): an event it reads owes each of them that many confirmations.
    pub fn paths_from(&self, source: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for output in self.outputs_of(source) {
            for (sink, n) in self.reach(&output) {
                *counts.entry(sink).or_default() += n;
            }
        }
        counts
    }

    /// The outputs of a component as inputs name them: `ID`, or `ID.NAME` for each named
    /// output, and `ID.dead_letter` for components that have one; a sink has only that.
    pub fn outputs_of(&self, id: &str) -> Vec<String> {
        let mut outputs = Vec::new();
        if !self.sinks.contains_key(id) {
            let named = self.transforms.get(id).map(|t| t.outputs()).unwrap_or_default();
            if named.is_empty() {
                outputs.push(id.to_string());
            } else {
                outputs.extend(named.iter().map(|n| format!("{id}.{n}")));
            }
        }
        let dead_letter = match (self.sources.get(id), self.transforms.get(id), self.sinks.get(id)) {
            (Some(c), _, _) => c.dead_letter(),
            (_, Some(c), _) => c.dead_letter(),
            (_, _, Some(c)) => c.dead_letter(),
            _ => false,
        };
        if dead_letter {
            outputs.push(format!("{id}.{DEAD_LETTER}"));
        }
        outputs
    }

    /// The sinks an output (`ID` or `ID.NAME`) reaches through transforms, and by how many
    /// paths: an event leaving there owes each of them that many confirmations. A sink's dead
    /// letters are not followed: they start afresh, with their own confirmations, which the
    /// refused events wait for (see [`crate::sinks::driver`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"
[sources.flows]
type = "stdin"
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "/m"
[sinks.siem]
type = "http"
inputs = ["tag"]
uri = "https://siem.example/"
[sinks.archive]
type = "file"
inputs = ["tag", "flows.dead_letter"]
path = "/tmp/archive.jsonl"
"#;

    fn config(extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{HEAD}{extra}"))
    }

    #[test]
    fn dead_letters_are_outputs_of_the_components_that_have_them() {
        let c = config("").unwrap();
        assert_eq!(c.outputs_of("flows"), ["flows", "flows.dead_letter"]);
        assert_eq!(c.outputs_of("tag"), ["tag", "tag.dead_letter"]);
        assert_eq!(c.outputs_of("siem"), ["siem.dead_letter"]);
        assert!(c.outputs_of("archive").is_empty(), "a file sink refuses nothing");
        // A source's events owe the sinks of all its outputs: the archive by two paths (tagged,
        // or as a dead letter), the SIEM by one.
        assert_eq!(c.paths_from("flows"), BTreeMap::from([("archive".into(), 2), ("siem".into(), 1)]));
    }

    #[test]
    fn a_sinks_dead_letters_start_afresh_and_are_not_counted_from_the_source() {
        let c =
            config("[sinks.refused]\ntype = \"file\"\ninputs = [\"siem.dead_letter\"]\npath = \"/tmp/r\"\n").unwrap();
        assert_eq!(c.reach("siem.dead_letter"), BTreeMap::from([("refused".into(), 1)]));
        assert!(!c.paths_from("flows").contains_key("refused"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let alert_only = "[alerts.a]\ntype = \"slack\"\ninputs = [\"tag.dead_letter\"]\nurl = \"https://hooks.example/x\"\nwhen = 'score > 0.999'\n";
        let c = config(alert_only).unwrap();
        assert_eq!(
            c.warnings,
            ["tag.dead_letter reaches no sink: the records it takes in place of going on are kept nowhere"]
        );
    }

    #[test]
    fn wiring_mistakes_with_dead_letters_are_named() {
        let sink =
            |inputs: &str| format!("[sinks.more]\ntype = \"http\"\ninputs = {inputs}\nuri = \"https://x.example/\"\n");
        let e = config(&sink(r#"["siem"]"#)).unwrap_err();
        assert!(e.contains("sinks.more.inputs: `siem` is a sink; name one of siem.dead_letter"), "{e}");
        let e = config(&sink(r#"["archive.dead_letter"]"#)).unwrap_err();
        assert!(e.contains("`archive.dead_letter` is a sink of type `file`, which has no output"), "{e}");
        let e = config(&sink(r#"["more.dead_letter"]"#)).unwrap_err();
        assert!(e.contains("sinks.more.inputs: a cycle: more -> more"), "{e}");
        // Through a transform and back.
        let e = config(&format!(
            "{}[transforms.again]\ntype = \"filter\"\ninputs = [\"more.dead_letter\"]\ncondition = 'exists(x)'\n",
            sink(r#"["tag", "again"]"#)
        ))
        .unwrap_err();
        assert!(e.contains("a cycle"), "{e}");
    }
}
