//! A rule evaluated over the tagged stream: one-second buckets over the rule's window, and
//! episodes (group wait, cooldown, daily budget) that decide when an alert goes out.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::{AlertConfig, Destination};
use super::rule::Rule;
use super::{state, Alert};
use crate::metrics;

/// One second of the stream, as the rules see it.
#[derive(Default)]
struct Bucket {
    second: u64,
    scored: u64,
    anomalous: u64,
    hosts: HashMap<String, u64>,
    reasons: HashMap<String, u64>,
    top_score: f64,
    sample: Option<String>,
}

struct Episode {
    started: Instant,
    starts_at: SystemTime,
    /// Sent its first alert.
    sent: bool,
    last_sent: Option<Instant>,
    last_renewed: Option<Instant>,
    /// Anomalous flows counted into this episode and not yet reported.
    count: u64,
}

pub struct Evaluator {
    id: String,
    cfg: AlertConfig,
    rule: Rule,
    buckets: VecDeque<Bucket>,
    episode: Option<Episode>,
    day: u64,
    sent_today: u32,
    budget_warned: bool,
    queue: tokio::sync::mpsc::Sender<Alert>,
    tag: TagFinder,
    /// Where the state is kept, and what was last written there.
    state: Option<PathBuf>,
    written: Option<Signature>,
    /// A restored episode is not closed before this (the window refilling after a restart).
    warm_until: Option<Instant>,
}

/// What is saved, compared exactly (`Instant`s, not their wall-clock readings, which drift).
type Signature = (u64, u32, Option<(Instant, bool, Option<Instant>, Option<Instant>)>);

/// Finds the text after `"verdict":"` in a record's tag without parsing: the tagger writes the
/// tag member last and compactly (`"<key>":{"score":…,"verdict":"…"`), so it starts at the last
/// `"<key>":{` (record text inside the tag is escaped and cannot contain it). The searchers are
/// built once, not per record.
struct TagFinder {
    /// `"<key>":{`, how the tag member starts.
    tag: memchr::memmem::FinderRev<'static>,
    verdict: memchr::memmem::Finder<'static>,
}

impl TagFinder {
    pub(super) fn new(key: &str) -> TagFinder {
        let mut prefix = Vec::new();
        flowtag_plugin::json::write_string(&mut prefix, key);
        prefix.extend_from_slice(b":{");
        TagFinder {
            tag: memchr::memmem::FinderRev::new(&prefix).into_owned(),
            verdict: memchr::memmem::Finder::new(br#""verdict":""#).into_owned(),
        }
    }

    fn verdict<'r>(&self, record: &'r [u8]) -> Option<&'r [u8]> {
        let tag = &record[self.tag.rfind(record)? + self.tag.needle().len()..];
        Some(&tag[self.verdict.find(tag)? + self.verdict.needle().len()..])
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

impl Evaluator {
    /// An evaluator that keeps its state in `state` (None: in memory only), resuming from what
    /// is there.
    pub(super) fn new(
        id: String,
        cfg: AlertConfig,
        rule: Rule,
        queue: tokio::sync::mpsc::Sender<Alert>,
        state: Option<PathBuf>,
    ) -> Evaluator {
        let saved = state.as_deref().map(state::load).unwrap_or_default();
        // An episode of another rule (the config changed) is not this one's; the budget is.
        let episode = saved.episode.filter(|_| saved.when == cfg.when).map(|e| Episode {
            started: state::instant(e.started),
            starts_at: UNIX_EPOCH + Duration::from_secs_f64(e.started.max(0.0)),
            sent: e.sent,
            last_sent: e.last_sent.map(state::instant),
            last_renewed: e.last_renewed.map(state::instant),
            count: 0,
        });
        if let Some(e) = &episode {
            tracing::info!(alert = %id, sent = e.sent, sent_today = saved.sent_today, "alert episode resumed from the saved state");
        }
        let warm_until = episode.as_ref().map(|_| Instant::now() + rule.window());
        let mut ev = Evaluator {
            tag: TagFinder::new(&cfg.key),
            id,
            cfg,
            rule,
            buckets: VecDeque::new(),
            episode,
            day: saved.day,
            sent_today: saved.sent_today,
            budget_warned: false,
            queue,
            state,
            written: None,
            warm_until,
        };
        ev.written = Some(ev.signature());
        ev
    }

