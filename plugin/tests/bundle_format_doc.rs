//! `docs/bundle-format.md` is the contract third parties read: its complete example manifest
//! must be one the plugin accepts, and every key its table lists must be in that example.

use flowtag_plugin::manifest::Manifest;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/bundle-format.md")).unwrap()
}

/// The JSON block under "## A complete manifest".
fn example(doc: &str) -> String {
    let section = doc.split("## A complete manifest").nth(1).expect("the section exists");
    let start = section.find("```json\n").expect("a json block") + "```json\n".len();
    let end = section[start..].find("```").expect("the block ends") + start;
    section[start..end].to_string()
}

#[test]
fn the_documented_example_manifest_is_accepted() {
    let text = example(&doc());
    let m = Manifest::parse(text.as_bytes()).unwrap_or_else(|e| panic!("the documented example is refused: {e}"));
    assert_eq!(m.width(), m.input.width);
    assert_eq!(m.canaries.len(), 1);
}

#[test]
fn every_documented_key_is_in_the_example() {
    let doc = doc();
    let example: serde_json::Value = serde_json::from_str(&example(&doc)).unwrap();
    let table = doc.split("## The manifest").nth(1).unwrap().split("### Features").next().unwrap();
    let mut keys = 0;
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let key = line.trim_start_matches("| `").split('`').next().unwrap();
        let mut v = &example;
        for part in key.split('.') {
            v = v.get(part).unwrap_or_else(|| panic!("documented key `{key}` is not in the example"));
        }
        keys += 1;
    }
    assert!(keys >= 20, "the key table was not found ({keys} keys)");
}
