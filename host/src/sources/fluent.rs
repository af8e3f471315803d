//! The `fluent` source: the Fluent forward protocol, so Fluent Bit (`[OUTPUT] name forward`)
//! or Fluentd (`<match> @type forward`) can send records to flowtag.
//!
//! ```toml
//! [sources.fluent]
//! type = "fluent"
//! address = "0.0.0.0:24224"
//! shared_key = "${FORWARD_SHARED_KEY}"   # optional: Fluent Bit's `Shared_Key`, Fluentd's <security>
//! tls.crt_file = "/etc/flowtag/tls/forward.crt"   # optional: TLS, and with
//! tls.key_file = "/etc/flowtag/tls/forward.key"   # tls.client_ca_file, client certificates
//! ```
//!
//! With `shared_key`, every connection starts with the protocol's handshake (`HELO`, `PING`,
//! `PONG`, [`crate::fluent_forward::handshake`]); a client that does not prove it holds the key
//! gets a refusing `PONG` and the connection is closed before anything it sent is read.
//!
//! Each record gets the message's `tag` and the entry's time as `timestamp` (Unix seconds, to
//! the nanosecond: `1700000000.123456789`) unless it has them; the metadata of Fluent Bit's v2
//! entries goes under `metadata_key` (default `fluent_metadata`).
//!
//! A message that carries a `chunk` id is acknowledged (`{"ack": chunk}`) only after every
//! sink confirmed its records (Fluent Bit: `Require_ack_response true`; Fluentd:
//! `require_ack_response`), so the sender resends what was not confirmed. See
//! [`crate::fluent_forward`] for the modes understood.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::SourceContext;
use crate::config::duration::Dur;
use crate::event::{BatchAck, Event, Notifier};
use crate::fluent_forward as forward;
use crate::net::server::Connections;
use crate::net::tls::{ServerTlsConfig, Stream};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluentConfig {
    pub address: SocketAddr,
    /// Largest message accepted; a connection sending a larger one is closed.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// How long a `chunk` may wait for its records to be confirmed before the ack is skipped
    /// (the sender then resends).
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: Dur,
    /// The forward protocol's `shared_key` (`"${FORWARD_SHARED_KEY}"`): a client must prove it
    /// holds it in the `HELO`/`PING`/`PONG` handshake before anything it sends is read.
    pub shared_key: Option<String>,
    /// Accept TLS connections only, with this certificate (and optionally require client
    /// certificates signed by `client_ca_file`): Fluent Bit's `tls on`, Fluentd's `<transport tls>`.
    pub tls: Option<ServerTlsConfig>,
    /// Where Fluent Bit's per-record metadata (its v2 entries, `[[time, metadata], record]`)
    /// is kept in the record.
    #[serde(default = "default_metadata_key")]
    pub metadata_key: String,
    /// How many connections at once, and how long one may stay silent.
    #[serde(default)]
    pub connections: Connections,
}

fn default_metadata_key() -> String {
    "fluent_metadata".into()
}

fn default_max_message() -> usize {
    64 << 20
}
fn default_ack_timeout() -> Dur {
    Dur::secs(30)
}

impl crate::component::ComponentConfig for FluentConfig {
    const TYPE: &'static str = "fluent";
    const DEAD_LETTER: bool = true;

    fn check(&self, id: &str) -> Result<(), String> {
        self.connections.check(&format!("sources.{id}.connections"))
    }
}

impl super::SourceType for FluentConfig {
    async fn start(self, ctx: SourceContext) -> Result<super::Started, String> {
        spawn(self, ctx).await.map(super::Started::Task)
    }
}

pub async fn spawn(cfg: FluentConfig, ctx: SourceContext) -> Result<tokio::task::JoinHandle<()>, String> {
    let (address, tls) = (cfg.address, cfg.tls.clone());
    let batches = Arc::new(AtomicU64::new(0));
    super::listen(ctx, address, tls.as_ref(), cfg.connections, "fluent forward source", move |stream, peer, ctx| {
        let (cfg, batches) = (cfg.clone(), batches.clone());
        async move {
            if let Err(e) = connection(stream, &cfg, &ctx, &batches).await {
                ctx.metrics.error("protocol", 1);
                tracing::warn!(%peer, error = %e, "forward connection closed");
            }
        }
    })
    .await
}

