"""Fixtures every Python test folder shares: the real datasets folder, the repository, the
`flowtag` binary, and a private MLflow tracking store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from flowtag_train.datasets import datasets_root

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def datasets() -> Path:
    """`FLOWTAG_DATASETS`, default `../shared/datasets`. The tests read real data; without it
    they fail rather than pass vacuously."""
    root = datasets_root()
    if not (root / "unsw-nb15").is_dir():
        pytest.fail(f"no datasets at {root} (set FLOWTAG_DATASETS)")
    os.environ["FLOWTAG_DATASETS"] = str(root)
    return root


@pytest.fixture(scope="session")
def flowtag() -> Path:
    """The release `flowtag` binary, built if it is missing."""
    exe = REPO / "target" / "release" / "flowtag"
    if not exe.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "flowtag-host"], cwd=REPO, check=True)
    return exe


@pytest.fixture(scope="session")
def shipped() -> dict[str, Path]:
    """The shipped default bundles, by name."""
    return {p.name: p for p in sorted((REPO / "models").iterdir()) if (p / "manifest.json").exists()}


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh local MLflow store (sqlite) for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (`local[2]`, driver on 127.0.0.1, no web UI) for the tests that
    need it. Files are cut into splits of 2 MiB, so even the shared datasets' files are read in
    several parts, each by its own task, and the header priming of a split that starts inside a
    file is exercised."""
    from flowtag_train import spark as spark_mod

    session = spark_mod.session("local[2]", app="flowtag-tests", conf={"spark.sql.files.maxPartitionBytes": "2m", "spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
