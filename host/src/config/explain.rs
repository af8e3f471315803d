//! Config errors told with their full key and, for a misspelt key or value, the likely fix.

use super::graph::closest;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

/// A parse error told with its full key and, for a misspelt key or value, the likely fix.
///
/// Inside a typed component table (`type = "..."`) serde reports an error at the table
/// (`[transforms.tag]`) without the key, so each such table is read again as its own type, which
/// names the key (`transforms.tag.batch.max_events: invalid type: ...`); the table's line is
/// kept. Elsewhere toml points at the line, and the key is read off the text there
/// (`api.adress: unknown field ...`).
pub(super) fn explain(text: &str, error: &toml::de::Error) -> String {
    let original = error.to_string().trim_end().to_string();
    let Ok(table) = toml::from_str::<toml::Table>(text) else { return original };
    let at = original.lines().next().unwrap_or_default().trim_start_matches("TOML parse error at ");
    let sections: [(&str, fn(&toml::Table) -> Option<String>); 3] =
        [("sources", SourceConfig::explain), ("transforms", TransformConfig::explain), ("sinks", SinkConfig::explain)];
    for (section, explain) in sections {
        let Some(components) = table.get(section).and_then(toml::Value::as_table) else { continue };
        for (id, component) in components {
            if let Some(why) = component.as_table().and_then(explain) {
                return format!("{section}.{id}{why} (the table at {at})");
            }
        }
    }
    let message = error.message().trim_end();
    let Some(path) = error.span().and_then(|span| key_path(text, span.start)) else { return original };
    let path = with_unknown_field(path, message);
    // toml's own rendering minus the message: the position and the line with a caret.
    let snippet = original.strip_suffix(message).unwrap_or(&original).trim_end();
    let snippet = snippet.strip_prefix("TOML parse error at ").unwrap_or(snippet);
    format!("{path}: {message}{} at {snippet}", suggestion(message))
}

/// Why `table` (a typed component's table without its `type`) does not read as a `T`:
/// `.key.path: message`, or `: message` for the table itself. None when it reads.
pub fn explain_as<T: serde::de::DeserializeOwned>(table: &toml::Table) -> Option<String> {
    let mut table = table.clone();
    table.remove("type");
    let error = toml::Value::Table(table).try_into::<T>().err()?.to_string();
    // toml names the key on a last line: "in `batch.max_events`".
    let (message, key) = match error.trim_end().rsplit_once("\nin `") {
        Some((message, key)) => (message.trim_end().to_string(), format!(".{}", key.trim_end_matches('`'))),
        None => (error.trim_end().to_string(), String::new()),
    };
    Some(format!("{}: {message}{}", with_unknown_field(key, &message), suggestion(&message)))
}

/// `path` (a key, or the table an unknown key was found in) ending in the unknown field that
/// `message` names, if it names one: `api` + "unknown field `adress`" is `api.adress`.
fn with_unknown_field(path: String, message: &str) -> String {
    match misspelt(message) {
        Some(("field", field)) if path != field && !path.ends_with(&format!(".{field}")) => format!("{path}.{field}"),
        _ => path,
    }
}

/// The word serde could not place, from "unknown field `adress`, expected ..." or "unknown
/// variant `fil`, expected ...": `("field", "adress")`.
fn misspelt(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown ")?;
    let (what, rest) = rest.split_once(" `")?;
    let (word, _) = rest.split_once('`')?;
    matches!(what, "field" | "variant").then_some((what, word))
}

/// " (did you mean `address`?)" when serde's list of what it expected holds a close spelling.
fn suggestion(message: &str) -> String {
    let Some((_, word)) = misspelt(message) else { return String::new() };
    let Some((_, expected)) = message.split_once(", expected ") else { return String::new() };
    // The expected names are the backquoted words: "one of `a`, `b`" or "`a` or `b`".
    let candidates = expected.split('`').skip(1).step_by(2);
    closest(word, candidates).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default()
}

/// The dotted key of the line holding byte `at` of a TOML document: the table header above it
/// and the key before the line's `=` (`api.adress`), or the header itself on a header line.
/// Read off the text line by line, so only for the usual layout (one key per line, headers on
/// their own lines); None when the line is not of that shape.
fn key_path(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?.trim();
    // `[table]` or `[[array]]`, nothing after it but a comment (so not a line of an array).
    let header = |l: &str| {
        let l = l.trim();
        let (inner, after) =
            l.strip_prefix("[[").and_then(|h| h.split_once("]]")).or_else(|| l.strip_prefix('[')?.split_once(']'))?;
        let after = after.trim();
        (after.is_empty() || after.starts_with('#')).then(|| inner.trim().to_string())
    };
    if line.starts_with('[') {
        return header(line);
    }
    let table = text[..line_start].lines().rev().find_map(header).unwrap_or_default();
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    Some(if table.is_empty() { key.to_string() } else { format!("{table}.{key}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_are_read_off_the_line() {
        let text = "a = 1\n[t.u]\nk = [\n  [\"x\"],\n]\nm = 2\n[[arr]]\nn = 3\n";
        let at = |needle: &str| text.find(needle).unwrap();
        assert_eq!(key_path(text, at("a =")).as_deref(), Some("a"));
        assert_eq!(key_path(text, at("[t.u]")).as_deref(), Some("t.u"));
        // A line of an array is not a header.
        assert_eq!(key_path(text, at("m = 2")).as_deref(), Some("t.u.m"));
        assert_eq!(key_path(text, at("n = 3")).as_deref(), Some("arr.n"));
        assert_eq!(key_path(text, at("]\nm")), None);
    }
}
