//! Syslog messages, RFC 5424 and RFC 3164 (BSD), and TCP framing (RFC 6587: octet counting or a
//! newline after each message).

/// One message's header and text. Fields a message does not carry (RFC 5424's `-`) are `None`.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub facility: u8,
    pub severity: u8,
    /// 5424 or 3164.
    pub rfc: u16,
    pub timestamp: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub msgid: Option<&'a str>,
    pub structured_data: Option<&'a str>,
    pub msg: &'a [u8],
}

/// Parse one message (no framing, no trailing newline).
pub fn parse(frame: &[u8]) -> Result<Message<'_>, String> {
    let frame = frame.strip_suffix(b"\n").unwrap_or(frame);
    let frame = frame.strip_suffix(b"\r").unwrap_or(frame);
    let rest = frame.strip_prefix(b"<").ok_or("no <PRI> at the start of the message")?;
    let close = rest.iter().take(4).position(|&b| b == b'>').ok_or("<PRI> is not closed within 3 digits")?;
    let pri: u16 = std::str::from_utf8(&rest[..close])
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .filter(|&p| p <= 191)
        .ok_or_else(|| format!("<PRI> {:?} is not a number from 0 to 191", String::from_utf8_lossy(&rest[..close])))?;
    let (facility, severity) = ((pri / 8) as u8, (pri % 8) as u8);
    let body = &rest[close + 1..];
    match body {
        [b'1', b' ', ..] => rfc5424(facility, severity, &body[2..]),
        _ => Ok(rfc3164(facility, severity, body)),
    }
}

/// The next space-separated field of `s` as text, and the rest.
fn field(s: &[u8]) -> Result<(Option<&str>, &[u8]), String> {
    let end = memchr::memchr(b' ', s).unwrap_or(s.len());
    let text = std::str::from_utf8(&s[..end]).map_err(|_| "a header field is not UTF-8".to_string())?;
    if text.is_empty() {
        return Err("an empty header field (two spaces in a row)".into());
    }
    let rest = s.get(end + 1..).unwrap_or_default();
    Ok(((text != "-").then_some(text), rest))
}

fn rfc5424(facility: u8, severity: u8, s: &[u8]) -> Result<Message<'_>, String> {
    let (timestamp, s) = field(s)?;
    let (hostname, s) = field(s)?;
    let (app_name, s) = field(s)?;
    let (procid, s) = field(s)?;
    let (msgid, s) = field(s)?;
    let (structured_data, s) = structured_data(s)?;
    let msg = s.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(s);
    Ok(Message { facility, severity, rfc: 5424, timestamp, hostname, app_name, procid, msgid, structured_data, msg })
}

/// `-` or one or more `[id param="value" ...]` elements (`\]`, `\"` and `\\` escaped in values).
fn structured_data(s: &[u8]) -> Result<(Option<&str>, &[u8]), String> {
    if let Some(rest) = s.strip_prefix(b"-") {
        return Ok((None, rest.strip_prefix(b" ").unwrap_or(rest)));
    }
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match s.get(i) {
                None => return Err("structured data is not closed".into()),
                Some(b'\\') if quoted => i += 2,
                Some(b'"') => {
                    quoted = !quoted;
                    i += 1;
                }
                Some(b']') if !quoted => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    if i == 0 {
        return Err("expected structured data (`-` or `[...]`)".into());
    }
    let sd = std::str::from_utf8(&s[..i]).map_err(|_| "structured data is not UTF-8".to_string())?;
    let rest = &s[i.min(s.len())..];
    Ok((Some(sd), rest.strip_prefix(b" ").unwrap_or(rest)))
}

/// RFC 3164: `Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`, leniently: a message without the
/// timestamp, or without the hostname (`TAG:` right after the time), keeps what it has.
fn rfc3164(facility: u8, severity: u8, s: &[u8]) -> Message<'_> {
    let mut m = Message {
        facility,
        severity,
        rfc: 3164,
        timestamp: None,
        hostname: None,
        app_name: None,
        procid: None,
        msgid: None,
        structured_data: None,
        msg: s,
    };
    let months = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let stamp = s.len() >= 16
        && months.iter().any(|mo| s[..3] == mo[..])
        && s[3] == b' '
        && s[15] == b' '
        && s[6] == b' '
        && s[9] == b':'
        && s[12] == b':';
    let mut rest = s;
    if stamp {
        m.timestamp = std::str::from_utf8(&s[..15]).ok();
        rest = &s[16..];
    }
    // HOSTNAME, unless the next word is already the tag (`nginx:` or `nginx[12]:`).
    let word_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    let word = &rest[..word_end];
    let is_tag = |w: &[u8]| w.ends_with(b":") || (w.contains(&b'[') && w.ends_with(b"]:"));
    if stamp && !word.is_empty() && !is_tag(word) {
        m.hostname = std::str::from_utf8(word).ok();
        rest = rest.get(word_end + 1..).unwrap_or_default();
    }
    let tag_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    let tag = &rest[..tag_end];
    if is_tag(tag) && tag.len() <= 48 {
        let tag = &tag[..tag.len() - 1];
        let (app, pid) = match memchr::memchr(b'[', tag) {
            Some(b) => (&tag[..b], tag[b + 1..].strip_suffix(b"]")),
            None => (tag, None),
        };
        m.app_name = std::str::from_utf8(app).ok().filter(|a| !a.is_empty());
        m.procid = pid.and_then(|p| std::str::from_utf8(p).ok());
        rest = rest.get(tag_end + 1..).unwrap_or_default();
    }
    m.msg = rest;
    m
}

