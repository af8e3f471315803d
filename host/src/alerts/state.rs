//! What an alert remembers across restarts, in `data_dir/alerts/<id>.json`: its rule, the UTC day and
//! how many alerts it sent that day (the daily budget), and the open episode (when it started,
//! whether and when it last sent or renewed). Without it a node that restarts, or a pod in a
//! crash loop, would start every cooldown and budget afresh and alert again at each start.
//!
//! Times are stored as Unix seconds and turned back into `Instant`s on load. The file is
//! replaced atomically (written beside it, then renamed); a missing or unreadable file starts
//! the alert afresh, with a warning for the unreadable one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    /// The rule (`when`) the episode belongs to.
    #[serde(default)]
    pub when: String,
    /// Days since the Unix epoch (UTC) that `sent_today` counts.
    pub day: u64,
    pub sent_today: u32,
    pub episode: Option<SavedEpisode>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedEpisode {
    /// When the rule started to hold (Unix seconds): the start of `group_wait`, and
    /// Alertmanager's `startsAt`.
    pub started: f64,
    pub sent: bool,
    pub last_sent: Option<f64>,
    pub last_renewed: Option<f64>,
}

/// Where alert `id` keeps its state (characters a file name should not hold become `_`).
pub fn path(data_dir: &Path, id: &str) -> PathBuf {
    let name: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    data_dir.join("alerts").join(format!("{name}.json"))
}

/// The saved state, or a fresh one when there is none or it cannot be read.
pub fn load(path: &Path) -> Saved {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Saved::default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the alert state; starting afresh");
            return Saved::default();
        }
    };
    serde_json::from_slice(&text).unwrap_or_else(|e| {
        tracing::warn!(path = %path.display(), error = %e, "the alert state is not readable; starting afresh");
        Saved::default()
    })
}

/// Replace the saved state.
pub fn store(path: &Path, saved: &Saved) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(saved).expect("plain data serializes"))?;
    std::fs::rename(&tmp, path)
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64()
}

/// The wall-clock time of `i`.
pub fn wall(i: Instant) -> SystemTime {
    let ago = Instant::now().saturating_duration_since(i);
    SystemTime::now().checked_sub(ago).unwrap_or(UNIX_EPOCH)
}

/// The `Instant` of Unix seconds `s`. A time in the future (a clock that moved back) is read as
/// now; a time before what the monotonic clock can represent (before boot on platforms whose
/// `Instant` cannot go below zero; Linux's reaches back arbitrarily far) as the earliest instant
/// it can, so a cooldown is never taken to have started later than it did.
pub fn instant(s: f64) -> Instant {
    let now = Instant::now();
    let ago = unix(SystemTime::now()) - s;
    if !ago.is_finite() || ago <= 0.0 {
        return now;
    }
    let ago = Duration::from_secs_f64(ago.min(1e12));
    if let Some(i) = now.checked_sub(ago) {
        return i;
    }
    // The longest representable step back, to the millisecond.
    let (mut ok, mut too_far) = (Duration::ZERO, ago);
    while too_far - ok > Duration::from_millis(1) {
        let mid = ok + (too_far - ok) / 2;
        if now.checked_sub(mid).is_some() {
            ok = mid;
        } else {
            too_far = mid;
        }
    }
    now - ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_bad_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "burst");
        assert_eq!(load(&p), Saved::default(), "no file yet");
        let saved = Saved {
            when: "score > 0.9".into(),
            day: 20_000,
            sent_today: 3,
            episode: Some(SavedEpisode {
                started: 1.7e9,
                sent: true,
                last_sent: Some(1.7e9 + 5.0),
                last_renewed: None,
            }),
        };
        store(&p, &saved).unwrap();
        assert_eq!(load(&p), saved);
        assert!(!p.with_extension("json.tmp").exists());
        std::fs::write(&p, b"{not json").unwrap();
        assert_eq!(load(&p), Saved::default());
    }

    /// How far back this platform's `Instant` reaches from now (Linux: far before boot).
    fn boot_age() -> Duration {
        let now = Instant::now();
        let mut back = Duration::from_secs(3600);
        while now.checked_sub(back).is_none() {
            back /= 2;
        }
        back
    }

    #[test]
    fn times_convert_both_ways() {
        let i = Instant::now() - Duration::from_secs(30);
        let back = instant(unix(wall(i)));
        let diff = if back > i { back - i } else { i - back };
        assert!(diff < Duration::from_millis(50), "{diff:?}");
        assert!(instant(unix(SystemTime::now()) + 3600.0) <= Instant::now(), "a future time reads as now");
        // Long ago (here 1970): as far back as the clock goes, never later than an hour ago.
        let long_ago = instant(0.0);
        assert!(Instant::now().duration_since(long_ago) >= Duration::from_secs(3600).min(boot_age()), "{long_ago:?}");
    }
}
