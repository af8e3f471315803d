//! NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) packets to JSON records.
//!
//! [`Collector`] keeps what a stream of packets from many exporters needs: templates and
//! options templates per exporter (address and port), version, observation domain (v9's source
//! id) and template id, each expiring `template_timeout` after it was last received; the data sets
//! that arrived before their template, held up to `hold_timeout` and `hold_max_bytes` in all,
//! and decoded when the template comes; and what options records said about each exporter
//! (the system start time IPFIX's uptime fields count from, the sampling interval, per
//! sampler where records name one).
//!
//! Every record becomes one JSON object whose keys are IANA information element names
//! (`sourceIPv4Address`, `octetDeltaCount`, ...), in the order the template lists them.
//! RFC 5103 reverse elements (enterprise 29305) are `reverse` + the name
//! (`reverseOctetDeltaCount`); other enterprise elements are `e<PEN>_<id>`, unknown IANA ones
//! `ie<id>`, and a name repeated in one template gets `_2`, `_3`, ... Values: unsigned and
//! signed integers of any length up to 8 bytes (reduced-size encoding) as numbers, floats as
//! numbers (non-finite ones as null), booleans, addresses as text, strings (trailing NULs
//! removed), `dateTimeSeconds`/`Milliseconds` as numbers of that unit since 1970, and
//! `dateTimeMicroseconds`/`Nanoseconds` (NTP format on the wire) converted to that unit since
//! 1970. Everything else, and any value whose length does not fit its type, is lowercase hex
//! text; structured data (`basicList`, `subTemplateList`) is not unpacked and comes as hex.
//!
//! After a record's own fields come, when the record does not carry them itself:
//! `flowStartMilliseconds`/`flowEndMilliseconds` (from the uptime-relative `flowStart/EndSysUpTime`
//! of v5 and v9 with the packet header's clock, of IPFIX with the exporter's
//! `systemInitTimeMilliseconds`; or from the seconds, micro- and nanoseconds variants),
//! `flowDurationMilliseconds` when both ends are known, `samplingInterval` when the exporter
//! samples (1 in N packets, N > 1), `exporterIPv4Address` or `exporterIPv6Address`, and the
//! `observationDomainId` when it is not 0.
//!
//! Options records are read for the above and not emitted. Fewer bytes than a record at the end
//! of a set are padding whatever they hold (pmacct pads with non-zero bytes). A packet that cannot be read to its
//! end gives an error record (`decode_error`, the packet in base64) besides the records read
//! before the fault; nothing here panics on any input (see `fuzz/`).

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use flowtag_plugin::json::write_string;

use super::elements::element;

/// The data type of an information element, as far as writing its value needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unsigned,
    Signed,
    Float,
    Boolean,
    Mac,
    Octets,
    String,
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
    Ipv4,
    Ipv6,
}

/// RFC 5103's private enterprise number for reverse-direction elements.
pub const REVERSE_PEN: u32 = 29305;
const VARIABLE: u16 = 0xffff;
/// Seconds from the NTP era (1900) to the Unix epoch.
const NTP_TO_UNIX: i64 = 2_208_988_800;
/// Samplers remembered per exporter session.
const MAX_SAMPLERS: usize = 1024;

/// Bounds on what the collector keeps (see the source's config keys of the same names).
#[derive(Clone, Debug)]
pub struct Limits {
    pub template_timeout: Duration,
    pub max_templates: usize,
    pub hold_timeout: Duration,
    pub hold_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            template_timeout: Duration::from_secs(30 * 60),
            max_templates: 4096,
            hold_timeout: Duration::from_secs(10),
            hold_max_bytes: 4 << 20,
        }
    }
}

/// Records decoded from packets: `out[ends[i-1]..ends[i]]` is record `i`; `bad` lists the
/// error records (index, why), ascending.
#[derive(Default, Debug)]
pub struct Batch {
    pub out: Vec<u8>,
    pub ends: Vec<usize>,
    pub bad: Vec<(usize, String)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn end_record(&mut self) {
        self.ends.push(self.out.len());
    }

