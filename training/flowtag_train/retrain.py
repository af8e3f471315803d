"""Retraining: check new data, train candidates, judge them against the champion, publish.

The steps of the Airflow DAG `flowtag_retrain` (airflow/) and of the Kubeflow pipeline
(kubeflow/) are these functions; neither orchestrator holds logic of its own. Every step takes
and returns plain JSON-able values (a config dict, result dicts, paths), so they travel as XComs
and pipeline parameters alike.

    [prepare_data] -> check_data -> train_candidate (one per model kind) -> pick -> evaluate -> gate -> publish

* **Preparation** (with `prepare_engine`): the data goes through `flowtag-train prepare` on Spark
  (or pandas) first, and every later step reads the prepared Parquet: training its train and
  validation splits (a stratified sample drawn by Spark when `limit` is below its rows), the
  evaluation its `eval` rows, which are the rows `splits.evaluation_rows` would pick.

* **The fixed evaluation set** is 1/`eval_buckets` of the data chosen by row content
  (`splits.evaluation_rows`): the same rows at every run, never trained on by a candidate,
  identical rows on one side only. Champion and candidate are both scored on it, each through
  its own bundle (manifest featurization + the ONNX graph that ships), so the comparison is of
  the artifacts the nodes run.
* **The gate** promotes a candidate only if its false-positive rate on the evaluation set's
  normal rows is within `fpr_budget` and its `metric` beats the champion's by more than
  `min_gain`. With no champion yet, the budget alone decides.
* **Publishing** signs the bundle (Ed25519, when a private key is configured), registers it as a
  new version, points `previous` at the old champion and `champion` at the new version (nodes
  following the alias pick it up through model updates), and can also write the signed bundle
  as a `.tar` into a folder served to nodes whose update source is `dir` or `http`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowtag_export import bundle as bundle_io
from flowtag_export import signing
from flowtag_export.parity import onnx_raw
from flowtag_export.spec import FeatureSpec, check_fields

from . import evaluate, tracking
from .datasets import Dataset, load
from .models import KINDS
from .pipeline import TrainConfig, evaluation_columns, train
from .splits import evaluation_rows

MODELS = tuple(KINDS)
#: What the gate may compare a candidate and the champion by.
GATE_METRICS = ("pr_auc", "roc_auc", "f1", "detection_at_fpr_1e-2", "detection_at_fpr_1e-3")
#: The evaluation set's sample (when `eval_rows` caps it) is drawn with this seed, never the
#: training seed, so it is the same rows at every run.
EVALUATION_SEED = 7


class DataCheckError(ValueError):
    """New data that must not be trained on; the message lists every problem found."""


class ConfigError(ValueError):
    pass


@dataclass
class RetrainConfig:
    name: str = "unsw-supervised"
    """Registered model name (and bundle name)."""
    dataset: str = "unsw_nb15"
    files: list[str] | None = None
    """Data files (globs under FLOWTAG_DATASETS); default: the schema's files."""
    models: list[str] = field(default_factory=lambda: ["gradient_boosting"])
    """Candidate model kinds; the best on its own validation-threshold test split goes on."""
    params: dict[str, dict] = field(default_factory=dict)
    """Model parameters per kind."""
    use_leaky: bool = True
    limit: int | None = None
    """Train on a seeded sample of this many rows (small real runs)."""
    seed: int = 20261121
    target_fpr: float = 0.01
    min_rows: int = 1000
    min_attack_share: float = 0.01
    max_attack_share: float = 0.99
    eval_buckets: int = 5
    eval_rows: int = 20000
    """Cap on the evaluation set (a sample drawn with EVALUATION_SEED); 0: all of it."""
    metric: str = "pr_auc"
    min_gain: float = 0.0
    fpr_budget: float = 0.02
    alias: str = "champion"
    experiment: str = "flowtag-retrain"
    tracking_uri: str | None = None
    work_dir: str = "build/retrain"
    private_key: str | None = None
    """Ed25519 private key (PEM) to sign published bundles; nodes with `public_key` refuse others."""
    publish_dir: str | None = None
    """Also write the published bundle to `<publish_dir>/<name>.tar` (atomically)."""
    prepare_engine: str | None = None
    """`spark` or `pandas`: prepare the data first (`flowtag-train prepare`) and train on the
    prepared folder; None: read the dataset's files directly."""
    prepared: str | None = None
    """A folder `prepare` wrote (set by `prepare_data`): the steps read it instead of the files."""

    @classmethod
    def from_dict(cls, d: dict) -> "RetrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown retrain settings {unknown} (known: {sorted(known)})")
        # None means "the default" (how orchestrators pass a setting left empty); whole floats
        # become ints where a setting is a count (KFP structs carry every number as a double).
        counts = {f.name for f in dataclasses.fields(cls) if "int" in str(f.type)}
        cfg = cls(**{k: int(v) if k in counts and isinstance(v, float) and v.is_integer() else v for k, v in d.items() if v is not None})
        cfg.check()
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        bad = [m for m in self.models if m not in MODELS]
        if not self.models or bad:
            raise ConfigError(f"models: {bad or 'empty'} (choose from {list(MODELS)})")
        if self.metric not in GATE_METRICS:
            raise ConfigError(f"metric: {self.metric!r} is not a gate metric ({', '.join(GATE_METRICS)})")
        if not 0.0 < self.fpr_budget < 1.0:
            raise ConfigError(f"fpr_budget: {self.fpr_budget} is not in (0, 1)")
        if not 0.0 <= self.min_attack_share < self.max_attack_share <= 1.0:
            raise ConfigError(f"min_attack_share/max_attack_share: {self.min_attack_share}/{self.max_attack_share} is not a range in [0, 1]")
        if self.eval_buckets < 2:
            raise ConfigError(f"eval_buckets: {self.eval_buckets} (at least 2)")
        if self.prepare_engine not in (None, "pandas", "spark"):
            raise ConfigError(f"prepare_engine: {self.prepare_engine!r} (pandas, spark, or none)")
        if self.private_key and not Path(self.private_key).is_file():
            raise ConfigError(f"private_key: no file {self.private_key}")


