//! Bad bundles are refused with an error that names the file, the key and what was expected;
//! signatures and canaries guard what goes live.

use std::path::{Path, PathBuf};

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use flowtag_plugin::scorer::Scorer;
use flowtag_plugin::{Bundle, BundleError, Filter, FilterOptions, PublicKey};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A copy of a fixture bundle with its manifest edited by `edit`.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    std::fs::create_dir(&out).unwrap();
    for f in ["model.onnx", "manifest.json"] {
        std::fs::copy(fixture(name).join(f), out.join(f)).unwrap();
    }
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    (dir, out)
}

fn load_err(path: &Path) -> String {
    match Bundle::read_path(path).and_then(|b| Filter::new(&b, FilterOptions::default()).map(|_| ())) {
        Ok(()) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_changed_model_fails_the_sha256_check() {
    let (_d, path) = edited("forest", |_| {});
    let mut model = std::fs::read(path.join("model.onnx")).unwrap();
    let last = model.len() - 1;
    model[last] ^= 1;
    std::fs::write(path.join("model.onnx"), model).unwrap();
    let e = load_err(&path);
    assert!(e.contains("model.onnx: sha256 is") && e.contains("model_sha256"), "{e}");
}

#[test]
fn manifest_errors_name_the_key() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("`format`: expected 1, got 2", Box::new(|m| m["format"] = 2.into())),
        ("`input.width`", Box::new(|m| m["input"]["width"] = 3.into())),
        ("`features[1].name`", Box::new(|m| m["features"][1]["name"] = m["features"][0]["name"].clone())),
        ("`reference`", Box::new(|m| m["reference"].as_array_mut().unwrap().pop().map(|_| ()).unwrap())),
        ("`calibration.quantiles`", Box::new(|m| m["calibration"]["quantiles"] = serde_json::json!([1.0, 0.5]))),
        (
            "`features[0].transforms[0]`",
            Box::new(|m| m["features"][0]["transforms"][0] = serde_json::json!({"op": "clip", "min": 5, "max": 1})),
        ),
        ("`model_sha256`", Box::new(|m| m["model_sha256"] = "abc".into())),
        ("manifest.json: `(document)`", Box::new(|m| m["kind"] = "svm".into())),
    ];
    for (want, edit) in cases {
        let (_d, path) = edited("forest", edit);
        let e = load_err(&path);
        assert!(e.starts_with("manifest.json") && e.contains(want), "want {want:?} in: {e}");
    }
}

#[test]
fn feature_list_must_match_the_model_width() {
    // Drop the last (index-encoded, one column) feature: the manifest now makes one column less.
    let (_d, path) = edited("forest", |m| {
        m["features"].as_array_mut().unwrap().pop();
        m["reference"].as_array_mut().unwrap().pop();
        let w = m["input"]["width"].as_u64().unwrap() - 1;
        m["input"]["width"] = w.into();
    });
    let e = load_err(&path);
    assert!(e.contains("model.onnx takes 19 input columns, but manifest.json `features` make 18"), "{e}");
}

#[test]
fn output_names_must_exist() {
    let (_d, path) = edited("iforest", |m| m["output"]["name"] = "scores".into());
    let e = load_err(&path);
    assert!(e.contains("`output.name`: model.onnx has no output \"scores\" (it has score)"), "{e}");
}

#[test]
fn missing_files_and_broken_tars_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("forest/manifest.json"), dir.path().join("manifest.json")).unwrap();
    assert_eq!(load_err(dir.path()), "bundle has no model.onnx");
    let tar = dir.path().join("b.tar");
    std::fs::write(&tar, b"this is not a tar archive at all, not even close..").unwrap();
    let e = load_err(&tar);
    assert!(e.starts_with("bundle"), "{e}");
}

#[test]
fn a_tar_header_claiming_a_huge_size_is_refused_before_anything_is_reserved() {
    let bundle = Bundle::read_path(&fixture("classifier")).unwrap();
    let mut tar = bundle.to_tar();
    // The first header's size field (octal, 12 bytes at 124) says 8 GiB; checksum fixed.
    tar[124..136].copy_from_slice(b"77777777777\0");
    tar[148..156].copy_from_slice(b"        ");
    let sum: u32 = tar[..512].iter().map(|&b| u32::from(b)).sum();
    tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let err = Bundle::from_tar(&tar).unwrap_err().to_string();
    assert!(err.contains("claims 8589934591 bytes"), "{err}");
}

#[test]
fn tar_bundles_round_trip() {
    let bundle = Bundle::read_path(&fixture("classifier")).unwrap();
    let tar = bundle.to_tar();
    let again = Bundle::from_tar(&tar).unwrap();
    assert_eq!(again.model_bytes, bundle.model_bytes);
    assert_eq!(again.manifest_bytes, bundle.manifest_bytes);
    // Files under one directory, as `tar -cf b.tar bundle/` writes them, load too.
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [("bundle/manifest.json", &bundle.manifest_bytes), ("bundle/model.onnx", &bundle.model_bytes)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_cksum();
        builder.append_data(&mut h, name, &data[..]).unwrap();
    }
    let nested = Bundle::from_tar(&builder.into_inner().unwrap()).unwrap();
    assert_eq!(nested.id(), "fixture-classifier@1");
}

