//! Where pushed models come from: `[transforms.<id>.updates]`.
//!
//! ```toml
//! [transforms.tag.updates]
//! source = "mlflow"                    # "dir" | "http" | "mlflow"
//! uri = "http://mlflow:5000"           # mlflow: the tracking server (REST API)
//! model_name = "flows"                 # mlflow: registered model
//! alias = "champion"                   # mlflow: the alias to follow
//! interval = "5m"                      # how often to look
//! timeout = "60s"                      # one check, download included
//! public_key = "/etc/flowtag/keys/models.pub"  # refuse unsigned or wrongly signed bundles
//! # pin = "3"                          # stay on this version (skip any other)
//! ```
//!
//! With `source = "dir"`, `path` names a bundle directory or `.tar` (a ConfigMap volume); with
//! `source = "http"`, `url` names a bundle `.tar`, polled with `If-None-Match`. Each source
//! refuses the others' keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

/// The largest file an update downloads (a bundle, or one of its files from MLflow): refused as
/// it arrives beyond this, before it is held, let alone checked.
pub const MAX_DOWNLOAD_BYTES: usize = 512 << 20;
use http_body_util::Full;
use hyper::Request;
use serde::Deserialize;

use crate::config::duration::Dur;
use crate::net::client::{self, snippet, HttpClient};
use crate::net::tls::TlsConfig;
use flowtag_plugin::bundle::{sha256_hex, MANIFEST, MODEL, SIGNATURE};
use flowtag_plugin::{Bundle, BundleError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatesConfig {
    pub source: UpdateSource,
    pub path: Option<PathBuf>,
    pub url: Option<String>,
    pub uri: Option<String>,
    pub model_name: Option<String>,
    #[serde(default = "default_alias")]
    pub alias: String,
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    pub public_key: Option<PathBuf>,
    pub pin: Option<String>,
    /// Take bundles without canary rows (which a node cannot check before serving them);
    /// refused by default.
    #[serde(default)]
    pub allow_without_canaries: bool,
    #[serde(default)]
    pub tls: TlsConfig,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpdateSource {
    Dir,
    Http,
    Mlflow,
}

fn default_alias() -> String {
    "champion".into()
}
fn default_interval() -> Dur {
    Dur::secs(300)
}
fn default_timeout() -> Dur {
    Dur::secs(60)
}

impl UpdatesConfig {
    /// Structural checks; `key` is `transforms.<id>.updates`.
    pub fn check(&self, key: &str) -> Result<(), String> {
        let need = |v: bool, what: &str, example: &str| {
            if v {
                Ok(())
            } else {
                Err(format!("{key}.{what}: source = \"{}\" needs it, e.g. {what} = {example}", self.source_name()))
            }
        };
        let stray = |v: bool, what: &str| {
            if v {
                Err(format!("{key}.{what}: not used with source = \"{}\"; remove it", self.source_name()))
            } else {
                Ok(())
            }
        };
        match self.source {
            UpdateSource::Dir => {
                need(self.path.is_some(), "path", "\"/etc/flowtag/models/next\"")?;
                stray(self.url.is_some(), "url")?;
                stray(self.uri.is_some(), "uri")?;
                stray(self.model_name.is_some(), "model_name")?;
            }
            UpdateSource::Http => {
                need(self.url.is_some(), "url", "\"https://models.example/flows.tar\"")?;
                stray(self.path.is_some(), "path")?;
                stray(self.uri.is_some(), "uri")?;
                stray(self.model_name.is_some(), "model_name")?;
                crate::net::check_url(&format!("{key}.url"), self.url.as_deref().unwrap_or(""))?;
            }
            UpdateSource::Mlflow => {
                need(self.uri.is_some(), "uri", "\"http://mlflow:5000\"")?;
                need(self.model_name.is_some(), "model_name", "\"flows\"")?;
                stray(self.path.is_some(), "path")?;
                stray(self.url.is_some(), "url")?;
                crate::net::check_url(&format!("{key}.uri"), self.uri.as_deref().unwrap_or(""))?;
            }
        }
        if self.interval.0 < Duration::from_millis(100) {
            return Err(format!("{key}.interval: {} is too short (at least 100ms)", self.interval));
        }
        if self.pin.as_deref() == Some("") {
            return Err(format!("{key}.pin: empty; give a version or remove it"));
        }
        Ok(())
    }

    fn source_name(&self) -> &'static str {
        match self.source {
            UpdateSource::Dir => "dir",
            UpdateSource::Http => "http",
            UpdateSource::Mlflow => "mlflow",
        }
    }

    /// Where updates come from, for logs.
    pub fn describe(&self) -> String {
        match self.source {
            UpdateSource::Dir => format!("dir {}", self.path.as_deref().unwrap_or(Path::new("")).display()),
            UpdateSource::Http => format!("http {}", self.url.as_deref().unwrap_or("")),
            UpdateSource::Mlflow => format!(
                "mlflow {} model {}@{}",
                self.uri.as_deref().unwrap_or(""),
                self.model_name.as_deref().unwrap_or(""),
                self.pin.as_deref().unwrap_or(&self.alias)
            ),
        }
    }
}

/// The files of a candidate bundle, as fetched (not yet checked).
pub struct Candidate {
    pub files: Files,
    /// sha256 over what was fetched: the same bytes twice are the same candidate.
    pub fingerprint: String,
    /// Where it came from, for logs.
    pub origin: String,
}

pub enum Files {
    Tar(Vec<u8>),
    Parts { manifest: Vec<u8>, model: Vec<u8>, signature: Option<Vec<u8>> },
}

impl Candidate {
    fn new(files: Files, origin: String) -> Candidate {
        let fingerprint = match &files {
            Files::Tar(b) => sha256_hex(b),
            Files::Parts { manifest, model, signature } => {
                let mut all = Vec::with_capacity(manifest.len() + model.len() + 64);
                for part in [&manifest[..], &model[..], signature.as_deref().unwrap_or(b"")] {
                    all.extend_from_slice(&(part.len() as u64).to_le_bytes());
                    all.extend_from_slice(part);
                }
                sha256_hex(&all)
            }
        };
        Candidate { files, fingerprint, origin }
    }

    pub fn parse(self) -> Result<Bundle, BundleError> {
        match self.files {
            Files::Tar(b) => Bundle::from_tar(&b),
            Files::Parts { manifest, model, signature } => Bundle::from_parts(manifest, model, signature),
        }
    }
}

pub enum Fetched {
    /// Nothing new since the last check.
    Unchanged,
    Candidate(Candidate),
}

/// One update source, with what it remembers between checks (ETag, last version seen).
pub struct Fetcher {
    cfg: UpdatesConfig,
    client: Option<HttpClient>,
    etag: Option<String>,
    /// The ETag of the candidate being checked; it becomes `etag` once that one is settled.
    pending_etag: Option<String>,
    /// The fingerprint (dir) or version (mlflow) last fetched, once it was dealt with.
    last: Option<String>,
}

impl Fetcher {
    pub fn new(cfg: &UpdatesConfig) -> Result<Fetcher, String> {
        let client = match cfg.source {
            UpdateSource::Dir => None,
            _ => Some(client::build(&cfg.tls)?),
        };
        Ok(Fetcher { cfg: cfg.clone(), client, etag: None, pending_etag: None, last: None })
    }

    /// Look for a new bundle. `Err` when the source could not be reached or answered wrongly.
    pub async fn fetch(&mut self) -> Result<Fetched, String> {
        let timeout = self.cfg.timeout.0;
        match tokio::time::timeout(timeout, self.fetch_inner()).await {
            Ok(r) => r,
            Err(_) => Err(format!("{}: no answer within {}", self.cfg.describe(), self.cfg.timeout)),
        }
    }

    /// Remember that the last candidate was dealt with (accepted or refused for good), so the
    /// same one is not fetched again.
    pub fn settled(&mut self, fingerprint: &str) {
        self.last = Some(fingerprint.to_string());
        if let Some(e) = self.pending_etag.take() {
            self.etag = Some(e);
        }
    }

    async fn fetch_inner(&mut self) -> Result<Fetched, String> {
        match self.cfg.source {
            UpdateSource::Dir => {
                let path = self.cfg.path.clone().expect("checked");
                let c = tokio::task::spawn_blocking(move || read_dir_candidate(&path))
                    .await
                    .map_err(|e| format!("reading the bundle: {e}"))??;
                if self.last.as_deref() == Some(&c.fingerprint) {
                    return Ok(Fetched::Unchanged);
                }
                Ok(Fetched::Candidate(c))
            }
            UpdateSource::Http => {
                let url = self.cfg.url.clone().expect("checked");
                let mut req = Request::get(&url);
                if let Some(etag) = &self.etag {
                    req = req.header("if-none-match", etag);
                }
                let (status, headers, body) =
                    self.get(req.body(Full::new(Bytes::new())).expect("valid request")).await?;
                match status {
                    304 => Ok(Fetched::Unchanged),
                    200 => {
                        let etag = headers.get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
                        let mut c = Candidate::new(Files::Tar(body.to_vec()), url.clone());
                        if let Some(e) = &etag {
                            c.origin = format!("{url} (ETag {e})");
                        }
                        self.pending_etag = etag;
                        Ok(Fetched::Candidate(c))
                    }
                    s => Err(format!("{url}: HTTP {s}: {}", snippet(&body))),
                }
            }
            UpdateSource::Mlflow => self.fetch_mlflow().await,
        }
    }

    async fn get(&self, req: Request<Full<Bytes>>) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
        let http = self.client.as_ref().expect("an HTTP source has a client");
        let shown = req.uri().to_string();
        let answer = client::send_limited(http, req, self.cfg.timeout.0, &shown, MAX_DOWNLOAD_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        Ok((answer.status, answer.headers, answer.body))
    }

    async fn get_ok(&self, url: String) -> Result<Option<Bytes>, String> {
        let (status, _, body) =
            self.get(Request::get(&url).body(Full::new(Bytes::new())).expect("valid request")).await?;
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            s => Err(format!("{url}: HTTP {s}: {}", snippet(&body))),
        }
    }

    /// Resolve the alias (or the pinned version) through MLflow's REST API, then download the
    /// version's bundle files (`model-versions/get-artifact`, relative to the version's source,
    /// which `flowtag-train` registers as the run's `bundle` folder).
    async fn fetch_mlflow(&mut self) -> Result<Fetched, String> {
        let base = self.cfg.uri.clone().expect("checked").trim_end_matches('/').to_string();
        let name = self.cfg.model_name.clone().expect("checked");
        let version = match &self.cfg.pin {
            Some(v) => v.clone(),
            None => {
                let url = format!(
                    "{base}/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
                    encode(&name),
                    encode(&self.cfg.alias)
                );
                let body = self
                    .get_ok(url.clone())
                    .await?
                    .ok_or_else(|| format!("{url}: model {name:?} has no alias {:?} (HTTP 404)", self.cfg.alias))?;
                let doc: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
                doc["model_version"]["version"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{url}: no model_version.version in the answer: {}", snippet(&body)))?
            }
        };
        if self.last.as_deref() == Some(&version) {
            return Ok(Fetched::Unchanged);
        }
        let file = |f: &str| {
            format!("{base}/model-versions/get-artifact?name={}&version={}&path={f}", encode(&name), encode(&version))
        };
        let manifest = self.get_ok(file(MANIFEST)).await?.ok_or_else(|| {
            format!("{name} version {version}: no {MANIFEST} in its artifacts (is it a flowtag bundle?)")
        })?;
        let model = self
            .get_ok(file(MODEL))
            .await?
            .ok_or_else(|| format!("{name} version {version}: no {MODEL} in its artifacts"))?;
        let signature = self.get_ok(file(SIGNATURE)).await?;
        let files = Files::Parts {
            manifest: manifest.to_vec(),
            model: model.to_vec(),
            signature: signature.map(|s| s.to_vec()),
        };
        let mut c = Candidate::new(files, format!("{base} {name} version {version}"));
        // The key that marks this candidate as dealt with is its version.
        c.fingerprint = version;
        Ok(Fetched::Candidate(c))
    }
}

/// A bundle directory (or `.tar`) on disk, read whole. A bundle being written shows up as a
/// candidate that fails its checks; the updater waits for it to settle (see `Updater`).
fn read_dir_candidate(path: &Path) -> Result<Candidate, String> {
    let read = |p: &Path| {
        let len = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?.len();
        if len > MAX_DOWNLOAD_BYTES as u64 {
            return Err(format!("{}: {len} bytes, more than an update takes ({MAX_DOWNLOAD_BYTES})", p.display()));
        }
        std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let origin = path.display().to_string();
    if path.is_dir() {
        let opt = |name: &str| {
            let p = path.join(name);
            if p.exists() {
                read(&p).map(Some)
            } else {
                Ok(None)
            }
        };
        let manifest = opt(MANIFEST)?.ok_or_else(|| format!("{origin}: no {MANIFEST} (yet)"))?;
        let model = opt(MODEL)?.ok_or_else(|| format!("{origin}: no {MODEL} (yet)"))?;
        Ok(Candidate::new(Files::Parts { manifest, model, signature: opt(SIGNATURE)? }, origin))
    } else {
        Ok(Candidate::new(Files::Tar(read(path)?), origin))
    }
}

/// Percent-encoding for a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