def _config(cfg: RetrainConfig | dict) -> RetrainConfig:
    return cfg if isinstance(cfg, RetrainConfig) else RetrainConfig.from_dict(cfg)


def _load(cfg: RetrainConfig, *, labels_only: bool = False, evaluation_only: bool = False) -> tuple[Dataset, np.ndarray]:
    """The data and the rows of its fixed evaluation set. From a prepared folder only what the
    step needs is read (its labels, or its evaluation rows): the folder may not fit here."""
    if cfg.prepared:
        from .prepare import prepared_rows, prepared_shares, read_folder

        if prepared_shares(cfg.prepared).eval_buckets != cfg.eval_buckets:
            raise ConfigError(f"{cfg.prepared} was prepared with eval_buckets {prepared_shares(cfg.prepared).eval_buckets}, not {cfg.eval_buckets}")
        read = {}
        if labels_only:
            read["columns"] = ["_key", "_label", "_family", "_split"]
        if evaluation_only:
            read["filters"] = [("_split", "==", "eval")]
        ds, part = prepared_rows(cfg.prepared, read_folder(cfg.prepared, **read))
        return ds, np.flatnonzero(part == "eval")
    ds = load(cfg.dataset, files=cfg.files, seed=cfg.seed)
    return ds, evaluation_rows(ds, evaluation_columns(ds), cfg.eval_buckets)


# --- steps -----------------------------------------------------------------------------------


