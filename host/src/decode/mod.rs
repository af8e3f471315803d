//! Decoders: one line of input to one record, a JSON object.
//!
//! * `json`: a JSON object per line, passed on byte for byte.
//! * `csv`: a header line, then records. Header names are trimmed (CICIDS2017 writes
//!   `" Flow Duration"`), a repeated name gets `.1`, `.2`... as pandas does (CICIDS2017 repeats
//!   `Fwd Header Length`), a UTF-8 byte-order mark is dropped, and a line equal to the header
//!   (files concatenated) is skipped. Numbers become JSON numbers, everything else strings.
//! * `cicflowmeter`: CICFlowMeter's CSV (as `csv`), or its JSON lines.
//! * `unsw`: UNSW-NB15/Argus CSV, with a header (the partitioned files) or without one (the raw
//!   49-column `UNSW-NB15_*.csv` files, named as in `NUSW-NB15_features.csv`).
//! * `combined` (or `common`): web server access logs in the Common or Combined Log Format,
//!   nginx's and Apache's, with or without a leading vhost (see `access.rs`), or JSON access
//!   logs as `json_access` reads them.
//! * `json_access`: JSON access logs (nginx `escape=json`, Envoy/Istio, Traefik, or names a
//!   source's `access_fields` gives) read into the same fields as `combined` (`json_access.rs`).
//! * `zeek`: Zeek logs, TSV (`#separator`, `#fields`, `#types`, unset and empty markers; fields are
//!   typed from `#types`, unset fields left out as Zeek's JSON writer does) or JSON lines.
//!
//! A line that cannot be decoded is not lost: it becomes `{"message": <line>, "decode_error":
//! <why>}` and goes on, so the tag filter marks it unscored and the sinks still deliver it; or,
//! when something reads the source's `ID.dead_letter`, it goes there instead (see
//! [`crate::sources::SourceContext::outlets`]).

mod access;
mod csv;
mod json_access;
mod zeek;

pub use json_access::AccessFields;

use serde::Deserialize;

use flowtag_plugin::json as js;

/// How a source's lines are read.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    #[default]
    Json,
    Csv,
    Zeek,
    Cicflowmeter,
    Unsw,
    /// Web server access logs, Common or Combined Log Format (`common` is the same decoder).
    Combined,
    Common,
    /// JSON access logs, mapped to the fields `combined` gives.
    JsonAccess,
}

impl std::str::FromStr for Decoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Decoding, String> {
        Ok(match s {
            "json" => Decoding::Json,
            "csv" => Decoding::Csv,
            "zeek" => Decoding::Zeek,
            "cicflowmeter" => Decoding::Cicflowmeter,
            "unsw" => Decoding::Unsw,
            "combined" => Decoding::Combined,
            "common" => Decoding::Common,
            "json_access" => Decoding::JsonAccess,
            other => {
                return Err(format!(
                    "unknown format {other:?}: use json, csv, zeek, cicflowmeter, unsw, combined, common or json_access"
                ))
            }
        })
    }
}

/// What became of a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A record was appended to the output.
    Record,
    /// A header, directive or blank line: no record.
    Skipped,
    /// Appended as `{"message":..., "decode_error":...}`; the reason is returned for counting.
    Malformed(String),
}

/// Decoder state for one stream (one file, one connection): headers seen so far.
#[derive(Debug)]
pub struct Decoder {
    kind: Decoding,
    csv: csv::CsvState,
    zeek: zeek::ZeekState,
    first_line: bool,
    /// Validate JSON lines fully. A source whose every path to a sink goes through the tag
    /// filter can skip it: the filter validates each record anyway (and wraps an invalid one),
    /// so JSON would be parsed twice.
    check_json: bool,
    /// Extra field names for JSON access logs.
    access: std::sync::Arc<AccessFields>,
}

impl Decoder {
    pub fn new(kind: Decoding) -> Decoder {
        Decoder {
            kind,
            csv: csv::CsvState::new(kind == Decoding::Unsw),
            zeek: zeek::ZeekState::default(),
            first_line: true,
            check_json: true,
            access: Default::default(),
        }
    }

