//! A small SMTP client (RFC 5321) for alert emails: EHLO, STARTTLS when the server offers it
//! (RFC 3207; required with `starttls = "always"`), AUTH PLAIN when credentials are set
//! (only over TLS, or to a server on loopback), one message, QUIT.

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::StartTls;
use crate::net::tls::{self, Stream, TlsConfig};

struct Conn {
    io: BufReader<Box<dyn Stream>>,
}

impl Conn {
    /// Read one (possibly multi-line) reply: (code, lines).
    async fn reply(&mut self) -> Result<(u16, Vec<String>), String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await.map_err(|e| format!("SMTP read: {e}"))? == 0 {
                return Err("SMTP server closed the connection".into());
            }
            let line = line.trim_end().to_string();
            let code: u16 =
                line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| format!("SMTP: not a reply: {line:?}"))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok((code, lines));
            }
        }
    }

    async fn cmd(&mut self, line: &str, expect: u16, what: &str) -> Result<Vec<String>, String> {
        self.io.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| format!("SMTP write: {e}"))?;
        let (code, lines) = self.reply().await?;
        if code / 100 != expect / 100 {
            return Err(format!("SMTP {what}: {code} {}", lines.join(" ")));
        }
        Ok(lines)
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn send(
    address: &str,
    hostname: &str,
    starttls: StartTls,
    tls: &TlsConfig,
    login: Option<(&str, &str)>,
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<(), String> {
    let tcp = TcpStream::connect(address).await.map_err(|e| format!("SMTP {address}: {e}"))?;
    let loopback = tcp.peer_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
    let mut c = Conn { io: BufReader::new(Box::new(tcp) as Box<dyn Stream>) };
    let (code, greeting) = c.reply().await?;
    if code != 220 {
        return Err(format!("SMTP {address}: greeting {code} {}", greeting.join(" ")));
    }
    let mut caps = c.cmd(&format!("EHLO {hostname}"), 250, "EHLO").await?;
    let offers = |caps: &[String], what: &str| caps.iter().any(|l| l.to_ascii_uppercase().starts_with(what));
    let mut secure = false;
    if starttls != StartTls::Never && offers(&caps, "STARTTLS") {
        c.cmd("STARTTLS", 220, "STARTTLS").await?;
        let plain = c.io.into_inner();
        let stream =
            tls::connect(&tls::connector(tls)?, address, plain).await.map_err(|e| format!("SMTP STARTTLS: {e}"))?;
        c = Conn { io: BufReader::new(Box::new(stream) as Box<dyn Stream>) };
        caps = c.cmd(&format!("EHLO {hostname}"), 250, "EHLO after STARTTLS").await?;
        secure = true;
    } else if starttls == StartTls::Always {
        return Err(format!("SMTP {address}: the server does not offer STARTTLS (starttls = \"always\")"));
    }
    if let Some((user, password)) = login {
        if !secure && !loopback {
            return Err(format!("SMTP {address}: refusing to send credentials without TLS"));
        }
        if !offers(&caps, "AUTH") {
            return Err(format!("SMTP {address}: credentials are set but the server offers no AUTH"));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        c.cmd(&format!("AUTH PLAIN {token}"), 235, "AUTH").await?;
    }
    c.cmd(&format!("MAIL FROM:<{from}>"), 250, "MAIL FROM").await?;
    for rcpt in to {
        c.cmd(&format!("RCPT TO:<{rcpt}>"), 250, "RCPT TO").await?;
    }
    c.cmd("DATA", 354, "DATA").await?;
    let date = httpdate(std::time::SystemTime::now());
    let mut msg = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        to.join(", ")
    );
    for line in body.lines() {
        // Dot-stuffing (RFC 5321 4.5.2).
        if line.starts_with('.') {
            msg.push('.');
        }
        msg.push_str(line);
        msg.push_str("\r\n");
    }
    msg.push('.');
    c.cmd(&msg, 250, "message").await?;
    let _ = c.cmd("QUIT", 221, "QUIT").await;
    Ok(())
}

/// An RFC 5322 date (UTC).
fn httpdate(t: std::time::SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string(); // 2026-11-22T01:02:03Z
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap_or((&s, "00:00:00"));
    let mut p = date.split('-').map(|x| x.parse::<u32>().unwrap_or(1));
    let (y, m, d) = (p.next().unwrap_or(1970), p.next().unwrap_or(1), p.next().unwrap_or(1));
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{d} {} {y} {time} +0000", MONTHS[(m as usize).saturating_sub(1).min(11)])
}
