//! Our TreeEnsembleClassifier/Regressor against onnxruntime on hand-built ensembles that cover
//! the corners of its semantics: every branch mode, NaN with and without
//! `missing_value_tracks_true`, infinities, base values, every aggregate and post transform,
//! binary classifiers voting for one class or both (fixtures: `flowtag-export fixtures`).
//! Each case runs twice: in tract with our op registered, and on the dense executor, which runs
//! tree-only graphs without tract and must give tract's bits.

use std::path::Path;

use flowtag_plugin::dense::DenseGraph;
use flowtag_plugin::forest::tract_op;
use serde_json::Value;
use tract_onnx::prelude::*;

fn value_to_f32(v: &Value) -> f32 {
    match v {
        Value::Null => f32::NAN,
        Value::String(s) if s == "inf" => f32::INFINITY,
        Value::String(s) if s == "-inf" => f32::NEG_INFINITY,
        v => v.as_f64().unwrap() as f32,
    }
}

#[test]
fn tree_ops_match_onnxruntime_case_by_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "op fixtures missing: {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_stem().unwrap().to_string_lossy().to_string();
        let expected: Value = serde_json::from_slice(&std::fs::read(case.with_extension("json")).unwrap()).unwrap();
        let rows = expected["input"].as_array().unwrap();
        let width = rows[0].as_array().unwrap().len();
        let x: Vec<f32> = rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(value_to_f32)).collect();
        let mut onnx = tract_onnx::onnx();
        tract_op::register(&mut onnx.op_register);
        let model = onnx
            .model_for_path(case)
            .and_then(|m| m.with_input_fact(0, f32::fact([rows.len(), width]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable());
        let bytes = std::fs::read(case).unwrap();
        let dense = DenseGraph::from_onnx(&bytes, width);
        if name.contains("probit") {
            // PROBIT is refused rather than scored differently from onnxruntime; the dense
            // executor leaves the graph to tract, which says so.
            let err = format!("{:#}", model.err().unwrap_or_else(|| panic!("{name}: PROBIT model was accepted")));
            assert!(err.contains("PROBIT is not supported"), "{name}: {err}");
            let why = dense.err().unwrap_or_else(|| panic!("{name}: the dense executor took a PROBIT model"));
            assert!(why.contains("PROBIT"), "{name}: the refusal says why: {why}");
            continue;
        }
        let mut dense =
            dense.unwrap_or_else(|e| panic!("{name}: the dense executor does not run this tree-only graph: {e}"));
        let proto = tract_onnx::onnx().proto_model_for_read(&mut &bytes[..]).unwrap();
        let output_names: Vec<String> = proto.graph.unwrap().output.iter().map(|o| o.name.clone()).collect();
        let model = model.unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let input = Tensor::from_shape(&[rows.len(), width], &x).unwrap();
        let outputs = model.run(tvec!(input.into_tvalue())).unwrap();
        let want = expected["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), want.len(), "{name}");
        for (k, (got, want)) in outputs.iter().zip(want).enumerate() {
            let want: Vec<&Value> = match want {
                Value::Array(rows) => rows
                    .iter()
                    .flat_map(|r| match r {
                        Value::Array(cols) => cols.iter().collect::<Vec<_>>(),
                        v => vec![v],
                    })
                    .collect(),
                _ => unreachable!(),
            };
            if got.datum_type() == String::datum_type() {
                let got = got.try_as_plain_ram().unwrap();
                let got = got.as_slice::<String>().unwrap();
                for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                    if w.as_str() != Some(g.as_str()) {
                        failures.push(format!("{name} output {k} row {r}: tract {g:?} onnxruntime {w}"));
                    }
                }
                continue;
            }
            let is_labels = got.datum_type() == i64::datum_type();
            let got = got.cast_to::<f64>().unwrap();
            let got = got.try_as_plain_ram().unwrap();
            let got = got.as_slice::<f64>().unwrap();
            assert_eq!(got.len(), want.len(), "{name} output {k}");
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                let w = w.as_f64().unwrap_or(f64::NAN);
                let same = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-5 * w.abs().max(1.0);
                if !same {
                    failures.push(format!(
                        "{name} output {k} value {r} (row {}): tract {g} onnxruntime {w}",
                        r / (want.len() / rows.len()).max(1)
                    ));
                }
            }
            if is_labels {
                continue; // a classifier's labels, which the dense executor does not give
            }
            // The scores as the dense executor gives them: tract's bits.
            let output_name = &output_names[k];
            let (value, _) =
                dense.output(output_name).unwrap_or_else(|| panic!("{name}: no dense output {output_name}"));
            let dense_got: Vec<f64> = dense.run(&x, rows.len())[value].iter().map(|&v| f64::from(v)).collect();
            if dense_got.iter().zip(got).any(|(d, t)| d.to_bits() != t.to_bits()) || dense_got.len() != got.len() {
                failures.push(format!("{name} output {k}: dense {dense_got:?}, tract {got:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.iter().take(3000).cloned().collect::<Vec<_>>().join("\n")
    );
}
