//! The API on `127.0.0.1:9598` (`[api] address`): `GET /metrics` (Prometheus text), `GET
//! /health` (200 while the process serves), `GET /ready` (200 once every component is ready,
//! else 503 with what it waits for), `POST /model/rollback[?transform=ID]` (the tag transforms
//! with `[transforms.<id>.updates]` go back to their previous bundle).
//!
//! `GET /tap?output=ID[.NAME][&limit=N][&seconds=S][&every=K]` answers up to `limit` (100,
//! at most 10,000) of the events leaving that output within `seconds` (5, at most 60), one
//! JSON line each, keeping 1 in `every` ([`crate::tap`]).
//!
//! `POST` endpoints change state and `/tap` shows records: with `api.token` (or `token_file`)
//! set they require `Authorization: Bearer <token>` (401 otherwise), and a config that listens
//! beyond loopback without a token is refused at start. `/metrics`, `/health` and `/ready` stay
//! open for probes and scrapes.

use hyper::Method;
use tokio::net::TcpListener;

use crate::config::ApiConfig;
use crate::health::Health;
use crate::metrics;
use crate::net::same_secret;
use crate::net::server::{self as http_server, response};
use crate::shutdown::Shutdown;
use crate::transforms::anomaly::model::Controls;

/// Serve the API on `address` until `shutdown`; `models` are the tag transforms' controls (the
/// pipeline registers them as it starts).
/// Connections the API serves at once.
const API_CONNECTIONS: usize = 64;

pub async fn start(
    cfg: &ApiConfig,
    health: Health,
    models: Controls,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let address = cfg.address;
    let token = Token::new(cfg)?;
    let listener =
        TcpListener::bind(address).await.map_err(|e| format!("api.address: cannot listen on {address}: {e}"))?;
    tracing::info!(%address, "API listening (/metrics, /health, /ready)");
    // Prometheus and a few operators: a small limit; no idle timeout, since `GET /tap` streams
    // to a client that sends nothing more.
    Ok(tokio::spawn(http_server::serve(listener, None, API_CONNECTIONS, None, shutdown, move |req| {
        let health = health.clone();
        let models = models.clone();
        let token = token.clone();
        async move {
            let guarded = req.method() == Method::POST || req.uri().path() == "/tap";
            if guarded && !token.allows(req.headers().get("authorization")) {
                let mut r = http_server::json(
                    401,
                    serde_json::json!({"error": "POST and /tap need Authorization: Bearer <api.token>"}),
                );
                r.headers_mut().insert("www-authenticate", hyper::header::HeaderValue::from_static("Bearer"));
                return r;
            }
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => {
                    response(200, "text/plain; version=0.0.4; charset=utf-8", metrics::global().render())
                }
                (&Method::GET, "/health") => http_server::json(200, serde_json::json!({"status": "ok"})),
                (&Method::GET, "/ready") => {
                    let (ready, waiting) = health.report();
                    let waiting: serde_json::Map<String, serde_json::Value> =
                        waiting.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
                    http_server::json(
                        if ready { 200 } else { 503 },
                        serde_json::json!({"ready": ready, "waiting": waiting}),
                    )
                }
                (&Method::POST, "/model/rollback") => {
                    let only = req
                        .uri()
                        .query()
                        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("transform=")).map(str::to_string));
                    match models.rollback(only.as_deref()).await {
                        Err(e) => http_server::json(404, serde_json::json!({"error": e})),
                        Ok(results) => {
                            let ok = results.values().all(|r| r.is_ok());
                            let body: serde_json::Map<String, serde_json::Value> = results
                                .into_iter()
                                .map(|(id, r)| {
                                    let v = match r {
                                        Ok(m) => serde_json::json!({"rolled_back": m}),
                                        Err(e) => serde_json::json!({"error": e}),
                                    };
                                    (id, v)
                                })
                                .collect();
                            http_server::json(if ok { 200 } else { 409 }, serde_json::Value::Object(body))
                        }
                    }
                }
                (&Method::GET, "/tap") => tap(req.uri().query().unwrap_or("")).await,
                (_, "/model/rollback") => http_server::json(405, serde_json::json!({"error": "use POST"})),
                (_, "/metrics" | "/health" | "/ready") => {
                    http_server::json(405, serde_json::json!({"error": "use GET"}))
                }
                _ => http_server::json(
                    404,
                    serde_json::json!({"error": "not found: try /metrics, /health, /ready, /tap?output=ID or POST /model/rollback"}),
                ),
            }
        }
    })))
}

/// `GET /tap`: events leaving an output, as JSON lines.
async fn tap(query: &str) -> hyper::Response<http_server::Body> {
    let param = |key: &str| query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
    let number = |key: &str, default: u64, max: u64| -> Result<u64, String> {
        match param(key) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("{key}: a number from 1 to {max}, got {v:?}")),
            },
        }
    };
    let args =
        (|| Ok::<_, String>((number("limit", 100, 10_000)?, number("seconds", 5, 60)?, number("every", 1, 1 << 30)?)))(
        );
    let ((limit, seconds, every), Some(output)) = (
        match args {
            Ok(a) => a,
            Err(e) => return http_server::json(400, serde_json::json!({"error": e})),
        },
        param("output"),
    ) else {
        return http_server::json(400, serde_json::json!({"error": "output: name one, e.g. /tap?output=tag"}));
    };
    let mut tap = match crate::tap::global().open(output, every, limit as usize) {
        Ok(t) => t,
        Err(e) => return http_server::json(404, serde_json::json!({"error": e})),
    };
    let mut body = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut n = 0;
    while n < limit {
        match tokio::time::timeout_at(deadline, tap.rx.recv()).await {
            Ok(Some(data)) => {
                body.extend_from_slice(&data);
                body.push(b'\n');
                n += 1;
            }
            _ => break,
        }
    }
    response(200, "application/x-ndjson", body)
}

/// The API token, if one is configured: inline, or a file read at every `POST` (they are
/// rare), so a rotated Secret takes effect at once and the old token stops working.
#[derive(Clone)]
struct Token {
    inline: Option<String>,
    file: Option<std::path::PathBuf>,
}

impl Token {
    /// Errors (an unreadable or empty file) name the key.
    fn new(cfg: &ApiConfig) -> Result<Token, String> {
        let token = Token { inline: cfg.token.clone(), file: cfg.token_file.clone() };
        token.current()?;
        Ok(token)
    }

    fn current(&self) -> Result<Option<String>, String> {
        crate::net::secret("api.token", self.inline.as_deref(), self.file.as_deref())
    }

    /// Whether an `Authorization` header carries the token (anything goes without one).
    fn allows(&self, header: Option<&hyper::header::HeaderValue>) -> bool {
        let given = header.and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
        match self.current() {
            Ok(None) => true,
            Ok(Some(want)) => same_secret(given, &want),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the API token; refusing the request");
                false
            }
        }
    }
}
