//! Every TOML example users read is loaded here, so none can rot: the ```` ```toml ```` blocks of
//! the README, `ARCHITECTURE.md`, `docs/*.md` and the host's module docs, and the shipped config
//! files. A block with sources and sinks is a whole config and goes through `Config::from_toml`
//! (every check `flowtag validate --no-environment` runs); a fragment has each of its component
//! tables read as its kind's typed config and checked, and its top-level keys read as the
//! config's own.

use std::path::{Path, PathBuf};

use flowtag_host::alerts::AlertConfig;
use flowtag_host::config::interpolate::interpolate;
use flowtag_host::config::Config;
use flowtag_host::sinks::SinkConfig;
use flowtag_host::sources::SourceConfig;
use flowtag_host::transforms::anomaly::model::fetch::UpdatesConfig;
use flowtag_host::transforms::TransformConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The ```` ```toml ```` blocks of a Markdown file, or of a Rust file's `//!` / `///` docs.
fn toml_blocks(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let rust = path.extension().is_some_and(|e| e == "rs");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let line = if rust {
            match line.trim_start().strip_prefix("//!").or_else(|| line.trim_start().strip_prefix("///")) {
                Some(doc) => doc.strip_prefix(' ').unwrap_or(doc),
                None => continue,
            }
        } else {
            line
        };
        match &mut current {
            None if line.trim_start() == "```toml" => current = Some((n + 1, String::new())),
            Some(_) if line.trim_start() == "```" => blocks.push(current.take().unwrap()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "{}: a ```toml block is not closed", path.display());
    blocks
}

/// `${VAR}` placeholders filled as a node's environment would fill them (a URL for `*_URL`, a
/// port for `*_PORT`, a secret otherwise), through the config's own interpolation.
fn with_env(text: &str) -> String {
    interpolate(text, |name| {
        Some(if name.ends_with("_URL") {
            "https://hooks.example.com/services/T0/B0/x".to_string()
        } else if name.ends_with("_PORT") {
            "9598".to_string()
        } else {
            "secret-value".to_string()
        })
    })
    .unwrap_or_else(|e| panic!("interpolation: {e}\n{text}"))
}

fn check_block(origin: &str, text: &str) {
    let text = with_env(text);
    let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{origin}: not TOML: {e}\n{text}"));
    if table.contains_key("sources") && table.contains_key("sinks") {
        Config::from_toml(&text).unwrap_or_else(|e| panic!("{origin}: the config is refused: {e}\n{text}"));
        return;
    }
    let mut top = table.clone();
    for (section, check) in [
        ("sources", check_as::<SourceConfig> as fn(&str, &str, toml::Value)),
        ("transforms", check_as::<TransformConfig>),
        ("sinks", check_as::<SinkConfig>),
        ("alerts", check_as::<AlertConfig>),
    ] {
        let Some(components) = top.remove(section) else { continue };
        for (id, component) in components.as_table().unwrap_or_else(|| panic!("{origin}: [{section}] is a table")) {
            // A fragment about a transform's updates alone: `[transforms.ID.updates]`.
            if let Some(updates) = component.as_table().filter(|t| t.len() == 1).and_then(|t| t.get("updates")) {
                let key = format!("{section}.{id}.updates");
                let parsed: UpdatesConfig =
                    updates.clone().try_into().unwrap_or_else(|e| panic!("{origin}: [{key}] is refused: {e}"));
                parsed.check(&key).unwrap_or_else(|e| panic!("{origin}: [{key}] fails its checks: {e}"));
                continue;
            }
            check(origin, &format!("{section}.{id}"), component.clone());
        }
    }
    // What is left are the config's own keys (data_dir, [api], [log]).
    top.insert("sources".into(), toml::Value::Table(toml::Table::new()));
    toml::Value::Table(top)
        .try_into::<Config>()
        .unwrap_or_else(|e| panic!("{origin}: top-level keys are refused: {e}\n{text}"));
}

trait Checked: serde::de::DeserializeOwned {
    fn check_as(&self, id: &str) -> Result<(), String>;
}

impl Checked for SourceConfig {
    fn check_as(&self, id: &str) -> Result<(), String> {
        self.check(id)
    }
}
impl Checked for TransformConfig {
    fn check_as(&self, id: &str) -> Result<(), String> {
        self.check(id)
    }
}
impl Checked for SinkConfig {
    fn check_as(&self, id: &str) -> Result<(), String> {
        self.check(id)
    }
}
impl Checked for AlertConfig {
    fn check_as(&self, id: &str) -> Result<(), String> {
        self.check(id)
    }
}

fn check_as<T: Checked>(origin: &str, key: &str, value: toml::Value) {
    let id = key.split_once('.').unwrap().1;
    let parsed: T = value.try_into().unwrap_or_else(|e| panic!("{origin}: [{key}] is refused: {e}"));
    parsed.check_as(id).unwrap_or_else(|e| panic!("{origin}: [{key}] fails its checks: {e}"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_toml_example_in_the_docs_loads() {
    let root = repo();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    rust_files(&root.join("host/src"), &mut files);
    let mut checked = 0;
    for file in &files {
        for (line, block) in toml_blocks(file) {
            let origin = format!("{}:{line}", file.strip_prefix(&root).unwrap_or(file).display());
            check_block(&origin, &block);
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} TOML examples found; the search is broken");
}

#[test]
fn the_shipped_config_files_load() {
    let root = repo();
    for file in ["examples/demo.toml", "examples/web.toml", "daemonset/base/flowtag.toml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        check_block(file, &text);
    }
}

#[test]
fn a_broken_example_is_caught() {
    let broken = "[sinks.siem]\ntype = \"splunk_hec\"\ninputs = [\"tag\"]\nendpoint = \"splunk:8088\"\ntoken = \"x\"\n";
    let caught = std::panic::catch_unwind(|| check_block("test", broken));
    assert!(caught.is_err(), "an endpoint without a scheme must fail its check");
    let misspelt = "[transforms.tag]\ntype = \"anomaly\"\ninputs = [\"f\"]\nmodel = \"m\"\nbatch.max_event = 3\n";
    assert!(std::panic::catch_unwind(|| check_block("test", misspelt)).is_err());
}