    /// Record `i` as text (tests and tools).
    pub fn record(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        std::str::from_utf8(&self.out[start..self.ends[i]]).unwrap_or("")
    }
}

/// What happened to things that did not become records, for the source's metrics.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Packets that could not be read to their end.
    pub malformed: usize,
    /// Data sets dropped because their template never came (held too long, or over the bytes).
    pub no_template: usize,
    /// Templates refused because `max_templates` were held.
    pub template_limit: usize,
    /// Packets dropped because `max_templates` exporter sessions (address, port, version,
    /// domain) were already known.
    pub session_limit: usize,
    /// Options records read (not emitted).
    pub options_records: usize,
}

/// One field of a template.
#[derive(Clone, Debug)]
struct Field {
    /// `"name":`, ready to write.
    key: Box<[u8]>,
    kind: Kind,
    len: u16,
    role: Role,
}

/// What the collector itself takes from a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    None,
    StartUptime,
    EndUptime,
    /// An absolute start or end time (`flowStart/End` seconds, milliseconds, micro- or
    /// nanoseconds; see [`millis`]).
    Start,
    End,
    SystemInit,
    SamplingInterval,
    SamplingSpace,
    SamplerId,
}

#[derive(Clone, Debug)]
struct Template {
    fields: Vec<Field>,
    options: bool,
    /// The fewest bytes a record can take (at least 1).
    min_len: usize,
    /// Derived members the record carries itself.
    has_start: bool,
    has_end: bool,
    has_duration: bool,
    has_sampling: bool,
    has_exporter: bool,
    has_domain: bool,
    received: Instant,
}

/// Where a packet came from and its clock, as records need it.
#[derive(Clone, Copy, Debug)]
struct Header {
    version: u16,
    /// v5 and v9: the export time (milliseconds since 1970) and the exporter's uptime then.
    clock: Option<(i64, u32)>,
    domain: u32,
}

/// The time (milliseconds since 1970) at which the exporter's uptime was `at`, from the export
/// time and the uptime then. An `at` above the uptime is from before the 32-bit uptime wrapped
/// (every 49.7 days), as nfdump reads it too.
fn at_uptime((export_ms, uptime): (i64, u32), at: u32) -> i64 {
    export_ms - uptime.wrapping_sub(at) as i64
}

/// Exporter (address and port), version, observation domain.
type SessionKey = (SocketAddr, u16, u32);
/// A session's template id.
type TemplateKey = (SocketAddr, u16, u32, u16);

#[derive(Default, Debug)]
struct Session {
    system_init_ms: Option<i64>,
    sampling: Option<u64>,
    samplers: HashMap<u64, u64>,
    seen: Option<Instant>,
}

struct Held {
    key: TemplateKey,
    header: Header,
    data: Vec<u8>,
    at: Instant,
}

/// Packets in, records out; see the module doc.
pub struct Collector {
    limits: Limits,
    templates: HashMap<TemplateKey, Arc<Template>>,
    sessions: HashMap<SessionKey, Session>,
    held: VecDeque<Held>,
    held_bytes: usize,
    pub report: Report,
}

/// A fault in a packet; the rest of the packet is not read.
#[derive(Debug)]
struct Fault(String);

