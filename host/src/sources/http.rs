//! The `http` source: `POST` newline-delimited records (optionally gzip-compressed).
//!
//! ```toml
//! [sources.intake]
//! type = "http"
//! address = "0.0.0.0:8080"
//! path = "/flows"
//! decoding = "json"
//! auth.token = "${INTAKE_TOKEN}"          # Authorization: Bearer ...; or auth.token_file,
//!                                         # or auth.user with auth.password(_file) for Basic
//! tls.crt_file = "/etc/flowtag/tls/intake.crt"
//! tls.key_file = "/etc/flowtag/tls/intake.key"
//! # tls.client_ca_file = "/etc/flowtag/tls/clients-ca.pem"   # require client certificates
//! ```
//!
//! With `auth`, a request without the right credentials gets 401 and its body is not read.
//!
//! With `acknowledgements` (the default) the answer waits until every sink confirmed the
//! request's records: `200 {"accepted": n}` means they are delivered, and a sender that gets
//! no answer or a 503 (flowtag stopping) sends again. Without, 200 means accepted into the
//! pipeline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{decode_lines, SourceContext};
use crate::config::duration::Dur;
use crate::config::yes;
use crate::decode::{Decoder, Decoding};
use crate::event::{BatchAck, Event, Notifier};
use crate::net::same_secret;
use crate::net::server::{self as http_server, Body, Connections};
use crate::net::tls::ServerTlsConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub address: SocketAddr,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub decoding: Decoding,
    /// Extra names for the fields of JSON access logs (`decoding = "json_access"`).
    #[serde(default)]
    pub access_fields: std::sync::Arc<crate::decode::AccessFields>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "yes")]
    pub acknowledgements: bool,
    /// How long an acknowledged request may wait for its records to be delivered.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: Dur,
    /// Serve HTTPS with this certificate (and optionally require client certificates).
    pub tls: Option<ServerTlsConfig>,
    /// Require credentials: a bearer token or a user and password.
    pub auth: Option<AuthConfig>,
    /// How many connections at once, and how long one may stay silent.
    #[serde(default)]
    pub connections: Connections,
}

/// Credentials a sender must present. Secrets come from the environment (`${VAR}`) or files
/// (read at every request, so a rotated Secret takes effect at once).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl AuthConfig {
    fn check(&self, key: &str) -> Result<(), String> {
        let token = self.token.is_some() as u8 + self.token_file.is_some() as u8;
        let password = self.password.is_some() as u8 + self.password_file.is_some() as u8;
        match (token, self.user.is_some(), password) {
            (1, false, 0) | (0, true, 1) => Ok(()),
            (0, false, 0) => {
                Err(format!("{key}: give token (or token_file), or user with password (or password_file)"))
            }
            (2, _, _) => Err(format!("{key}.token_file: give token or token_file, not both")),
            (_, _, 2) => Err(format!("{key}.password_file: give password or password_file, not both")),
            (0, true, 0) => Err(format!("{key}.password: required with user")),
            (0, false, _) => Err(format!("{key}.user: required with a password")),
            _ => Err(format!("{key}: a token, or a user and password, not both")),
        }
    }

    /// Whether an `Authorization` header carries the credentials.
    fn allows(&self, header: Option<&hyper::header::HeaderValue>) -> bool {
        let given = header.and_then(|h| h.to_str().ok()).unwrap_or("");
        let secret = |key, inline: &Option<String>, file: &Option<PathBuf>| {
            crate::net::secret(key, inline.as_deref(), file.as_deref()).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the source's credentials; refusing the request");
                None
            })
        };
        if let Some(want) = secret("auth.token", &self.token, &self.token_file) {
            return given.strip_prefix("Bearer ").is_some_and(|t| same_secret(t, &want));
        }
        let (Some(user), Some(password)) = (&self.user, secret("auth.password", &self.password, &self.password_file))
        else {
            return false;
        };
        use base64::Engine;
        let want = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        given.strip_prefix("Basic ").is_some_and(|t| same_secret(t.trim(), &want))
    }
}

fn default_path() -> String {
    "/".into()
}
fn default_max_body() -> usize {
    16 << 20
}
fn default_ack_timeout() -> Dur {
    Dur::secs(30)
}

