//! The `sample` transform: keep 1 record in `rate`, chosen by a hash of a key, so the same flow
//! is kept (or not) on every node and in every run; records that satisfy `exclude` are always
//! kept. Each sampled record gets `sample_rate` (the rate) so the SIEM can scale counts back;
//! excluded records go on unchanged. Dropped records are counted (discarded, reason `sampled`)
//! and confirmed for the sinks downstream.
//!
//! ```toml
//! [transforms.some]
//! type = "sample"
//! inputs = ["pick._unmatched"]
//! rate = 100                                  # keep 1 in 100
//! key_field = "srcip"                         # default: the flow's addresses, ports, protocol
//! exclude = 'anomaly.verdict == "anomalous"'
//! ```
//!
//! The default key is every field of [`FLOW_KEY`] the record has (the 5-tuple as UNSW-NB15/Argus,
//! CICFlowMeter and Zeek name it) when it has a source address among them; a record without
//! one (UNSW-NB15's partitioned files carry no addresses) is keyed by all its bytes.

use serde::Deserialize;

use super::condition::{Condition, Field, Scratch};
use super::{single, spawn_loop, TransformStart};
use crate::event::Event;
use crate::metrics::ComponentMetrics;

/// The fields of the default key (top-level keys), by the names flow tools give them.
pub const FLOW_KEY: [&str; 18] = [
    "srcip",
    "sport",
    "dstip",
    "dsport",
    "proto",
    "Flow ID",
    "Source IP",
    "Source Port",
    "Destination IP",
    "Destination Port",
    "Protocol",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "saddr",
    "daddr",
    "dport",
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    pub inputs: Vec<String>,
    /// Keep 1 in `rate`.
    pub rate: u64,
    /// The field whose value chooses; default the flow key ([`FLOW_KEY`]).
    pub key_field: Option<Field>,
    /// Records that satisfy this are always kept.
    pub exclude: Option<Condition>,
    /// Where the rate is written into sampled records.
    #[serde(default = "default_rate_field")]
    pub rate_field: String,
}

fn default_rate_field() -> String {
    "sample_rate".into()
}

impl crate::component::ComponentConfig for SampleConfig {
    const TYPE: &'static str = "sample";
    fn inputs(&self) -> &[String] {
        &self.inputs
    }
    fn check(&self, id: &str) -> Result<(), String> {
        if self.rate == 0 {
            return Err(format!("transforms.{id}.rate: must be at least 1 (keep 1 in rate)"));
        }
        Ok(())
    }
}

/// The fields of [`FLOW_KEY`] that name a flow's source address (or the whole flow).
const ADDRESSES: &[&str] = &["srcip", "Flow ID", "Source IP", "id.orig_h", "saddr"];

/// How records are keyed: a configured field, or the flow key (read in one skim).
pub struct Keyer {
    field: Option<Field>,
    scratch: Scratch,
    /// Which fields of the flow key are addresses, one of which must be there for the flow key
    /// to be used.
    addresses: [bool; FLOW_KEY.len()],
}

impl Keyer {
    pub fn new(key_field: Option<&Field>) -> Keyer {
        let addresses = FLOW_KEY.map(|k| ADDRESSES.contains(&k));
        Keyer { field: key_field.cloned(), scratch: Scratch::default(), addresses }
    }

    /// A stable 64-bit hash of the record's key (FNV-1a: the same on every node and version):
    /// each field's index and value; the whole record when it has no key (or, with the flow
    /// key, no address).
    pub fn hash(&mut self, record: &[u8]) -> u64 {
        let mut h = Fnv::default();
        let mut flow = [None; FLOW_KEY.len()];
        let values: &[Option<&[u8]>] = match &self.field {
            Some(f) => &[f.raw(record, &mut self.scratch)],
            None => {
                super::condition::top_values(record, &FLOW_KEY, &mut flow);
                let addressed = flow.iter().zip(&self.addresses).any(|(v, &address)| address && v.is_some());
                if addressed {
                    &flow
                } else {
                    &[]
                }
            }
        };
        if values.iter().all(Option::is_none) {
            h.write(record);
            return h.0;
        }
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                h.write(&(i as u32).to_le_bytes());
                h.write(v);
            }
        }
        h.0
    }
}

