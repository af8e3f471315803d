//! The `syslog` source: RFC 5424 and RFC 3164 messages over UDP (one per datagram) or TCP
//! (RFC 6587: octet counting, or a newline after each message, told apart frame by frame).
//!
//! ```toml
//! [sources.web_syslog]
//! type = "syslog"
//! address = "0.0.0.0:5514"
//! mode = "udp"            # or "tcp" (then tls and connections as for the tcp source)
//! decoding = "combined"   # optional: how the message text is read (nginx, Apache access logs)
//! ```
//!
//! Each message becomes a record: without `decoding`, `{"message": <text>, "syslog": {...}}`;
//! with it, the record the decoder makes of the message text, with `"syslog": {...}` added.
//! `syslog` holds `facility`, `severity`, `rfc` (5424 or 3164), `timestamp` (as sent),
//! `hostname`, `app_name`, `procid`, `msgid`, `structured_data` (each only when the message has
//! it) and `peer` (the sender's address). A message whose header cannot be read is not lost: it
//! goes on as `{"message": ..., "decode_error": ...}` (or to `ID.dead_letter`). A message over
//! `max_message_bytes` is cut to it and counted (`discarded`, reason `message_too_long`).
//! Like `tcp`, syslog has no acknowledgement: a message is in flowtag's hands once read.

mod parse;

use std::net::SocketAddr;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

pub use parse::{parse, Frame, Framer, Message};

use super::SourceContext;
use crate::decode::{AccessFields, Decoder, Decoding, Line};
use crate::net::server::Connections;
use crate::net::tls::ServerTlsConfig;
use flowtag_plugin::json as js;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Udp,
    Tcp,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    pub address: SocketAddr,
    #[serde(default)]
    pub mode: Mode,
    /// How each message's text is read; without it, the text is kept as `message`.
    #[serde(default)]
    pub decoding: Option<Decoding>,
    /// Extra names for the fields of JSON access logs (`decoding = "json_access"`).
    #[serde(default)]
    pub access_fields: std::sync::Arc<AccessFields>,
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// TCP only: accept TLS connections only, with this certificate.
    pub tls: Option<ServerTlsConfig>,
    /// TCP only: how many connections at once, and how long one may stay silent.
    #[serde(default)]
    pub connections: Connections,
}

fn default_max_message_bytes() -> usize {
    64 * 1024
}

impl crate::component::ComponentConfig for SyslogConfig {
    const TYPE: &'static str = "syslog";
    const DEAD_LETTER: bool = true;

    fn check(&self, id: &str) -> Result<(), String> {
        if !(480..=1 << 24).contains(&self.max_message_bytes) {
            return Err(format!(
                "sources.{id}.max_message_bytes: {} is not between 480 (RFC 3164's minimum) and {}",
                self.max_message_bytes,
                1 << 24
            ));
        }
        if self.mode == Mode::Udp && self.tls.is_some() {
            return Err(format!("sources.{id}.tls: TLS needs mode = \"tcp\""));
        }
        self.connections.check(&format!("sources.{id}.connections"))
    }
}

impl super::SourceType for SyslogConfig {
    async fn start(self, ctx: SourceContext) -> Result<super::Started, String> {
        match self.mode {
            Mode::Udp => {
                let id = &ctx.id;
                let socket = tokio::net::UdpSocket::bind(self.address)
                    .await
                    .map_err(|e| format!("sources.{id}.address: cannot listen on {}: {e}", self.address))?;
                tracing::info!(address = %self.address, "syslog source listening (udp)");
                ctx.health.ready(id);
                Ok(super::Started::Task(tokio::spawn(receive_udp(socket, self, ctx))))
            }
            Mode::Tcp => {
                let (address, tls, connections) = (self.address, self.tls.clone(), self.connections);
                let task = super::listen(
                    ctx,
                    address,
                    tls.as_ref(),
                    connections,
                    "syslog source (tcp)",
                    move |s, peer, ctx| {
                        let cfg = self.clone();
                        async move { connection(s, peer, cfg, &ctx).await }
                    },
                )
                .await?;
                Ok(super::Started::Task(task))
            }
        }
    }
}