impl crate::component::ComponentConfig for HttpConfig {
    const TYPE: &'static str = "http";
    const DEAD_LETTER: bool = true;

    fn check(&self, id: &str) -> Result<(), String> {
        if let Some(auth) = &self.auth {
            auth.check(&format!("sources.{id}.auth"))?;
        }
        self.connections.check(&format!("sources.{id}.connections"))
    }
}

impl super::SourceType for HttpConfig {
    async fn start(self, ctx: SourceContext) -> Result<super::Started, String> {
        spawn(self, ctx).await.map(super::Started::Task)
    }
}

pub async fn spawn(cfg: HttpConfig, ctx: SourceContext) -> Result<tokio::task::JoinHandle<()>, String> {
    let (listener, tls) =
        super::bind(&ctx, cfg.address, cfg.tls.as_ref(), &format!("http source ({})", cfg.path)).await?;
    let shutdown = ctx.shutdown.clone();
    let connections = cfg.connections;
    let state = Arc::new((cfg, ctx, std::sync::atomic::AtomicU64::new(0)));
    let (limit, idle) = (connections.limit, Some(connections.idle_timeout.0));
    Ok(tokio::spawn(http_server::serve(listener, tls, limit, idle, shutdown, move |req| {
        let state = state.clone();
        async move { handle(req, &state.0, &state.1, &state.2).await }
    })))
}

async fn handle(
    req: Request<Incoming>,
    cfg: &HttpConfig,
    ctx: &SourceContext,
    next: &std::sync::atomic::AtomicU64,
) -> Response<Body> {
    if req.uri().path() != cfg.path {
        return http_server::json(404, serde_json::json!({"error": format!("POST records to {}", cfg.path)}));
    }
    if req.method() != Method::POST {
        return http_server::json(405, serde_json::json!({"error": "use POST"}));
    }
    if let Some(auth) = &cfg.auth {
        if !auth.allows(req.headers().get("authorization")) {
            ctx.metrics.error("unauthorized", 1);
            let scheme = if auth.user.is_some() { "Basic realm=\"flowtag\"" } else { "Bearer" };
            let mut r = http_server::json(401, serde_json::json!({"error": "credentials required (sources auth)"}));
            r.headers_mut().insert("www-authenticate", hyper::header::HeaderValue::from_static(scheme));
            return r;
        }
    }
    let gzip = req.headers().get("content-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = match Limited::new(req.into_body(), cfg.max_body_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            ctx.metrics.error("request", 1);
            return http_server::json(
                413,
                serde_json::json!({"error": format!("body: {e} (max_body_bytes = {})", cfg.max_body_bytes)}),
            );
        }
    };
    let body = if gzip {
        match gunzip(&body, cfg.max_body_bytes * 8) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                ctx.metrics.error("request", 1);
                return http_server::json(400, serde_json::json!({"error": format!("gzip body: {e}")}));
            }
        }
    } else {
        body
    };
    let mut decoder =
        Decoder::new(cfg.decoding).with_json_check(ctx.check_json).with_access_fields(cfg.access_fields.clone());
    let (mut events, bad) = decode_lines(&mut decoder, &body, &ctx.metrics);
    let n = events.len();
    if n == 0 {
        return http_server::json(200, serde_json::json!({"accepted": 0}));
    }
    ctx.metrics.received(n, body.len());
    let mut done = None;
    if cfg.acknowledgements {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ack = BatchAck::new(id, n, &ctx.paths, ctx.n_sinks, &[], Notifier::Tokio(tx));
        events = events.into_iter().map(|e| Event::with_ack(e.data, &ack)).collect();
        done = Some(rx);
    }
    if ctx.send(events, &bad).await.is_err() {
        return http_server::json(503, serde_json::json!({"error": "flowtag is stopping; send again"}));
    }
    ctx.metrics.sent(n);
    if let Some(mut rx) = done {
        let wait = async {
            while let Some(c) = rx.recv().await {
                if c.done {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(Duration::from(cfg.ack_timeout.0), wait).await {
            Ok(true) => {}
            _ => {
                return http_server::json(
                    503,
                    serde_json::json!({"error": "the records were not confirmed in time; send again"}),
                )
            }
        }
    }
    http_server::json(200, serde_json::json!({"accepted": n}))
}

pub fn gunzip(data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::other("decompressed body too large"));
    }
    Ok(out)
}
