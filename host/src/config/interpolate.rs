//! `${VAR}` in config files, from the environment, before the TOML is parsed.
//!
//! `${VAR}` must be set (an unset variable is an error naming it and its line, so a secret that
//! did not reach the pod is caught at start); `${VAR:-default}` falls back to `default`; `$$`
//! writes a literal `$`. Values are inserted as they are: quote the reference in TOML
//! (`token = "${SPLUNK_HEC_TOKEN}"`) for strings.

pub fn interpolate(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                format!("line {}: `${{` without a closing `}}`", line_of(text, text.len() - rest.len() + pos))
            })?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "line {}: `${{{expr}}}` is not a variable reference (letters, digits and `_`; write `$$` for a literal `$`)",
                    line_of(text, text.len() - rest.len() + pos)
                ));
            }
            match env(name).or_else(|| default.map(str::to_string)) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(format!(
                        "line {}: environment variable `{name}` is not set (set it, or write `${{{name}:-default}}`)",
                        line_of(text, text.len() - rest.len() + pos)
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn replaces_defaults_and_escapes() {
        assert_eq!(interpolate("a = \"${TOKEN}\"", env).unwrap(), "a = \"s3cret\"");
        assert_eq!(interpolate("a = \"${NOPE:-x}\" $$ $5", env).unwrap(), "a = \"x\" $ $5");
    }

    #[test]
    fn names_the_missing_variable_and_line() {
        let e = interpolate("a = 1\nb = \"${HEC_TOKEN}\"", env).unwrap_err();
        assert!(e.contains("line 2") && e.contains("`HEC_TOKEN` is not set"), "{e}");
        assert!(interpolate("x = \"${bad name}\"", env).unwrap_err().contains("not a variable reference"));
    }
}
