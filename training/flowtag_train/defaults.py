"""The shipped default bundles (`models/`), and the runs their README figures come from.

    flowtag-train defaults --out models

Seeded end to end: the same datasets give the same bundles. Shipped:

* `unsw-supervised`: gradient-boosted trees on UNSW-NB15 (TTL features used);
* `unsw-unsupervised`: an autoencoder trained on normal UNSW-NB15 traffic only;
* `cicids2017`: gradient-boosted trees on the CICIDS2017 subsets;
* `flows-portable`: an autoencoder on what NetFlow/IPFIX, Zeek `conn.log`, Argus/UNSW-NB15 and
  CICFlowMeter all carry (duration, protocol, service or server port, packets and bytes each
  way; `flowtag_train.portable`), trained on the normal flows of UNSW-NB15 and CICIDS2017 mapped
  into that schema; its aliases convert each tool's units, so the `netflow` source's and Zeek's
  records are scored as they are.

Reported beside them (in `models/README.md`, not shipped): the same models without the TTL
features, an Isolation Forest, held-out-family runs, where one attack family is kept out of
training entirely, and the portable schema across datasets: trained on one dataset's normal
flows, scored on every flow of the other.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .datasets import load
from .pipeline import TrainConfig, train
from .retrain import score_bundle

#: The portable features both labelled datasets carry (CICIDS2017's MachineLearningCVE files have no protocol).
SHARED = ["dur", "service", "spkts", "dpkts", "sbytes", "dbytes"]
PORTABLE_AE = {"hidden": [32, 16, 4, 16, 32]}

SHIPPED = [
    TrainConfig(dataset="unsw_nb15", model="gradient_boosting", name="unsw-supervised"),
    TrainConfig(dataset="unsw_nb15", model="autoencoder", name="unsw-unsupervised"),
    TrainConfig(dataset="cicids2017", model="gradient_boosting", name="cicids2017", params={"max_iter": 200}),
    TrainConfig(dataset="flows_portable", model="autoencoder", name="flows-portable", optional=["dur", "proto", "service"], params=PORTABLE_AE),
]

#: Trained on one dataset in the portable schema, scored on every flow of the other.
CROSS = [
    (TrainConfig(dataset="flows_portable:unsw_nb15", model="autoencoder", name="portable-unsw", only=SHARED, optional=["dur", "service"],
                 params=PORTABLE_AE), "flows_portable:cicids2017"),
    (TrainConfig(dataset="flows_portable:cicids2017", model="autoencoder", name="portable-cicids2017", only=SHARED, optional=["dur", "service"],
                 params=PORTABLE_AE), "flows_portable:unsw_nb15"),
]

REPORTED = [
    TrainConfig(dataset="unsw_nb15", model="gradient_boosting", name="unsw-supervised-without-ttl", use_leaky=False),
    TrainConfig(dataset="unsw_nb15", model="autoencoder", name="unsw-unsupervised-without-ttl", use_leaky=False),
    TrainConfig(dataset="unsw_nb15", model="isolation_forest", name="unsw-iforest"),
    TrainConfig(dataset="unsw_nb15", model="isolation_forest", name="unsw-iforest-without-ttl", use_leaky=False),
    TrainConfig(dataset="unsw_nb15", model="random_forest", name="unsw-random-forest"),
] + [
    TrainConfig(dataset="unsw_nb15", model="autoencoder", name=f"unsw-unsupervised-heldout-{fam.lower()}", holdout_family=fam)
    for fam in ("Exploits", "DoS", "Reconnaissance", "Fuzzers")
] + [
    TrainConfig(dataset="cicids2017", model="gradient_boosting", name=f"cicids2017-heldout-{fam.lower()}", holdout_family=fam, params={"max_iter": 200})
    for fam in ("PortScan", "Bot")
]

COLUMNS = [("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"), ("f1", "F1"), ("precision", "precision"), ("recall", "recall"), ("fpr", "FPR"),
           ("detection_at_fpr_1e-2", "DR@FPR 1e-2"), ("detection_at_fpr_1e-3", "DR@FPR 1e-3")]


#: Ends the generated part of `models/README.md`; what follows it (the analysis) is kept.
END_OF_TABLES = "<!-- end of the generated tables: the analysis below is written by hand -->"


def build_all(out: str | Path = "models", tracking_uri: str | None = None, log_to_mlflow: bool = True, only: list[str] | None = None) -> dict:
    """Train every run (or the runs named in `only`; `cross` names the cross-dataset runs),
    keeping the other runs' figures from the folder's `metrics.json`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path("build/reported")
    known = {c.name for c in SHIPPED + REPORTED} | {"cross"}
    unknown = sorted(set(only or []) - known)
    if unknown:
        raise ValueError(f"no default run {unknown} (known: {', '.join(sorted(known))})")
    previous = json.loads((out / "metrics.json").read_text()) if only and (out / "metrics.json").exists() else {}
    cross = previous.pop("cross_dataset", None)
    results = {}
    for cfg in SHIPPED + REPORTED:
        if only and cfg.name not in only:
            if cfg.name in previous:
                results[cfg.name] = previous[cfg.name]
            continue
        shipped = cfg in SHIPPED
        cfg.out = str(out if shipped else scratch)
        cfg.tracking_uri, cfg.log_to_mlflow, cfg.experiment = tracking_uri, log_to_mlflow, "flowtag-defaults"
        print(f"== {cfg.name} ({cfg.model} on {cfg.dataset}{', held out: ' + cfg.holdout_family if cfg.holdout_family else ''})", flush=True)
        r = train(cfg)
        results[cfg.name] = {"shipped": shipped, "model": cfg.model, "dataset": cfg.dataset, "ttl": cfg.use_leaky, "holdout": cfg.holdout_family, "metrics": r.metrics}
        print(json.dumps({k: round(v, 4) for k, v in r.metrics.items() if isinstance(v, float)}), flush=True)
    if not only or "cross" in only:
        cross = cross_dataset(scratch, tracking_uri, log_to_mlflow)
    (out / "metrics.json").write_text(json.dumps({**results, "cross_dataset": cross}, indent=1, sort_keys=True) + "\n")
    readme_path = out / "README.md"
    analysis = readme_path.read_text().partition(END_OF_TABLES)[2] if readme_path.exists() else ""
    readme_path.write_text(readme(results, cross) + END_OF_TABLES + analysis)
    shutil.rmtree(scratch, ignore_errors=True)
    return results


