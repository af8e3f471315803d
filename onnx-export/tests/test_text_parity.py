"""Text features: the plugin (`flowtag model features`, `flowtag score`) and the Python twin
(`flowtag_export.text`) compute the same float32 columns, on awkward requests written here and on
every request of the shared web datasets; the web bundles score the same under onnxruntime, the
native plugin and WASM."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flowtag_export import bundle as bundle_io
from flowtag_export import manifest
from flowtag_export.spec import FeatureSpec, loads_record
from flowtag_train import web

REPO = Path(__file__).resolve().parents[2]
WASM = REPO / "target" / "flowtag_filter.wasm"


def probe_bundle(tmp: Path, spec: FeatureSpec, name: str) -> Path:
    """A bundle of `spec` with a linear model of fixed pseudo-random weights (its scores are
    compared too, so every column counts)."""
    w = np.random.default_rng(7).normal(size=spec.width).astype(np.float32)
    model_bytes, output = web.linear_model(w, 0.0, spec.width, False, "probe")
    score = web._session_score(model_bytes, output)
    quantiles = [-1.0, 0.0, 1.0]
    canaries = manifest.canary_expectations(spec, manifest.synthesize_canaries(spec, {}, 1), score, quantiles, 0.5)
    reference = [{"mean": [0.0] * f.width, "std": [1.0] * f.width} if f.type == "text" else {"frequencies": [1.0 / f.width] * f.width} for f in spec.features]
    doc = manifest.build(name=name, version="1", kind="novelty", schema="probe", spec=spec, model_bytes=model_bytes, output=output, threshold=0.5,
                         quantiles=quantiles, reference=reference, canaries=canaries, metrics={}, training={})
    return bundle_io.write(tmp / name, model_bytes, doc)


def plugin_rows(flowtag: Path, bundle: Path, lines: list[str], tmp: Path) -> list[dict]:
    src = tmp / "records.jsonl"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8", errors="surrogatepass")
    out = subprocess.run([str(flowtag), "model", "features", str(bundle), str(src)], check=True, capture_output=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def assert_same(spec: FeatureSpec, lines: list[str], got: list[dict]) -> int:
    assert len(got) == len(lines)
    for i, (line, g) in enumerate(zip(lines, got)):
        try:
            row = spec.featurize_record(loads_record(line))
            want_error = None
        except ValueError as e:
            row, want_error = None, str(e)
        if want_error is not None:
            assert "error" in g, (i, line[:200], want_error)
            continue
        assert "nonzero" in g, (i, line[:200], g)
        dense = np.zeros(spec.width, np.float32)
        for c, v in g["nonzero"]:
            dense[c] = v
        bad = np.nonzero(dense != row)[0]
        assert len(bad) == 0, (i, line[:200], [(int(c), spec.column_names()[c], float(dense[c]), float(row[c])) for c in bad[:5]])
    return len(lines)


def both_views() -> FeatureSpec:
    """Every text part at once: tokens, n-grams and keywords, on a target and a form body."""
    line, full = web.site_spec("full", ["GET", "POST"]), web.attack_spec("full")
    feats = line.features[:1]
    for f_site, f_att in zip(line.features[1:], full.features):
        f = f_site
        f.text.ngrams, f.text.keywords = f_att.text.ngrams, f_att.text.keywords
        feats.append(f)
    return FeatureSpec(feats)


AWKWARD = [
    "/", "", "?", "??&&==", "/a//b///", "/x?a=1&a=2&a=", "/%", "/%4", "/%zz%", "/%2", "/%%32%35", "/%252e%252e%252f", "/%25252e", "/a%2fb%2Fc",
    "/%u002e%u002e/%u", "/%uD800x", "/%c0%ae%c0%ae/%c1%9c", "/%e0%80%af", "/caf\u00e9?q=\u00fc\u00e9", "/?q=%ff%fe%00", "/?q=a+b%2Bc",
    "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E", "/p?id=1'%20OR%20'1'='1'--", "/../../etc/passwd", "/?cmd=;cat%20/etc/passwd|nc%20-e",
    "/?x=%0d%0aSet-Cookie:%20a=b", "/?ssi=<!--%23exec%20cmd=\"ls\"-->", "/" + "A" * 70000, "/?" + "&".join(f"p{i}=v{i}" for i in range(3000)),
    "/a\tb\x01c\x7f", "/UNION/SeLeCt", "/\ufffd\ufffd", "/?a=%C3%A9%E2%82%AC",
]


def awkward_lines() -> list[str]:
    lines = [json.dumps({"method": m, "target": t, "body": b}) for m, t, b in zip(["GET", "POST", "PUT", "get"] * 20, AWKWARD, AWKWARD[::-1] + AWKWARD)]
    lines += [
        '{"method": "GET", "target": "/a\\u0000b\\ud800c\\udc00"}',  # escapes, a NUL, lone surrogates (U+FFFD on both sides)
        '{"method": "GET", "target": "/\\ud83d\\ude00?q=\\u00e9"}',  # a surrogate pair
        '{"method": "GET", "target": 12345}',  # a number, read as its text
        '{"method": "GET", "target": true}',
        '{"method": "GET", "target": null}',
        '{"method": "GET", "target": {"a": 1}}',  # refused: the error names the field
        '{"method": "GET", "target": ["a"]}',
        '{"method": "GET"}',  # a required text field absent
        '{"target": "/only-target", "body": null}',
        '{"target": "/dup", "target": "/second?wins=1"}',
    ]
    return lines


def test_awkward_requests_featurize_the_same(flowtag, tmp_path):
    spec = both_views()
    bundle = probe_bundle(tmp_path, spec, "probe-text")
    lines = awkward_lines()
    got = plugin_rows(flowtag, bundle, lines, tmp_path)
    assert assert_same(spec, lines, got) == len(lines)
    errors = [g["error"] for g in got if "error" in g]
    assert any("field `target`: expected text, got an object" in e for e in errors), errors
    assert any("missing field `target`" in e for e in errors), errors


def test_every_real_request_featurizes_the_same(datasets, flowtag, tmp_path):
    spec = both_views()
    bundle = probe_bundle(tmp_path, spec, "probe-text")
    data = web.load()
    rows = data.train_normal + data.valid + data.test
    lines = [json.dumps(web.record(r, "full")) for r in rows] + [json.dumps(web.params_record(r)) for r in data.params_train + data.params_valid + data.params_test]
    total = 0
    for start in range(0, len(lines), 20000):
        chunk = lines[start:start + 20000]
        total += assert_same(spec, chunk, plugin_rows(flowtag, bundle, chunk, tmp_path))
    assert total == 36000 + 31669 + 20712


@pytest.mark.parametrize("name", ["web-site", "web-attacks"])
def test_web_bundles_score_the_same_on_onnxruntime_native_and_wasm(datasets, flowtag, shipped, name, tmp_path):
    bundle = shipped[name]
    b = bundle_io.read(bundle)
    spec = FeatureSpec.from_manifest(b.manifest)
    data = web.load()
    lines = [json.dumps(web.record(r, "line")) for r in data.test] + [json.dumps(web.params_record(r)) for r in data.params_test]
    src = tmp_path / "requests.jsonl"
    src.write_text("\n".join(lines) + "\n")
    X = spec.transform_frame(__import__("pandas").DataFrame([json.loads(x) for x in lines]))
    want = web._session_score(b.model_bytes, b.manifest["output"])(X)
    outs = {}
    for runtime in ("native", "wasm"):
        cmd = [str(flowtag), "score", "--model", str(bundle), "--reasons", "all", "--runtime", runtime, str(src)]
        if runtime == "wasm":
            if not WASM.exists():
                pytest.fail(f"no WASM module at {WASM} (make wasm)")
            cmd[-1:-1] = ["--plugin", str(WASM), "--data-dir", str(tmp_path / "wasm-cache")]
        outs[runtime] = subprocess.run(cmd, check=True, capture_output=True).stdout
    assert outs["native"] == outs["wasm"], "native and WASM tags differ"
    tags = [json.loads(line)["anomaly"] for line in outs["native"].splitlines()]
    assert len(tags) == len(lines) and all(t["verdict"] != "unscored" for t in tags)
    raw = np.array([t["raw_score"] for t in tags])
    assert np.max(np.abs(raw - want) / np.maximum(1.0, np.abs(want))) <= 1e-5
    # Reasons show decoded text, not a feature index.
    shown = [r for t in tags for r in t.get("reasons", []) if r["feature"] == "target"]
    assert shown and all(isinstance(r["value"], str) and "part" in r for r in shown)
    # The targets, from the verdicts the shipped bundle gives on the test splits.
    flagged = np.array([t["verdict"] == "anomalous" for t in tags])
    csic, params = flagged[:len(data.test)], flagged[len(data.test):]
    label = np.array([r["label"] for r in data.test])
    if name == "web-site":
        in_line = np.array([r["label"] == 1 and (r["method"], r["request_target"]) not in data.carried for r in data.test])
        assert csic[label == 0].mean() <= 0.01
        assert csic[in_line].mean() >= 0.93
    else:
        plabel = np.array([r["label"] for r in data.params_test])
        assert params[plabel == 1].mean() >= 0.90
        assert np.concatenate([params[plabel == 0], csic[label == 0]]).mean() <= 0.02
