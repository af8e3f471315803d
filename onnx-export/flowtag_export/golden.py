"""Golden fixtures for the plugin's Rust tests, from generated data only.

`flowtag-export fixtures --out plugin/tests/fixtures` writes:

- four bundles trained on synthetic flows (an Isolation Forest of 100 trees, a gradient-boosted
  classifier, a random forest, an autoencoder), all sharing one feature spec that exercises
  aliases, transforms, one-hot and index categoricals, and the missing-value rule;
- `records.jsonl`: synthetic flow records plus every kind of bad or awkward input (invalid JSON,
  missing fields, tokens, numbers as strings, unknown categories, nested values, duplicate keys);
- `features.json`: what the Python record-by-record featurizer makes of each line;
- `<bundle>.expected.json`: onnxruntime's outputs (one thread) on those features;
- `ops/`: small hand-built tree ensembles covering the corners of onnxruntime's tree semantics
  (every branch mode, NaN, binary classifiers voting for one class, base values, every post
  transform), with onnxruntime's outputs on random inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from onnx import TensorProto, helper

from . import autoencoder as ae_export
from . import bundle, manifest, trees
from .graph import INPUT, model_proto
from .runtime import session
from .spec import Feature, FeatureSpec, MissingRule, Transform, loads_record

SEED = 20261121


def synthetic_flows(n: int, rng: np.random.Generator, attack_share: float = 0.1) -> pd.DataFrame:
    """Flows shaped like UNSW/Argus records: benign traffic, plus scans, floods and brute force."""
    kinds = rng.choice(["normal", "scan", "flood", "bruteforce"], size=n, p=[1 - attack_share, attack_share / 3, attack_share / 3, attack_share / 3])
    rows = []
    for kind in kinds:
        if kind == "normal":
            proto = rng.choice(["tcp", "udp"], p=[0.7, 0.3])
            service = rng.choice(["http", "dns", "-", "smtp"], p=[0.4, 0.3, 0.2, 0.1]) if proto == "tcp" else rng.choice(["dns", "-"])
            spkts = int(rng.lognormal(2.0, 0.8)) + 1
            dpkts = int(spkts * rng.uniform(0.5, 1.5))
            row = dict(dur=float(rng.lognormal(-1.0, 1.0)), proto=proto, service=service, state=rng.choice(["FIN", "CON"]),
                       spkts=spkts, dpkts=dpkts, sbytes=spkts * int(rng.uniform(60, 900)), dbytes=dpkts * int(rng.uniform(60, 1400)), sttl=int(rng.choice([31, 62])))
        elif kind == "scan":
            row = dict(dur=float(rng.uniform(0, 1e-5)), proto="tcp", service="-", state=rng.choice(["REQ", "INT"]),
                       spkts=1, dpkts=0, sbytes=int(rng.choice([40, 44, 60])), dbytes=0, sttl=254)
        elif kind == "flood":
            spkts = int(rng.uniform(2000, 60000))
            row = dict(dur=float(rng.uniform(0.5, 30)), proto=rng.choice(["udp", "icmp"]), service="-", state="INT",
                       spkts=spkts, dpkts=0, sbytes=spkts * int(rng.uniform(28, 1500)), dbytes=0, sttl=254)
        else:
            spkts = int(rng.uniform(8, 30))
            row = dict(dur=float(rng.uniform(1, 8)), proto="tcp", service=rng.choice(["ssh", "ftp"]), state="FIN",
                       spkts=spkts, dpkts=spkts - 1, sbytes=spkts * int(rng.uniform(80, 120)), dbytes=spkts * int(rng.uniform(80, 200)), sttl=62)
        row["rate"] = (row["spkts"] + row["dpkts"]) / row["dur"] if row["dur"] > 0 else float("inf")
        row["label"] = int(kind != "normal")
        rows.append(row)
    return pd.DataFrame(rows)


def fixture_spec(train: pd.DataFrame) -> FeatureSpec:
    normal = train[train.label == 0]

    def scale_of(values):
        v = np.log1p(np.clip(values, 0, 1e7))
        return Transform("scale", mean=float(v.mean()), std=float(max(v.std(), 1e-3)))

    return FeatureSpec(
        features=[
            Feature("dur", ["dur", "Dur", " Flow Duration", {"name": "flow_ms", "scale": 0.001}], transforms=[Transform("clip", min=0.0, max=3600.0), Transform("log1p")], fill=0.0),
            Feature("spkts", ["spkts", "Spkts", "orig_pkts"], transforms=[Transform("log1p")]),
            Feature("dpkts", ["dpkts", "Dpkts", "resp_pkts"], transforms=[Transform("log1p")]),
            Feature("sbytes", ["sbytes", "orig_bytes"], transforms=[Transform("log1p")]),
            Feature("dbytes", ["dbytes", "resp_bytes"], transforms=[Transform("log1p")]),
            Feature("rate", ["rate", "Flow Packets/s"], transforms=[Transform("clip", min=0.0, max=1e7), Transform("log1p"), scale_of(normal.rate.replace(np.inf, 1e7))], fill=0.0),
            Feature("sttl", ["sttl"], required=False, fill=62.0),
            Feature("proto", ["proto", {"name": "protocolIdentifier", "map": {"6": "tcp", "17": "udp", "1": "icmp", "47": "gre"}}],
                    type="categorical", categories=["tcp", "udp", "icmp"]),
            Feature("service", ["service", {"name": "dst_port", "map": {"80": "http", "53": "dns", " 22 ": "ssh"}, "default": "-"}],
                    type="categorical", categories=["-", "http", "dns", "smtp", "ssh", "ftp"]),
            Feature("state", ["state"], type="categorical", encoding="index", categories=["FIN", "CON", "INT", "REQ"]),
        ],
        missing=MissingRule(infinity="clip", policy="fill"),
    )


def awkward_lines(rng: np.random.Generator) -> list[str]:
    """Lines a real shipper meets, each paired with nothing: the featurizers decide."""
    base = {"dur": 0.5, "proto": "tcp", "service": "http", "state": "FIN", "spkts": 10, "dpkts": 8, "sbytes": 4000, "dbytes": 9000, "sttl": 62, "rate": 36.0}

    def with_(**kw):
        d = dict(base)
        for k, v in kw.items():
            if v is _DROP:
                d.pop(k, None)
            else:
                d[k] = v
        return json.dumps(d)

    lines = [
        "not json at all",
        '{"dur": 0.5, "proto": "tcp"',  # truncated
        "[1, 2, 3]",  # not an object
        '{"dur": NaN, "proto": "tcp"}',  # NaN literal is not JSON
        "",  # empty line
        with_(sbytes=_DROP),  # missing required field
        with_(proto=_DROP),  # missing required categorical
        with_(sttl=_DROP),  # missing optional field: filled
        with_(dur="-"),
        with_(dur=""),
        with_(dur="NaN"),
        with_(dur="Infinity"),
        with_(rate="Infinity"),
        with_(rate="-inf"),
        with_(dur=None),
        with_(dur="0.75"),
        with_(dur=" 1e-3 "),
        with_(sbytes="12abc"),  # not a number
        with_(sbytes={"nested": 1}),
        with_(sbytes=[1, 2]),
        with_(sbytes=True),
        with_(proto="sctp"),  # unknown category
        with_(service=7),  # number as a category
        with_(state=None),
        with_(dur=1e400),  # overflows to infinity
        with_(dur=-5.0),  # clipped
        with_(extra={"a": [1, {"b": "c\"d"}]}, note="caf\u00e9 \u2603"),
        '{"dur": 0.1, "dur": 9.5, "proto": "udp", "service": "dns", "state": "CON", "spkts": 1, "dpkts": 1, "sbytes": 80, "dbytes": 120, "rate": 20}',
        '{" Flow Duration": 2.0, "proto": "tcp", "service": "-", "state": "INT", "Spkts": 3, "dpkts": 0, "orig_bytes": 180, "dbytes": 0, "Flow Packets/s": 1.5}',
        '  {"dur":0.2,"proto":"tcp","service":"http","state":"FIN","spkts":4,"dpkts":4,"sbytes":400,"dbytes":800,"rate":40}  ',
        '{"dur":0.2,"proto":"tcp","service":"http","state":"FIN","spkts":4,"dpkts":4,"sbytes":400,"dbytes":800,"rate":40,"anomaly":{"old":true}}',
        '{"dur":"0x10","proto":"tcp","service":"http","state":"FIN","spkts":4,"dpkts":4,"sbytes":400,"dbytes":800,"rate":40}',
        '{"dur":0.2,"proto":"t\\u0063p","service":"http","state":"FIN","spkts":4,"dpkts":4,"sbytes":400,"dbytes":800,"rate":40}',
        '{"dur":0.2,"proto":"tcp","service":"http","state":"FIN","spkts":4,"dpkts":4,"sbytes":400,"dbytes":800,"rate":40,}',  # trailing comma
        '{"dur":01,"proto":"tcp","service":"http","state":"FIN","spkts":4,"dpkts":4,"sbytes":400,"dbytes":800,"rate":40}',  # leading zero
        # Converting aliases: milliseconds scaled, protocol numbers and ports mapped.
        with_(dur=_DROP, proto=_DROP, service=_DROP, flow_ms=1500, protocolIdentifier=6, dst_port=80),
        with_(dur=_DROP, flow_ms=" 250.5 ", proto=_DROP, protocolIdentifier="17"),
        with_(dur=_DROP, flow_ms="-", proto=_DROP, protocolIdentifier=47),  # a missing value stays missing; gre is not a category
        with_(dur=_DROP, flow_ms="Infinity", proto=_DROP, protocolIdentifier="tcp"),  # not in the map: read as it is
        with_(dur=_DROP, flow_ms=True, proto=_DROP, protocolIdentifier=99),  # unknown number: unknown category
        with_(service=_DROP, dst_port=8080),  # not in the map: the default
        with_(service=_DROP, dst_port="22"),  # the map's key is trimmed
        with_(service=_DROP, dst_port=None),  # null is not mapped
        with_(service=_DROP, dst_port={"port": 80}),
        with_(flow_ms="abc"),
        json.dumps({"flow_ms": 100, "dur": 0.3, "protocolIdentifier": 1, "proto": "udp", "service": "dns", "dst_port": 80, "state": "FIN",
                    "spkts": 2, "dpkts": 2, "sbytes": 100, "dbytes": 100, "rate": 10}),  # the last field of a feature wins
    ]
    return lines


_DROP = object()


def _records_for(df: pd.DataFrame) -> list[str]:
    out = []
    for rec in df.drop(columns=["label"]).to_dict(orient="records"):
        rec = {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        if rec["rate"] == float("inf"):
            rec["rate"] = "Infinity"
        out.append(json.dumps(rec))
    return out


def _train_bundles(out: Path, spec: FeatureSpec, train: pd.DataFrame, valid: pd.DataFrame) -> dict[str, tuple]:
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest, RandomForestClassifier
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    X = spec.transform_frame(train)
    y = train.label.to_numpy()
    Xn = X[y == 0]
    Xv = spec.transform_frame(valid)
    normal_valid = Xv[valid.label.to_numpy() == 0]
    models = {}

    iforest = IsolationForest(n_estimators=100, max_samples=256, random_state=SEED).fit(Xn)
    models["iforest"] = ("isolation_forest", *trees.isolation_forest(iforest, spec.width))
    gbt = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=SEED).fit(X, y)
    models["classifier"] = ("classifier", *trees.hist_gradient_boosting(gbt, spec.width))
    rf = RandomForestClassifier(n_estimators=30, max_depth=12, random_state=SEED, n_jobs=1).fit(X, y)
    models["forest"] = ("classifier", *trees.random_forest(rf, spec.width))
    scaler = StandardScaler().fit(Xn.astype(np.float64))
    mlp = MLPRegressor(hidden_layer_sizes=(12, 4, 12), max_iter=300, random_state=SEED).fit(scaler.transform(Xn.astype(np.float64)), scaler.transform(Xn.astype(np.float64)))
    models["autoencoder"] = ("autoencoder", *ae_export.autoencoder(scaler.mean_, scaler.scale_, mlp, spec.width))

    raw_quantiles = {f.name: [float(v) for v in np.quantile(spec.numeric_values(train, f), [0.05, 0.25, 0.5, 0.75, 0.95, 0.999])] for f in spec.features if f.type == "numeric"}
    reference = manifest.reference_statistics(spec, Xn)
    written = {}
    for name, (kind, model_bytes, output) in models.items():
        sess = session(model_bytes)

        def score(rows, sess=sess, output=output):
            res = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {INPUT: rows.astype(np.float32)})))
            v = res[output["name"]]
            return v.reshape(len(rows), -1)[:, output["column"]]

        normal_scores = score(normal_valid)
        quantiles = manifest.calibration_quantiles(normal_scores)
        threshold = float(np.quantile(normal_scores, 0.99))
        canaries = manifest.canary_expectations(spec, manifest.synthesize_canaries(spec, raw_quantiles, SEED), score, quantiles, threshold)
        doc = manifest.build(
            name=f"fixture-{name}", version="1", kind=kind, schema="synthetic", spec=spec, model_bytes=model_bytes, output=output,
            threshold=threshold, quantiles=quantiles, reference=reference, canaries=canaries,
            metrics={"note": "fixture trained on synthetic flows"}, training={"data": "synthetic (flowtag_export.golden)", "seed": SEED},
            created="2026-01-01T00:00:00Z",
        )
        bundle.write(out / name, model_bytes, doc)
        written[name] = (sess, output)
    return written


def write_fixtures(out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    train = synthetic_flows(6000, rng)
    valid = synthetic_flows(2000, rng)
    test = synthetic_flows(1500, rng, attack_share=0.3)
    spec = fixture_spec(train)
    sessions = _train_bundles(out, spec, train, valid)

    lines = _records_for(test) + awkward_lines(rng)
    (out / "records.jsonl").write_text("\n".join(lines) + "\n")
    parsed, parse_errors = [], []
    for line in lines:
        try:
            parsed.append(loads_record(line))
            parse_errors.append(None)
        except ValueError as e:
            parsed.append(None)
            parse_errors.append(f"invalid JSON: {e}")
    X, errors = spec.featurize_records([p if p is not None else {} for p in parsed])
    errors = [pe or e for pe, e in zip(parse_errors, errors)]
    ok = np.array([e is None for e in errors])
    (out / "features.json").write_text(json.dumps({
        "width": spec.width,
        "rows": [row.tolist() if e is None else None for row, e in zip(X, errors)],
        "errors": errors,
    }))
    for name, (sess, output) in sessions.items():
        res = sess.run(None, {INPUT: X[ok]})
        outputs = {o.name: np.asarray(v).tolist() for o, v in zip(sess.get_outputs(), res)}
        (out / f"{name}.expected.json").write_text(json.dumps({"output": output, "outputs": outputs}))
    write_op_fixtures(out / "ops", rng)


# -- op semantics ------------------------------------------------------------------------------

MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
VALUES = [-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0]


def _random_attrs(rng, n_trees, width, n_outputs, prefix, weights_for, sign, modes=MODES, max_depth=5):
    attrs = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values", "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
    leaves = {f"{prefix}_{k}": [] for k in ("treeids", "nodeids", "ids", "weights")}
    for t in range(n_trees):
        nodes = []

        def grow(depth):
            i = len(nodes)
            nodes.append(None)
            if depth == max_depth or (depth > 0 and rng.random() < 0.3):
                nodes[i] = ("LEAF",)
                return i
            a, b = grow(depth + 1), grow(depth + 1)
            nodes[i] = (modes[rng.integers(len(modes))], int(rng.integers(width)), float(VALUES[rng.integers(len(VALUES))]), a, b, int(rng.random() < 0.3))
            return i

        grow(0)
        for i, n in enumerate(nodes):
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(i)
            if n[0] == "LEAF":
                attrs["nodes_modes"].append("LEAF")
                for k in ("nodes_featureids", "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true"):
                    attrs[k].append(0)
                attrs["nodes_values"].append(0.0)
                for o in weights_for(rng, n_outputs):
                    leaves[f"{prefix}_treeids"].append(t)
                    leaves[f"{prefix}_nodeids"].append(i)
                    leaves[f"{prefix}_ids"].append(int(o))
                    w = float(rng.uniform(0.0, 1.0)) if sign == "positive" else float(rng.uniform(-1.0, 1.0))
                    leaves[f"{prefix}_weights"].append(round(w, 4))
            else:
                mode, feat, value, a, b, miss = n
                attrs["nodes_modes"].append(mode)
                attrs["nodes_featureids"].append(feat)
                attrs["nodes_values"].append(value)
                attrs["nodes_truenodeids"].append(a)
                attrs["nodes_falsenodeids"].append(b)
                attrs["nodes_missing_value_tracks_true"].append(miss)
    return {**attrs, **leaves}


def _op_cases():
    every = lambda rng, n: range(n)  # noqa: E731
    only = lambda c: (lambda rng, n: [c])  # noqa: E731
    some = lambda rng, n: sorted(set(rng.integers(n, size=2).tolist()))  # noqa: E731
    reg = "TreeEnsembleRegressor"
    cls = "TreeEnsembleClassifier"
    return [
        ("reg_sum_modes", reg, dict(n_targets=1, aggregate_function="SUM", base_values=[0.5]), every, "mixed"),
        ("reg_avg_two_targets", reg, dict(n_targets=2, aggregate_function="AVERAGE", base_values=[0.1, -0.2]), every, "mixed"),
        ("reg_min", reg, dict(n_targets=1, aggregate_function="MIN"), every, "mixed"),
        ("reg_max_sparse_votes", reg, dict(n_targets=3, aggregate_function="MAX", base_values=[1.0, 2.0, 3.0]), some, "mixed"),
        ("reg_single_logistic_ignored", reg, dict(n_targets=1, aggregate_function="SUM", post_transform="LOGISTIC"), every, "mixed"),
        ("reg_probit", reg, dict(n_targets=1, aggregate_function="AVERAGE", post_transform="PROBIT"), every, "positive"),
        ("reg_softmax", reg, dict(n_targets=3, aggregate_function="SUM", post_transform="SOFTMAX"), every, "mixed"),
        ("reg_softmax_zero", reg, dict(n_targets=3, aggregate_function="SUM", post_transform="SOFTMAX_ZERO"), some, "mixed"),
        ("reg_logistic_multi", reg, dict(n_targets=2, aggregate_function="SUM", post_transform="LOGISTIC"), every, "mixed"),
        ("cls_binary_class1_positive", cls, dict(classlabels_int64s=[0, 1]), only(1), "positive"),
        ("cls_binary_class0_positive", cls, dict(classlabels_int64s=[0, 1]), only(0), "positive"),
        ("cls_binary_class0_logistic_base", cls, dict(classlabels_int64s=[0, 1], post_transform="LOGISTIC", base_values=[0.3]), only(0), "mixed"),
        ("cls_binary_class0_mixed_nobase", cls, dict(classlabels_int64s=[0, 1]), only(0), "mixed"),
        ("cls_binary_both", cls, dict(classlabels_int64s=[0, 1]), every, "positive"),
        ("cls_binary_base2_class1", cls, dict(classlabels_int64s=[4, 9], base_values=[0.2, 0.2]), only(1), "mixed"),
        ("cls_binary_base2_class0", cls, dict(classlabels_int64s=[0, 1], base_values=[0.1, -0.3]), only(0), "mixed"),
        ("cls_three_softmax_strings", cls, dict(classlabels_strings=["a", "b", "c"], post_transform="SOFTMAX", base_values=[0.1, 0.0, -0.1]), some, "mixed"),
        ("cls_three_logistic", cls, dict(classlabels_int64s=[7, 8, 9], post_transform="LOGISTIC"), every, "mixed"),
    ]


def write_op_fixtures(out: Path, rng: np.random.Generator) -> None:
    out.mkdir(parents=True, exist_ok=True)
    width = 4
    for name, op, extra, weights_for, sign in _op_cases():
        classifier = op == "TreeEnsembleClassifier"
        n_out = len(extra.get("classlabels_int64s") or extra.get("classlabels_strings") or []) if classifier else extra["n_targets"]
        attrs = _random_attrs(rng, 7, width, n_out, "class" if classifier else "target", weights_for, sign)
        outs = ["label", "scores"] if classifier else ["scores"]
        node = helper.make_node(op, [INPUT], outs, domain="ai.onnx.ml", **attrs, **extra)
        label_type = TensorProto.STRING if "classlabels_strings" in extra else TensorProto.INT64
        vi = ([helper.make_tensor_value_info("label", label_type, ["N"])] if classifier else []) + [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", n_out])]
        model_bytes = model_proto([node], [], width, vi, name)
        X = rng.choice(np.array(VALUES + [np.nan, np.inf, -np.inf, 0.3, -1.7], dtype=np.float32), size=(400, width))
        res = session(model_bytes).run(None, {INPUT: X})
        (out / f"{name}.onnx").write_bytes(model_bytes)
        expected = {"input": [[None if np.isnan(v) else (str(v) if np.isinf(v) else float(v)) for v in row] for row in X],
                    "outputs": [np.asarray(r).tolist() for r in res]}
        (out / f"{name}.json").write_text(json.dumps(expected))