fn fault<T>(why: impl Into<String>) -> Result<T, Fault> {
    Err(Fault(why.into()))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Collector {
    pub fn new(limits: Limits) -> Collector {
        Collector {
            limits,
            templates: HashMap::new(),
            sessions: HashMap::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            report: Report::default(),
        }
    }

    /// Templates held now (metrics, tests).
    pub fn templates(&self) -> usize {
        self.templates.len()
    }

    /// Data sets held for a template that has not come yet.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Decode one datagram from `from` into `batch`.
    pub fn packet(&mut self, from: SocketAddr, data: &[u8], now: Instant, batch: &mut Batch) {
        let result = match data.get(..2).map(|v| u16_at(v, 0)) {
            Some(5) => self.v5(from, data, batch),
            Some(9) => self.v9(from, data, now, batch),
            Some(10) => self.ipfix(from, data, now, batch),
            Some(v) => fault(format!("not a NetFlow v5/v9 or IPFIX packet (version {v})")),
            None => fault(format!("a packet of {} bytes is too short for a header", data.len())),
        };
        if let Err(Fault(why)) = result {
            self.report.malformed += 1;
            let out = &mut batch.out;
            out.extend_from_slice(b"{\"decode_error\":");
            write_string(out, &why);
            out.extend_from_slice(b",\"packet_base64\":\"");
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(data).as_bytes());
            out.push(b'"');
            write_exporter(out, from);
            out.push(b'}');
            batch.bad.push((batch.ends.len(), why));
            batch.end_record();
        }
    }

    /// Drop what is older than the limits allow: templates not refreshed within
    /// `template_timeout`, data sets held longer than `hold_timeout`.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.limits.template_timeout;
        self.templates.retain(|_, t| now.saturating_duration_since(t.received) < timeout);
        // A session's templates are never newer than its last packet.
        self.sessions.retain(|_, s| s.seen.is_some_and(|seen| now.saturating_duration_since(seen) < timeout));
        while let Some(h) = self.held.front() {
            if now.saturating_duration_since(h.at) < self.limits.hold_timeout {
                break;
            }
            self.drop_oldest_held();
        }
    }

    fn drop_oldest_held(&mut self) {
        if let Some(h) = self.held.pop_front() {
            self.held_bytes -= h.data.len();
            self.report.no_template += 1;
        }
    }

    fn v5(&mut self, from: SocketAddr, p: &[u8], batch: &mut Batch) -> Result<(), Fault> {
        const HEADER: usize = 24;
        const RECORD: usize = 48;
        if p.len() < HEADER {
            return fault(format!("NetFlow v5: {} bytes is shorter than the 24-byte header", p.len()));
        }
        let count = u16_at(p, 2) as usize;
        if p.len() < HEADER + count * RECORD {
            return fault(format!(
                "NetFlow v5: the header counts {count} records ({} bytes) but the packet has {} bytes",
                HEADER + count * RECORD,
                p.len()
            ));
        }
        let clock = (u32_at(p, 8) as i64 * 1000 + u32_at(p, 12) as i64 / 1_000_000, u32_at(p, 4));
        let sampling = (u16_at(p, 22) & 0x3fff) as u64;
        let (engine_type, engine_id) = (p[20], p[21]);
        for r in p[HEADER..HEADER + count * RECORD].chunks_exact(RECORD) {
            let out = &mut batch.out;
            let ip = |at: usize| Ipv4Addr::from(u32_at(r, at));
            let _ = write!(
                out,
                "{{\"sourceIPv4Address\":\"{}\",\"destinationIPv4Address\":\"{}\",\"ipNextHopIPv4Address\":\"{}\",\
                 \"ingressInterface\":{},\"egressInterface\":{},\"packetDeltaCount\":{},\"octetDeltaCount\":{},\
                 \"flowStartMilliseconds\":{},\"flowEndMilliseconds\":{},\"flowDurationMilliseconds\":{},\
                 \"sourceTransportPort\":{},\"destinationTransportPort\":{},\"tcpControlBits\":{},\
                 \"protocolIdentifier\":{},\"ipClassOfService\":{},\"bgpSourceAsNumber\":{},\
                 \"bgpDestinationAsNumber\":{},\"sourceIPv4PrefixLength\":{},\"destinationIPv4PrefixLength\":{},\
                 \"engineType\":{engine_type},\"engineId\":{engine_id}",
                ip(0),
                ip(4),
                ip(8),
                u16_at(r, 12),
                u16_at(r, 14),
                u32_at(r, 16),
                u32_at(r, 20),
                at_uptime(clock, u32_at(r, 24)),
                at_uptime(clock, u32_at(r, 28)),
                (at_uptime(clock, u32_at(r, 28)) - at_uptime(clock, u32_at(r, 24))).max(0),
                u16_at(r, 32),
                u16_at(r, 34),
                r[37],
                r[38],
                r[39],
                u16_at(r, 40),
                u16_at(r, 42),
                r[44],
                r[45],
            );
            if sampling > 1 {
                let _ = write!(out, ",\"samplingInterval\":{sampling}");
            }
            write_exporter(out, from);
            out.push(b'}');
            batch.end_record();
        }
        Ok(())
    }

    fn v9(&mut self, from: SocketAddr, p: &[u8], now: Instant, batch: &mut Batch) -> Result<(), Fault> {
        const HEADER: usize = 20;
        if p.len() < HEADER {
            return fault(format!("NetFlow v9: {} bytes is shorter than the 20-byte header", p.len()));
        }
        let header =
            Header { version: 9, clock: Some((u32_at(p, 8) as i64 * 1000, u32_at(p, 4))), domain: u32_at(p, 16) };
        self.sets(from, header, &p[HEADER..], HEADER, now, batch)
    }

    fn ipfix(&mut self, from: SocketAddr, p: &[u8], now: Instant, batch: &mut Batch) -> Result<(), Fault> {
        const HEADER: usize = 16;
        if p.len() < HEADER {
            return fault(format!("IPFIX: {} bytes is shorter than the 16-byte message header", p.len()));
        }
        let length = u16_at(p, 2) as usize;
        if length < HEADER || length > p.len() {
            return fault(format!("IPFIX: the message length {length} does not fit the {}-byte packet", p.len()));
        }
        let header = Header { version: 10, clock: None, domain: u32_at(p, 12) };
        self.sets(from, header, &p[HEADER..length], HEADER, now, batch)
    }

    /// The sets (v9: flowsets) of one packet.
    fn sets(
        &mut self,
        from: SocketAddr,
        header: Header,
        mut body: &[u8],
        mut offset: usize,
        now: Instant,
        batch: &mut Batch,
    ) -> Result<(), Fault> {
        let (template_set, options_set) = if header.version == 9 { (0, 1) } else { (2, 3) };
        let key = (from, header.version, header.domain);
        if !self.sessions.contains_key(&key) && self.sessions.len() >= self.limits.max_templates {
            // Exporters are bounded like templates: spoofed source addresses cannot grow memory.
            self.expire(now);
            if self.sessions.len() >= self.limits.max_templates {
                self.report.session_limit += 1;
                return Ok(());
            }
        }
        self.sessions.entry(key).or_default().seen = Some(now);
        while !body.is_empty() {
            if body.len() < 4 {
                if header.version == 9 && body.iter().all(|&b| b == 0) {
                    break; // padding after the last flowset
                }
                return fault(format!("{} trailing bytes at offset {offset} are not a set", body.len()));
            }
            let (id, len) = (u16_at(body, 0), u16_at(body, 2) as usize);
            if len < 4 || len > body.len() {
                return fault(format!("the set at offset {offset} claims {len} bytes, {} are left", body.len()));
            }
            let content = &body[4..len];
            if id == template_set || id == options_set {
                self.template_set(from, header, content, id == options_set, now, batch)
                    .map_err(|Fault(why)| Fault(format!("template set at offset {offset}: {why}")))?;
            } else if id >= 256 {
                self.data_set(from, header, id, content, now, batch)
                    .map_err(|Fault(why)| Fault(format!("data set {id} at offset {offset}: {why}")))?;
            } else {
                return fault(format!("set id {id} at offset {offset} is reserved"));
            }
            body = &body[len..];
            offset += len;
        }
        Ok(())
    }

    fn template_set(
        &mut self,
        from: SocketAddr,
        header: Header,
        mut b: &[u8],
        options: bool,
        now: Instant,
        batch: &mut Batch,
    ) -> Result<(), Fault> {
        let v9 = header.version == 9;
        // v9 options templates: id, scope bytes, option bytes; IPFIX: id, fields, scope fields.
        let head = if options { 6 } else { 4 };
        while b.len() >= head {
            let id = u16_at(b, 0);
            if id == 0 && b.iter().all(|&x| x == 0) {
                break; // padding
            }
            let (n_fields, n_scope) = match (v9, options) {
                (true, true) => {
                    let (scope_bytes, option_bytes) = (u16_at(b, 2) as usize, u16_at(b, 4) as usize);
                    if scope_bytes % 4 != 0 || option_bytes % 4 != 0 {
                        return fault(format!("options template {id}: scope/option lengths not multiples of 4"));
                    }
                    ((scope_bytes + option_bytes) / 4, scope_bytes / 4)
                }
                (false, true) => (u16_at(b, 2) as usize, u16_at(b, 4) as usize),
                (_, false) => (u16_at(b, 2) as usize, 0),
            };
            b = &b[head..];
            let key = (from, header.version, header.domain, id);
            if n_fields == 0 && !v9 {
                // IPFIX template withdrawal: one template, or (id 2 or 3) all of the session's.
                if id == 2 || id == 3 {
                    self.templates.retain(|k, t| {
                        (k.0, k.1, k.2) != (from, header.version, header.domain) || t.options != (id == 3)
                    });
                } else {
                    self.templates.remove(&key);
                }
                continue;
            }
            if id < 256 {
                return fault(format!("template id {id} is below 256"));
            }
            if n_fields == 0 {
                return fault(format!("template {id} has no fields"));
            }
            if n_scope > n_fields || (options && !v9 && n_scope == 0) {
                return fault(format!("options template {id}: {n_scope} scope fields of {n_fields}"));
            }
            let mut fields = Vec::with_capacity(n_fields.min(1024));
            let mut names: HashMap<String, usize> = HashMap::new();
            let mut plain = Vec::with_capacity(n_fields.min(1024));
            for i in 0..n_fields {
                if b.len() < 4 {
                    return fault(format!("template {id} is cut short in field {}", i + 1));
                }
                let (raw, len) = (u16_at(b, 0), u16_at(b, 2));
                b = &b[4..];
                let pen = if !v9 && raw & 0x8000 != 0 {
                    if b.len() < 4 {
                        return fault(format!("template {id} is cut short in field {}'s enterprise number", i + 1));
                    }
                    let pen = u32_at(b, 0);
                    b = &b[4..];
                    Some(pen)
                } else {
                    None
                };
                let ie = if v9 { raw } else { raw & 0x7fff };
                if v9 && len == VARIABLE {
                    return fault(format!("template {id}: NetFlow v9 has no variable-length fields"));
                }
                let scope = v9 && options && i < n_scope;
                if pen.is_none() && !scope {
                    plain.push(ie);
                }
                fields.push(field(ie, pen, len, scope, &mut names));
            }
            let min_len = fields.iter().map(|f| if f.len == VARIABLE { 1 } else { f.len as usize }).sum::<usize>();
            if min_len == 0 {
                return fault(format!("template {id} gives records of 0 bytes"));
            }
            let has = |ies: &[u16]| plain.iter().any(|ie| ies.contains(ie));
            let template = Template {
                has_start: has(&[152]),
                has_end: has(&[153]),
                has_duration: has(&[161]),
                has_sampling: has(&[34]),
                has_exporter: has(&[130, 131]),
                has_domain: has(&[149]),
                fields,
                options,
                min_len,
                received: now,
            };
            if !self.templates.contains_key(&key) && self.templates.len() >= self.limits.max_templates {
                self.expire(now);
                if self.templates.len() >= self.limits.max_templates {
                    self.report.template_limit += 1;
                    continue;
                }
            }
            self.templates.insert(key, Arc::new(template));
            self.release_held(key, batch)?;
        }
        Ok(())
    }

    /// Decode the data sets that waited for template `key`.
    fn release_held(&mut self, key: TemplateKey, batch: &mut Batch) -> Result<(), Fault> {
        if !self.held.iter().any(|h| h.key == key) {
            return Ok(());
        }
        let (mine, rest): (Vec<Held>, Vec<Held>) =
            std::mem::take(&mut self.held).into_iter().partition(|h| h.key == key);
        self.held = rest.into();
        for h in mine {
            self.held_bytes -= h.data.len();
            let t = self.templates.get(&key).expect("inserted").clone();
            self.records(&t, key.0, h.header, &h.data, batch)?;
        }
        Ok(())
    }

    fn data_set(
        &mut self,
        from: SocketAddr,
        header: Header,
        id: u16,
        b: &[u8],
        now: Instant,
        batch: &mut Batch,
    ) -> Result<(), Fault> {
        let key = (from, header.version, header.domain, id);
        let template = match self.templates.get(&key) {
            Some(t) if now.saturating_duration_since(t.received) < self.limits.template_timeout => t.clone(),
            Some(_) => {
                self.templates.remove(&key);
                return self.hold(key, header, b, now);
            }
            None => return self.hold(key, header, b, now),
        };
        self.records(&template, from, header, b, batch)
    }

    fn hold(&mut self, key: TemplateKey, header: Header, b: &[u8], now: Instant) -> Result<(), Fault> {
        if b.len() > self.limits.hold_max_bytes {
            self.report.no_template += 1;
            return Ok(());
        }
        while self.held_bytes + b.len() > self.limits.hold_max_bytes {
            self.drop_oldest_held();
        }
        self.held_bytes += b.len();
        self.held.push_back(Held { key, header, data: b.to_vec(), at: now });
        Ok(())
    }

    /// The records of one data set.
    fn records(
        &mut self,
        t: &Template,
        from: SocketAddr,
        header: Header,
        mut b: &[u8],
        batch: &mut Batch,
    ) -> Result<(), Fault> {
        // One session lookup per set, not per record.
        let session = self.sessions.entry((from, header.version, header.domain)).or_default();
        while b.len() >= t.min_len {
            let mark = batch.out.len();
            match record(t, session, from, header, b, batch) {
                Ok(used) => b = &b[used..],
                Err(_) if b.iter().all(|&x| x == 0) => {
                    batch.out.truncate(mark);
                    break; // padding
                }
                Err(e) => {
                    batch.out.truncate(mark);
                    return Err(e);
                }
            }
            if t.options {
                self.report.options_records += 1;
            } else {
                batch.end_record();
            }
        }
        // Fewer bytes than a record are padding, whatever they hold: pmacct pads with non-zero
        // bytes, and nfdump skips them too.
        Ok(())
    }
}

