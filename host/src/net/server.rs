//! The listening side: one accept loop ([`accept`]: plain or TLS, stop accepting on shutdown,
//! let open connections finish) for every source that listens, and on it a small HTTP/1 server
//! on hyper ([`serve`]) for the API and the `http` source.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use super::tls::Stream;
use crate::config::duration::Dur;
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

/// Limits on the connections of a component that listens (`[sources.ID.connections]`).
#[derive(Clone, Copy, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    /// Connections served at once; more wait in the kernel's backlog until one closes.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// A connection whose client sends nothing for this long while we wait for it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
}

impl Default for Connections {
    fn default() -> Self {
        Connections { limit: default_limit(), idle_timeout: default_idle_timeout() }
    }
}

fn default_limit() -> usize {
    1024
}
fn default_idle_timeout() -> Dur {
    Dur::secs(300)
}

impl Connections {
    /// Checks; `key` is the table's (`sources.ID.connections`).
    pub fn check(&self, key: &str) -> Result<(), String> {
        if self.limit == 0 {
            return Err(format!("{key}.limit: must be at least 1"));
        }
        if self.idle_timeout.0.is_zero() {
            return Err(format!("{key}.idle_timeout: must be more than 0"));
        }
        Ok(())
    }
}

/// Serve `handler` on `listener` until `shutdown`, over TLS when `tls` is given, within
/// `limit` connections; `idle` closes connections whose client stays silent that long.
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limit: usize,
    idle: Option<Duration>,
    shutdown: Shutdown,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let stopping = shutdown.clone();
    accept(
        listener,
        tls,
        limit,
        idle,
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
/// `refused`, and closed); then wait for the open connections to finish. At most `limit` are
/// served at once (the next waits in the backlog); with `idle`, a read that waits that long
/// for the client fails as timed out, which closes the connection.
#[allow(clippy::too_many_arguments)]
pub async fn accept<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limit: usize,
    idle: Option<Duration>,
    shutdown: Shutdown,
    refused: impl Fn(SocketAddr) + Send + Sync + 'static,
    handler: H,
) where
    H: Fn(Box<dyn Stream>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (handler, refused) = (Arc::new(handler), Arc::new(refused));
    let mut conns = tokio::task::JoinSet::new();
    let address = listener.local_addr().ok();
    loop {
        // Finished connections leave nothing behind (a probe every few seconds must not grow
        // memory until shutdown).
        while conns.try_join_next().is_some() {}
        if conns.len() >= limit.max(1) {
            tracing::warn!(?address, limit, "connection limit reached; new connections wait until one closes");
            while conns.len() >= limit.max(1) {
                tokio::select! {
                    _ = shutdown.stopped() => break,
                    _ = conns.join_next() => {}
                }
            }
            if shutdown.is_stopping() {
                break;
            }
        }
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
        let (handler, refused, tls) = (handler.clone(), refused.clone(), tls.clone());
        conns.spawn(async move {
            let stream: Box<dyn Stream> = match tls {
                None => idle_after(stream, idle),
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => idle_after(stream, idle),
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

fn idle_after<S: Stream + 'static>(stream: S, idle: Option<Duration>) -> Box<dyn Stream> {
    match idle {
        Some(idle) => Box::new(Idle { inner: stream, idle, timer: None }),
        None => Box::new(stream),
    }
}

/// A stream whose reads fail as timed out when the client sends nothing for `idle` while we
/// wait for it. The clock runs only while a read waits: time spent elsewhere (delivering what
/// the client sent) does not count against the client.
struct Idle<S> {
    inner: S,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timer = None;
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the client sent nothing for {idle:?}"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
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