/// Records being gathered for one send.
#[derive(Default)]
struct Batch {
    out: Vec<u8>,
    ends: Vec<usize>,
    bad: Vec<(usize, String)>,
    bytes: usize,
}

impl Batch {
    /// Add the record of one message (or of a frame whose header cannot be read).
    fn message(&mut self, frame: &[u8], peer: SocketAddr, decoder: Option<&mut Decoder>) {
        self.bytes += frame.len();
        let start = self.out.len();
        let problem = match parse(frame) {
            Err(why) => {
                crate::decode::malformed(frame, &why, &mut self.out);
                Some(why)
            }
            Ok(m) => {
                let problem = match decoder {
                    None => {
                        self.out.extend_from_slice(b"{\"message\":");
                        js::write_string(&mut self.out, &String::from_utf8_lossy(m.msg));
                        self.out.push(b'}');
                        None
                    }
                    Some(d) => match d.decode(m.msg, &mut self.out) {
                        Line::Record => None,
                        Line::Skipped => {
                            // An empty message: the header is still worth keeping.
                            self.out.extend_from_slice(b"{\"message\":\"\"}");
                            None
                        }
                        Line::Malformed(why) => Some(why),
                    },
                };
                add_syslog(&mut self.out, start, &m, peer);
                problem
            }
        };
        if let Some(why) = problem {
            self.bad.push((self.ends.len(), why));
        }
        self.ends.push(self.out.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    async fn send(self, ctx: &SourceContext) -> Result<(), ()> {
        let n = self.len();
        if n == 0 {
            return Ok(());
        }
        if !self.bad.is_empty() {
            ctx.metrics.error("decode", self.bad.len());
        }
        ctx.metrics.received(n, self.bytes);
        let events = super::events_at(self.out, &self.ends);
        ctx.send(events, &self.bad).await.map_err(|_| ())?;
        ctx.metrics.sent(n);
        Ok(())
    }
}

/// Add `"syslog":{...}` as the last member of the object written from `start`.
fn add_syslog(out: &mut Vec<u8>, start: usize, m: &Message<'_>, peer: SocketAddr) {
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    if out.len() > start + 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"syslog\":{");
    let _ = std::io::Write::write_fmt(
        out,
        format_args!("\"facility\":{},\"severity\":{},\"rfc\":{}", m.facility, m.severity, m.rfc),
    );
    for (key, value) in [
        ("timestamp", m.timestamp),
        ("hostname", m.hostname),
        ("app_name", m.app_name),
        ("procid", m.procid),
        ("msgid", m.msgid),
        ("structured_data", m.structured_data),
    ] {
        if let Some(v) = value {
            out.push(b',');
            js::write_string(out, key);
            out.push(b':');
            js::write_string(out, v);
        }
    }
    out.extend_from_slice(b",\"peer\":");
    js::write_string(out, &peer.to_string());
    out.extend_from_slice(b"}}");
}

fn decoder(cfg: &SyslogConfig, ctx: &SourceContext) -> Option<Decoder> {
    cfg.decoding.map(|d| Decoder::new(d).with_json_check(ctx.check_json).with_access_fields(cfg.access_fields.clone()))
}

/// Datagrams read before a batch goes on.
const BATCH_MESSAGES: usize = 256;

async fn receive_udp(socket: tokio::net::UdpSocket, cfg: SyslogConfig, ctx: SourceContext) {
    let mut decoder = decoder(&cfg, &ctx);
    // One byte more than the limit, to see that a datagram was longer.
    let mut buf = vec![0u8; cfg.max_message_bytes + 1];
    loop {
        let (n, peer) = tokio::select! {
            _ = ctx.shutdown.stopped() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "syslog receive failed");
                    continue;
                }
            },
        };
        let mut batch = Batch::default();
        let max = cfg.max_message_bytes;
        let mut take = |datagram: &[u8], peer, batch: &mut Batch| {
            if datagram.len() > max {
                ctx.metrics.discarded("message_too_long", 1);
            }
            batch.message(&datagram[..datagram.len().min(max)], peer, decoder.as_mut());
        };
        take(&buf[..n], peer, &mut batch);
        for _ in 1..BATCH_MESSAGES {
            match socket.try_recv_from(&mut buf) {
                Ok((n, peer)) => take(&buf[..n], peer, &mut batch),
                Err(_) => break,
            }
        }
        if batch.send(&ctx).await.is_err() {
            break;
        }
    }
}

