//! The `tcp` source: newline-delimited records over TCP connections.
//!
//! ```toml
//! [sources.collector]
//! type = "tcp"
//! address = "0.0.0.0:5170"
//! decoding = "json"
//! tls.crt_file = "/etc/flowtag/tls/collector.crt"   # optional: TLS, and with
//! tls.key_file = "/etc/flowtag/tls/collector.key"   # tls.client_ca_file, client certificates
//! ```
//!
//! TCP has no application-level acknowledgement: a record is in flowtag's hands once read. Use
//! the `http` or `fluent` source where the sender must learn that delivery succeeded.

use std::net::SocketAddr;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::{decode_lines, SourceContext};
use crate::decode::{Decoder, Decoding};
use crate::net::server::Connections;
use crate::net::tls::ServerTlsConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    pub address: SocketAddr,
    #[serde(default)]
    pub decoding: Decoding,
    /// Extra names for the fields of JSON access logs (`decoding = "json_access"`).
    #[serde(default)]
    pub access_fields: std::sync::Arc<crate::decode::AccessFields>,
    /// A longer line is cut (its start goes on as a malformed record).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Accept TLS connections only, with this certificate (and optionally require client
    /// certificates signed by `client_ca_file`).
    pub tls: Option<ServerTlsConfig>,
    /// How many connections at once, and how long one may stay silent.
    #[serde(default)]
    pub connections: Connections,
}

fn default_max_line_bytes() -> usize {
    1 << 20
}

impl crate::component::ComponentConfig for TcpConfig {
    const TYPE: &'static str = "tcp";
    const DEAD_LETTER: bool = true;

    fn check(&self, id: &str) -> Result<(), String> {
        self.connections.check(&format!("sources.{id}.connections"))
    }
}

impl super::SourceType for TcpConfig {
    async fn start(self, ctx: SourceContext) -> Result<super::Started, String> {
        spawn(self, ctx).await.map(super::Started::Task)
    }
}

pub async fn spawn(cfg: TcpConfig, ctx: SourceContext) -> Result<tokio::task::JoinHandle<()>, String> {
    let (address, tls) = (cfg.address, cfg.tls.clone());
    super::listen(ctx, address, tls.as_ref(), cfg.connections, "tcp source", move |stream, peer, ctx| {
        let cfg = cfg.clone();
        async move { connection(stream, peer, cfg, &ctx).await }
    })
    .await
}

async fn connection(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    peer: SocketAddr,
    cfg: TcpConfig,
    ctx: &SourceContext,
) {
    let mut decoder =
        Decoder::new(cfg.decoding).with_json_check(ctx.check_json).with_access_fields(cfg.access_fields.clone());
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = tokio::select! {
            _ = ctx.shutdown.stopped() => 0,
            r = stream.read(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection error");
                    0
                }
            },
        };
        if n == 0 {
            // The last line may lack its newline.
            if !pending.is_empty() {
                pending.push(b'\n');
                send(&mut decoder, &pending, ctx).await;
            }
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        let Some(last_nl) = pending.iter().rposition(|&b| b == b'\n') else {
            if pending.len() > cfg.max_line_bytes {
                let mut cut = pending[..cfg.max_line_bytes].to_vec();
                cut.push(b'\n');
                send(&mut decoder, &cut, ctx).await;
                ctx.metrics.discarded("line_too_long", 1);
                pending.clear();
            }
            continue;
        };
        let rest = pending.split_off(last_nl + 1);
        send(&mut decoder, &pending, ctx).await;
        pending = rest;
    }
}

async fn send(decoder: &mut Decoder, data: &[u8], ctx: &SourceContext) {
    let (events, bad) = decode_lines(decoder, data, &ctx.metrics);
    if events.is_empty() {
        return;
    }
    let n = events.len();
    ctx.metrics.received(n, data.len());
    if ctx.send(events, &bad).await.is_ok() {
        ctx.metrics.sent(n);
    }
}
