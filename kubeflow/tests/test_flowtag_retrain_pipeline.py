"""The Kubeflow pipeline: the committed YAML is what the pipeline file compiles to, and the
pipeline runs locally (KFP's SubprocessRunner, every component in its own process) on a small
real subset against a local MLflow store: the first run prepares its data on Spark and promotes
a champion, a run with a worse
candidate skips publishing and leaves the champion where it was, and neither reports a failure;
a run on bad data fails and its exit handler reaches a Slack webhook peer."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from flowtag_train import tracking
from testkit.slack import SlackPeer

REPO = Path(__file__).resolve().parents[2]


def load_pipeline():
    spec = importlib.util.spec_from_file_location("flowtag_retrain_pipeline", REPO / "kubeflow/flowtag_retrain_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_yaml_is_up_to_date(tmp_path):
    module = load_pipeline()
    fresh = module.compile_to(tmp_path / "flowtag_retrain.yaml").read_text()
    committed = module.YAML.read_text()
    assert fresh == committed, "kubeflow/flowtag_retrain.yaml is stale: run `python kubeflow/flowtag_retrain_pipeline.py`"


@pytest.fixture
def slack(monkeypatch):
    """A Slack webhook peer the exit handler's process reaches (the local runner's component
    processes inherit this environment)."""
    peer = SlackPeer(fail_first=False)
    monkeypatch.setenv("FLOWTAG_SLACK_WEBHOOK", peer.url)
    yield peer
    peer.close()


def test_pipeline_runs_locally_promotes_then_keeps_the_champion(datasets, tmp_path, slack):
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pipeline-root"))
    module = load_pipeline()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = {"limit": 4000, "eval_rows": 3000, "tracking_uri": uri, "work_dir": str(tmp_path / "work"), "publish_dir": str(tmp_path / "published")}

    # The first run prepares its data on Spark (local mode in the component's process) and
    # trains on the prepared artifact, on a 4,000-row sample Spark draws with every family kept
    # (rare ones at 200 rows or all they have): a candidate that small lands near 2-3 % false
    # positives on the evaluation rows, so this run's budget is 5 %. The second reads the files.
    run = module.flowtag_retrain(settings={**settings, "prepare_engine": "spark", "fpr_budget": 0.05}, models=["random_forest", "gradient_boosting"])
    assert tracking.alias_version("unsw-supervised", "champion", uri=uri) == "1"
    [manifest] = tmp_path.glob("pipeline-root/*/prepare-data/prepared/_prepared.json")
    assert json.loads(manifest.read_text())["engine"] == "spark"
    assert (tmp_path / "published/unsw-supervised.tar").is_file()
    # Each candidate's bundle is a Model artifact of its task.
    bundles = sorted(tmp_path.glob("pipeline-root/*/for-loop-*/train-candidate/bundle/manifest.json"))
    assert len(bundles) == 2
    assert {json.loads(b.read_text())["training"]["model"] for b in bundles} == {"random_forest", "gradient_boosting"}
    assert run is not None

    published = (tmp_path / "published/unsw-supervised.tar").read_bytes()
    module.flowtag_retrain(settings={**settings, "params": {"isolation_forest": {"n_estimators": 5}}, "fpr_budget": 0.2}, models=["isolation_forest"])
    assert tracking.alias_version("unsw-supervised", "champion", uri=uri) == "1"
    assert tracking.next_version("unsw-supervised", uri=uri) == "2"
    assert (tmp_path / "published/unsw-supervised.tar").read_bytes() == published
    # The publish task of the second run never ran (the gate said no).
    runs = sorted(p for p in (tmp_path / "pipeline-root").iterdir() if p.is_dir())
    assert len(runs) == 2
    assert not list(runs[1].glob("**/publish/executor_output.json"))
    assert list(runs[0].glob("**/publish/executor_output.json"))
    # Both runs succeeded: the exit handler ran and reported nothing.
    assert len(list((tmp_path / "pipeline-root").glob("*/report-outcome/executor_output.json"))) == 2
    assert slack.posts == []


def test_a_failed_run_reaches_slack_through_the_exit_handler(datasets, tmp_path, slack):
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pipeline-root"), raise_on_error=False)
    module = load_pipeline()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = {"limit": 2000, "min_rows": 10**9, "tracking_uri": uri, "work_dir": str(tmp_path / "work")}

    module.flowtag_retrain(settings=settings, models=["gradient_boosting"])
    assert not list(tmp_path.glob("pipeline-root/**/train-candidate/executor_output.json")), "training ran on data that failed its check"
    assert tracking.alias_version("unsw-supervised", "champion", uri=uri) is None
    assert len(slack.posts) == 1, slack.posts
    text = slack.posts[0]["text"]
    assert "flowtag-retrain" in text and "FAILED" in text, text
