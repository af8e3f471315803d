"""The central services on PostgreSQL, as they run in production: Debian's PostgreSQL server
(started here on 127.0.0.1), Airflow's metadata database and MLflow's tracking store in it.
A `flowtag_retrain` run whose metadata lives in PostgreSQL trains, gates and promotes a champion
through an MLflow server whose store is PostgreSQL; both databases hold what happened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowtag_train import tracking
from test_flowtag_retrain import airflow_home, run_dag  # noqa: F401 (airflow_home is a fixture)
from testkit.mlflow import mlflow_server
from testkit.postgres import postgres_server


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    with postgres_server(tmp_path_factory.mktemp("postgres")) as pg:
        yield pg


def test_a_retraining_run_on_postgresql(postgres, airflow_home, datasets, tmp_path):  # noqa: F811 (the fixture)
    env = {**airflow_home, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url(postgres.create_database("airflow"), "postgresql+psycopg2")}
    migrate = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    assert "dag_run" in postgres.psql("airflow", "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()

    with mlflow_server(tmp_path, backend=postgres.url(postgres.create_database("mlflow"), "postgresql+psycopg2")) as uri:
        conf = {"limit": 3000, "eval_rows": 2000, "models": ["gradient_boosting"], "params": {"gradient_boosting": {"max_iter": 40}},
                "tracking_uri": uri, "work_dir": str(tmp_path / "work"), "prepare_engine": None}
        result = run_dag(env, conf)
        assert result["state"] == "success", result
        assert tracking.alias_version("unsw-supervised", "champion", uri=uri) == "1"

    runs = postgres.psql("airflow", "SELECT dag_id, state FROM dag_run").split()
    assert runs == ["flowtag_retrain|success"]
    tasks = dict(r.split("|") for r in postgres.psql("airflow", "SELECT task_id, state FROM task_instance WHERE map_index < 0").split())
    assert tasks["publish"] == "success" and tasks["prepare"] == "skipped"
    assert postgres.psql("mlflow", "SELECT name, version FROM model_versions").split() == ["unsw-supervised|1"]
    assert postgres.psql("mlflow", "SELECT alias, version FROM registered_model_aliases").split() == ["champion|1"]
    assert int(postgres.psql("mlflow", "SELECT count(*) FROM runs WHERE status = 'FINISHED'")) >= 1
