"""The `flowtag_retrain` DAG: it imports cleanly with its schedule, retries, timeouts, deadline
and callbacks; a full `dag.test()` run on a small real subset against a local MLflow store
trains, gates, signs, registers and publishes; a worse candidate leaves `champion` untouched;
bad data fails the run without retries and the failure reaches a Slack webhook peer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from flowtag_export import signing
from flowtag_train import tracking
from testkit.slack import SlackPeer

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> dict:
    """A private Airflow home with a migrated sqlite metadata database; the environment the
    DAG runs under."""
    home = tmp_path_factory.mktemp("airflow")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # The preparation job's Spark: local mode on 127.0.0.1, spark-submit from .venv/bin.
        "AIRFLOW_CONN_FLOWTAG_SPARK": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        "FLOWTAG_SPARK_CONF": json.dumps({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
                                          "spark.sql.shuffle.partitions": "4"}),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def run_dag(env: dict, conf: dict) -> dict:
    # See the DAG's docstring: dag.test() in Airflow 3.3.2 cannot finish a run with a deadline.
    env = {**env, "FLOWTAG_RETRAIN_DEADLINE_HOURS": "0"}
    proc = subprocess.run([sys.executable, str(REPO / "airflow/tests/run_dag.py"), json.dumps(conf)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT "))[len("RESULT "):])


def test_dag_imports_with_schedule_retries_timeouts_deadline_and_callbacks(airflow_home):
    code = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=%r)
def names(cb):
    return [c.__qualname__ for c in (cb if isinstance(cb, list) else [cb] if cb else [])]
d = bag.dags.get("flowtag_retrain")
t = d.get_task("train_candidate")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "tasks": sorted(d.task_ids),
    "schedule": str(d.schedule),
    "catchup": d.catchup,
    "max_active_runs": d.max_active_runs,
    "dagrun_timeout": d.dagrun_timeout.total_seconds(),
    "retries": t.retries,
    "execution_timeout": t.execution_timeout.total_seconds(),
    "publish_retries": d.get_task("publish").retries,
    "task_failure_callback": names(t.on_failure_callback),
    "run_failure_callback": names(d.on_failure_callback),
    "deadline": [(a.interval.total_seconds(), type(a.reference).__name__, str(a.callback.path)) for a in d.deadline],
    "params": sorted(d.params.keys()),
}))
""" % str(DAGS)
    proc = subprocess.run([sys.executable, "-c", code], env=airflow_home, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["tasks"] == ["candidate_models", "check_data", "choose_preparation", "evaluate", "gate", "pick", "prepare", "publish", "train_candidate"]
    assert info["schedule"] == "0 3 * * 1" and info["catchup"] is False and info["max_active_runs"] == 1
    assert info["retries"] == 2 and info["publish_retries"] == 0
    assert info["execution_timeout"] == timedelta(hours=2).total_seconds()
    assert info["dagrun_timeout"] == timedelta(hours=8).total_seconds()
    assert info["task_failure_callback"] == ["on_task_failure"]
    assert info["run_failure_callback"] == ["on_run_failure"]
    assert info["deadline"] == [[4 * 3600.0, "DagRunQueuedAtDeadline", "flowtag_train.notify.on_deadline_missed"]]
    assert {"models", "limit", "metric", "fpr_budget", "min_gain", "tracking_uri", "private_key", "publish_dir", "prepare_engine"} <= set(info["params"])


def test_full_run_promotes_then_a_worse_candidate_leaves_champion_untouched(airflow_home, datasets, tmp_path, flowtag):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    private, public = tmp_path / "models.key", tmp_path / "models.pub"
    signing.keygen(private, public)
    publish = tmp_path / "published"
    base = {"limit": 4000, "eval_rows": 3000, "tracking_uri": uri, "work_dir": str(tmp_path / "work"), "private_key": str(private), "publish_dir": str(publish)}

    # The first run prepares the data with the Spark job (the default), the second reads the
    # files directly: the gate compares both on the same evaluation rows.
    first = run_dag(airflow_home, {**base, "models": ["random_forest", "gradient_boosting"]})
    assert first["state"] == "success", first
    assert set(first["tasks"]) >= {"prepare", "train_candidate[0]", "train_candidate[1]", "publish"}
    prepared = list((tmp_path / "work" / "prepared").glob("*/_prepared.json"))
    assert len(prepared) == 1 and json.loads(prepared[0].read_text())["engine"] == "spark"
    assert all(t["state"] == "success" for t in first["tasks"].values()), first
    assert tracking.alias_version("unsw-supervised", "champion", uri=uri) == "1"
    assert tracking.alias_version("unsw-supervised", "previous", uri=uri) is None

    # What the nodes would fetch: the registered version's bundle, signed, and the published tar.
    fetched = tracking.download_bundle("unsw-supervised", "1", tmp_path / "fetched", uri=uri)
    signing.verify(fetched, public)
    assert json.loads((fetched / "manifest.json").read_text())["version"] == "1"
    tar = publish / "unsw-supervised.tar"
    with tarfile.open(tar) as t:
        assert {"manifest.json", "model.onnx", "manifest.sig"} <= {Path(n).name for n in t.getnames()}
    verify = subprocess.run([str(flowtag), "model", "verify", "--public-key", str(public), str(tar)], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    published = tar.read_bytes()

    # A weaker candidate (a tiny Isolation Forest) on the same data: the gate must refuse it.
    second = run_dag(airflow_home, {**base, "models": ["isolation_forest"], "params": {"isolation_forest": {"n_estimators": 5}}, "fpr_budget": 0.2,
                                    "prepare_engine": None})
    assert second["state"] == "success", second
    assert second["tasks"]["prepare"]["state"] == "skipped"
    assert tracking.alias_version("unsw-supervised", "champion", uri=uri) == "1"
    assert tracking.next_version("unsw-supervised", uri=uri) == "2", "the refused candidate was not registered"
    assert tar.read_bytes() == published, "the published bundle did not change"


def test_bad_data_fails_at_once_and_reaches_slack(airflow_home, datasets, tmp_path):
    slack = SlackPeer(fail_first=False)
    try:
        env = {**airflow_home, "FLOWTAG_SLACK_WEBHOOK": slack.url}
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        result = run_dag(env, {"limit": 2000, "min_rows": 10**9, "tracking_uri": uri, "work_dir": str(tmp_path / "work"), "prepare_engine": None})
    finally:
        slack.close()
    assert result["state"] == "failed", result
    check = result["tasks"]["check_data"]
    assert check["state"] == "failed" and check["try_number"] == 1, "a data problem is not retried"
    assert result["tasks"]["publish"]["state"] in ("upstream_failed", "None")
    assert tracking.alias_version("unsw-supervised", "champion", uri=uri) is None
    texts = [p["text"] for p in slack.posts]
    assert any("check_data" in t and "min_rows" in t for t in texts), texts


def test_a_missing_spark_connection_fails_the_run_at_once(airflow_home, tmp_path):
    """Without the Spark connection the provider would submit to a `yarn` master; the DAG
    refuses before anything runs, without retries."""
    env = {k: v for k, v in airflow_home.items() if k != "AIRFLOW_CONN_FLOWTAG_SPARK"}
    result = run_dag(env, {"limit": 2000, "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "work_dir": str(tmp_path / "work")})
    assert result["state"] == "failed", result
    choose = result["tasks"]["choose_preparation"]
    assert choose["state"] == "failed" and choose["try_number"] == 1
    assert result["tasks"]["prepare"]["state"] in ("upstream_failed", "None") and not (tmp_path / "work" / "prepared").exists()
