//! The listening side: one accept loop ([`accept`]: plain or TLS, stop accepting on shutdown,
//! let open connections finish) for every source that listens, and on it a small HTTP/1 server
//! on hyper ([`serve`]) for the API and the `http` source.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::tls::Stream;
use crate::shutdown::Shutdown;
pub use tokio_rustls::TlsAcceptor;

pub type Body = Full<Bytes>;

pub fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

pub fn json(status: u16, value: serde_json::Value) -> Response<Body> {
    response(status, "application/json", serde_json::to_vec(&value).expect("JSON serializes"))
}

/// Serve `handler` on `listener` until `shutdown`, over TLS when `tls` is given.
pub async fn serve<H, F>(listener: TcpListener, tls: Option<TlsAcceptor>, shutdown: Shutdown, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let stopping = shutdown.clone();
    accept(
        listener,
        tls,
        shutdown,
        |_| {},
        move |stream, _| {
            let handler = handler.clone();
            let shutdown = stopping.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                connection(TokioIo::new(stream), service, shutdown).await
            }
        },
    )
    .await
}

/// Accept connections on `listener` until `shutdown` and run `handler` on each, after the TLS
/// handshake when `tls` is given (a client that fails it is logged, counted through
/// `refused`, and closed); then wait for the open connections to finish.
pub async fn accept<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
    refused: impl Fn(SocketAddr) + Send + Sync + 'static,
    handler: H,
) where
    H: Fn(Box<dyn Stream>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (handler, refused) = (Arc::new(handler), Arc::new(refused));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.stopped() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // E.g. out of file descriptors: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Finished connections leave nothing behind (a probe every few seconds must not grow
        // memory until shutdown).
        while conns.try_join_next().is_some() {}
        let (handler, refused, tls) = (handler.clone(), refused.clone(), tls.clone());
        conns.spawn(async move {
            let stream: Box<dyn Stream> = match tls {
                None => Box::new(stream),
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(e)) => {
                        refused(peer);
                        return tracing::warn!(%peer, error = %super::explain(&e), "TLS handshake refused");
                    }
                    Err(_) => {
                        refused(peer);
                        return tracing::warn!(%peer, "TLS handshake not finished in time");
                    }
                },
            };
            handler(stream, peer).await
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// One connection, served until it closes or `shutdown` (then open requests finish).
async fn connection<IO, S>(io: IO, service: S, shutdown: Shutdown)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.stopped() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
