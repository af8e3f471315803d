//! Zeek TSV logs: `#` directives describe the columns; data lines follow them.

use flowtag_plugin::json as js;

use super::write_value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Number,
    Bool,
    Text,
    /// `set[...]` or `vector[...]`; whether the elements are numbers.
    List {
        numbers: bool,
    },
}

#[derive(Debug)]
pub(super) struct ZeekState {
    separator: u8,
    set_separator: u8,
    empty: String,
    unset: String,
    /// Column names as JSON keys with their colon.
    keys: Vec<Vec<u8>>,
    types: Vec<Type>,
}

impl Default for ZeekState {
    fn default() -> Self {
        ZeekState {
            separator: b'\t',
            set_separator: b',',
            empty: "(empty)".into(),
            unset: "-".into(),
            keys: Vec::new(),
            types: Vec::new(),
        }
    }
}

fn parse_type(t: &str) -> Type {
    let numeric = |t: &str| matches!(t, "count" | "int" | "double" | "time" | "interval" | "port");
    if numeric(t) {
        Type::Number
    } else if t == "bool" {
        Type::Bool
    } else if let Some(inner) = t.strip_prefix("set[").or_else(|| t.strip_prefix("vector[")) {
        Type::List { numbers: numeric(inner.trim_end_matches(']')) }
    } else {
        Type::Text
    }
}

/// `\x09` style escapes in directive values.
fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(p) = rest.find("\\x") {
        out.push_str(&rest[..p]);
        match u8::from_str_radix(rest.get(p + 2..p + 4).unwrap_or(""), 16) {
            Ok(b) => {
                out.push(b as char);
                rest = &rest[p + 4..];
            }
            Err(_) => {
                out.push_str("\\x");
                rest = &rest[p + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl ZeekState {
    pub(super) fn decode(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        let text = super::text(line);
        let text = text.as_ref();
        let trimmed = text.trim_start();
        if let Some(directive) = trimmed.strip_prefix('#') {
            self.directive(directive);
            return Ok(false);
        }
        if self.keys.is_empty() {
            return Err("zeek: a data line before any #fields line".into());
        }
        let sep = self.separator as char;
        let values: Vec<&str> = text.split(sep).collect();
        if values.len() != self.keys.len() {
            return Err(format!("zeek: {} values, #fields names {}", values.len(), self.keys.len()));
        }
        out.push(b'{');
        let mut first = true;
        for ((key, ty), value) in self.keys.iter().zip(&self.types).zip(values) {
            if value == self.unset {
                // Zeek's JSON writer leaves unset fields out.
                continue;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(key);
            let empty = value == self.empty;
            match ty {
                Type::Number if !empty => write_value(out, value),
                Type::Bool if value == "T" => out.extend_from_slice(b"true"),
                Type::Bool if value == "F" => out.extend_from_slice(b"false"),
                Type::List { numbers } => {
                    out.push(b'[');
                    if !empty {
                        for (k, item) in value.split(self.set_separator as char).enumerate() {
                            if k > 0 {
                                out.push(b',');
                            }
                            if *numbers {
                                write_value(out, item);
                            } else {
                                js::write_string(out, item);
                            }
                        }
                    }
                    out.push(b']');
                }
                _ => js::write_string(out, if empty { "" } else { value }),
            }
        }
        out.push(b'}');
        Ok(true)
    }

    fn directive(&mut self, d: &str) {
        // `#separator \x09` uses a space; the others use the separator itself.
        let (name, value) = match d.split_once(|c: char| c == ' ' || c == self.separator as char) {
            Some((n, v)) => (n, v),
            None => (d, ""),
        };
        let sep = self.separator as char;
        match name {
            "separator" => {
                if let Some(b) = unescape(value.trim()).bytes().next() {
                    self.separator = b;
                }
            }
            "set_separator" => {
                if let Some(b) = unescape(value).bytes().next() {
                    self.set_separator = b;
                }
            }
            "empty_field" => self.empty = unescape(value),
            "unset_field" => self.unset = unescape(value),
            "fields" => {
                self.keys = value
                    .split(sep)
                    .map(|f| {
                        let mut k = Vec::new();
                        js::write_string(&mut k, f);
                        k.push(b':');
                        k
                    })
                    .collect();
                if self.types.len() != self.keys.len() {
                    self.types = vec![Type::Text; self.keys.len()];
                }
            }
            "types" => self.types = value.split(sep).map(parse_type).collect(),
            _ => {}
        }
    }
}
