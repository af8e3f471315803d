//! The rule language of `when`: `"<measure> > <number> [over <window>]"`.

use std::time::Duration;

/// What a rule measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Share of scored flows tagged anomalous over the window.
    AnomalyRate { above: f64, window: Duration },
    /// Anomalous flows of one source host over the window.
    AnomaliesPerHost { above: f64, window: Duration },
    /// One flow's calibrated score.
    Score { above: f64 },
}

impl Rule {
    /// `"<anomaly_rate|anomalies_per_host|score> > <number> [over <duration>]"`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let usage =
            "expected e.g. \"anomaly_rate > 0.05 over 1m\", \"anomalies_per_host > 100 over 5m\" or \"score > 0.999\"";
        let words: Vec<&str> = text.split_whitespace().collect();
        let (metric, above, window) = match words.as_slice() {
            [m, ">", n] => (*m, *n, None),
            [m, ">", n, "over", w] => (*m, *n, Some(*w)),
            _ => return Err(format!("{text:?}: {usage}")),
        };
        let above: f64 = above.parse().map_err(|_| format!("{text:?}: {above:?} is not a number"))?;
        let window =
            window.map(|w| humantime::parse_duration(w).map_err(|e| format!("{text:?}: {w:?}: {e}"))).transpose()?;
        let need_window = |w: Option<Duration>| {
            let w = w.ok_or_else(|| format!("{text:?}: {metric} needs a window (\"... over 1m\")"))?;
            if w < Duration::from_secs(1) || w > Duration::from_secs(86_400) {
                return Err(format!("{text:?}: the window must be between 1s and 24h"));
            }
            Ok(w)
        };
        match metric {
            "anomaly_rate" if (0.0..1.0).contains(&above) => {
                Ok(Rule::AnomalyRate { above, window: need_window(window)? })
            }
            "anomaly_rate" => Err(format!("{text:?}: an anomaly rate is between 0 and 1")),
            "anomalies_per_host" => Ok(Rule::AnomaliesPerHost { above, window: need_window(window)? }),
            "score" if window.is_some() => {
                Err(format!("{text:?}: a score rule looks at single flows; drop \"over ...\""))
            }
            "score" if (0.0..1.0).contains(&above) => Ok(Rule::Score { above }),
            "score" => Err(format!("{text:?}: scores are between 0 and 1")),
            other => Err(format!("{text:?}: unknown measure {other:?}; {usage}")),
        }
    }

    pub(super) fn window(&self) -> Duration {
        match self {
            Rule::AnomalyRate { window, .. } | Rule::AnomaliesPerHost { window, .. } => *window,
            // The second a record arrived in and the one before: the rule is evaluated once a
            // second, and a one-second window pruned the bucket of a burst that arrived in the
            // second before the tick, so a short burst was missed about half of the time.
            Rule::Score { .. } => Duration::from_secs(2),
        }
    }
}