    /// Extra names for the fields of JSON access logs (a source's `access_fields`).
    pub fn with_access_fields(mut self, fields: std::sync::Arc<AccessFields>) -> Decoder {
        self.access = fields;
        self
    }

    /// See [`Decoder::check_json`]: `false` only checks that a JSON line is braced.
    pub fn with_json_check(mut self, check: bool) -> Decoder {
        self.check_json = check;
        self
    }

    pub fn kind(&self) -> Decoding {
        self.kind
    }

    /// Decode one line (without its line ending) and append the record to `out`.
    pub fn decode(&mut self, line: &[u8], out: &mut Vec<u8>) -> Line {
        let mut line = line.strip_suffix(b"\r").unwrap_or(line);
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.trim_ascii().is_empty() {
            return Line::Skipped;
        }
        let json_line = line.trim_ascii_start().first() == Some(&b'{');
        let check = self.check_json;
        let result = match self.kind {
            Decoding::Json => json_object(line, out, check),
            Decoding::Cicflowmeter if json_line => json_object(line, out, check),
            Decoding::Zeek if json_line => json_object(line, out, check),
            Decoding::Combined | Decoding::Common | Decoding::JsonAccess if json_line => {
                json_access::decode(line, &self.access, out)
            }
            Decoding::JsonAccess => Err("not a JSON object".into()),
            Decoding::Combined | Decoding::Common => access::decode(line, out),
            Decoding::Csv | Decoding::Cicflowmeter | Decoding::Unsw => self.csv.decode(line, out),
            Decoding::Zeek => self.zeek.decode(line, out),
        };
        match result {
            Ok(true) => Line::Record,
            Ok(false) => Line::Skipped,
            Err(why) => {
                malformed(line, &why, out);
                Line::Malformed(why)
            }
        }
    }
}

/// A JSON line: checked to be one object (or, unchecked, to be braced), appended as it is.
fn json_object(line: &[u8], out: &mut Vec<u8>, check: bool) -> Result<bool, String> {
    if !check {
        let t = line.trim_ascii();
        if t.first() == Some(&b'{') && t.last() == Some(&b'}') {
            out.extend_from_slice(t);
            return Ok(true);
        }
        // Not an object: the full check below names the problem and where it is.
    }
    let obj = js::scan_utf8_object(line, |_| {}).map_err(|e| e.to_string())?;
    out.extend_from_slice(&line[obj.open..=obj.close]);
    Ok(true)
}

pub(crate) fn malformed(line: &[u8], why: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"message\":");
    js::write_string(out, &String::from_utf8_lossy(line));
    out.extend_from_slice(b",\"decode_error\":");
    js::write_string(out, why);
    out.push(b'}');
}

/// A line as text: UTF-8, or else Windows-1252 (CICIDS2017 writes its labels' dashes as
/// cp1252 byte 0x96), so a legacy encoding does not cost the record.
pub(crate) fn text(line: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(line) {
        Ok(s) => s.into(),
        Err(_) => line.iter().map(|&b| cp1252(b)).collect::<String>().into(),
    }
}

fn cp1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{FFFD}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{02C6}',
        '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{FFFD}', '\u{017D}', '\u{FFFD}', '\u{FFFD}', '\u{2018}',
        '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}',
        '\u{203A}', '\u{0153}', '\u{FFFD}', '\u{017E}', '\u{0178}',
    ];
    match b {
        0x80..=0x9F => HIGH[(b - 0x80) as usize],
        _ => b as char,
    }
}

/// Append a field value: as a JSON number when the text is one, otherwise as a string.
pub(crate) fn write_value(out: &mut Vec<u8>, text: &str) {
    if is_json_number(text.as_bytes()) {
        out.extend_from_slice(text.as_bytes());
    } else {
        js::write_string(out, text);
    }
}

/// RFC 8259 number grammar.
pub(crate) fn is_json_number(b: &[u8]) -> bool {
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let start = i;
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests;
