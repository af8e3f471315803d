//! The `fluent` sink: the Fluent forward protocol (PackedForward mode) to Fluentd or Fluent
//! Bit (`[INPUT] name forward`).
//!
//! ```toml
//! [sinks.aggregator]
//! type = "fluent"
//! inputs = ["tag"]
//! address = "fluentd.logging:24224"
//! tag = "flowtag.flows"
//! shared_key = "${FORWARD_SHARED_KEY}"   # optional: the peer's shared key
//! tls.ca_file = "/etc/flowtag/tls/logging-ca.pem"   # optional: TLS (`tls = {}`: system roots)
//! ```
//!
//! Any `tls` table turns TLS on (Fluent Bit's `tls on`, Fluentd's `<transport tls>`): the peer's
//! certificate is verified against the system roots plus `tls.ca_file`, and `tls.crt_file` /
//! `tls.key_file` present a client certificate.
//!
//! With `shared_key`, each new connection passes the protocol's handshake first, and the peer
//! must prove it holds the key too (its `PONG` digest), or nothing is sent.
//!
//! Each request is one `[tag, <entries>, {"size": n, "chunk": id}]` message; with `require_ack`
//! (the default) the events are confirmed only when the peer answers `{"ack": id}`, else
//! the message is sent again on a new connection.

use base64::Engine;
use rand::Rng;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{BatchConfig, Batching, RequestConfig, SendError, Sent, Service, SinkType};
use crate::component::ComponentConfig;
use crate::event::Event;
use crate::fluent_forward as forward;
use crate::net::tls::{self, Stream, TlsConfig};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluentSinkConfig {
    pub inputs: Vec<String>,
    /// Where events wait for this sink ([`crate::buffer`]).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// `host:port` of the forward input.
    pub address: String,
    #[serde(default = "default_tag")]
    pub tag: String,
    #[serde(default = "crate::config::yes")]
    pub require_ack: bool,
    /// The forward protocol's `shared_key` (`"${FORWARD_SHARED_KEY}"`): each connection starts
    /// with the `HELO`/`PING`/`PONG` handshake, and the peer must prove it holds the key too.
    pub shared_key: Option<String>,
    /// TLS to the peer (absent: plain TCP).
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub batch: BatchConfig,
}

fn default_tag() -> String {
    "flowtag".into()
}

impl ComponentConfig for FluentSinkConfig {
    const TYPE: &'static str = "fluent";
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn buffer(&self) -> Option<&crate::buffer::BufferConfig> {
        Some(&self.buffer)
    }
    fn check(&self, id: &str) -> Result<(), String> {
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
            _ => Err(format!("sinks.{id}.address: {:?} is not host:port", self.address)),
        }
    }
}

impl SinkType for FluentSinkConfig {
    const BATCH: Batching =
        Batching { max_events: 1000, max_bytes: 4 << 20, timeout: std::time::Duration::from_secs(1) };
    fn batch(&self) -> &BatchConfig {
        &self.batch
    }
    fn request(&self) -> RequestConfig {
        self.request.clone()
    }
    fn build(&self, id: &str) -> Result<impl Service, String> {
        FluentSink::new(self).map_err(|e| format!("sinks.{id}.{e}"))
    }
}

pub struct FluentSink {
    cfg: FluentSinkConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Option<Box<dyn Stream>>,
}

impl FluentSink {
    /// The sink, or why not (a TLS file that cannot be read, naming its key under `tls.`).
    pub fn new(cfg: &FluentSinkConfig) -> Result<FluentSink, String> {
        let tls = cfg.tls.as_ref().map(tls::connector).transpose()?;
        Ok(FluentSink { cfg: cfg.clone(), tls, conn: None })
    }