/// Splits a TCP stream into messages: a frame starting with a digit is octet-counted
/// (`LEN SP MSG`), any other ends at a newline. `max` bounds a message: a longer one is cut
/// and reported.
#[derive(Default)]
pub struct Framer {
    pending: Vec<u8>,
}

/// A frame from [`Framer::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A message past the limit, cut to it.
    TooLong(Vec<u8>),
    /// An octet count that is not a number, or over the limit by more than its digits allow: the
    /// stream cannot be followed any further.
    Broken(String),
}

impl Framer {
    pub fn push(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
    }

    /// The next whole frame, if the bytes so far hold one. `end` says the stream ended: what is
    /// left is the last message.
    pub fn next(&mut self, max: usize, end: bool) -> Option<Frame> {
        loop {
            // Newlines between octet-counted frames are tolerated.
            let skip = self.pending.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
            self.pending.drain(..skip);
            let first = *self.pending.first()?;
            if first.is_ascii_digit() {
                let Some(sp) = self.pending.iter().take(11).position(|&b| b == b' ') else {
                    if self.pending.len() >= 11 || self.pending.iter().any(|b| !b.is_ascii_digit()) {
                        let bad = String::from_utf8_lossy(&self.pending[..self.pending.len().min(11)]).into_owned();
                        self.pending.clear();
                        return Some(Frame::Broken(format!("octet count {bad:?} is not a number followed by a space")));
                    }
                    return None;
                };
                let count: usize = match std::str::from_utf8(&self.pending[..sp]).ok().and_then(|d| d.parse().ok()) {
                    Some(n) => n,
                    None => {
                        self.pending.clear();
                        return Some(Frame::Broken("octet count is not a number".into()));
                    }
                };
                if count > max {
                    self.pending.clear();
                    return Some(Frame::Broken(format!("octet count {count} is over max_message_bytes ({max})")));
                }
                if self.pending.len() < sp + 1 + count {
                    return None;
                }
                let frame = self.pending[sp + 1..sp + 1 + count].to_vec();
                self.pending.drain(..sp + 1 + count);
                return Some(Frame::Message(frame));
            }
            match memchr::memchr(b'\n', &self.pending) {
                Some(nl) if nl <= max => {
                    let frame = self.pending[..nl].to_vec();
                    self.pending.drain(..=nl);
                    return Some(Frame::Message(frame));
                }
                _ if self.pending.len() > max => {
                    let frame = self.pending[..max].to_vec();
                    // The rest of the long message is skipped up to its newline.
                    match memchr::memchr(b'\n', &self.pending) {
                        Some(nl) => drop(self.pending.drain(..=nl)),
                        None => self.pending.clear(),
                    }
                    return Some(Frame::TooLong(frame));
                }
                _ if end && !self.pending.is_empty() => return Some(Frame::Message(std::mem::take(&mut self.pending))),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_messages() {
        let m = parse(b"<165>1 2026-12-05T10:41:07.003Z web1.example.com nginx 4321 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\\]x\"] \xEF\xBB\xBF127.0.0.1 - - [05/Dec/2026:10:41:07 +0000] \"GET / HTTP/1.1\" 200 1").unwrap();
        assert_eq!((m.facility, m.severity, m.rfc), (20, 5, 5424));
        assert_eq!(
            (m.timestamp, m.hostname, m.app_name, m.procid, m.msgid),
            (Some("2026-12-05T10:41:07.003Z"), Some("web1.example.com"), Some("nginx"), Some("4321"), Some("ID47"))
        );
        assert_eq!(m.structured_data, Some("[exampleSDID@32473 iut=\"3\" eventSource=\"App\\]x\"]"));
        assert!(m.msg.starts_with(b"127.0.0.1 - -"), "the BOM is dropped");
        let m = parse(b"<34>1 - - - - - -").unwrap();
        assert_eq!((m.timestamp, m.hostname, m.structured_data, m.msg), (None, None, None, &b""[..]));
        let m = parse(b"<0>1 2026-12-05T10:41:07Z h a p m [a b=\"1\"][c d=\"2\"] text").unwrap();
        assert_eq!((m.structured_data, m.msg), (Some("[a b=\"1\"][c d=\"2\"]"), &b"text"[..]));
    }

    #[test]
    fn rfc3164_messages_as_servers_send_them() {
        // nginx `access_log syslog:server=...`: no hostname by default, `nginx:` tag.
        let m =
            parse(b"<190>Dec  5 10:41:07 nginx: 127.0.0.1 - - [05/Dec/2026:10:41:07 +0000] \"GET /x HTTP/1.1\" 404 0")
                .unwrap();
        assert_eq!((m.facility, m.severity, m.rfc), (23, 6, 3164));
        assert_eq!((m.timestamp, m.hostname, m.app_name), (Some("Dec  5 10:41:07"), None, Some("nginx")));
        assert!(m.msg.starts_with(b"127.0.0.1 "));
        // rsyslog / Apache through logger: hostname and tag[pid].
        let m = parse(b"<134>Dec 15 01:02:03 web2 apache2[812]: GET / 200\n").unwrap();
        assert_eq!(
            (m.hostname, m.app_name, m.procid, m.msg),
            (Some("web2"), Some("apache2"), Some("812"), &b"GET / 200"[..])
        );
        // No timestamp at all: everything after <PRI> is the message unless it starts with a tag.
        let m = parse(b"<13>just text").unwrap();
        assert_eq!((m.timestamp, m.hostname, m.app_name, m.msg), (None, None, None, &b"just text"[..]));
    }

    #[test]
    fn bad_headers_name_the_problem() {
        for (frame, why) in [
            (&b"no pri"[..], "no <PRI>"),
            (b"<192>x", "0 to 191"),
            (b"<1a>x", "not a number"),
            (b"<12345>x", "not closed"),
            (b"<1>1 t h a p m [unclosed", "not closed"),
            (b"<1>1 t h a p m x", "structured data"),
            (b"<1>1 t  h a p m -", "empty header field"),
        ] {
            let e = parse(frame).unwrap_err();
            assert!(e.contains(why), "{:?}: {e}", String::from_utf8_lossy(frame));
        }
    }

    #[test]
    fn framing_octet_counted_and_newlines_in_any_split() {
        let stream = b"11 <13>1 - - - - - -\n<13>plain line\n5 <1>ab26 <13>1 - - - - - - 12345678";
        let want = vec![
            Frame::Message(b"<13>1 - - -".to_vec()),
            // ... the count of 11 takes 11 bytes: the rest of that line is a newline frame.
            Frame::Message(b" - - -".to_vec()),
            Frame::Message(b"<13>plain line".to_vec()),
            Frame::Message(b"<1>ab".to_vec()),
            Frame::Message(b"<13>1 - - - - - - 12345678".to_vec()),
        ];
        for split in 1..stream.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for chunk in stream.chunks(split) {
                f.push(chunk);
                while let Some(frame) = f.next(1024, false) {
                    got.push(frame);
                }
            }
            while let Some(frame) = f.next(1024, true) {
                got.push(frame);
            }
            assert_eq!(got, want, "split {split}");
        }
        let mut f = Framer::default();
        f.push(b"99999 x");
        assert!(matches!(f.next(1024, false), Some(Frame::Broken(e)) if e.contains("over max_message_bytes")));
        f.push(b"<1>aaaaaaaaaa\nnext\n");
        assert_eq!(f.next(5, false), Some(Frame::TooLong(b"<1>aa".to_vec())));
        assert_eq!(f.next(5, false), Some(Frame::Message(b"next".to_vec())));
    }
}
