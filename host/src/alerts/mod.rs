//! Edge alerts: rules on the tagged stream that reach people.
//!
//! ```toml
//! [alerts.burst]
//! type = "slack"                         # slack | alertmanager | email
//! inputs = ["tag"]
//! when = "anomaly_rate > 0.05 over 1m"   # or "anomalies_per_host > 100 over 5m", "score > 0.999"
//! url = "${SLACK_WEBHOOK_URL}"           # slack: the webhook; alertmanager: its base URL
//! cooldown = "10m"                       # at most one alert per rule this often
//! daily_budget = 20                      # and at most this many per UTC day
//! group_wait = "5s"                      # gather a burst before the first alert
//! ```
//!
//! An alert component gets a copy of the records of its inputs without their delivery
//! acknowledgements, through a bounded queue that never waits: when alerting falls behind,
//! records are skipped for alerting only (counted as discarded for the alert), never delayed
//! on the log path. Every second the rule is evaluated over its window. When it starts to hold,
//! an episode starts: after `group_wait` one alert goes out with the count of anomalous flows,
//! the top source hosts, the top reasons and a sample record. While the rule keeps holding no
//! further alert goes out until `cooldown` has passed (then one reminder with the new count);
//! beyond `daily_budget` alerts are held back. Held-back alerts are counted in
//! `flowtag_alerts_suppressed_total{reason}`. For Alertmanager the firing alert is renewed
//! (`endsAt`) while the rule holds and resolved when it stops holding.
//!
//! Budgets and cooldowns survive a restart: the day's count of alerts sent and the open episode
//! are kept in `data_dir/alerts/<id>.json` ([`state`]). A restored episode stays open for one
//! window after the start, while the window refills, so a restart neither resolves it nor
//! starts a new one that would alert again before its cooldown.

mod config;
mod evaluator;
mod notify;
mod rule;
mod smtp;
pub mod state;

use std::path::Path;
use std::time::Duration;

use crate::fanout::Inbox;
use crate::metrics::ComponentMetrics;
use crate::shutdown::Shutdown;
pub use config::{AlertConfig, Destination, StartTls};
use evaluator::Evaluator;
pub use notify::Alert;
pub use rule::Rule;

/// Start an alert: its evaluator (every second) and its notifier (deliveries with retries).
pub fn spawn(
    id: String,
    cfg: AlertConfig,
    mut inbox: Inbox,
    shutdown: Shutdown,
    data_dir: &Path,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let when = cfg.when.clone();
    let rule = Rule::parse(&cfg.when).map_err(|e| format!("alerts.{id}.when: {e}"))?;
    let notifier = notify::Notifier::new(&id, &cfg)?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let metrics = ComponentMetrics::new(&id, "alert", cfg.type_name());
    let sender = tokio::spawn(notifier.run(rx, shutdown.clone()));
    let mut ev = Evaluator::new(id.clone(), cfg, rule, tx, Some(state::path(data_dir, &id)));
    tracing::info!(alert = %id, rule = %when, "alert armed");
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.stopped() => break,
                _ = tick.tick() => ev.tick(),
                events = inbox.recv() => match events {
                    Some(events) => {
                        metrics.received(events.len(), events.iter().map(|e| e.data.len()).sum());
                        for e in &events {
                            ev.observe(&e.data);
                        }
                    }
                    None => break,
                },
            }
        }
        drop(ev);
        let _ = sender.await;
    }))
}
