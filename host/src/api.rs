//! The API on `127.0.0.1:9598` (`[api] address`): `GET /metrics` (Prometheus text), `GET
//! /health` (200 while the process serves), `GET /ready` (200 once every component is ready,
//! else 503 with what it waits for), `POST /model/rollback[?transform=ID]` (the tag transforms
//! with `[transforms.<id>.updates]` go back to their previous bundle).

use hyper::Method;
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics;
use crate::net::server::{self as http_server, response};
use crate::shutdown::Shutdown;
use crate::transforms::anomaly::model::Controls;

/// Serve the API on `address` until `shutdown`; `models` are the tag transforms' controls (the
/// pipeline registers them as it starts).
pub async fn start(
    address: std::net::SocketAddr,
    health: Health,
    models: Controls,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener =
        TcpListener::bind(address).await.map_err(|e| format!("api.address: cannot listen on {address}: {e}"))?;
    tracing::info!(%address, "API listening (/metrics, /health, /ready)");
    Ok(tokio::spawn(http_server::serve(listener, shutdown, move |req| {
        let health = health.clone();
        let models = models.clone();
        async move {
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
                (_, "/model/rollback") => http_server::json(405, serde_json::json!({"error": "use POST"})),
                (_, "/metrics" | "/health" | "/ready") => {
                    http_server::json(405, serde_json::json!({"error": "use GET"}))
                }
                _ => http_server::json(
                    404,
                    serde_json::json!({"error": "not found: try /metrics, /health, /ready or POST /model/rollback"}),
                ),
            }
        }
    })))
}
