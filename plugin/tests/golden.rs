//! The plugin against onnxruntime and the Python featurizer, on the golden fixtures written by
//! `flowtag-export fixtures` (generated data only): every feature row, every model output and
//! every error line must match.

use std::path::{Path, PathBuf};

use flowtag_plugin::featurize::{Featurizer, RecordError};
use flowtag_plugin::scorer::Scorer;
use flowtag_plugin::{Bundle, Filter, FilterOptions, ReasonsMode, Verdict};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn lines() -> Vec<String> {
    std::fs::read_to_string(fixtures().join("records.jsonl")).unwrap().lines().map(str::to_string).collect()
}

const BUNDLES: [&str; 4] = ["iforest", "classifier", "forest", "autoencoder"];

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn featurizer_matches_python_row_for_row() {
    let expected = json(&fixtures().join("features.json"));
    let bundle = Bundle::read_path(&fixtures().join("iforest")).unwrap();
    let mut f = Featurizer::new(&bundle.manifest);
    let width = f.width();
    assert_eq!(width as u64, expected["width"].as_u64().unwrap());
    let mut slots = vec![None; f.n_features()];
    let mut row = vec![0f32; width];
    let (mut rows, mut errors) = (0, 0);
    for (i, line) in lines().iter().enumerate() {
        let want = &expected["rows"][i];
        let got =
            f.scan(line.as_bytes(), &mut slots, "anomaly").and_then(|_| f.fill(line.as_bytes(), &slots, &mut row));
        match (got, want) {
            (Ok(()), Value::Array(want)) => {
                rows += 1;
                for (c, w) in want.iter().enumerate() {
                    let w = w.as_f64().unwrap();
                    // f32 values computed from the same f64 steps; log1p may differ by an ulp.
                    assert!(close(row[c] as f64, w, 1e-6), "line {i} column {c}: rust {} python {w}\n{line}", row[c]);
                }
            }
            (Err(_), Value::Null) => errors += 1,
            (got, want) => panic!(
                "line {i}: rust {:?}, python {}\n{line}",
                got.map(|_| row.clone()),
                if want.is_null() { expected["errors"][i].to_string() } else { "a row".into() }
            ),
        }
    }
    assert!(rows > 1000 && errors >= 10, "{rows} rows, {errors} errors");
}

#[test]
fn records_must_be_utf8_and_text_beyond_ascii_is_read_as_any_other() {
    let expected = json(&fixtures().join("features.json"));
    let bundle = Bundle::read_path(&fixtures().join("iforest")).unwrap();
    let mut f = Featurizer::new(&bundle.manifest);
    let mut slots = vec![None; f.n_features()];
    let mut row = |f: &mut Featurizer, record: &[u8]| {
        let mut row = vec![0f32; f.width()];
        f.scan(record, &mut slots, "anomaly").and_then(|_| f.fill(record, &slots, &mut row)).map(|_| row)
    };
    let all = lines();
    let (i, base) = all.iter().enumerate().find(|(i, _)| expected["rows"][i].is_array()).unwrap();
    let plain = row(&mut f, base.as_bytes()).unwrap_or_else(|e| panic!("line {i}: {e}"));
    // An extra member in front, on the fast path (short records) and the scalar one (longer
    // than the fast path takes).
    for pad in [0, 9000] {
        let with = |note: &[u8], extra: &[u8]| {
            let mut r = b"{\"note\":\"".to_vec();
            r.extend(std::iter::repeat_n(b'x', pad));
            r.extend_from_slice(note);
            r.extend_from_slice(b"\",");
            r.extend_from_slice(extra);
            r.extend_from_slice(&base.as_bytes()[1..]);
            r
        };
        assert_eq!(row(&mut f, &with("café ✓".as_bytes(), b"")), Ok(plain.clone()), "pad {pad}");
        let not_utf8 = Err(RecordError("record is not valid UTF-8".into()));
        assert_eq!(row(&mut f, &with(b"caf\xe9", b"")), not_utf8, "pad {pad}");
        // Not UTF-8 and not JSON either: the encoding is what is reported.
        assert_eq!(row(&mut f, &with(b"caf\xe9", b",")), not_utf8, "pad {pad}");
        let broken = row(&mut f, &with("café".as_bytes(), b",")).unwrap_err();
        assert!(broken.0.starts_with("invalid JSON at byte"), "pad {pad}: {broken}");
    }
}