/// One record at the start of `b`: written to `batch.out` (a data record) or read into the
/// exporter's `session` (an options record); returns the bytes it took.
fn record(
    t: &Template,
    session: &mut Session,
    from: SocketAddr,
    header: Header,
    b: &[u8],
    batch: &mut Batch,
) -> Result<usize, Fault> {
    let mut at = 0;
    let mut start: Option<i64> = None;
    let mut end: Option<i64> = None;
    let mut interval: Option<u64> = None;
    let mut space: Option<u64> = None;
    let mut sampler: Option<u64> = None;
    let out = &mut batch.out;
    if !t.options {
        out.push(b'{');
    }
    for (i, f) in t.fields.iter().enumerate() {
        let len = if f.len == VARIABLE {
            let Some(&first) = b.get(at) else { return fault("a record is cut short") };
            at += 1;
            if first < 255 {
                first as usize
            } else {
                let Some(two) = b.get(at..at + 2) else { return fault("a record is cut short") };
                at += 2;
                u16_at(two, 0) as usize
            }
        } else {
            f.len as usize
        };
        let Some(v) = b.get(at..at + len) else { return fault("a record is cut short") };
        at += len;
        match f.role {
            Role::None => {}
            Role::StartUptime | Role::EndUptime => {
                let ms = match (header.clock, session.system_init_ms, uint(v)) {
                    (Some(clock), _, Some(up)) => Some(at_uptime(clock, up as u32)),
                    (None, Some(init), Some(up)) => Some(init + up as i64),
                    _ => None,
                };
                if f.role == Role::StartUptime {
                    start = start.or(ms)
                } else {
                    end = end.or(ms)
                }
            }
            Role::Start | Role::End => {
                let ms = millis(f.kind, v);
                if f.role == Role::Start {
                    start = ms.or(start)
                } else {
                    end = ms.or(end)
                }
            }
            Role::SystemInit => session.system_init_ms = uint(v).map(|v| v as i64),
            Role::SamplingInterval => interval = uint(v),
            Role::SamplingSpace => space = uint(v),
            Role::SamplerId => sampler = uint(v),
        }
        if t.options {
            continue;
        }
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&f.key);
        write_value(out, f.kind, v);
    }
    if t.options {
        // An options record: remember the sampling it states (per sampler, when scoped).
        let n = interval.map(|i| match space {
            Some(s) if i > 0 => (i + s) / i,
            _ => i,
        });
        if let Some(n) = n {
            match sampler {
                Some(id) if session.samplers.len() < MAX_SAMPLERS || session.samplers.contains_key(&id) => {
                    session.samplers.insert(id, n);
                }
                Some(_) => {}
                None => session.sampling = Some(n),
            }
        }
        return Ok(at);
    }
    if !t.has_start {
        if let Some(s) = start {
            let _ = write!(out, ",\"flowStartMilliseconds\":{s}");
        }
    }
    if !t.has_end {
        if let Some(e) = end {
            let _ = write!(out, ",\"flowEndMilliseconds\":{e}");
        }
    }
    if !t.has_duration {
        if let (Some(s), Some(e)) = (start, end) {
            if e >= s {
                let _ = write!(out, ",\"flowDurationMilliseconds\":{}", e - s);
            }
        }
    }
    if !t.has_sampling {
        let n = sampler.and_then(|id| session.samplers.get(&id).copied()).or(session.sampling);
        if let Some(n) = n.filter(|&n| n > 1) {
            let _ = write!(out, ",\"samplingInterval\":{n}");
        }
    }
    if !t.has_exporter {
        write_exporter(out, from);
    }
    if !t.has_domain && header.domain != 0 {
        let _ = write!(out, ",\"observationDomainId\":{}", header.domain);
    }
    out.push(b'}');
    Ok(at)
}

