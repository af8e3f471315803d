//! Edge self-calibration: scores and verdicts from this node's own score distribution.
//!
//! ```toml
//! [transforms.tag]
//! type = "anomaly"
//! inputs = ["flows"]
//! model = "/etc/flowtag/models/site"
//! calibration.mode = "local"            # or "bundle" (the default): the manifest's calibration
//! calibration.warmup_records = 10000    # scored records seen before the local calibration takes over
//! calibration.window_records = 1000000  # roughly how many recent records the calibration follows
//! # calibration.target_fpr = 0.01       # share of this node's records flagged (default: the bundle's)
//! ```
//!
//! A bundle's calibration comes from the normal traffic it was trained on; a node's normal is
//! its own. With `mode = "local"` the transform keeps a sample of the raw scores it produces
//! ([`SAMPLE`] of them: every score until the sample is full, then each new one in place of a
//! random one with probability `SAMPLE / seen` during the warm-up, `SAMPLE / window_records`
//! after it, so the sample follows about the last `window_records`). Once `warmup_records`
//! were scored, the score is the record's percentile among them and the verdict is
//! `anomalous` above the `1 - target_fpr` quantile; the calibration is recomputed every
//! [`SAMPLE`] records. Tags say which: `"calibration":"warming_up"` (the bundle's calibration
//! still applies) or `"calibration":"local"`.
//!
//! The sample is kept in `data_dir/transforms/ID/calibration.json` (written atomically when
//! the calibration changes and at shutdown) and read at start when it belongs to the same
//! model; a new model starts a new warm-up, since its scores are not comparable.
//!
//! In both modes the transform reports `flowtag_anomaly_calibration_state` (0 bundle, 1
//! warming up, 2 local) and `flowtag_anomaly_score_drift_psi`: the population stability index
//! of the sampled raw scores against the bundle's calibration, over its ten deciles (below 0.1
//! is usually read as stable, above 0.25 as a shift worth a look).

use std::path::{Path, PathBuf};

use flowtag_plugin::{Calibration, RecordResult, Verdict};
use serde::{Deserialize, Serialize};

/// Raw scores kept.
pub const SAMPLE: usize = 8192;
/// Quantiles of a local calibration (as bundles have: 1001, from 0 to 1 in steps of 0.001).
const STEPS: usize = 1000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_warmup")]
    pub warmup_records: u64,
    #[serde(default = "default_window")]
    pub window_records: u64,
    pub target_fpr: Option<f64>,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            mode: Mode::Bundle,
            warmup_records: default_warmup(),
            window_records: default_window(),
            target_fpr: None,
        }
    }
}

fn default_warmup() -> u64 {
    10_000
}

fn default_window() -> u64 {
    1_000_000
}