    fn signature(&self) -> Signature {
        let e = self.episode.as_ref().map(|e| (e.started, e.sent, e.last_sent, e.last_renewed));
        (self.day, self.sent_today, e)
    }

    /// Write the state when it changed.
    fn persist(&mut self) {
        let Some(path) = &self.state else { return };
        let signature = self.signature();
        if self.written == Some(signature) {
            return;
        }
        let saved = state::Saved {
            when: self.cfg.when.clone(),
            day: self.day,
            sent_today: self.sent_today,
            episode: self.episode.as_ref().map(|e| state::SavedEpisode {
                started: state::unix(e.starts_at),
                sent: e.sent,
                last_sent: e.last_sent.map(|i| state::unix(state::wall(i))),
                last_renewed: e.last_renewed.map(|i| state::unix(state::wall(i))),
            }),
        };
        if let Err(e) = state::store(path, &saved) {
            tracing::warn!(alert = %self.id, path = %path.display(), error = %e, "cannot save the alert state; a restart will start this alert afresh");
        }
        self.written = Some(signature);
    }

    /// Take in one tagged record.
    pub(super) fn observe(&mut self, record: &[u8]) {
        let now = unix_seconds();
        if self.buckets.back().is_none_or(|b| b.second != now) {
            self.buckets.push_back(Bucket { second: now, ..Bucket::default() });
        }
        // Most records are normal: count them without parsing.
        if self.tag.verdict(record).is_some_and(|v| v.starts_with(b"normal\"")) {
            self.buckets.back_mut().expect("pushed above").scored += 1;
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(record) else { return };
        let tags = &v[&self.cfg.key];
        let verdict = tags["verdict"].as_str().unwrap_or("");
        if verdict != "anomalous" && verdict != "normal" {
            return;
        }
        let anomalous = verdict == "anomalous";
        let score = tags["score"].as_f64().unwrap_or(0.0);
        let matches = match self.rule {
            Rule::Score { above } => anomalous && score > above,
            _ => anomalous,
        };
        let host = self.cfg.host_fields.iter().find_map(|f| v.get(f)).map(|h| match h {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let b = self.buckets.back_mut().expect("pushed above");
        b.scored += 1;
        if !matches {
            return;
        }
        b.anomalous += 1;
        if let Some(h) = host {
            *b.hosts.entry(h).or_default() += 1;
        }
        if let Some(reasons) = tags["reasons"].as_array() {
            for r in reasons {
                if let Some(f) = r["feature"].as_str() {
                    *b.reasons.entry(f.to_string()).or_default() += 1;
                }
            }
        }
        if score >= b.top_score || b.sample.is_none() {
            b.top_score = score;
            b.sample = Some(String::from_utf8_lossy(&record[..record.len().min(4096)]).into_owned());
        }
        if let Some(e) = &mut self.episode {
            e.count += 1;
        }
    }

    /// Evaluate the rule and save what changed (called every second).
    pub(super) fn tick(&mut self) {
        self.evaluate();
        self.persist();
    }

    fn evaluate(&mut self) {
        let now = unix_seconds();
        let window = self.rule.window().as_secs().max(1);
        while self.buckets.front().is_some_and(|b| b.second + window <= now) {
            self.buckets.pop_front();
        }
        let (scored, anomalous): (u64, u64) =
            self.buckets.iter().fold((0, 0), |(s, a), b| (s + b.scored, a + b.anomalous));
        let mut hosts: HashMap<&str, u64> = HashMap::new();
        for b in &self.buckets {
            for (h, n) in &b.hosts {
                *hosts.entry(h.as_str()).or_default() += n;
            }
        }
        let holds = match self.rule {
            Rule::AnomalyRate { above, .. } => {
                scored >= self.cfg.min_events && anomalous as f64 / scored as f64 > above
            }
            Rule::AnomaliesPerHost { above, .. } => hosts.values().any(|&n| n as f64 > above),
            Rule::Score { .. } => anomalous > 0,
        };
        let t = Instant::now();
        if !holds {
            if self.warm_until.is_some_and(|w| t < w) {
                return;
            }
            if let Some(e) = self.episode.take() {
                if e.sent && self.cfg.destination == Destination::Alertmanager {
                    // Resolve: endsAt now.
                    let mut a = self.alert(anomalous, &e);
                    a.resolved = true;
                    let _ = self.queue.try_send(a);
                }
            }
            return;
        }
        let e = self.episode.get_or_insert_with(|| Episode {
            started: t,
            starts_at: SystemTime::now(),
            sent: false,
            last_sent: None,
            last_renewed: None,
            count: anomalous,
        });
        let due = match e.last_sent {
            None => t.duration_since(e.started) >= self.cfg.group_wait.0,
            Some(last) => t.duration_since(last) >= self.cfg.cooldown.0 && e.count > 0,
        };
        let renew = self.cfg.destination == Destination::Alertmanager
            && e.sent
            && e.last_renewed.is_none_or(|r| t.duration_since(r) >= self.cfg.resolve_timeout.0 / 2);
        if !due {
            if e.sent && e.count > 0 && anomalous > 0 {
                metrics::global().alerts_suppressed.with_label_values(&[&self.id, "cooldown"]).inc();
            }
            if renew {
                let e = self.episode.take().expect("set above");
                let mut a = self.alert(0, &e);
                a.renewal = true;
                let _ = self.queue.try_send(a);
                self.episode = Some(Episode { last_renewed: Some(t), ..e });
            }
            return;
        }
        let day = now / 86_400;
        if day != self.day {
            (self.day, self.sent_today, self.budget_warned) = (day, 0, false);
        }
        let e = self.episode.take().expect("set above");
        if self.sent_today >= self.cfg.daily_budget {
            metrics::global().alerts_suppressed.with_label_values(&[&self.id, "budget"]).inc();
            if !self.budget_warned {
                tracing::warn!(alert = %self.id, budget = self.cfg.daily_budget, "daily alert budget used up; further alerts are held back until midnight UTC");
                self.budget_warned = true;
            }
            // Counted from the next possible alert on.
            self.episode = Some(Episode { last_sent: Some(t), count: 0, ..e });
            return;
        }
        let alert = self.alert(e.count, &e);
        self.sent_today += 1;
        if self.queue.try_send(alert).is_err() {
            metrics::global().alerts_suppressed.with_label_values(&[&self.id, "queue_full"]).inc();
        }
        self.episode = Some(Episode { sent: true, last_sent: Some(t), last_renewed: Some(t), count: 0, ..e });
    }

    fn alert(&self, count: u64, e: &Episode) -> Alert {
        let mut hosts: HashMap<&str, u64> = HashMap::new();
        let mut reasons: HashMap<&str, u64> = HashMap::new();
        let (mut scored, mut anomalous) = (0, 0);
        let mut sample: Option<(&f64, &String)> = None;
        for b in &self.buckets {
            scored += b.scored;
            anomalous += b.anomalous;
            for (h, n) in &b.hosts {
                *hosts.entry(h).or_default() += n;
            }
            for (r, n) in &b.reasons {
                *reasons.entry(r).or_default() += n;
            }
            if let Some(s) = &b.sample {
                if sample.is_none_or(|(best, _)| b.top_score >= *best) {
                    sample = Some((&b.top_score, s));
                }
            }
        }
        let top = |m: HashMap<&str, u64>| {
            let mut v: Vec<(String, u64)> = m.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v.truncate(5);
            v
        };
        Alert {
            rule_id: self.id.clone(),
            when: self.cfg.when.clone(),
            count,
            window_scored: scored,
            window_anomalous: anomalous,
            top_hosts: top(hosts),
            top_reasons: top(reasons),
            sample: sample.map(|(_, s)| s.clone()),
            starts_at: e.starts_at,
            resolved: false,
            renewal: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANOMALOUS: &[u8] =
        br#"{"srcip":"10.0.0.1","anomaly":{"score":0.99,"verdict":"anomalous","model":"m@1","reasons":[{"feature":"sbytes"}]}}"#;

    fn evaluator(extra: &str, state: Option<PathBuf>) -> (Evaluator, tokio::sync::mpsc::Receiver<Alert>) {
        let cfg: AlertConfig = toml::from_str(&format!(
            "type = \"alertmanager\"\ninputs = [\"tag\"]\nurl = \"http://127.0.0.1:9\"\ngroup_wait = \"0s\"\ncooldown = \"1h\"\n{extra}"
        ))
        .unwrap();
        let rule = Rule::parse(&cfg.when).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        (Evaluator::new("burst".into(), cfg, rule, tx, state), rx)
    }

    /// Feed anomalous records and evaluate, a few times (a second may turn between the two).
    fn burst(ev: &mut Evaluator, rx: &mut tokio::sync::mpsc::Receiver<Alert>) -> Vec<Alert> {
        let mut got = Vec::new();
        for _ in 0..3 {
            ev.observe(ANOMALOUS);
            ev.tick();
            while let Ok(a) = rx.try_recv() {
                got.push(a);
            }
        }
        got
    }

    #[test]
    fn cooldown_and_budget_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = state::path(dir.path(), "burst");
        let (mut ev, mut rx) = evaluator("when = \"score > 0.9\"", Some(path.clone()));
        let first = burst(&mut ev, &mut rx);
        assert_eq!(first.iter().filter(|a| !a.renewal && !a.resolved).count(), 1, "one alert: {first:?}");
        drop(ev);
        // The node restarts while the rule still holds: no new alert within the cooldown.
        let (mut ev, mut rx) = evaluator("when = \"score > 0.9\"", Some(path.clone()));
        assert_eq!(ev.sent_today, 1, "the day's budget is remembered");
        let after = burst(&mut ev, &mut rx);
        assert!(after.is_empty(), "no new alert after the restart: {after:?}");
        let starts = ev.episode.as_ref().expect("the episode goes on").starts_at;
        let apart = starts.duration_since(first[0].starts_at).or_else(|e| Ok::<_, ()>(e.duration())).unwrap();
        assert!(apart < Duration::from_millis(1), "the same episode (startsAt {apart:?} apart)");
        // Without the saved state the same restart would have alerted again.
        let (mut fresh, mut rx) = evaluator("when = \"score > 0.9\"", None);
        assert_eq!(burst(&mut fresh, &mut rx).len(), 1);
        // A changed rule starts its own episode, within the same day's budget.
        let (changed, _rx) = evaluator("when = \"score > 0.95\"", Some(path));
        assert!(changed.episode.is_none());
        assert_eq!(changed.sent_today, 1);
    }

    #[test]
    fn a_resumed_episode_is_not_resolved_while_its_window_refills() {
        let dir = tempfile::tempdir().unwrap();
        let path = state::path(dir.path(), "burst");
        let rate = "when = \"anomaly_rate > 0.5 over 1m\"\nmin_events = 1";
        let (mut ev, mut rx) = evaluator(rate, Some(path.clone()));
        assert_eq!(burst(&mut ev, &mut rx).len(), 1);
        drop(ev);
        let (mut ev, mut rx) = evaluator(rate, Some(path.clone()));
        ev.tick();
        assert!(ev.episode.as_ref().is_some_and(|e| e.sent), "still open after the restart");
        assert!(rx.try_recv().is_err(), "and not resolved: its window is empty only because of the restart");
        assert!(state::load(&path).episode.is_some());
        // Once the warm-up is over, an empty window does resolve it, and the file says so.
        ev.warm_until = Some(Instant::now());
        ev.tick();
        assert!(rx.try_recv().is_ok_and(|a| a.resolved));
        assert_eq!(state::load(&path).episode, None);
    }

    #[test]
    fn the_verdict_is_read_from_the_tag_not_from_the_record() {
        let t = TagFinder::new("anomaly");
        let tag_verdict = |record: &'static [u8]| t.verdict(record);
        let tagged = br#"{"note":{"verdict":"normal"},"anomaly":{"score":0.99,"raw_score":1.5,"verdict":"anomalous","model":"m@1"}}"#;
        assert!(tag_verdict(tagged).is_some_and(|v| v.starts_with(b"anomalous\"")));
        let normal = br#"{"a":1,"anomaly":{"score":0.1,"raw_score":0.2,"verdict":"normal","model":"m@1"}}"#;
        assert!(tag_verdict(normal).is_some_and(|v| v.starts_with(b"normal\"")));
        let unscored = br#"{"a":1,"anomaly":{"verdict":"unscored","model":"m@1","error":"x"}}"#;
        assert!(tag_verdict(unscored).is_some_and(|v| v.starts_with(b"unscored\"")));
        assert!(tag_verdict(br#"{"verdict":"normal"}"#).is_none(), "untagged records are not counted as normal");
    }
}
