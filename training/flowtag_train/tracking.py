"""MLflow: every training run logged (parameters, metrics, plots, the ONNX model, the bundle),
bundles registered as model versions with aliases (`challenger`, `champion`).

The tracking URI is a setting: `--tracking-uri`, else `MLFLOW_TRACKING_URI`, else a local sqlite
store in `.mlflow/` at the repository root (MLflow 3 refuses a plain file store).

A bundle is registered as a model version whose source is the run's `bundle` artifact folder;
a node resolves an alias to a version and downloads that folder (see the host's MLflow updates).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def tracking_uri(uri: str | None = None) -> str:
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = REPO / ".mlflow"
    store.mkdir(exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def _mlflow(uri: str | None):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(uri))
    return mlflow


def _artifact_root(uri: str | None) -> str | None:
    """For a local sqlite store, keep artifacts beside it (not in the working directory)."""
    u = tracking_uri(uri)
    if u.startswith("sqlite:///"):
        return Path(u[len("sqlite:///"):]).parent.joinpath("artifacts").as_uri()
    return None


def log_run(*, experiment: str, run_name: str, params: dict, metrics: dict, bundle_dir: Path, artifacts: list[Path], tags: dict, uri: str | None = None) -> str:
    """Log one training run; returns its run id."""
    mlflow = _mlflow(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=_artifact_root(uri))
    mlflow.set_experiment(experiment)
    flat = _flatten(metrics)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in _flatten(params).items()})
        mlflow.log_metrics({k: v for k, v in flat.items() if isinstance(v, (int, float)) and v == v})
        mlflow.set_tags(tags)
        for a in artifacts:
            mlflow.log_artifact(str(a), artifact_path="report")
        mlflow.log_artifact(str(bundle_dir / "model.onnx"), artifact_path="onnx")
        mlflow.log_artifacts(str(bundle_dir), artifact_path="bundle")
        return run.info.run_id


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        # MLflow names allow letters, digits and _ - . / : and spaces.
        key = re.sub(r"[^A-Za-z0-9_.:/-]", "_", f"{prefix}{k}")
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def register(run_id: str, name: str, alias: str | None = "challenger", uri: str | None = None) -> str:
    """Register the run's bundle as a new version of `name`; point `alias` at it. Returns the
    version."""
    mlflow = _mlflow(uri)
    client = mlflow.MlflowClient()
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.create_registered_model(name, description="flowtag model bundles (format 1): model.onnx + manifest.json")
    run = client.get_run(run_id)
    source = f"{run.info.artifact_uri}/bundle"
    version = client.create_model_version(name, source=source, run_id=run_id, tags={"flowtag.format": "1"})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def log_file(run_id: str, path: Path, artifact_path: str, uri: str | None = None) -> None:
    """Add one file to a finished run's artifacts (a bundle's signature, after the gate)."""
    _mlflow(uri).MlflowClient().log_artifact(run_id, str(path), artifact_path=artifact_path)


def next_version(name: str, uri: str | None = None) -> str:
    """The version number the next registration of `name` will get."""
    client = _mlflow(uri).MlflowClient()
    versions = [int(v.version) for v in client.search_model_versions(f"name='{name}'")]
    return str(max(versions, default=0) + 1)


def set_alias(name: str, alias: str, version: str, uri: str | None = None) -> None:
    client = _mlflow(uri).MlflowClient()
    client.set_registered_model_alias(name, alias, str(version))


def alias_version(name: str, alias: str, uri: str | None = None) -> str | None:
    mlflow = _mlflow(uri)
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def version_run(name: str, version: str, uri: str | None = None) -> str:
    return _mlflow(uri).MlflowClient().get_model_version(name, str(version)).run_id


def download_bundle(name: str, version: str, dest: Path, uri: str | None = None) -> Path:
    """The bundle folder of a model version, downloaded to `dest`."""
    mlflow = _mlflow(uri)
    client = mlflow.MlflowClient()
    source = client.get_model_version_download_uri(name, str(version))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dest)))


def download_run_bundle(run_id: str, dest: Path, uri: str | None = None) -> Path:
    """The `bundle` artifact folder of a run (registered or not), downloaded to `dest`."""
    mlflow = _mlflow(uri)
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="bundle", dst_path=str(dest)))


def compare(experiment: str, metrics: list[str], uri: str | None = None, limit: int = 20) -> list[dict]:
    """Runs of an experiment side by side: name, model, dataset, the chosen metrics."""
    mlflow = _mlflow(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = mlflow.search_runs([exp.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"], output_format="list")
    rows = []
    for r in runs:
        row = {"run": r.info.run_id[:8], "name": r.info.run_name, "model": r.data.params.get("model", ""), "dataset": r.data.params.get("dataset", ""), "leaky": r.data.params.get("use_leaky", "")}
        row.update({m: r.data.metrics.get(m) for m in metrics})
        rows.append(row)
    return rows
