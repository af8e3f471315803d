//! The `netflow` source: NetFlow v5, NetFlow v9 and IPFIX over UDP, from the flow exporters a
//! node or its network really has (softflowd, pmacct, fprobe, routers and switches).
//!
//! ```toml
//! [sources.routers]
//! type = "netflow"
//! address = "0.0.0.0:2055"
//! template_timeout = "30m"     # a template not sent again within this is forgotten
//! max_templates = 4096         # templates (and exporter sessions) held; more are refused, counted
//! hold_timeout = "10s"         # data that came before its template waits this long
//! hold_max_bytes = 4194304     # and at most this many bytes of it in all
//! receive_buffer_bytes = 8388608   # optional: SO_RCVBUF, for bursts
//! ```
//!
//! Each flow record goes on as one JSON object with IANA information element names (see
//! [`decode`] for names, values and the members flowtag adds). UDP has no acknowledgement: a
//! record is in flowtag's hands once read, and a datagram the kernel dropped before flowtag read
//! it is lost (see `receive_buffer_bytes`, and the `netstat -su` receive errors).
//!
//! What does not become a record is counted: a packet that cannot be read
//! (`flowtag_component_errors_total{error_type="malformed"}`, and an error record with the
//! packet in base64, to `ID.dead_letter` when something reads it), data whose template never
//! came (`flowtag_component_discarded_events_total{reason="no_template"}`, one per data set), a
//! template over `max_templates` (`errors_total{error_type="template_limit"}`), a packet from a
//! new exporter when `max_templates` exporter sessions are known (`error_type="session_limit"`).

pub mod decode;
mod elements;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;

use self::decode::{Batch, Collector, Limits, Report};
use super::SourceContext;
use crate::config::duration::Dur;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetflowConfig {
    pub address: SocketAddr,
    #[serde(default = "default_template_timeout")]
    pub template_timeout: Dur,
    #[serde(default = "default_max_templates")]
    pub max_templates: usize,
    #[serde(default = "default_hold_timeout")]
    pub hold_timeout: Dur,
    #[serde(default = "default_hold_max_bytes")]
    pub hold_max_bytes: usize,
    pub receive_buffer_bytes: Option<usize>,
}

fn default_template_timeout() -> Dur {
    Dur::secs(30 * 60)
}

fn default_max_templates() -> usize {
    4096
}

fn default_hold_timeout() -> Dur {
    Dur::secs(10)
}

fn default_hold_max_bytes() -> usize {
    4 << 20
}

impl crate::component::ComponentConfig for NetflowConfig {
    const TYPE: &'static str = "netflow";
    const DEAD_LETTER: bool = true;

    fn check(&self, id: &str) -> Result<(), String> {
        let key = |k: &str| format!("sources.{id}.{k}");
        if self.template_timeout.0.is_zero() {
            return Err(format!("{}: must be more than 0", key("template_timeout")));
        }
        if self.max_templates == 0 {
            return Err(format!("{}: must be at least 1", key("max_templates")));
        }
        if let Some(n) = self.receive_buffer_bytes.filter(|&n| n == 0 || n > i32::MAX as usize) {
            return Err(format!("{}: {n} is not between 1 and {}", key("receive_buffer_bytes"), i32::MAX));
        }
        Ok(())
    }
}

impl NetflowConfig {
    fn limits(&self) -> Limits {
        Limits {
            template_timeout: self.template_timeout.0,
            max_templates: self.max_templates,
            hold_timeout: self.hold_timeout.0,
            hold_max_bytes: self.hold_max_bytes,
        }
    }
}

impl super::SourceType for NetflowConfig {
    async fn start(self, ctx: SourceContext) -> Result<super::Started, String> {
        let id = &ctx.id;
        let socket = std::net::UdpSocket::bind(self.address)
            .map_err(|e| format!("sources.{id}.address: cannot listen on {}: {e}", self.address))?;
        if let Some(n) = self.receive_buffer_bytes {
            set_receive_buffer(&socket, n).map_err(|e| format!("sources.{id}.receive_buffer_bytes: {e}"))?;
        }
        socket.set_nonblocking(true).map_err(|e| format!("sources.{id}.address: {e}"))?;
        let socket = tokio::net::UdpSocket::from_std(socket).map_err(|e| format!("sources.{id}.address: {e}"))?;
        tracing::info!(address = %self.address, "netflow source listening");
        ctx.health.ready(id);
        Ok(super::Started::Task(tokio::spawn(receive(socket, self.limits(), ctx))))
    }
}

fn set_receive_buffer(socket: &std::net::UdpSocket, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let n = bytes as libc::c_int;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&n as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Datagrams read before a batch goes on, and the bytes of records that end one.
const BATCH_PACKETS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

async fn receive(socket: tokio::net::UdpSocket, limits: Limits, ctx: SourceContext) {
    let mut collector = Collector::new(limits);
    let mut reported = Report::default();
    let mut buf = vec![0u8; 65536];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (n, from) = tokio::select! {
            _ = ctx.shutdown.stopped() => break,
            _ = tick.tick() => {
                collector.expire(Instant::now());
                count(&ctx, &collector.report, &mut reported);
                continue;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "netflow receive failed");
                    continue;
                }
            },
        };
        let mut batch = Batch::default();
        let now = Instant::now();
        collector.packet(from, &buf[..n], now, &mut batch);
        let mut bytes = n;
        // Whatever else is already queued goes in the same batch.
        for _ in 1..BATCH_PACKETS {
            if batch.out.len() >= BATCH_BYTES {
                break;
            }
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) => {
                    collector.packet(from, &buf[..n], now, &mut batch);
                    bytes += n;
                }
                Err(_) => break,
            }
        }
        count(&ctx, &collector.report, &mut reported);
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        ctx.metrics.received(n, bytes);
        let events = super::events_at(batch.out, &batch.ends);
        if ctx.send(events, &batch.bad).await.is_err() {
            break;
        }
        ctx.metrics.sent(n);
    }
}

/// Put what the collector counted since the last call on the source's metrics.
fn count(ctx: &SourceContext, now: &Report, reported: &mut Report) {
    let delta = |a: usize, b: usize| a.saturating_sub(b);
    let malformed = delta(now.malformed, reported.malformed);
    if malformed > 0 {
        ctx.metrics.error("malformed", malformed);
        tracing::debug!(packets = malformed, "malformed NetFlow/IPFIX packets");
    }
    let no_template = delta(now.no_template, reported.no_template);
    if no_template > 0 {
        ctx.metrics.discarded("no_template", no_template);
        tracing::warn!(data_sets = no_template, "NetFlow/IPFIX data whose template never came was dropped");
    }
    let limit = delta(now.template_limit, reported.template_limit);
    if limit > 0 {
        ctx.metrics.error("template_limit", limit);
        tracing::warn!(templates = limit, "templates refused: max_templates reached");
    }
    let sessions = delta(now.session_limit, reported.session_limit);
    if sessions > 0 {
        ctx.metrics.error("session_limit", sessions);
        tracing::warn!(packets = sessions, "packets from new exporters dropped: max_templates exporter sessions known");
    }
    *reported = *now;
}