#[test]
fn signatures_are_checked() {
    let signer = SigningKey::from_bytes(&[7u8; 32]);
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // The PEM a `keygen` writes: SubjectPublicKeyInfo around the 32 key bytes.
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(signer.verifying_key().as_bytes());
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", b64(&der));
    let key = PublicKey::parse(&pem).unwrap();

    let mut bundle = Bundle::read_path(&fixture("forest")).unwrap();
    let err = bundle.verify_signature(&key).unwrap_err().to_string();
    assert!(err.contains("unsigned"), "{err}");

    bundle.signature = Some(b64(&signer.sign(&bundle.manifest_bytes).to_bytes()).into_bytes());
    bundle.verify_signature(&key).unwrap();
    assert!(PublicKey::parse(&b64(signer.verifying_key().as_bytes())).is_ok());

    let mut wrong = bundle.clone();
    wrong.signature = Some(b64(&other.sign(&bundle.manifest_bytes).to_bytes()).into_bytes());
    assert!(matches!(wrong.verify_signature(&key), Err(BundleError::Signature { .. })));

    let mut tampered = bundle.clone();
    tampered.manifest_bytes.extend_from_slice(b" ");
    assert!(tampered.verify_signature(&key).unwrap_err().to_string().contains("does not match manifest.json"));
    assert!(PublicKey::parse("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
}

#[test]
fn a_canary_that_does_not_reproduce_is_named() {
    let (_d, path) = edited("iforest", |m| {
        let raw = m["canaries"][2]["raw_score"].as_f64().unwrap();
        m["canaries"][2]["raw_score"] = (raw + 0.01).into();
    });
    let bundle = Bundle::read_path(&path).unwrap();
    let mut filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
    let e = filter.check_canaries().unwrap_err().to_string();
    assert!(e.starts_with("manifest.json `canaries[2]`: scored"), "{e}");
}

#[test]
fn class_labels_are_not_taken_for_scores() {
    let (_d, path) = edited("classifier", |m| {
        m["output"]["name"] = "label".into();
        m["output"]["column"] = 0.into();
    });
    let e = load_err(&path);
    assert!(e.contains("manifest.json `output.name` names \"label\", which holds class labels, not scores"), "{e}");
}

#[test]
fn an_output_column_beyond_the_scores_is_named() {
    let (_d, path) = edited("classifier", |m| m["output"]["column"] = 2.into());
    let e = load_err(&path);
    assert!(e.contains("score output has 2 columns, manifest `output.column` is 2"), "{e}");
}

/// Every shipped bundle, and every fixture kind, runs on the dense executor (same bits natively
/// and under WASM, no tract plumbing around the trees); tract is only for other graphs.
#[test]
fn shipped_and_fixture_bundles_run_on_the_dense_executor() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    assert!(dirs.len() >= 4, "shipped bundles missing: {dirs:?}");
    dirs.extend(["iforest", "forest", "classifier", "autoencoder"].map(fixture));
    for dir in dirs {
        let bundle = Bundle::read_path(&dir).unwrap();
        let scorer = Scorer::new(&bundle.model_bytes, &bundle.manifest).unwrap();
        assert_eq!(scorer.engine(), "dense", "{}: {:?}", dir.display(), scorer.tract_reason());
    }
}

#[test]
fn a_local_calibration_replaces_the_manifests_and_can_be_lifted() {
    use flowtag_plugin::Calibration;
    let bundle = Bundle::read_path(&fixture("iforest")).unwrap();
    let mut filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
    let records = std::fs::read(fixture("records.jsonl")).unwrap();
    let tag = |filter: &mut Filter| {
        let mut out = Vec::new();
        filter.tag_lines(&records, &mut out);
        (out, filter.results().to_vec())
    };
    let (bundle_tags, bundle_results) = tag(&mut filter);
    let raws: Vec<f64> = bundle_results.iter().filter(|r| r.raw.is_finite()).map(|r| f64::from(r.raw)).collect();
    let (lo, hi) = raws.iter().fold((f64::MAX, f64::MIN), |(a, b), &r| (a.min(r), b.max(r)));
    // A node whose normal traffic scores between lo and hi, threshold at the middle.
    let mid = (lo + hi) / 2.0;
    let local = Calibration { quantiles: Some(vec![lo, mid, hi]), threshold: Some(mid), label: Some("local".into()) };
    filter.set_calibration(&local).unwrap();
    let (local_tags, local_results) = tag(&mut filter);
    for r in local_results.iter().filter(|r| r.raw.is_finite()) {
        assert_eq!(r.verdict == flowtag_plugin::Verdict::Anomalous, f64::from(r.raw) >= mid);
        assert!((0.0..=1.0).contains(&r.score));
    }
    let text = String::from_utf8(local_tags).unwrap();
    assert_eq!(text.matches(r#""calibration":"local""#).count(), raws.len(), "every scored tag says so");
    // Warming up: the manifest's calibration, with the label.
    filter
        .set_calibration(&Calibration { quantiles: None, threshold: None, label: Some("warming_up".into()) })
        .unwrap();
    let (warm, _) = tag(&mut filter);
    assert_eq!(
        String::from_utf8(warm).unwrap().replace(r#","calibration":"warming_up""#, ""),
        String::from_utf8(bundle_tags.clone()).unwrap()
    );
    filter.set_calibration(&Calibration::default()).unwrap();
    assert_eq!(tag(&mut filter).0, bundle_tags, "lifted: the manifest's calibration, no label");
    for bad in [
        Calibration { quantiles: Some(vec![2.0, 1.0]), threshold: Some(1.0), label: None },
        Calibration { quantiles: Some(vec![1.0, 2.0]), threshold: None, label: None },
        Calibration { quantiles: Some(vec![1.0]), threshold: Some(f64::NAN), label: None },
    ] {
        assert!(filter.set_calibration(&bad).is_err(), "{bad:?}");
    }
}