#[test]
fn every_bundle_matches_onnxruntime() {
    let features = json(&fixtures().join("features.json"));
    let rows: Vec<f32> = features["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r.is_null())
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect();
    for name in BUNDLES {
        let bundle = Bundle::read_path(&fixtures().join(name)).unwrap();
        let expected = json(&fixtures().join(format!("{name}.expected.json")));
        let width = bundle.manifest.width();
        let n = rows.len() / width;
        let mut scorer = Scorer::new(&bundle.model_bytes, &bundle.manifest).unwrap();
        // Score in uneven batches: the batch size must not change a result.
        let (mut raw, mut residual) = (Vec::new(), Vec::new());
        let mut start = 0;
        for size in [1, 7, 64, 300].iter().cycle() {
            if start >= n {
                break;
            }
            let take = (*size).min(n - start);
            let s = scorer.run(&rows[start * width..(start + take) * width], take).unwrap();
            raw.extend(s.raw);
            residual.extend(s.residual);
            start += take;
        }
        let out = &expected["output"];
        let want = &expected["outputs"][out["name"].as_str().unwrap()];
        let col = out["column"].as_u64().unwrap() as usize;
        for (r, got) in raw.iter().enumerate() {
            let w = match &want[r] {
                Value::Array(v) => v[col].as_f64().unwrap(),
                v => v.as_f64().unwrap(),
            };
            assert!(close(*got as f64, w, 1e-5), "{name} row {r}: rust {got} onnxruntime {w}");
        }
        if let Some(res) = out.get("residual").and_then(Value::as_str) {
            let want: Vec<f64> = expected["outputs"][res]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
                .collect();
            assert_eq!(want.len(), residual.len());
            for (k, (g, w)) in residual.iter().zip(&want).enumerate() {
                assert!(close(*g as f64, *w, 1e-5), "{name} residual {k}: rust {g} onnxruntime {w}");
            }
        }
    }
}

#[test]
fn filter_tags_every_line_in_order_and_loses_none() {
    let input = std::fs::read(fixtures().join("records.jsonl")).unwrap();
    let features = json(&fixtures().join("features.json"));
    for name in BUNDLES {
        let bundle = Bundle::read_path(&fixtures().join(name)).unwrap();
        let mut filter =
            Filter::new(&bundle, FilterOptions { reasons: ReasonsMode::All, ..FilterOptions::default() }).unwrap();
        let mut out = Vec::new();
        let stats = filter.tag_lines(&input, &mut out);
        let text = String::from_utf8(out).unwrap();
        let tagged: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: output is not JSON: {e}\n{l}")))
            .collect();
        // The empty line carries no record; every other line comes out, in order.
        let non_blank: Vec<String> = lines().into_iter().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(tagged.len(), non_blank.len(), "{name}");
        assert_eq!(stats.records, tagged.len());
        assert_eq!(stats.anomalous + stats.normal + stats.unscored, stats.records);
        let python_errors: Vec<bool> = features["errors"]
            .as_array()
            .unwrap()
            .iter()
            .zip(lines())
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(e, _)| !e.is_null())
            .collect();
        for (i, t) in tagged.iter().enumerate() {
            let tag = &t["anomaly"];
            assert_eq!(tag["model"], format!("fixture-{name}@1"));
            let unscored = tag["verdict"] == "unscored";
            assert_eq!(unscored, python_errors[i], "{name} line {i}: {t}");
            if unscored {
                assert!(tag["error"].as_str().is_some_and(|e| !e.is_empty()));
            } else {
                let score = tag["score"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&score));
                assert_eq!(tag["reasons"].as_array().unwrap().len(), 3);
                // The record's own fields are all still there.
                let original: Value = serde_json::from_str(&non_blank[i]).unwrap();
                for (k, v) in original.as_object().unwrap() {
                    if k != "anomaly" {
                        assert_eq!(&t[k], v, "{name} line {i} field {k}");
                    }
                }
            }
        }
        assert!(stats.anomalous > 0 && stats.normal > 0, "{name}: {stats:?}");
    }
}

#[test]
fn canaries_reproduce_their_expected_scores() {
    for name in BUNDLES {
        let bundle = Bundle::read_path(&fixtures().join(name)).unwrap();
        let mut filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
        filter.check_canaries().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn anomalous_records_carry_reasons_with_their_values() {
    let bundle = Bundle::read_path(&fixtures().join("iforest")).unwrap();
    let mut filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
    // A flood: far more packets than normal traffic, in a state normal traffic never has.
    let flood = br#"{"dur": 3.5, "proto": "udp", "service": "-", "state": "INT", "spkts": 50000, "dpkts": 0, "sbytes": 60000000, "dbytes": 0, "rate": 14285.7, "sttl": 254}"#;
    let mut out = Vec::new();
    filter.tag_lines(flood, &mut out);
    let t: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(t["anomaly"]["verdict"], "anomalous", "{t}");
    assert_eq!(filter.results()[0].verdict, Verdict::Anomalous);
    let reasons = t["anomaly"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 3);
    // `state = INT` never occurs in normal training traffic: the rarest thing about it.
    assert_eq!(reasons[0]["feature"], "state", "{t}");
    assert_eq!(reasons[0]["value"], "INT");
    assert_eq!(reasons[0]["direction"], "rare");
    let spkts =
        reasons.iter().find(|r| r["feature"] == "spkts").unwrap_or_else(|| panic!("spkts is among the reasons: {t}"));
    assert_eq!(spkts["value"], 50000);
    assert_eq!(spkts["direction"], "high");
    let z: Vec<f64> = reasons.iter().map(|r| r["z"].as_f64().unwrap()).collect();
    assert!(z.windows(2).all(|w| w[0] >= w[1]), "reasons come most deviant first: {z:?}");
}
