//! HEC event objects: each record becomes `{"event": <record>, "host", "sourcetype", "source",
//! "index", "time", "fields"}`, one per line, as `/services/collector/event` takes them.

use crate::event::Event;
use flowtag_plugin::json as js;

use super::config::HecConfig;

pub struct Encoder {
    /// Everything but `event`, `time` and `fields` of each event object, ready to copy.
    meta: Vec<u8>,
    indexed_fields: Vec<String>,
    timestamp_key: Option<String>,
}

impl Encoder {
    pub fn new(cfg: &HecConfig, host: &str) -> Encoder {
        let mut meta = Vec::new();
        meta.extend_from_slice(b",\"host\":");
        js::write_string(&mut meta, host);
        meta.extend_from_slice(b",\"sourcetype\":");
        js::write_string(&mut meta, &cfg.sourcetype);
        if let Some(source) = &cfg.source {
            meta.extend_from_slice(b",\"source\":");
            js::write_string(&mut meta, source);
        }
        if let Some(index) = &cfg.index {
            meta.extend_from_slice(b",\"index\":");
            js::write_string(&mut meta, index);
        }
        Encoder { meta, indexed_fields: cfg.indexed_fields.clone(), timestamp_key: cfg.timestamp_key.clone() }
    }

    /// The HEC event objects of a batch.
    pub fn encode(&self, events: &[Event]) -> Vec<u8> {
        let mut body = Vec::with_capacity(events.iter().map(|e| e.data.len() + self.meta.len() + 64).sum());
        for e in events {
            body.extend_from_slice(b"{\"event\":");
            body.extend_from_slice(&e.data);
            body.extend_from_slice(&self.meta);
            let fields = (!self.indexed_fields.is_empty() || self.timestamp_key.is_some())
                .then(|| serde_json::from_slice::<serde_json::Value>(&e.data).ok())
                .flatten();
            if let Some(record) = &fields {
                self.write_time_and_fields(record, &mut body);
            }
            body.extend_from_slice(b"}\n");
        }
        body
    }

    fn write_time_and_fields(&self, record: &serde_json::Value, body: &mut Vec<u8>) {
        if let Some(t) = self.timestamp_key.as_deref().and_then(|k| lookup(record, k)).and_then(|v| v.as_f64()) {
            body.extend_from_slice(b",\"time\":");
            body.extend_from_slice(ryu::Buffer::new().format(t).as_bytes());
        }
        let mut first = true;
        for path in &self.indexed_fields {
            let Some(v) = lookup(record, path) else { continue };
            body.extend_from_slice(if std::mem::take(&mut first) { b",\"fields\":{" } else { b"," });
            js::write_string(body, path);
            body.push(b':');
            // HEC indexed fields are strings, numbers or arrays of them.
            match v {
                serde_json::Value::String(_) | serde_json::Value::Number(_) => {
                    body.extend_from_slice(v.to_string().as_bytes())
                }
                other => js::write_string(body, &other.to_string()),
            }
        }
        if !first {
            body.push(b'}');
        }
    }
}

/// A value by dotted path (`anomaly.verdict`); a key that itself contains dots is found too.
fn lookup<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(direct) = v.get(path) {
        return Some(direct);
    }
    let (head, rest) = path.split_once('.')?;
    lookup(v.get(head)?, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn config(extra: &str) -> HecConfig {
        toml::from_str(&format!("inputs = [\"t\"]\nendpoint = \"https://s:8088\"\ntoken = \"x\"\n{extra}")).unwrap()
    }

    fn events(records: &[&str]) -> Vec<Event> {
        records.iter().map(|r| Event::new(Bytes::copy_from_slice(r.as_bytes()))).collect()
    }

    #[test]
    fn plain_events_carry_host_and_sourcetype() {
        let enc = Encoder::new(&config(""), "node-1");
        let body = enc.encode(&events(&[r#"{"a":1}"#, r#"{"b":"x"}"#]));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"event\":{\"a\":1},\"host\":\"node-1\",\"sourcetype\":\"flowtag\"}\n\
             {\"event\":{\"b\":\"x\"},\"host\":\"node-1\",\"sourcetype\":\"flowtag\"}\n"
        );
    }

    #[test]
    fn source_index_time_and_indexed_fields_byte_for_byte() {
        let cfg = config(
            "source = \"edge\"\nindex = \"netflow\"\nsourcetype = \"flowtag:flow\"\ntimestamp_key = \"ts\"\n\
             indexed_fields = [\"anomaly.verdict\", \"anomaly.score\", \"tags\", \"missing\", \"k.with.dots\"]",
        );
        let enc = Encoder::new(&cfg, "n\"2");
        let rec =
            r#"{"ts":1700000000.5,"k.with.dots":"d","tags":["a",1],"anomaly":{"verdict":"anomalous","score":0.99}}"#;
        let body = String::from_utf8(enc.encode(&events(&[rec]))).unwrap();
        let want = format!(
            "{{\"event\":{rec},\"host\":\"n\\\"2\",\"sourcetype\":\"flowtag:flow\",\"source\":\"edge\",\
             \"index\":\"netflow\",\"time\":1700000000.5,\"fields\":{{\"anomaly.verdict\":\"anomalous\",\
             \"anomaly.score\":0.99,\"tags\":\"[\\\"a\\\",1]\",\"k.with.dots\":\"d\"}}}}\n"
        );
        assert_eq!(body, want);
        let parsed: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
        assert_eq!(parsed["fields"]["anomaly.verdict"], "anomalous");
    }
}