def prepare_data(cfg: RetrainConfig | dict, out: str | Path | None = None, spark=None) -> dict:
    """With `prepare_engine` set, prepare the data into `out` (default: a new folder under
    `work_dir/prepared`); returns the settings with `prepared` pointing at it, for the next
    steps. On Spark this is the job the DAG submits (`spark_prepare_job.py`)."""
    cfg = _config(cfg)
    if not cfg.prepare_engine:
        return cfg.to_dict()
    from .prepare import Shares, prepare

    if out is None:
        parent = Path(cfg.work_dir, "prepared")
        parent.mkdir(parents=True, exist_ok=True)
        out = tempfile.mkdtemp(prefix="run-", dir=parent)
    out = Path(out)
    try:
        prepare(engine=cfg.prepare_engine, dataset=cfg.dataset, inputs=cfg.files, out=out, shares=Shares(eval_buckets=cfg.eval_buckets), spark=spark)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise DataCheckError(f"preparing {cfg.dataset}: {e}") from e
    return {**cfg.to_dict(), "prepared": str(out)}


def check_data(cfg: RetrainConfig | dict) -> dict:
    """Schema (the loader refuses files without the schema's columns or labels), row counts and
    label balance of the training data and of the evaluation set. Raises DataCheckError naming
    every problem; returns the summary."""
    cfg = _config(cfg)
    ds, reserved = _load(cfg, labels_only=True)
    problems = []
    if ds.y is None:
        raise DataCheckError(f"{ds.schema.name}: the data has no labels; retraining needs labelled flows")
    empty = [Path(f["path"]).name for f in ds.files if f["rows"] == 0]
    if empty:
        problems.append(f"files without rows: {empty}")
    train_rows = len(ds) - len(reserved)
    train_y = np.delete(ds.y, reserved)
    if cfg.limit is not None:
        train_rows = min(train_rows, cfg.limit)
    if train_rows < cfg.min_rows:
        problems.append(f"{train_rows} training rows, fewer than min_rows={cfg.min_rows}")
    share = float(train_y.mean()) if len(train_y) else 0.0
    if not cfg.min_attack_share <= share <= cfg.max_attack_share:
        problems.append(f"attack share {share:.4f} outside [{cfg.min_attack_share}, {cfg.max_attack_share}]")
    eval_y = ds.y[reserved]
    if eval_y.sum() == 0 or eval_y.sum() == len(eval_y):
        problems.append(f"the evaluation set ({len(eval_y)} rows) does not hold both normal and attack rows")
    if problems:
        raise DataCheckError(f"{ds.schema.name}: " + "; ".join(problems))
    summary = ds.summary()
    if cfg.prepared:
        from .prepare import MANIFEST

        summary["columns"] = len([c for c in json.loads(Path(cfg.prepared, MANIFEST).read_text())["columns"] if not c.startswith("_")])
        summary["prepared"] = cfg.prepared
    summary.update(training_rows=int(train_rows), attack_share=share, evaluation_rows=int(len(reserved)), evaluation_attacks=int(eval_y.sum()))
    # Reach the registry before hours of training (and create a fresh local store's tables once,
    # before candidates train in parallel).
    summary[cfg.alias] = tracking.alias_version(cfg.name, cfg.alias, uri=cfg.tracking_uri)
    return summary


def train_candidate(cfg: RetrainConfig | dict, model: str) -> dict:
    """Train, export and log one candidate (not registered yet); the manifest already carries
    the version it will get if published."""
    cfg = _config(cfg)
    if model not in cfg.models:
        raise ConfigError(f"model {model!r} is not among the candidates {cfg.models}")
    out = Path(cfg.work_dir) / "candidates" / model
    tcfg = TrainConfig(
        dataset=cfg.dataset, model=model, name=cfg.name, version=tracking.next_version(cfg.name, uri=cfg.tracking_uri), files=cfg.files,
        use_leaky=cfg.use_leaky, seed=cfg.seed, target_fpr=cfg.target_fpr, limit=cfg.limit, reserve=cfg.eval_buckets,
        params=cfg.params.get(model, {}), out=str(out), experiment=cfg.experiment, register=False, tracking_uri=cfg.tracking_uri,
        prepared=cfg.prepared,
    )
    r = train(tcfg)
    return {"model": model, "bundle_dir": str(r.bundle_dir), "run_id": r.run_id, "version": tcfg.version, "metrics": _numbers(r.metrics)}


