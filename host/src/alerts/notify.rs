//! Delivering alerts: Slack incoming webhooks, Alertmanager's `POST /api/v2/alerts`, email over
//! SMTP. Each delivery is retried with exponential backoff (1 s doubling to 60 s, 8 attempts)
//! on its own task, so a destination that is down never holds the evaluator, let alone the log
//! path; an alert given up is logged and counted (`flowtag_alerts_suppressed_total{reason="failed"}`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use super::{smtp, AlertConfig, Destination};
use crate::metrics;
use crate::net::client::{self, HttpClient};
use crate::shutdown::Shutdown;

/// What an alert says.
#[derive(Clone, Debug)]
pub struct Alert {
    pub rule_id: String,
    pub when: String,
    /// Anomalous flows since the last alert of this episode.
    pub count: u64,
    pub window_scored: u64,
    pub window_anomalous: u64,
    pub top_hosts: Vec<(String, u64)>,
    pub top_reasons: Vec<(String, u64)>,
    pub sample: Option<String>,
    pub starts_at: SystemTime,
    /// Alertmanager: the rule stopped holding.
    pub resolved: bool,
    /// Alertmanager: the same alert again, to keep it firing.
    pub renewal: bool,
}

impl Alert {
    fn summary(&self) -> String {
        format!("flowtag alert {}: {} anomalous flows ({})", self.rule_id, self.count, self.when)
    }

    fn listing(items: &[(String, u64)]) -> String {
        if items.is_empty() {
            return "none".into();
        }
        items.iter().map(|(k, n)| format!("{k} ({n})")).collect::<Vec<_>>().join(", ")
    }