/// A template field: its JSON key (deduplicated within the template), kind and role.
fn field(ie: u16, pen: Option<u32>, len: u16, v9_scope: bool, names: &mut HashMap<String, usize>) -> Field {
    let known = match pen {
        None | Some(REVERSE_PEN) if !v9_scope => element(ie),
        _ => None,
    };
    let mut name = match (pen, known) {
        _ if v9_scope => format!(
            "scope{}",
            ["System", "Interface", "LineCard", "Cache", "Template"]
                .get(ie.wrapping_sub(1) as usize)
                .copied()
                .unwrap_or("Field")
        ),
        (Some(REVERSE_PEN), Some((n, _))) => {
            let mut c = n.chars();
            let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or_default();
            format!("reverse{first}{}", c.as_str())
        }
        (None, Some((n, _))) => n.to_string(),
        (Some(pen), _) => format!("e{pen}_{ie}"),
        (None, None) => format!("ie{ie}"),
    };
    let seen = names.entry(name.clone()).or_insert(0);
    *seen += 1;
    if *seen > 1 {
        name = format!("{name}_{seen}");
    }
    let kind = known.map_or(Kind::Octets, |k| k.1);
    let role = match (pen, ie) {
        (None, _) if v9_scope => Role::None,
        (None, 22) => Role::StartUptime,
        (None, 21) => Role::EndUptime,
        (None, 150 | 152 | 154 | 156) => Role::Start,
        (None, 151 | 153 | 155 | 157) => Role::End,
        (None, 160) => Role::SystemInit,
        (None, 34 | 50 | 305) => Role::SamplingInterval,
        (None, 306) => Role::SamplingSpace,
        (None, 48 | 302) => Role::SamplerId,
        _ => Role::None,
    };
    let mut key = Vec::with_capacity(name.len() + 3);
    key.push(b'"');
    key.extend_from_slice(name.as_bytes());
    key.extend_from_slice(b"\":");
    Field { key: key.into(), kind, len, role }
}