async fn connection(
    mut stream: Box<dyn Stream>,
    cfg: &FluentConfig,
    ctx: &SourceContext,
    batches: &AtomicU64,
) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    // With a shared key, nothing is read before the client passed the handshake.
    let nonce: Option<[u8; 16]> = cfg.shared_key.as_ref().map(|_| rand::random());
    let mut authenticated = nonce.is_none();
    if let Some(nonce) = &nonce {
        stream.write_all(&forward::handshake::helo(nonce)).await.map_err(|e| e.to_string())?;
    }
    // How much of the message at the front of `buf` has arrived: measured as bytes come in,
    // each byte walked once, and the message decoded once, when it is whole.
    let mut measure = forward::Measure::default();
    loop {
        // Handle every complete message in the buffer.
        let mut start = 0;
        loop {
            let len = match measure.measure(&buf[start..]) {
                Ok(Some(len)) => len,
                // The rest of the message has not arrived yet.
                Ok(None) => break,
                Err(e) => return Err(format!("not msgpack: {e}")),
            };
            let value =
                rmpv::decode::read_value(&mut &buf[start..start + len]).map_err(|e| format!("not msgpack: {e}"))?;
            start += len;
            if !authenticated {
                let (nonce, key) = (nonce.as_ref().expect("set with the key"), cfg.shared_key.as_deref().unwrap_or(""));
                match forward::handshake::check_ping(&value, nonce, key) {
                    Ok((_, salt)) => {
                        let pong = forward::handshake::pong(true, "", &crate::net::hostname(), &salt, nonce, key);
                        stream.write_all(&pong).await.map_err(|e| e.to_string())?;
                        authenticated = true;
                        continue;
                    }
                    Err(why) => {
                        ctx.metrics.error("unauthorized", 1);
                        let pong = forward::handshake::pong(false, "shared_key mismatch", "", b"", nonce, key);
                        let _ = stream.write_all(&pong).await;
                        return Err(format!("handshake refused: {why}"));
                    }
                }
            }
            let message = forward::parse(value)?;
            handle(message, &mut stream, cfg, ctx, batches).await?;
        }
        buf.drain(..start);
        if buf.len() > cfg.max_message_bytes {
            return Err(format!("message larger than max_message_bytes ({})", cfg.max_message_bytes));
        }
        let n = tokio::select! {
            _ = ctx.shutdown.stopped() => return Ok(()),
            r = stream.read(&mut chunk) => r.map_err(|e| e.to_string())?,
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn handle(
    message: forward::Message,
    stream: &mut Box<dyn Stream>,
    cfg: &FluentConfig,
    ctx: &SourceContext,
    batches: &AtomicU64,
) -> Result<(), String> {
    let mut data = Vec::new();
    let mut ends = Vec::with_capacity(message.entries.len());
    let mut bad = Vec::new();
    for entry in &message.entries {
        match forward::record_to_json(entry, &message.tag, &cfg.metadata_key, &mut data) {
            Ok(()) => ends.push(data.len()),
            Err(why) => {
                // Not a map: kept, as a malformed record.
                let why = format!("forward: {why}");
                crate::decode::malformed(entry.record.to_string().as_bytes(), &why, &mut data);
                bad.push((ends.len(), why));
                ends.push(data.len());
                ctx.metrics.error("decode", 1);
            }
        }
    }
    let n = ends.len();
    let bytes = bytes::Bytes::from(data);
    let mut start = 0;
    let mut events: Vec<Event> = ends
        .iter()
        .map(|&end| {
            let e = Event::new(bytes.slice(start..end));
            start = end;
            e
        })
        .collect();
    ctx.metrics.received(n, bytes.len());
    let mut wait = None;
    if message.chunk.is_some() && n > 0 {
        let (tx, rx) = mpsc::unbounded_channel();
        let ack = BatchAck::new(
            batches.fetch_add(1, Ordering::Relaxed),
            n,
            &ctx.paths,
            ctx.n_sinks,
            &[],
            Notifier::Tokio(tx),
        );
        events = events.into_iter().map(|e| Event::with_ack(e.data, &ack)).collect();
        wait = Some(rx);
    }
    if n > 0 {
        ctx.send(events, &bad).await.map_err(|_| "the pipeline is stopping".to_string())?;
        ctx.metrics.sent(n);
    }
    if let Some(chunk) = message.chunk {
        if let Some(mut rx) = wait {
            let confirmed = async {
                while let Some(c) = rx.recv().await {
                    if c.done {
                        return true;
                    }
                }
                false
            };
            if !tokio::time::timeout(Duration::from(cfg.ack_timeout.0), confirmed).await.unwrap_or(false) {
                // No ack: the sender resends the chunk.
                tracing::warn!(%chunk, "records not confirmed in time; chunk not acknowledged");
                return Ok(());
            }
        }
        let mut reply = Vec::new();
        rmp::encode::write_map_len(&mut reply, 1).expect("vec write");
        rmp::encode::write_str(&mut reply, "ack").expect("vec write");
        rmp::encode::write_str(&mut reply, &chunk).expect("vec write");
        stream.write_all(&reply).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
