//! `${VAR}` in config files, from the environment, before the TOML is parsed, as TOML values.
//!
//! `${VAR}` must be set (an unset variable is an error naming it and its line, so a secret that
//! did not reach the pod is caught at start); `${VAR:-default}` falls back to `default`; `$$`
//! writes a literal `$`. A value is inserted as what it is in its place, never as TOML syntax:
//!
//! - inside a `"basic"` or `"""multi-line"""` string it is escaped, so a secret may hold any
//!   character (`"`, `\`, a newline) and still be read back exactly;
//! - inside a `'literal'` string, which has no escapes, a value holding `'` (or, single-line, a
//!   line break) is an error that says to use a basic string;
//! - outside strings a value may only be a number or `true`/`false` (`port = ${PORT}`);
//!   anything else is an error that says to quote the reference;
//! - comments are left alone (a reference there is not looked up).

pub fn interpolate(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut state = State::Normal;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < text.len() {
        let rest = &text[i..];
        // Where a string or comment starts or ends; everything is copied as it is.
        let step = match (state, bytes[i]) {
            (State::Comment, b'\n') => Some((State::Normal, 1)),
            (State::Comment, _) => None,
            (State::Normal, b'#') => Some((State::Comment, 1)),
            (State::Normal, b'"') if rest.starts_with("\"\"\"") => Some((State::MlBasic, 3)),
            (State::Normal, b'"') => Some((State::Basic, 1)),
            (State::Normal, b'\'') if rest.starts_with("'''") => Some((State::MlLiteral, 3)),
            (State::Normal, b'\'') => Some((State::Literal, 1)),
            (State::Basic | State::MlBasic, b'\\') => {
                Some((state, 1 + rest[1..].chars().next().map_or(0, char::len_utf8)))
            }
            (State::Basic, b'"') | (State::Literal, b'\'') => Some((State::Normal, 1)),
            (State::Basic | State::Literal, b'\n') => Some((State::Normal, 1)),
            (State::MlBasic, b'"') if rest.starts_with("\"\"\"") => Some((State::Normal, 3)),
            (State::MlLiteral, b'\'') if rest.starts_with("'''") => Some((State::Normal, 3)),
            _ => None,
        };
        if let Some((next, len)) = step {
            out.push_str(&rest[..len]);
            state = next;
            i += len;
            continue;
        }
        if bytes[i] != b'$' || state == State::Comment {
            let c = rest.chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let after = &rest[1..];
        if after.starts_with('$') {
            out.push('$');
            i += 2;
        } else if let Some(body) = after.strip_prefix('{') {
            let line = line_of(text, i);
            let end = body.find('}').ok_or_else(|| format!("line {line}: `${{` without a closing `}}`"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "line {line}: `${{{expr}}}` is not a variable reference (letters, digits and `_`; write `$$` for a literal `$`)"
                ));
            }
            let value = env(name).or_else(|| default.map(str::to_string)).ok_or_else(|| {
                format!(
                    "line {line}: environment variable `{name}` is not set (set it, or write `${{{name}:-default}}`)"
                )
            })?;
            insert(&mut out, state, &value).map_err(|why| format!("line {line}: `{name}` {why}"))?;
            i += 2 + end + 1;
        } else {
            out.push('$');
            i += 1;
        }
    }
    Ok(out)
}

/// Where in the TOML text the scan is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Normal,
    Comment,
    Basic,
    MlBasic,
    Literal,
    MlLiteral,
}

/// `value` written where `state` says; `Err` says why it cannot be written there.
fn insert(out: &mut String, state: State, value: &str) -> Result<(), &'static str> {
    match state {
        State::Basic | State::MlBasic => {
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
        }
        State::Literal if value.contains(['\'', '\n', '\r']) => {
            return Err("holds a quote or a line break, which a 'literal' string cannot hold: use a \"basic\" string")
        }
        State::MlLiteral if value.contains("'''") => {
            return Err("holds ''', which a '''literal''' string cannot hold: use a \"basic\" string")
        }
        State::Literal | State::MlLiteral => out.push_str(value),
        State::Normal => {
            let number = value.parse::<f64>().is_ok()
                && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b));
            if !(number || value == "true" || value == "false") {
                return Err("is used outside a string, where only a number or true/false can stand: quote the reference (\"${...}\")");
            }
            out.push_str(value);
        }
        State::Comment => unreachable!("comments are not interpolated"),
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "NASTY" => Some("a\"b\\c\nd = 1 # e'f".into()),
            "PORT" => Some("9598".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_defaults_and_escapes() {
        assert_eq!(interpolate("a = \"${TOKEN}\"", env).unwrap(), "a = \"s3cret\"");
        assert_eq!(interpolate("a = \"${NOPE:-x}\" $$ $5", env).unwrap(), "a = \"x\" $ $5");
        assert_eq!(interpolate("port = ${PORT}", env).unwrap(), "port = 9598");
    }

    #[test]
    fn any_character_in_a_secret_reads_back_exactly() {
        for text in ["a = \"${NASTY}\"\nb = 2\n", "a = \"\"\"x${NASTY}\"\"\"\nb = 2\n"] {
            let out = interpolate(text, env).unwrap();
            let t: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
            assert!(t["a"].as_str().unwrap().ends_with("a\"b\\c\nd = 1 # e'f"), "{out}");
            assert_eq!(t["b"].as_integer(), Some(2), "the value did not become TOML");
        }
        assert_eq!(interpolate("a = 'lit ${TOKEN}'", env).unwrap(), "a = 'lit s3cret'");
    }

    #[test]
    fn a_value_that_cannot_stand_in_its_place_is_refused_naming_it() {
        let e = interpolate("a = '${NASTY}'", env).unwrap_err();
        assert!(e.starts_with("line 1: `NASTY` holds a quote"), "{e}");
        let e = interpolate("x = 1\na = ${TOKEN}", env).unwrap_err();
        assert!(e.starts_with("line 2: `TOKEN` is used outside a string"), "{e}");
    }

    #[test]
    fn comments_and_escaped_quotes_are_understood() {
        // A reference in a comment is not looked up; an escaped quote does not end a string.
        assert_eq!(interpolate("# ${UNSET}\na = 1", env).unwrap(), "# ${UNSET}\na = 1");
        let out = interpolate("a = \"q\\\" ${TOKEN}\" # ${UNSET}", env).unwrap();
        assert_eq!(out, "a = \"q\\\" s3cret\" # ${UNSET}");
    }

    #[test]
    fn names_the_missing_variable_and_line() {
        let e = interpolate("a = 1\nb = \"${HEC_TOKEN}\"", env).unwrap_err();
        assert!(e.contains("line 2") && e.contains("`HEC_TOKEN` is not set"), "{e}");
        assert!(interpolate("x = \"${bad name}\"", env).unwrap_err().contains("not a variable reference"));
    }
}