/// An unsigned big-endian integer of 1 to 8 bytes.
fn uint(v: &[u8]) -> Option<u64> {
    (1..=8).contains(&v.len()).then(|| v.iter().fold(0u64, |acc, &b| acc << 8 | b as u64))
}

/// An absolute time in milliseconds since 1970.
fn millis(kind: Kind, v: &[u8]) -> Option<i64> {
    let n = uint(v)? as i64;
    match (kind, v.len()) {
        (Kind::Seconds, _) => Some(n.saturating_mul(1000)),
        (Kind::Milliseconds, _) => Some(n),
        (Kind::Microseconds | Kind::Nanoseconds, 8) => Some(ntp_nanos(v) / 1_000_000),
        _ => None,
    }
}

/// An NTP timestamp (seconds since 1900, 32-bit fraction) in nanoseconds since 1970.
fn ntp_nanos(v: &[u8]) -> i64 {
    let secs = u32_at(v, 0) as i64 - NTP_TO_UNIX;
    let frac = ((u32_at(v, 4) as u64 * 1_000_000_000) >> 32) as i64;
    secs * 1_000_000_000 + frac
}

fn write_exporter(out: &mut Vec<u8>, from: SocketAddr) {
    let _ = match from.ip() {
        IpAddr::V4(a) => write!(out, ",\"exporterIPv4Address\":\"{a}\""),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a) => write!(out, ",\"exporterIPv4Address\":\"{a}\""),
            None => write!(out, ",\"exporterIPv6Address\":\"{a}\""),
        },
    };
}

