//! `[alerts.ID]`: where an alert goes, its rule and its limits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::rule::Rule;
use crate::config::duration::Dur;
use crate::net::tls::TlsConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    #[serde(rename = "type")]
    pub destination: Destination,
    pub inputs: Vec<String>,
    pub when: String,
    /// Where the tags are (the tag transform's `key`).
    #[serde(default = "default_key")]
    pub key: String,
    /// Fields naming a flow's source host, first present wins.
    #[serde(default = "default_host_fields")]
    pub host_fields: Vec<String>,
    #[serde(default = "default_cooldown")]
    pub cooldown: Dur,
    #[serde(default = "default_budget")]
    pub daily_budget: u32,
    #[serde(default = "default_group_wait")]
    pub group_wait: Dur,
    /// `anomaly_rate` needs at least this many scored flows in the window.
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// slack: the incoming webhook; alertmanager: its base URL (`/api/v2/alerts` is added).
    pub url: Option<String>,
    /// alertmanager: extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// alertmanager: how long a firing alert lasts without renewal.
    #[serde(default = "default_resolve")]
    pub resolve_timeout: Dur,
    /// email: the SMTP server, `host:port`.
    pub smtp: Option<String>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// email: `auto` (STARTTLS when offered), `always` (refuse a server without it), `never`.
    #[serde(default)]
    pub starttls: StartTls,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per delivery attempt.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    Slack,
    Alertmanager,
    Email,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    #[default]
    Auto,
    Always,
    Never,
}

fn default_key() -> String {
    "anomaly".into()
}
fn default_host_fields() -> Vec<String> {
    ["srcip", "Source IP", "id.orig_h", "src_ip", "host"].map(String::from).to_vec()
}
fn default_cooldown() -> Dur {
    Dur::secs(600)
}
fn default_budget() -> u32 {
    20
}
fn default_group_wait() -> Dur {
    Dur::secs(5)
}
fn default_min_events() -> u64 {
    20
}
fn default_resolve() -> Dur {
    Dur::secs(300)
}
fn default_timeout() -> Dur {
    Dur::secs(10)
}

impl AlertConfig {
    pub fn type_name(&self) -> &'static str {
        match self.destination {
            Destination::Slack => "slack",
            Destination::Alertmanager => "alertmanager",
            Destination::Email => "email",
        }
    }

    pub fn check(&self, id: &str) -> Result<(), String> {
        let key = |k: &str| format!("alerts.{id}.{k}");
        Rule::parse(&self.when).map_err(|e| format!("{}: {e}", key("when")))?;
        match self.destination {
            Destination::Slack | Destination::Alertmanager => {
                let url = self
                    .url
                    .as_deref()
                    .ok_or_else(|| format!("{}: required for type = {:?}", key("url"), self.destination))?;
                crate::net::check_url(&key("url"), url)?;
            }
            Destination::Email => {
                let smtp = self.smtp.as_deref().ok_or_else(|| {
                    format!("{}: required for type = \"email\", e.g. \"smtp.example.com:587\"", key("smtp"))
                })?;
                if smtp.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                    return Err(format!("{}: {smtp:?}: expected host:port", key("smtp")));
                }
                if self.from.as_deref().is_none_or(|f| !f.contains('@')) {
                    return Err(format!("{}: required, an address like \"flowtag@example.com\"", key("from")));
                }
                if self.to.is_empty() || self.to.iter().any(|t| !t.contains('@')) {
                    return Err(format!("{}: one or more addresses", key("to")));
                }
                if self.password.is_some() && self.password_file.is_some() {
                    return Err(format!("{}: give password or password_file, not both", key("password_file")));
                }
                if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
                    return Err(format!("{}: required with a password", key("username")));
                }
            }
        }
        if self.destination != Destination::Email && (self.smtp.is_some() || !self.to.is_empty() || self.from.is_some())
        {
            return Err(format!(
                "{}: only used with type = \"email\"",
                key(if self.smtp.is_some() {
                    "smtp"
                } else if self.from.is_some() {
                    "from"
                } else {
                    "to"
                })
            ));
        }
        if self.cooldown.0 < Duration::from_secs(1) {
            return Err(format!("{}: at least 1s", key("cooldown")));
        }
        if self.daily_budget == 0 {
            return Err(format!("{}: at least 1 (remove the alert to silence it)", key("daily_budget")));
        }
        Ok(())
    }
}