impl CalibrationConfig {
    pub fn check(&self, key: &str) -> Result<(), String> {
        if self.warmup_records < 100 {
            return Err(format!(
                "{key}.warmup_records: {} is too few to calibrate on (at least 100)",
                self.warmup_records
            ));
        }
        if self.window_records < self.warmup_records {
            return Err(format!("{key}.window_records: must be at least warmup_records ({})", self.warmup_records));
        }
        if let Some(f) = self.target_fpr.filter(|f| !(*f > 0.0 && *f < 0.5)) {
            return Err(format!("{key}.target_fpr: {f} is not between 0 and 0.5"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Bundle,
    Local,
}

/// Where a transform's calibration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Bundle,
    WarmingUp,
    Local,
}

impl State {
    pub fn gauge(self) -> f64 {
        match self {
            State::Bundle => 0.0,
            State::WarmingUp => 1.0,
            State::Local => 2.0,
        }
    }
}

/// What is kept in `calibration.json`.
#[derive(Serialize, Deserialize)]
struct Saved {
    model: String,
    seen: u64,
    sample: Vec<f32>,
}

/// The model facts a calibrator needs.
pub struct ModelFacts {
    pub id: String,
    pub higher_is_anomalous: bool,
    /// The manifest's calibration quantiles (raw scores, ascending).
    pub quantiles: Vec<f64>,
    /// The share of normal traffic the bundle's threshold flags (its `training.target_fpr`).
    pub target_fpr: Option<f64>,
}

pub struct Calibrator {
    cfg: CalibrationConfig,
    model: ModelFacts,
    sample: Vec<f32>,
    seen: u64,
    since_update: usize,
    state: State,
    rng: u64,
    path: Option<PathBuf>,
}

impl Calibrator {
    /// A calibrator for `model`, resuming from `dir/calibration.json` when it holds this model's.
    pub fn new(cfg: CalibrationConfig, model: ModelFacts, dir: Option<&Path>) -> Calibrator {
        let path = dir.map(|d| d.join("calibration.json"));
        let mut c = Calibrator {
            state: if cfg.mode == Mode::Local { State::WarmingUp } else { State::Bundle },
            cfg,
            model,
            sample: Vec::with_capacity(SAMPLE),
            seen: 0,
            since_update: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            path,
        };
        if let Some(saved) = c.path.as_deref().and_then(|p| std::fs::read(p).ok()) {
            match serde_json::from_slice::<Saved>(&saved) {
                Ok(s)
                    if s.model == c.model.id && s.sample.len() <= SAMPLE && s.sample.iter().all(|v| v.is_finite()) =>
                {
                    c.seen = s.seen;
                    c.sample = s.sample;
                    if c.cfg.mode == Mode::Local && c.seen >= c.cfg.warmup_records && !c.sample.is_empty() {
                        c.state = State::Local;
                    }
                }
                Ok(s) => {
                    tracing::info!(saved = %s.model, model = %c.model.id, "calibration: the saved sample is another model's; starting a new one")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "calibration: the saved sample cannot be read; starting a new one")
                }
            }
        }
        c
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Start over for another model (its scores are not comparable).
    pub fn reset(&mut self, model: ModelFacts) {
        self.model = model;
        self.sample.clear();
        self.seen = 0;
        self.since_update = 0;
        self.state = if self.cfg.mode == Mode::Local { State::WarmingUp } else { State::Bundle };
    }

    /// What the runtime should tag with now (`None` in bundle mode: nothing to set).
    pub fn calibration(&self) -> Option<Calibration> {
        match self.state {
            State::Bundle => None,
            State::WarmingUp => {
                Some(Calibration { quantiles: None, threshold: None, label: Some("warming_up".into()) })
            }
            State::Local => {
                let (quantiles, threshold) = self.local();
                Some(Calibration {
                    quantiles: Some(quantiles),
                    threshold: Some(threshold),
                    label: Some("local".into()),
                })
            }
        }
    }

    /// Take a batch's results in; returns a new calibration to set when it changed.
    pub fn observe(&mut self, results: &[RecordResult]) -> Option<Calibration> {
        for r in results {
            if r.verdict == Verdict::Unscored || !r.raw.is_finite() {
                continue;
            }
            self.seen += 1;
            self.since_update += 1;
            // Replaced with probability SAMPLE / seen during the warm-up (a uniform sample of it),
            // SAMPLE / window_records after it (a sample that follows recent traffic).
            let keep = if self.seen <= self.cfg.warmup_records { self.seen } else { self.cfg.window_records };
            if self.sample.len() < SAMPLE {
                self.sample.push(r.raw);
            } else if self.next() % keep < SAMPLE as u64 {
                let slot = (self.next() % SAMPLE as u64) as usize;
                self.sample[slot] = r.raw;
            }
        }
        if self.cfg.mode != Mode::Local {
            return None;
        }
        let warmed = self.seen >= self.cfg.warmup_records;
        if (self.state == State::WarmingUp && warmed) || (self.state == State::Local && self.since_update >= SAMPLE) {
            self.state = State::Local;
            self.since_update = 0;
            self.save();
            return self.calibration();
        }
        None
    }

    /// Local quantiles of raw scores (ascending) and the raw threshold for the target FPR.
    fn local(&self) -> (Vec<f64>, f64) {
        let mut s: Vec<f64> = self.sample.iter().map(|&v| f64::from(v)).collect();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| -> f64 {
            // Linear between order statistics, as numpy's default quantile.
            let pos = p * (s.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
        };
        let quantiles = (0..=STEPS).map(|i| q(i as f64 / STEPS as f64)).collect();
        let fpr = self.cfg.target_fpr.or(self.model.target_fpr).unwrap_or(0.01);
        let threshold = if self.model.higher_is_anomalous { q(1.0 - fpr) } else { q(fpr) };
        (quantiles, threshold)
    }

    /// The population stability index of the sampled raw scores against the bundle's
    /// calibration, over its deciles; `None` before 100 scores.
    pub fn drift_psi(&self) -> Option<f64> {
        let q = &self.model.quantiles;
        if self.sample.len() < 100 || q.len() < 11 {
            return None;
        }
        let k = q.len() - 1;
        let edges: Vec<f64> = (1..10).map(|d| q[d * k / 10]).collect();
        let mut counts = [0usize; 10];
        for &v in &self.sample {
            counts[edges.partition_point(|&e| e <= f64::from(v))] += 1;
        }
        let n = self.sample.len() as f64;
        Some(
            counts
                .iter()
                .map(|&c| {
                    let (o, e) = ((c as f64 / n).max(1e-4), 0.1);
                    (o - e) * (o / e).ln()
                })
                .sum(),
        )
    }

    /// Write the sample (atomically) for the next start.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let saved = Saved { model: self.model.id.clone(), seen: self.seen, sample: self.sample.clone() };
        let tmp = path.with_extension("json.tmp");
        let result = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|_| std::fs::write(&tmp, serde_json::to_vec(&saved).expect("serializes")))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "calibration: cannot save the sample");
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: enough for sampling, and the same on every platform.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: &str) -> ModelFacts {
        // The bundle's normal traffic: raw scores uniform on [0, 1].
        ModelFacts {
            id: id.into(),
            higher_is_anomalous: true,
            quantiles: (0..=1000).map(|i| i as f64 / 1000.0).collect(),
            target_fpr: Some(0.01),
        }
    }

    fn results(raws: impl Iterator<Item = f32>) -> Vec<RecordResult> {
        raws.map(|raw| RecordResult { verdict: Verdict::Normal, score: 0.0, raw, top_reason: None, tags: None })
            .collect()
    }

    fn local(warmup: u64) -> CalibrationConfig {
        CalibrationConfig { mode: Mode::Local, warmup_records: warmup, window_records: 100_000, target_fpr: None }
    }

    #[test]
    fn warms_up_then_calibrates_on_this_nodes_scores() {
        let mut c = Calibrator::new(local(1000), facts("m@1"), None);
        assert_eq!(c.calibration().unwrap().label.as_deref(), Some("warming_up"));
        // This node's scores sit on [10, 20): the bundle would call them all anomalous.
        assert!(c.observe(&results((0..999).map(|i| 10.0 + (i % 1000) as f32 / 100.0))).is_none());
        let set = c.observe(&results([15.0f32].into_iter())).expect("warm-up done");
        assert_eq!(c.state(), State::Local);
        assert_eq!(set.label.as_deref(), Some("local"));
        let q = set.quantiles.unwrap();
        assert_eq!(q.len(), 1001);
        assert!((q[0] - 10.0).abs() < 1e-6 && (q[1000] - 19.98).abs() < 1e-3);
        let t = set.threshold.unwrap();
        assert!((19.8..19.9).contains(&t), "1 % of this node's scores above it: {t}");
        // Unscored records do not count.
        let unscored =
            vec![
                RecordResult { verdict: Verdict::Unscored, score: 0.0, raw: f32::NAN, top_reason: None, tags: None };
                50
            ];
        assert!(c.observe(&unscored).is_none());
        assert!(c.drift_psi().unwrap() > 5.0, "everything above the bundle's top decile");
    }

    #[test]
    fn bundle_mode_sets_nothing_but_measures_drift() {
        let mut c = Calibrator::new(CalibrationConfig::default(), facts("m@1"), None);
        assert!(c.calibration().is_none());
        assert!(c.observe(&results((0..5000).map(|i| (i % 1000) as f32 / 1000.0))).is_none());
        assert_eq!(c.state(), State::Bundle);
        assert!(c.drift_psi().unwrap() < 0.01, "same distribution as the bundle's: {:?}", c.drift_psi());
    }

    #[test]
    fn the_sample_follows_recent_scores_after_the_warm_up() {
        let mut cfg = local(1000);
        cfg.window_records = 20_000;
        let mut c = Calibrator::new(cfg, facts("m@1"), None);
        c.observe(&results((0..SAMPLE).map(|i| (i % 1000) as f32 / 1000.0)));
        let before = c.local().1;
        c.observe(&results((0..100_000).map(|i| 5.0 + (i % 1000) as f32 / 1000.0)));
        let after = c.local().1;
        assert!(before < 1.0 && after > 5.9, "the threshold moved with the traffic: {before} -> {after}");
    }

    #[test]
    fn the_sample_is_kept_for_the_same_model_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Calibrator::new(local(500), facts("m@1"), Some(dir.path()));
        c.observe(&results((0..600).map(|i| i as f32)));
        assert_eq!(c.state(), State::Local);
        c.save();
        let again = Calibrator::new(local(500), facts("m@1"), Some(dir.path()));
        assert_eq!((again.state(), again.seen, again.sample.len()), (State::Local, 600, 600));
        let other = Calibrator::new(local(500), facts("m@2"), Some(dir.path()));
        assert_eq!((other.state(), other.seen), (State::WarmingUp, 0));
        let mut c = again;
        c.reset(facts("m@2"));
        assert_eq!((c.state(), c.seen, c.sample.len()), (State::WarmingUp, 0, 0));
    }

    #[test]
    fn config_checks_name_the_key() {
        let mut cfg = local(50);
        assert!(cfg
            .check("transforms.tag.calibration")
            .unwrap_err()
            .starts_with("transforms.tag.calibration.warmup_records"));
        cfg.warmup_records = 1000;
        cfg.window_records = 10;
        assert!(cfg.check("k").unwrap_err().starts_with("k.window_records"));
        cfg.window_records = 1000;
        cfg.target_fpr = Some(0.7);
        assert!(cfg.check("k").unwrap_err().starts_with("k.target_fpr"));
    }
}
