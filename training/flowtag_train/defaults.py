"""The shipped default bundles (`models/`), and the runs their README figures come from.

    flowtag-train defaults --out models

Seeded end to end: the same datasets give the same bundles. Shipped:

* `unsw-supervised`: gradient-boosted trees on UNSW-NB15 (TTL features used);
* `unsw-unsupervised`: an autoencoder trained on normal UNSW-NB15 traffic only;
* `cicids2017`: gradient-boosted trees on the CICIDS2017 subsets;
* `unsw-portable`: an autoencoder on the flow fields Argus/UNSW-NB15 and Zeek `conn.log` share
  (duration, protocol, service, packets and bytes each way), with Zeek's names as aliases, so a
  node's Zeek logs can be scored.

Reported beside them (in `models/README.md`, not shipped): the same models without the TTL
features, an Isolation Forest, and held-out-family runs, where one attack family is kept out of
training entirely.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .pipeline import TrainConfig, train

PORTABLE = ["dur", "proto", "service", "spkts", "dpkts", "sbytes", "dbytes"]
ZEEK_ALIASES = {"dur": ["duration"], "spkts": ["orig_pkts"], "dpkts": ["resp_pkts"], "sbytes": ["orig_ip_bytes"], "dbytes": ["resp_ip_bytes"]}

SHIPPED = [
    TrainConfig(dataset="unsw_nb15", model="gradient_boosting", name="unsw-supervised"),
    TrainConfig(dataset="unsw_nb15", model="autoencoder", name="unsw-unsupervised"),
    TrainConfig(dataset="cicids2017", model="gradient_boosting", name="cicids2017", params={"max_iter": 200}),
    TrainConfig(dataset="unsw_nb15", model="autoencoder", name="unsw-portable", only=PORTABLE, extra_aliases=ZEEK_ALIASES,
                optional=["dur", "service"], params={"hidden": [32, 16, 4, 16, 32]}),
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


def build_all(out: str | Path = "models", tracking_uri: str | None = None, log_to_mlflow: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path("build/reported")
    results = {}
    for cfg in SHIPPED + REPORTED:
        shipped = cfg in SHIPPED
        cfg.out = str(out if shipped else scratch)
        cfg.tracking_uri, cfg.log_to_mlflow, cfg.experiment = tracking_uri, log_to_mlflow, "flowtag-defaults"
        print(f"== {cfg.name} ({cfg.model} on {cfg.dataset}{', held out: ' + cfg.holdout_family if cfg.holdout_family else ''})", flush=True)
        r = train(cfg)
        results[cfg.name] = {"shipped": shipped, "model": cfg.model, "dataset": cfg.dataset, "ttl": cfg.use_leaky, "holdout": cfg.holdout_family, "metrics": r.metrics}
        print(json.dumps({k: round(v, 4) for k, v in r.metrics.items() if isinstance(v, float)}), flush=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    (out / "README.md").write_text(readme(results))
    shutil.rmtree(scratch, ignore_errors=True)
    return results


def readme(results: dict) -> str:
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
    return "\n".join(lines) + "\n"