def pick(cfg: RetrainConfig | dict, candidates: list[dict]) -> dict:
    """The candidate with the best gate metric on its own test split."""
    cfg = _config(cfg)
    if not candidates:
        raise ValueError("no candidate was trained")
    return max(candidates, key=lambda c: _finite(c["metrics"].get(cfg.metric)))


def candidate_bundle(cfg: RetrainConfig, candidate: dict) -> Path:
    """The candidate's bundle folder: where training wrote it, or, when this step runs on another
    machine (a Kubeflow pod, a remote Airflow worker), downloaded from its MLflow run."""
    local = Path(candidate["bundle_dir"])
    if (local / "manifest.json").is_file():
        return local
    dest = Path(cfg.work_dir) / "runs" / candidate["run_id"]
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    return tracking.download_run_bundle(candidate["run_id"], dest, uri=cfg.tracking_uri)


def evaluation_set(cfg: RetrainConfig) -> Dataset:
    ds, reserved = _load(cfg, evaluation_only=True)
    ev = ds.take(reserved)
    return ev.sample(cfg.eval_rows, EVALUATION_SEED) if cfg.eval_rows else ev


def score_bundle(bundle_dir: Path, ds: Dataset, by_family: bool = False) -> dict:
    """A bundle's metrics on a dataset: its own featurization, its ONNX graph, its threshold;
    with `by_family`, also the recall for each attack family the dataset names."""
    manifest = bundle_io.read(bundle_dir).manifest
    spec = FeatureSpec.from_manifest(manifest)
    missing = check_fields(spec, list(ds.frame.columns))
    if missing:
        raise ValueError(f"{bundle_dir}: the evaluation data lacks the bundle's fields {missing}")
    scores = onnx_raw(bundle_dir, spec.transform_frame(ds.frame)).astype(np.float64)
    m = evaluate.metrics(ds.y, scores, float(manifest["threshold"]), ds.family if by_family else None)
    out = {"version": str(manifest["version"]), **_numbers(m)}
    if "recall_by_family" in m:
        out["recall_by_family"] = m["recall_by_family"]
    return out


def evaluate_against_champion(cfg: RetrainConfig | dict, candidate: dict) -> dict:
    """Candidate and current champion on the fixed evaluation set."""
    cfg = _config(cfg)
    ev = evaluation_set(cfg)
    result = {"evaluation_set": {"rows": len(ev), "attacks": int(ev.y.sum())}, "candidate": score_bundle(candidate_bundle(cfg, candidate), ev), "champion": None}
    result["candidate"]["model"] = candidate["model"]
    champion = tracking.alias_version(cfg.name, cfg.alias, uri=cfg.tracking_uri)
    if champion is not None:
        dest = Path(cfg.work_dir) / "champion" / champion
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        result["champion"] = score_bundle(tracking.download_bundle(cfg.name, champion, dest, uri=cfg.tracking_uri), ev)
        result["champion"]["registered_version"] = champion
    return result


