"""One training run from data to a registered bundle, as functions the CLI, Airflow tasks and
Kubeflow components all call.

    load -> split -> fit the feature spec on training rows -> fit the model -> export ONNX ->
    score validation and test through onnxruntime (the artifact that ships) -> threshold on
    normal validation traffic for the target false-positive rate -> metrics on the test split
    (used once) -> calibration, reference statistics, canary rows -> bundle -> report and plots
    -> MLflow run (-> registered version with an alias)
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from flowtag_export import bundle as bundle_io
from flowtag_export import manifest as manifest_io
from flowtag_export.runtime import raw_scores
from flowtag_export.spec import FeatureSpec

from . import evaluate, features, models, splits, tracking
from .datasets import Dataset, load


@dataclass
class TrainConfig:
    dataset: str
    model: str
    name: str
    version: str = "1"
    files: list[str] | None = None
    use_leaky: bool = True
    only: list[str] | None = None
    """Restrict to these features (the portable bundle)."""
    extra_aliases: dict[str, list[str]] = field(default_factory=dict)
    optional: list[str] = field(default_factory=list)
    seed: int = 20261121
    target_fpr: float = 0.01
    holdout_family: str | None = None
    limit: int | None = None
    reserve: int | None = None
    """Leave the fixed evaluation set (1/`reserve` of the rows, see `splits.evaluation_rows`) out
    of training, validation and test: the retraining gate judges models on it."""
    params: dict = field(default_factory=dict)
    prepared: str | None = None
    """A folder `flowtag-train prepare` wrote: its rows and splits instead of the dataset's files
    (the fixed evaluation rows left out; `limit` draws a stratified sample with Spark)."""
    out: str = "build/bundles"
    experiment: str = "flowtag"
    register: bool = False
    alias: str | None = "challenger"
    tracking_uri: str | None = None
    log_to_mlflow: bool = True
    sampling: dict | None = None
    """Set by `prepare` for a prepared folder: what training read, and the sample Spark drew."""


@dataclass
class TrainResult:
    bundle_dir: Path
    metrics: dict
    run_id: str | None
    version: str | None
    report: Path

    def to_dict(self) -> dict:
        return {"bundle_dir": str(self.bundle_dir), "metrics": self.metrics, "run_id": self.run_id, "version": self.version, "report": str(self.report)}


def code_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tracking.REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=tracking.REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


#: Largest difference allowed between scikit-learn's and onnxruntime's scores, relative to
#: max(1, |score|).
PARITY = 1e-5


def check_parity(trained: models.Trained, X: np.ndarray, onnx: np.ndarray) -> None:
    """scikit-learn and the exported graph must score alike; a bundle that does not is not built."""
    ref = np.asarray(trained.score(X), dtype=np.float64)
    diff = np.abs(ref - onnx.astype(np.float64)) / np.maximum(1.0, np.abs(ref))
    worst = float(diff.max()) if len(diff) else 0.0
    trained.extra["parity"] = {"rows": int(len(X)), "max_relative_diff": worst}
    if worst > PARITY:
        i = int(diff.argmax())
        raise RuntimeError(f"{trained.name}: onnxruntime scores row {i} {onnx[i]!r}, scikit-learn {ref[i]!r} (tolerance {PARITY})")


def prepare(cfg: TrainConfig) -> tuple[Dataset, splits.Split, FeatureSpec]:
    if cfg.prepared:
        from .prepare import load_prepared

        got = load_prepared(cfg.prepared, limit=cfg.limit, seed=cfg.seed, holdout_family=cfg.holdout_family)
        ds, sp = got.dataset, got.split
        cfg.sampling = got.sampling
    else:
        ds = load(cfg.dataset, files=cfg.files, limit=cfg.limit, seed=cfg.seed)
        if cfg.reserve:
            ds = ds.without(splits.evaluation_rows(ds, evaluation_columns(ds), cfg.reserve))
        numeric, categorical = features.feature_columns(ds, use_leaky=cfg.use_leaky, only=cfg.only)
        sp = splits.split(ds, numeric + categorical, seed=cfg.seed, holdout_family=cfg.holdout_family)
    spec = features.fit_spec(ds, sp.train, use_leaky=cfg.use_leaky, only=cfg.only, extra_aliases=cfg.extra_aliases, optional=set(cfg.optional))
    return ds, sp, spec


def evaluation_columns(ds: Dataset) -> list[str]:
    """The columns that decide the fixed evaluation set: every feature column of the schema (TTLs
    included), whichever subset a model uses, so all models share one evaluation set."""
    numeric, categorical = features.feature_columns(ds, use_leaky=True)
    return numeric + categorical


def train(cfg: TrainConfig) -> TrainResult:
    ds, sp, spec = prepare(cfg)
    X = spec.transform_frame(ds.frame)
    y = ds.y
    trained = models.fit(cfg.model, X[sp.train], y[sp.train], seed=cfg.seed, params=cfg.params, X_valid=X[sp.valid], y_valid=y[sp.valid])
    model_bytes, output = trained.export(spec.width)
    valid_scores = raw_scores(model_bytes, output, X[sp.valid])
    test_scores = raw_scores(model_bytes, output, X[sp.test])
    check_parity(trained, X[np.concatenate([sp.valid, sp.test])], np.concatenate([valid_scores, test_scores]))
    normal_valid = valid_scores[y[sp.valid] == 0]
    threshold = evaluate.threshold_for_fpr(normal_valid, cfg.target_fpr)
    fam = ds.family[sp.test] if ds.family is not None else None
    m = evaluate.metrics(y[sp.test], test_scores, threshold, fam)
    m["valid_fpr"] = float((normal_valid >= threshold).mean())
    m["parity_sklearn_onnx"] = trained.extra["parity"]

    out = Path(cfg.out) / cfg.name
    report_dir = out.parent / f"{cfg.name}.report"
    quantiles = manifest_io.calibration_quantiles(normal_valid)
    train_normal = sp.train[y[sp.train] == 0]
    reference = manifest_io.reference_statistics(spec, X[train_normal])

    def score_fn(rows):
        return raw_scores(model_bytes, output, rows)

    canaries = manifest_io.canary_expectations(
        spec, manifest_io.synthesize_canaries(spec, features.raw_quantiles(spec, ds, sp.train), cfg.seed), score_fn, quantiles, threshold
    )
    training = {
        "dataset": ds.schema.name,
        "files": [{"path": Path(f["path"]).name, "rows": f["rows"], "sha256": f.get("sha256")} for f in ds.files],
        "rows": {k: int(v) for k, v in sp.sizes().items()},
        "model": cfg.model,
        "params": trained.params,
        "use_leaky": cfg.use_leaky,
        "holdout_family": cfg.holdout_family,
        "evaluation_set_reserved": cfg.reserve,
        "target_fpr": cfg.target_fpr,
        "seed": cfg.seed,
        "code_revision": code_revision(),
    }
    if cfg.register and cfg.log_to_mlflow:
        # The manifest carries the registry's version number, so tags name what MLflow shows.
        cfg.version = tracking.next_version(cfg.name, uri=cfg.tracking_uri)
    doc = manifest_io.build(
        name=cfg.name, version=cfg.version, kind=trained.kind, schema=ds.schema.name, spec=spec, model_bytes=model_bytes,
        output=output, threshold=threshold, quantiles=quantiles, reference=reference, canaries=canaries,
        metrics={k: v for k, v in m.items()}, training=training,
    )
    bundle_io.write(out, model_bytes, doc)
    plot_paths = evaluate.plots(y[sp.test], test_scores, threshold, report_dir, cfg.name)
    info = {
        "model": cfg.model, "dataset": ds.schema.name, "features": f"{len(spec.features)} ({spec.width} columns)",
        "TTL features": "used" if cfg.use_leaky else "left out", "split": json.dumps(sp.sizes()),
        "held-out family": cfg.holdout_family or "none", "threshold": f"{threshold:.6g} (target FPR {cfg.target_fpr})",
    }
    report_path = report_dir / "report.md"
    report_path.write_text(evaluate.report(f"{cfg.name} v{cfg.version}", info, m, plot_paths, report_dir))

    run_id = version = None
    if cfg.log_to_mlflow:
        params = {"dataset": ds.schema.name, "model": cfg.model, "use_leaky": cfg.use_leaky, "seed": cfg.seed, "target_fpr": cfg.target_fpr,
                  "holdout_family": cfg.holdout_family, "limit": cfg.limit, "features": len(spec.features),
                  **{f"data.{k}": v for k, v in (cfg.sampling or {}).items()}, **{f"model.{k}": v for k, v in trained.params.items()}}
        run_id = tracking.log_run(
            experiment=cfg.experiment, run_name=cfg.name, params=params, metrics={k: v for k, v in m.items()}, bundle_dir=out,
            artifacts=[report_path, *plot_paths], tags={"flowtag.bundle": cfg.name, "flowtag.kind": trained.kind}, uri=cfg.tracking_uri,
        )
        if cfg.register:
            version = tracking.register(run_id, cfg.name, cfg.alias, uri=cfg.tracking_uri)
    return TrainResult(out, m, run_id, version, report_path)


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