#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// `record` with `"field":value` added before its closing brace (unchanged if it does not end
/// like a JSON object).
pub fn with_member(record: &[u8], field: &str, value: &str) -> Option<Vec<u8>> {
    let end = record.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if record[end] != b'}' {
        return None;
    }
    let before = record[..end].iter().rposition(|b| !b.is_ascii_whitespace())?;
    let mut out = Vec::with_capacity(record.len() + field.len() + value.len() + 4);
    out.extend_from_slice(&record[..end]);
    if record[before] != b'{' {
        out.push(b',');
    }
    flowtag_plugin::json::write_string(&mut out, field);
    out.push(b':');
    out.extend_from_slice(value.as_bytes());
    out.push(b'}');
    Some(out)
}

impl super::TransformType for SampleConfig {
    fn start(self, s: TransformStart<'_>) -> Result<std::thread::JoinHandle<()>, String> {
        let port = single(&s.ports);
        let metrics = ComponentMetrics::new(&s.id, "transform", "sample");
        let counted = metrics.clone();
        let mut keyer = Keyer::new(self.key_field.as_ref());
        let mut scratch = Scratch::default();
        let rate_text = self.rate.to_string();
        spawn_loop(&s.id, s.inbox, s.inline, metrics, move |events| {
            let mut keep = Vec::with_capacity(events.len() / self.rate.max(1) as usize + 8);
            let mut drop = Vec::new();
            for e in events {
                if self.exclude.as_ref().is_some_and(|c| c.eval_event(&e, &mut scratch)) {
                    keep.push(e);
                } else if keyer.hash(&e.data).is_multiple_of(self.rate) {
                    let data = with_member(&e.data, &self.rate_field, &rate_text).map(bytes::Bytes::from);
                    keep.push(match data {
                        // The rate written into the record moves its members.
                        Some(data) => Event { data, ack: e.ack, tags: None },
                        None => e,
                    });
                } else {
                    drop.push(e);
                }
            }
            port.pass(keep, drop, &counted, "sampled")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_added_before_the_closing_brace() {
        assert_eq!(with_member(br#"{"a":1}"#, "sample_rate", "100").unwrap(), br#"{"a":1,"sample_rate":100}"#);
        assert_eq!(with_member(b"{ }\n", "r", "2").unwrap(), br#"{ "r":2}"#);
        assert_eq!(with_member(b"[1]", "r", "2"), None);
    }

    #[test]
    fn the_flow_key_ignores_other_fields_and_is_stable() {
        let mut k = Keyer::new(None);
        let a = k.hash(br#"{"srcip":"10.0.0.1","sport":1234,"dstip":"10.0.0.2","dsport":80,"proto":"tcp","dur":1}"#);
        let b = k.hash(br#"{"dur":9,"srcip":"10.0.0.1","sport":1234,"dstip":"10.0.0.2","dsport":80,"proto":"tcp"}"#);
        let c = k.hash(br#"{"srcip":"10.0.0.1","sport":1235,"dstip":"10.0.0.2","dsport":80,"proto":"tcp"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // FNV-1a is fixed: the same value on every node and release.
        assert_eq!(Keyer::new(Some(&"x".parse().unwrap())).hash(br#"{"x":"a"}"#), {
            let mut h = Fnv::default();
            h.write(&0u32.to_le_bytes());
            h.write(b"a");
            h.0
        });
        // Without an address, the flow key would be the protocol alone: the whole record keys.
        assert_ne!(k.hash(br#"{"proto":"tcp","dur":1}"#), k.hash(br#"{"proto":"tcp","dur":2}"#));
        let cic = k.hash(br#"{"Flow ID":"10.0.0.1-10.0.0.2-1234-80-6","Flow Duration":5}"#);
        assert_ne!(cic, k.hash(br#"{"Flow ID":"10.0.0.1-10.0.0.2-1234-81-6","Flow Duration":5}"#));
    }
}