async fn connection(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    peer: SocketAddr,
    cfg: SyslogConfig,
    ctx: &SourceContext,
) {
    let mut decoder = decoder(&cfg, ctx);
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            _ = ctx.shutdown.stopped() => 0,
            r = stream.read(&mut buf) => r.unwrap_or_else(|e| {
                tracing::debug!(%peer, error = %e, "connection error");
                0
            }),
        };
        framer.push(&buf[..n]);
        let mut batch = Batch::default();
        let mut broken = false;
        while let Some(frame) = framer.next(cfg.max_message_bytes, n == 0) {
            match frame {
                Frame::Message(m) => batch.message(&m, peer, decoder.as_mut()),
                Frame::TooLong(m) => {
                    ctx.metrics.discarded("message_too_long", 1);
                    batch.message(&m, peer, decoder.as_mut());
                }
                Frame::Broken(why) => {
                    ctx.metrics.error("framing", 1);
                    tracing::warn!(%peer, "syslog stream cannot be followed, closing it: {why}");
                    broken = true;
                    break;
                }
            }
        }
        if batch.send(ctx).await.is_err() || n == 0 || broken {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(frame: &[u8], decoding: Option<Decoding>) -> (serde_json::Value, Vec<(usize, String)>) {
        let mut b = Batch::default();
        let mut d = decoding.map(Decoder::new);
        b.message(frame, "127.0.0.1:5140".parse().unwrap(), d.as_mut());
        (serde_json::from_slice(&b.out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b.out))), b.bad)
    }

    #[test]
    fn records_carry_the_message_or_its_decoded_fields_and_the_header() {
        let (r, bad) = one(b"<134>Dec 15 01:02:03 web2 apache2[812]: hello", None);
        assert!(bad.is_empty());
        assert_eq!(r["message"], "hello");
        assert_eq!(
            r["syslog"],
            serde_json::json!({"facility": 16, "severity": 6, "rfc": 3164, "timestamp": "Dec 15 01:02:03",
            "hostname": "web2", "app_name": "apache2", "procid": "812", "peer": "127.0.0.1:5140"})
        );
        let nginx = b"<190>Dec  5 10:41:07 nginx: 127.0.0.1 - - [05/Dec/2026:10:41:07 +0000] \"GET /s?q=%27 HTTP/1.1\" 200 615 \"-\" \"curl/8\"";
        let (r, bad) = one(nginx, Some(Decoding::Combined));
        assert!(bad.is_empty());
        assert_eq!(
            (&r["method"], &r["target"], &r["syslog"]["app_name"]),
            (&"GET".into(), &"/s?q=%27".into(), &"nginx".into())
        );
        let (r, _) = one(b"<14>1 - - - - - -", Some(Decoding::Combined));
        assert_eq!(r["message"], "", "an empty message keeps its header");
    }

    #[test]
    fn bad_messages_go_on_with_the_reason() {
        let (r, bad) = one(b"no header here", None);
        assert_eq!((&r["message"], bad.len()), (&"no header here".into(), 1));
        assert!(r["decode_error"].as_str().unwrap().contains("<PRI>"));
        let (r, bad) = one(b"<190>Dec  5 10:41:07 nginx: not an access log line", Some(Decoding::Combined));
        assert_eq!(bad.len(), 1);
        assert!(r["decode_error"].is_string() && r["syslog"]["app_name"] == "nginx", "{r}");
    }
}