    fn text(&self) -> String {
        let mut t = format!(
            "{}\nwindow: {} of {} scored flows anomalous\ntop hosts: {}\ntop reasons: {}\n",
            self.summary(),
            self.window_anomalous,
            self.window_scored,
            Alert::listing(&self.top_hosts),
            Alert::listing(&self.top_reasons)
        );
        if let Some(s) = &self.sample {
            t.push_str(&format!("sample: {s}\n"));
        }
        t
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub struct Notifier {
    id: String,
    cfg: AlertConfig,
    client: Option<HttpClient>,
    password: Option<String>,
    hostname: String,
}

impl Notifier {
    pub fn new(id: &str, cfg: &AlertConfig) -> Result<Notifier, String> {
        let client = match cfg.destination {
            Destination::Email => None,
            _ => Some(client::build(&cfg.tls).map_err(|e| format!("alerts.{id}.tls: {e}"))?),
        };
        let password = match (&cfg.password, &cfg.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("alerts.{id}.password_file: {}: {e}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            (None, None) => None,
        };
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "flowtag".into());
        Ok(Notifier { id: id.to_string(), cfg: cfg.clone(), client, password, hostname })
    }

    pub async fn run(self, mut queue: tokio::sync::mpsc::Receiver<Alert>, shutdown: Shutdown) {
        let me = std::sync::Arc::new(self);
        let mut inflight = Vec::new();
        loop {
            tokio::select! {
                _ = shutdown.stopped() => break,
                a = queue.recv() => match a {
                    Some(a) => inflight.push(tokio::spawn(me.clone().deliver(a, shutdown.clone()))),
                    None => break,
                },
            }
            inflight.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
        }
        for h in inflight {
            h.abort();
        }
    }

    async fn deliver(self: std::sync::Arc<Self>, alert: Alert, shutdown: Shutdown) {
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=8 {
            let r = tokio::time::timeout(self.cfg.timeout.0, self.send_once(&alert))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {}", self.cfg.timeout)));
            match r {
                Ok(()) => {
                    if !alert.renewal && !alert.resolved {
                        metrics::global().alerts_sent.with_label_values(&[&self.id, self.cfg.type_name()]).inc();
                        tracing::info!(alert = %self.id, count = alert.count, "alert sent");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(alert = %self.id, attempt, error = %e, "alert delivery failed; retrying in {delay:?}");
                }
            }
            tokio::select! {
                _ = shutdown.stopped() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
        metrics::global().alerts_suppressed.with_label_values(&[&self.id, "failed"]).inc();
        tracing::error!(alert = %self.id, "alert given up after 8 attempts");
    }

    async fn send_once(&self, a: &Alert) -> Result<(), String> {
        match self.cfg.destination {
            Destination::Slack => self.post(self.cfg.url.clone().expect("checked"), slack_payload(a)).await,
            Destination::Alertmanager => {
                let base = self.cfg.url.as_deref().expect("checked").trim_end_matches('/');
                self.post(format!("{base}/api/v2/alerts"), self.alertmanager_payload(a)).await
            }
            Destination::Email => {
                let to = &self.cfg.to;
                let from = self.cfg.from.as_deref().expect("checked");
                let subject = if a.resolved { format!("[resolved] {}", a.summary()) } else { a.summary() };
                let login = self.cfg.username.as_deref().map(|u| (u, self.password.as_deref().unwrap_or("")));
                smtp::send(
                    self.cfg.smtp.as_deref().expect("checked"),
                    &self.hostname,
                    self.cfg.starttls,
                    &self.cfg.tls,
                    login,
                    from,
                    to,
                    &subject,
                    &a.text(),
                )
                .await
            }
        }
    }

    async fn post(&self, url: String, body: serde_json::Value) -> Result<(), String> {
        // A webhook URL is a secret: errors name its host only.
        let shown = crate::net::redact(&url);
        let req = Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&body).expect("JSON"))))
            .map_err(|e| format!("{shown}: {e}"))?;
        let answer = client::send_as(self.client.as_ref().expect("http destination"), req, self.cfg.timeout.0, &shown)
            .await
            .map_err(|e| e.to_string())?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!("{shown}: HTTP {}: {}", answer.status, answer.snippet()))
        }
    }

    fn alertmanager_payload(&self, a: &Alert) -> serde_json::Value {
        let mut labels = serde_json::Map::new();
        labels.insert("alertname".into(), "FlowtagEdgeAnomaly".into());
        labels.insert("rule".into(), a.rule_id.clone().into());
        labels.insert("node".into(), self.hostname.clone().into());
        labels.insert("severity".into(), "warning".into());
        for (k, v) in &self.cfg.labels {
            labels.insert(k.clone(), v.clone().into());
        }
        let ends = if a.resolved { SystemTime::now() } else { SystemTime::now() + self.cfg.resolve_timeout.0 };
        serde_json::json!([{
            "labels": labels,
            "annotations": {
                "summary": a.summary(),
                "description": a.text(),
                "count": a.count.to_string(),
                "top_hosts": Alert::listing(&a.top_hosts),
                "top_reasons": Alert::listing(&a.top_reasons),
            },
            "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(ends),
        }])
    }
}

fn slack_payload(a: &Alert) -> serde_json::Value {
    let mut fields = vec![
        serde_json::json!({"type": "mrkdwn", "text": format!("*Rule*\n`{}`", a.when)}),
        serde_json::json!({"type": "mrkdwn", "text": format!("*Anomalous flows*\n{}", a.count)}),
        serde_json::json!({"type": "mrkdwn", "text": format!("*Top hosts*\n{}", Alert::listing(&a.top_hosts))}),
        serde_json::json!({"type": "mrkdwn", "text": format!("*Top reasons*\n{}", Alert::listing(&a.top_reasons))}),
    ];
    fields.truncate(10);
    let mut blocks = vec![
        serde_json::json!({"type": "header", "text": {"type": "plain_text", "text": format!("flowtag: {}", a.rule_id)}}),
        serde_json::json!({"type": "section", "fields": fields}),
    ];
    if let Some(s) = &a.sample {
        let s: String = s.chars().take(2900).collect();
        blocks.push(
            serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Sample*\n```{s}```")}}),
        );
    }
    serde_json::json!({"text": a.summary(), "blocks": blocks})
}