def cross_dataset(scratch: Path, tracking_uri: str | None, log_to_mlflow: bool) -> list[dict]:
    """Each `CROSS` run: its own test split, then every flow of the other dataset."""
    rows = []
    for cfg, other in CROSS:
        cfg.out, cfg.tracking_uri, cfg.log_to_mlflow, cfg.experiment = str(scratch), tracking_uri, log_to_mlflow, "flowtag-defaults"
        print(f"== {cfg.name} (portable schema, trained on {cfg.dataset}, scored on {other})", flush=True)
        r = train(cfg)
        there = score_bundle(r.bundle_dir, load(other))
        rows.append({"name": cfg.name, "trained_on": cfg.dataset, "scored_on": other, "own": r.metrics, "other": there})
        print(json.dumps({"own_roc_auc": round(r.metrics["roc_auc"], 4), "other": {k: round(v, 4) for k, v in there.items() if isinstance(v, float)}}), flush=True)
    return rows


CROSS_COLUMNS = [("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"), ("fpr", "FPR at the threshold"), ("recall", "recall at the threshold"),
                 ("detection_at_fpr_1e-2", "DR@FPR 1e-2")]


def readme(results: dict, cross: list[dict] | None = None) -> str:
    lines = [
        "# Shipped model bundles",
        "",
        "Built by `flowtag-train defaults --out models` (seeded) from `../shared/datasets`. Each folder is a bundle",
        "(format 1: `model.onnx` + `manifest.json`); each `<name>.report/` holds its report and plots.",
        "Figures are on a test split never used for training or thresholds, split so that identical",
        "rows never sit on both sides; thresholds are set on validation normal traffic for a 1% false-positive rate.",
        "",
        "| run | shipped | model | data | TTL features | held-out family | " + " | ".join(h for _, h in COLUMNS) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for name, r in results.items():
        m = r["metrics"]
        cells = " | ".join("-" if m.get(k) is None else f"{m[k]:.4f}" for k, _ in COLUMNS)
        lines.append(f"| {name} | {'yes' if r['shipped'] else ''} | {r['model']} | {r['dataset']} | {'yes' if r['ttl'] else 'no'} | {r['holdout'] or ''} | {cells} |")
    if cross:
        lines += [
            "",
            "## The portable schema across datasets",
            "",
            "Autoencoders over the portable features both datasets carry (duration, service or server port, packets and",
            "bytes each way; `flowtag_train.portable`), trained on one dataset's normal flows, thresholded on its own",
            "validation flows, then scored on every flow of the other dataset as the bundle reads them.",
            "",
            "| run | trained on | scored on | own test ROC-AUC | " + " | ".join(h for _, h in CROSS_COLUMNS) + " |",
            "|---|---|---|---|" + "---|" * len(CROSS_COLUMNS),
        ]
        for c in cross:
            cells = " | ".join("-" if c["other"].get(k) is None else f"{c['other'][k]:.4f}" for k, _ in CROSS_COLUMNS)
            lines.append(f"| {c['name']} | {c['trained_on']} | {c['scored_on']} | {c['own']['roc_auc']:.4f} | {cells} |")
    return "\n".join(lines) + "\n"
