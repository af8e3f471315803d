//! CSV with a header line (csv, cicflowmeter) and UNSW-NB15/Argus records (header optional).

use std::borrow::Cow;

use flowtag_plugin::json as js;

use super::write_value;

/// Field names of the raw UNSW-NB15 CSV files (`UNSW-NB15_1.csv` ... `_4.csv`), which have no
/// header line, from `NUSW-NB15_features.csv`.
pub const UNSW_RAW_FIELDS: [&str; 49] = [
    "srcip",
    "sport",
    "dstip",
    "dsport",
    "proto",
    "state",
    "dur",
    "sbytes",
    "dbytes",
    "sttl",
    "dttl",
    "sloss",
    "dloss",
    "service",
    "Sload",
    "Dload",
    "Spkts",
    "Dpkts",
    "swin",
    "dwin",
    "stcpb",
    "dtcpb",
    "smeansz",
    "dmeansz",
    "trans_depth",
    "res_bdy_len",
    "Sjit",
    "Djit",
    "Stime",
    "Ltime",
    "Sintpkt",
    "Dintpkt",
    "tcprtt",
    "synack",
    "ackdat",
    "is_sm_ips_ports",
    "ct_state_ttl",
    "ct_flw_http_mthd",
    "is_ftp_login",
    "ct_ftp_cmd",
    "ct_srv_src",
    "ct_srv_dst",
    "ct_dst_ltm",
    "ct_src_ltm",
    "ct_src_dport_ltm",
    "ct_dst_sport_ltm",
    "ct_dst_src_ltm",
    "attack_cat",
    "Label",
];

#[derive(Debug)]
pub(super) struct CsvState {
    /// Field names, each already written as a JSON key with its colon.
    keys: Option<Vec<Vec<u8>>>,
    header_line: Vec<u8>,
    /// UNSW mode: the header is optional, and names lose all whitespace (the published header
    /// writes `ct_src_ ltm`).
    unsw: bool,
}

impl CsvState {
    pub(super) fn new(unsw: bool) -> CsvState {
        CsvState { keys: None, header_line: Vec::new(), unsw }
    }

    /// `Ok(true)`: a record was written; `Ok(false)`: a header line.
    pub(super) fn decode(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        let text = super::text(line);
        let fields = split(&text)?;
        let Some(keys) = &self.keys else {
            if self.unsw && !looks_like_header(&fields) {
                if fields.len() != UNSW_RAW_FIELDS.len() {
                    return Err(format!(
                        "unsw: no header line, and {} fields where raw UNSW-NB15 records have {}",
                        fields.len(),
                        UNSW_RAW_FIELDS.len()
                    ));
                }
                self.keys = Some(key_bytes(UNSW_RAW_FIELDS.iter().map(|s| s.to_string())));
                return self.decode(line, out);
            }
            self.set_header(line, &fields);
            return Ok(false);
        };
        if line == self.header_line.as_slice() {
            return Ok(false);
        }
        if fields.len() != keys.len() {
            return Err(format!("csv: {} fields, the header has {}", fields.len(), keys.len()));
        }
        out.push(b'{');
        for (k, (key, value)) in keys.iter().zip(&fields).enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            write_value(out, value);
        }
        out.push(b'}');
        Ok(true)
    }

    fn set_header(&mut self, line: &[u8], fields: &[Cow<'_, str>]) {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        let names = fields.iter().map(|f| {
            let name: String =
                if self.unsw { f.chars().filter(|c| !c.is_whitespace()).collect() } else { f.trim().to_string() };
            let n = seen.entry(name.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                name
            } else {
                format!("{name}.{}", *n - 1)
            }
        });
        self.keys = Some(key_bytes(names.collect::<Vec<_>>()));
        self.header_line = line.to_vec();
    }
}

fn key_bytes(names: impl IntoIterator<Item = String>) -> Vec<Vec<u8>> {
    names
        .into_iter()
        .map(|n| {
            let mut k = Vec::with_capacity(n.len() + 3);
            js::write_string(&mut k, &n);
            k.push(b':');
            k
        })
        .collect()
}

/// A header has no field that reads as a number or an IP address.
fn looks_like_header(fields: &[Cow<'_, str>]) -> bool {
    fields.iter().all(|f| {
        let f = f.trim();
        f.parse::<f64>().is_err() && f.parse::<std::net::IpAddr>().is_err()
    })
}

/// Split one CSV line (RFC 4180: fields may be quoted, `""` inside quotes is a quote).
fn split(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut fields = Vec::with_capacity(64);
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            let mut value = String::new();
            let mut j = i + 1;
            loop {
                match bytes.get(j) {
                    Some(b'"') if bytes.get(j + 1) == Some(&b'"') => {
                        value.push('"');
                        j += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => {
                        let run = bytes[j..].iter().position(|&b| b == b'"').map_or(bytes.len(), |p| j + p);
                        value.push_str(&line[j..run]);
                        j = run;
                    }
                    None => return Err("csv: a quoted field is not closed".into()),
                }
            }
            fields.push(Cow::Owned(value));
            i = j + 1;
            match bytes.get(i) {
                Some(b',') => i += 1,
                None => break,
                Some(_) => return Err("csv: text after a closing quote".into()),
            }
        } else {
            let end = bytes[i..].iter().position(|&b| b == b',').map_or(bytes.len(), |p| i + p);
            fields.push(Cow::Borrowed(&line[i..end]));
            if end == bytes.len() {
                break;
            }
            i = end + 1;
        }
    }
    Ok(fields)
}