    /// The PackedForward message for a batch, and its chunk id. Each entry is `[EventTime,
    /// record]`: the record's msgpack is written straight from its JSON bytes (key order kept),
    /// its time is its `timestamp` to the nanosecond, else now; a line that is not a JSON
    /// object goes as `{"message": line}`.
    fn encode(&self, events: &[Event]) -> (Vec<u8>, String) {
        let now = forward::EventTime::now();
        let mut entries = Vec::with_capacity(events.iter().map(|e| e.data.len() + 16).sum());
        for e in events {
            entries.push(0x92);
            let at = entries.len();
            entries.extend_from_slice(&[0; 10]);
            let time = match forward::msgpack::object(&e.data, &mut entries) {
                Ok(t) => t.unwrap_or(now),
                Err(_) => {
                    entries.push(0x81);
                    rmp::encode::write_str(&mut entries, "message").expect("vec write");
                    rmp::encode::write_str(&mut entries, &String::from_utf8_lossy(&e.data)).expect("vec write");
                    now
                }
            };
            entries[at..at + 10].copy_from_slice(&time.to_msgpack());
        }
        let chunk = base64::engine::general_purpose::STANDARD.encode(rand::thread_rng().gen::<[u8; 16]>());
        let mut msg = Vec::with_capacity(entries.len() + 64);
        rmp::encode::write_array_len(&mut msg, 3).expect("vec write");
        rmp::encode::write_str(&mut msg, &self.cfg.tag).expect("vec write");
        rmp::encode::write_bin(&mut msg, &entries).expect("vec write");
        let option_len = if self.cfg.require_ack { 2 } else { 1 };
        rmp::encode::write_map_len(&mut msg, option_len).expect("vec write");
        rmp::encode::write_str(&mut msg, "size").expect("vec write");
        rmp::encode::write_uint(&mut msg, events.len() as u64).expect("vec write");
        if self.cfg.require_ack {
            rmp::encode::write_str(&mut msg, "chunk").expect("vec write");
            rmp::encode::write_str(&mut msg, &chunk).expect("vec write");
        }
        (msg, chunk)
    }

    async fn exchange(&mut self, msg: &[u8], chunk: &str) -> Result<(), String> {
        if self.conn.is_none() {
            let address = &self.cfg.address;
            let tcp = TcpStream::connect(address).await.map_err(|e| format!("connect {address}: {e}"))?;
            tcp.set_nodelay(true).ok();
            let mut stream: Box<dyn Stream> = match &self.tls {
                None => Box::new(tcp),
                Some(connector) => Box::new(tls::connect(connector, address, tcp).await?),
            };
            if let Some(key) = &self.cfg.shared_key {
                handshake(&mut stream, key).await.map_err(|e| format!("{}: {e}", self.cfg.address))?;
            }
            self.conn = Some(stream);
        }
        let conn = self.conn.as_mut().expect("connected");
        conn.write_all(msg).await.map_err(|e| format!("write: {e}"))?;
        if !self.cfg.require_ack {
            return Ok(());
        }
        let v = read_value(conn, "the ack").await?;
        let ack =
            v.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("ack"))).and_then(|(_, v)| v.as_str());
        match ack {
            Some(a) if a == chunk => Ok(()),
            other => Err(format!("unexpected answer {v} (waiting for ack {chunk}, got {other:?})")),
        }
    }
}

/// The client side of the forward protocol's `shared_key` handshake on a new connection.
async fn handshake(conn: &mut Box<dyn Stream>, key: &str) -> Result<(), String> {
    use crate::fluent_forward::handshake;
    let nonce = handshake::read_helo(&read_value(conn, "HELO").await?)?;
    let salt: [u8; 16] = rand::random();
    conn.write_all(&handshake::ping(&crate::net::hostname(), &salt, &nonce, key))
        .await
        .map_err(|e| format!("write: {e}"))?;
    handshake::check_pong(&read_value(conn, "PONG").await?, &salt, &nonce, key)
}

/// One msgpack value from the peer (its answers are small and come one at a time).
async fn read_value(conn: &mut Box<dyn Stream>, what: &str) -> Result<rmpv::Value, String> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    loop {
        let n = conn.read(&mut piece).await.map_err(|e| format!("reading {what}: {e}"))?;
        if n == 0 {
            return Err(format!("the peer closed the connection before {what}"));
        }
        buf.extend_from_slice(&piece[..n]);
        match rmpv::decode::read_value(&mut std::io::Cursor::new(&buf[..])) {
            Ok(v) => return Ok(v),
            Err(rmpv::decode::Error::InvalidMarkerRead(e) | rmpv::decode::Error::InvalidDataRead(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(format!("{what} is not msgpack: {e}")),
        }
        if buf.len() > 1 << 20 {
            return Err(format!("{what} is larger than 1 MiB"));
        }
    }
}

impl Service for FluentSink {
    async fn send(&mut self, events: &[Event]) -> Result<Sent, SendError> {
        self.write(events).await.map(|()| Sent::Delivered)
    }
}

impl FluentSink {
    /// Deliver one request; `Ok` once the far end has it.
    async fn write(&mut self, events: &[Event]) -> Result<(), SendError> {
        let (msg, chunk) = self.encode(events);
        let timeout = self.cfg.request.timeout.0;
        let result = tokio::time::timeout(timeout, self.exchange(&msg, &chunk))
            .await
            .unwrap_or_else(|_| Err(format!("no ack within {timeout:?}")));
        result.map_err(|e| {
            // Start over on a new connection.
            self.conn = None;
            SendError::Retry(e)
        })
    }
}