def gate(cfg: RetrainConfig | dict, evaluation: dict) -> dict:
    """Promote only if within the false-positive budget and better than the champion."""
    cfg = _config(cfg)
    cand, champ = evaluation["candidate"], evaluation.get("champion")
    reasons, promote = [], True
    fpr = _finite(cand.get("fpr"), 1.0)
    if fpr > cfg.fpr_budget:
        promote = False
        reasons.append(f"candidate false-positive rate {fpr:.4f} exceeds the budget {cfg.fpr_budget}")
    else:
        reasons.append(f"candidate false-positive rate {fpr:.4f} within the budget {cfg.fpr_budget}")
    c = _finite(cand.get(cfg.metric))
    if champ is None:
        reasons.append(f"no {cfg.alias} yet")
    else:
        h = _finite(champ.get(cfg.metric))
        if c > h + cfg.min_gain:
            reasons.append(f"{cfg.metric} {c:.5f} beats the {cfg.alias} (version {champ['registered_version']}) {h:.5f} by more than {cfg.min_gain}")
        else:
            promote = False
            reasons.append(f"{cfg.metric} {c:.5f} does not beat the {cfg.alias} (version {champ['registered_version']}) {h:.5f} by more than {cfg.min_gain}")
    return {"promote": promote, "reasons": reasons, "metric": cfg.metric}


def publish(cfg: RetrainConfig | dict, candidate: dict, decision: dict) -> dict:
    """Sign, register, move the aliases, write the published tar. Does nothing unless the gate
    said promote."""
    cfg = _config(cfg)
    previous = tracking.alias_version(cfg.name, cfg.alias, uri=cfg.tracking_uri)
    if not decision["promote"]:
        return {"promoted": False, cfg.alias: previous, "reasons": decision["reasons"]}
    bundle_dir = candidate_bundle(cfg, candidate)
    if cfg.private_key:
        tracking.log_file(candidate["run_id"], signing.sign(bundle_dir, cfg.private_key), "bundle", uri=cfg.tracking_uri)
    version = tracking.register(candidate["run_id"], cfg.name, alias=None, uri=cfg.tracking_uri)
    if version != candidate["version"]:
        raise RuntimeError(
            f"registered {cfg.name} as version {version}, but the bundle's manifest says {candidate['version']} "
            "(another run registered a version meanwhile); nothing was promoted, run again"
        )
    if previous is not None:
        tracking.set_alias(cfg.name, "previous", previous, uri=cfg.tracking_uri)
    tracking.set_alias(cfg.name, cfg.alias, version, uri=cfg.tracking_uri)
    published = None
    if cfg.publish_dir:
        published = str(write_atomically(bundle_dir, Path(cfg.publish_dir) / f"{cfg.name}.tar"))
    return {"promoted": True, cfg.alias: version, "previous": previous, "signed": bool(cfg.private_key), "published": published, "reasons": decision["reasons"]}


def write_atomically(bundle_dir: Path, tar_path: Path) -> Path:
    """The bundle as a tar at `tar_path`, replaced in one rename (a node never reads half)."""
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tar_path.parent, prefix=f".{tar_path.name}.")
    os.close(fd)
    try:
        bundle_io.to_tar(bundle_dir, tmp)
        os.replace(tmp, tar_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return tar_path


def run(cfg: RetrainConfig | dict) -> dict:
    """All steps in one process (what the orchestrators run as separate tasks)."""
    cfg = _config(prepare_data(cfg))
    summary = check_data(cfg)
    best = pick(cfg, [train_candidate(cfg, m) for m in cfg.models])
    evaluation = evaluate_against_champion(cfg, best)
    decision = gate(cfg, evaluation)
    return {"data": summary, "candidate": best, "evaluation": evaluation, "decision": decision, "published": publish(cfg, best, decision)}


def without_none(v):
    """The value with every None-valued key dropped, recursively (KFP's structs hold no nulls;
    a missing key reads as the default everywhere here)."""
    if isinstance(v, dict):
        return {k: without_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [without_none(x) for x in v]
    return v


def _finite(v, default: float = float("-inf")) -> float:
    return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else default


def _numbers(m: dict) -> dict:
    """The scalar metrics, NaN as None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in m.items() if isinstance(v, (int, float))}


if __name__ == "__main__":  # pragma: no cover - manual runs: python -m flowtag_train.retrain '{"limit": 4000}'
    import sys

    print(json.dumps(run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}), indent=2, default=str))