fn write_hex(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in v {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
    out.push(b'"');
}

/// One value as JSON, by its kind and length (see the module doc).
fn write_value(out: &mut Vec<u8>, kind: Kind, v: &[u8]) {
    let _ = match (kind, v.len()) {
        (Kind::Unsigned | Kind::Seconds | Kind::Milliseconds, 1..=8) => write!(out, "{}", uint(v).unwrap_or(0)),
        (Kind::Signed, n @ 1..=8) => {
            let raw = uint(v).unwrap_or(0);
            let shift = 64 - 8 * n as u32;
            write!(out, "{}", ((raw << shift) as i64) >> shift)
        }
        (Kind::Float, 4) => write_float(out, f32::from_be_bytes([v[0], v[1], v[2], v[3]]) as f64),
        (Kind::Float, 8) => write_float(out, f64::from_be_bytes(v.try_into().expect("8 bytes"))),
        (Kind::Boolean, 1) => match v[0] {
            1 => write!(out, "true"),
            2 => write!(out, "false"),
            n => write!(out, "{n}"),
        },
        (Kind::Mac, 6) => {
            write!(out, "\"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"", v[0], v[1], v[2], v[3], v[4], v[5])
        }
        (Kind::Ipv4, 4) => write!(out, "\"{}\"", Ipv4Addr::new(v[0], v[1], v[2], v[3])),
        (Kind::Ipv6, 16) => write!(out, "\"{}\"", Ipv6Addr::from(<[u8; 16]>::try_from(v).expect("16 bytes"))),
        (Kind::String, _) => {
            let end = v.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            write_string(out, &String::from_utf8_lossy(&v[..end]));
            Ok(())
        }
        (Kind::Microseconds, 8) => write!(out, "{}", ntp_nanos(v) / 1000),
        (Kind::Nanoseconds, 8) => write!(out, "{}", ntp_nanos(v)),
        _ => {
            write_hex(out, v);
            Ok(())
        }
    };
}

fn write_float(out: &mut Vec<u8>, x: f64) -> std::io::Result<()> {
    if x.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
    Ok(())
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
