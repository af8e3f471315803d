//! `flowtag model inspect BUNDLE` and `flowtag model verify BUNDLE [--public-key KEY]
//! [--plugin MODULE.wasm]`: look at a bundle, or run every check a node runs before a bundle
//! serves (sha256, signature, load, canaries; natively and, with a module, under WASM).

use std::path::{Path, PathBuf};

use crate::transforms::anomaly::runtime::Loader;
use crate::transforms::anomaly::{AnomalyConfig, Runtime};
use flowtag_plugin::{Bundle, PublicKey};

/// Print a bundle's summary as JSON; exit code.
pub fn inspect(path: &Path) -> i32 {
    let bundle = match Bundle::read_path(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("flowtag model inspect: {}: {e}", path.display());
            return 1;
        }
    };
    let doc: serde_json::Value = serde_json::from_slice(&bundle.manifest_bytes).unwrap_or_default();
    let features: Vec<serde_json::Value> = doc["features"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| serde_json::json!({"name": f["name"], "type": f["type"], "fields": f["fields"], "required": f["required"]}))
                .collect()
        })
        .unwrap_or_default();
    let metrics: serde_json::Map<String, serde_json::Value> = doc["metrics"]
        .as_object()
        .map(|m| m.iter().filter(|(_, v)| v.is_number()).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let summary = serde_json::json!({
        "bundle": path.display().to_string(),
        "model": bundle.id(),
        "kind": doc["kind"],
        "schema": doc["schema"],
        "created": doc["created"],
        "model_sha256": bundle.model_sha256(),
        "model_sha256_matches": true,
        "signed": bundle.signature.is_some(),
        "input_width": doc["input"]["width"],
        "threshold": doc["threshold"],
        "features": features,
        "canaries": doc["canaries"].as_array().map_or(0, |c| c.len()),
        "training": {
            "dataset": doc["training"]["dataset"], "rows": doc["training"]["rows"],
            "model": doc["training"]["model"], "code_revision": doc["training"]["code_revision"],
        },
        "metrics": metrics,
    });
    println!("{}", serde_json::to_string_pretty(&summary).expect("JSON"));
    0
}

/// Print the feature row of each record, sparse: what the model sees, for checking a
/// featurizer against another (the Python twin's parity tests use it).
pub fn features(path: &Path, file: Option<&Path>) -> i32 {
    use std::io::{Read as _, Write as _};
    let fail = |what: String| {
        eprintln!("flowtag model features: {what}");
        1
    };
    let bundle = match Bundle::read_path(path) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", path.display())),
    };
    let mut featurizer = flowtag_plugin::featurize::Featurizer::new(&bundle.manifest);
    let mut input = Vec::new();
    let read = match file {
        Some(f) => std::fs::File::open(f).and_then(|mut f| f.read_to_end(&mut input)),
        None => std::io::stdin().read_to_end(&mut input),
    };
    if let Err(e) = read {
        return fail(format!("reading input: {e}"));
    }
    let mut slots = vec![None; featurizer.n_features()];
    let mut row = vec![0f32; featurizer.width()];
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let input = input.strip_suffix(b"\n").unwrap_or(&input);
    for line in flowtag_plugin::lines(input) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let result = featurizer
            .scan(line, &mut slots, "")
            .and_then(|_| featurizer.fill(line, &slots, &mut row))
            .map(|()| row.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(c, v)| (c, *v)).collect::<Vec<_>>());
        let doc = match result {
            Ok(nonzero) => serde_json::json!({ "nonzero": nonzero }),
            Err(e) => serde_json::json!({ "error": e.0 }),
        };
        if writeln!(out, "{doc}").is_err() {
            return 1;
        }
    }
    if out.flush().is_err() {
        return 1;
    }
    0
}

/// Run a node's checks on a bundle, printing each; exit code 0 when all pass.
pub fn verify(path: &Path, public_key: Option<&Path>, plugin: Option<PathBuf>, data_dir: &Path) -> i32 {
    let fail = |what: String| {
        eprintln!("flowtag model verify: {}: {what}", path.display());
        1
    };
    let bundle = match Bundle::read_path(path) {
        Ok(b) => b,
        Err(e) => return fail(e.to_string()),
    };
    println!("{}: manifest format 1, model.onnx sha256 {} matches", bundle.id(), bundle.model_sha256());
    match public_key {
        Some(k) => {
            let key = match std::fs::read_to_string(k).map_err(|e| e.to_string()).and_then(|t| PublicKey::parse(&t)) {
                Ok(key) => key,
                Err(e) => return fail(format!("--public-key {}: {e}", k.display())),
            };
            if let Err(e) = bundle.verify_signature(&key) {
                return fail(e.to_string());
            }
            println!("signature: valid for {}", k.display());
        }
        None if bundle.signature.is_some() => println!("signature: present, not checked (no --public-key)"),
        None => println!("signature: none (unsigned)"),
    }
    let runtimes: Vec<(Runtime, Option<PathBuf>)> = match plugin {
        Some(p) => vec![(Runtime::Native, None), (Runtime::Wasm, Some(p))],
        None => vec![(Runtime::Native, None)],
    };
    for (runtime, plugin) in runtimes {
        let cfg = AnomalyConfig::standalone(path.to_path_buf(), runtime, plugin);
        let loaded =
            Loader::new(&cfg, &data_dir.join("wasm-cache")).and_then(|l| l.load(&bundle).map(|_| l.describe()));
        match loaded {
            Ok(how) => println!("{} canaries reproduce their scores ({how})", bundle.manifest.canaries.len()),
            Err(e) => return fail(e),
        }
    }
    println!("ok: {} may serve", bundle.id());
    0
}
