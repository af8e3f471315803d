"""flowtag_retrain: retrain a flow model, promote it only if it beats the champion, publish it.

    choose_preparation -> [prepare (Spark job)] -> check_data -> candidate_models
        -> train_candidate (mapped, one per model kind) -> pick -> evaluate -> gate -> publish

With `prepare_engine` "spark" (the default) the data is first prepared by a Spark job that
`prepare` submits through the Apache Spark provider's SparkSubmitOperator
(`flowtag_train/spark_prepare_job.py`); every later step reads the prepared Parquet. The Spark
master is the Airflow connection FLOWTAG_SPARK_CONN_ID (default `flowtag_spark`; e.g.
AIRFLOW_CONN_FLOWTAG_SPARK='{"conn_type": "spark", "host": "local[*]"}', or a `k8s://` or
`spark://` master), extra Spark settings come from FLOWTAG_SPARK_CONF (JSON). "pandas" prepares
inside check_data; null reads the files directly.

Every task calls a function of `flowtag_train.retrain` (training/); this file holds only the
wiring, the schedule and the failure handling. Settings are DAG params (trigger with a JSON conf
to override any); deployment-wide defaults come from the environment of the Airflow workers:

    FLOWTAG_DATASETS         the datasets folder the loader reads
    MLFLOW_TRACKING_URI      the MLflow tracking server (or FLOWTAG_TRACKING_URI)
    FLOWTAG_SIGNING_KEY      Ed25519 private key (PEM) that signs published bundles
    FLOWTAG_PUBLISH_DIR      also write the published bundle here as <name>.tar
    FLOWTAG_RETRAIN_WORK     scratch folder for candidate bundles (default /tmp/flowtag-retrain)
    FLOWTAG_SLACK_WEBHOOK    where failures and missed deadlines are reported (else only logged)
    FLOWTAG_RETRAIN_DEADLINE_HOURS  deadline alert after the run was queued (default 4; 0: none)
    FLOWTAG_SPARK_CONN_ID    the Spark connection the preparation job is submitted to
    FLOWTAG_SPARK_CONF       extra Spark settings for it, as JSON

Bad data or bad settings fail the run at once (no retries); anything else is retried twice with
exponential back-off; a task that runs over 2 hours is failed, and so is a run over 8 hours
(`dagrun_timeout`). A run not finished 4 hours after it was queued raises a deadline alert
(Airflow 3's replacement for SLAs). Failures and missed deadlines reach the callbacks in
`flowtag_train.notify`. One run at a time: publishing assigns registry versions.

Airflow 3.3.2's `dag.test()` cannot finish a run of a DAG that has a deadline alert (it looks the
alert up by the serialized dict instead of its id and raises); the tests switch the deadline off
with FLOWTAG_RETRAIN_DEADLINE_HOURS=0 for that reason only, and check it separately.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

import flowtag_train
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from airflow.sdk import DAG, BaseHook, Param, task
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.sdk.exceptions import AirflowFailException

from flowtag_train import retrain
from flowtag_train.notify import on_deadline_missed, on_run_failure, on_task_failure

DEFAULTS = retrain.RetrainConfig()
DEADLINE_HOURS = float(os.environ.get("FLOWTAG_RETRAIN_DEADLINE_HOURS", "4"))


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def settings(params: dict) -> dict:
    """The run's RetrainConfig as a dict, checked; a bad setting fails the run without retries."""
    try:
        return retrain.RetrainConfig.from_dict(dict(params)).to_dict()
    except (retrain.ConfigError, TypeError) as e:
        raise AirflowFailException(f"bad retrain settings: {e}") from e


PARAMS = {
    "name": Param(DEFAULTS.name, type="string", description="registered model (and bundle) name"),
    "dataset": Param(DEFAULTS.dataset, type="string", description="dataset schema: unsw_nb15, cicids2017, ... or a schema file"),
    "files": Param(None, type=["null", "array"], items={"type": "string"}, description="data files (globs under FLOWTAG_DATASETS); default the schema's"),
    "models": Param(DEFAULTS.models, type="array", items={"type": "string", "enum": list(retrain.MODELS)}, minItems=1, description="candidate model kinds"),
    "params": Param({}, type="object", description="model parameters per kind, e.g. {\"gradient_boosting\": {\"max_iter\": 200}}"),
    "use_leaky": Param(DEFAULTS.use_leaky, type="boolean"),
    "limit": Param(None, type=["null", "integer"], minimum=100, description="train on a seeded sample of this many rows"),
    "seed": Param(DEFAULTS.seed, type="integer"),
    "target_fpr": Param(DEFAULTS.target_fpr, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
    "min_rows": Param(DEFAULTS.min_rows, type="integer", minimum=1),
    "min_attack_share": Param(DEFAULTS.min_attack_share, type="number", minimum=0, maximum=1),
    "max_attack_share": Param(DEFAULTS.max_attack_share, type="number", minimum=0, maximum=1),
    "eval_buckets": Param(DEFAULTS.eval_buckets, type="integer", minimum=2),
    "eval_rows": Param(DEFAULTS.eval_rows, type="integer", minimum=0),
    "metric": Param(DEFAULTS.metric, type="string", enum=list(retrain.GATE_METRICS)),
    "min_gain": Param(DEFAULTS.min_gain, type="number", minimum=0),
    "fpr_budget": Param(DEFAULTS.fpr_budget, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
    "alias": Param(DEFAULTS.alias, type="string"),
    "experiment": Param(DEFAULTS.experiment, type="string"),
    "tracking_uri": Param(_env("FLOWTAG_TRACKING_URI", "MLFLOW_TRACKING_URI"), type=["null", "string"]),
    "private_key": Param(_env("FLOWTAG_SIGNING_KEY"), type=["null", "string"]),
    "publish_dir": Param(_env("FLOWTAG_PUBLISH_DIR"), type=["null", "string"]),
    "work_dir": Param(_env("FLOWTAG_RETRAIN_WORK") or "/tmp/flowtag-retrain", type="string"),
    "prepare_engine": Param("spark", type=["null", "string"], enum=[None, "spark", "pandas"],
                            description="prepare the data first: spark (a submitted job), pandas (in check_data), or null (read the files)"),
}
SPARK_CONN_ID = os.environ.get("FLOWTAG_SPARK_CONN_ID", "flowtag_spark")
SPARK_JOB = str(Path(flowtag_train.__file__).parent / "spark_prepare_job.py")


def _fail_fast(step):
    """Run a step; data and settings problems fail the task without retries."""
    try:
        return step()
    except (retrain.DataCheckError, retrain.ConfigError) as e:
        raise AirflowFailException(str(e)) from e


with DAG(
    dag_id="flowtag_retrain",
    description="Retrain flowtag's flow model; promote only a better candidate within the false-positive budget",
    schedule="0 3 * * 1",  # Mondays 03:00 UTC
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=8),
    on_failure_callback=on_run_failure,
    params=PARAMS,
    default_args={
        "owner": "flowtag",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": on_task_failure,
    },
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(hours=DEADLINE_HOURS), callback=SyncCallback(on_deadline_missed)
    ) if DEADLINE_HOURS > 0 else None,
    tags=["flowtag", "mlops"],
    doc_md=__doc__,
) as dag:

    @task.branch
    def choose_preparation(params=None, ti=None, run_id=None) -> str:
        cfg = settings(params)
        ti.xcom_push(key="settings", value=json.dumps(cfg))
        if cfg["prepare_engine"] != "spark":
            return "check_data"
        try:
            BaseHook.get_connection(SPARK_CONN_ID)
        except Exception as e:  # the provider would fall back to a `yarn` master
            raise AirflowFailException(
                f"no Spark connection {SPARK_CONN_ID!r} for the preparation job ({e}): set e.g. "
                f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}='{{\"conn_type\": \"spark\", \"host\": \"local[*]\"}}', or prepare_engine null"
            ) from e
        # One folder per run; a retried job starts it afresh.
        ti.xcom_push(key="prepared", value=str(Path(cfg["work_dir"]).resolve() / "prepared" / run_id.replace(":", "_").replace("+", "_")))
        return "prepare"

    prepare = SparkSubmitOperator(
        task_id="prepare",
        conn_id=SPARK_CONN_ID,
        application=SPARK_JOB,
        name="flowtag-prepare",
        application_args=[
            "{{ ti.xcom_pull(task_ids='choose_preparation', key='settings') }}",
            "{{ ti.xcom_pull(task_ids='choose_preparation', key='prepared') }}",
        ],
        conf=json.loads(os.environ.get("FLOWTAG_SPARK_CONF") or "{}"),
        env_vars={"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable},
    )

    @task(trigger_rule="none_failed_min_one_success")
    def check_data(ti=None) -> dict:
        cfg = json.loads(ti.xcom_pull(task_ids="choose_preparation", key="settings"))
        if cfg["prepare_engine"] == "spark":
            cfg["prepared"] = ti.xcom_pull(task_ids="choose_preparation", key="prepared")
        else:
            cfg = _fail_fast(lambda: retrain.prepare_data(cfg))
        summary = _fail_fast(lambda: retrain.check_data(cfg))
        return {"settings": cfg, "data": summary}

    @task
    def candidate_models(checked: dict) -> list[str]:
        return checked["settings"]["models"]

    @task(max_active_tis_per_dag=1)
    def train_candidate(model: str, checked: dict) -> dict:
        return _fail_fast(lambda: retrain.train_candidate(checked["settings"], model))

    @task
    def pick(candidates: list[dict], checked: dict) -> dict:
        # Indexing (not iterating) the mapped results: iteration probes one past the end.
        return retrain.pick(checked["settings"], [candidates[i] for i in range(len(candidates))])

    @task
    def evaluate(candidate: dict, checked: dict) -> dict:
        return retrain.evaluate_against_champion(checked["settings"], candidate)

    @task
    def gate(evaluation: dict, checked: dict) -> dict:
        return retrain.gate(checked["settings"], evaluation)

    @task(retries=0)
    def publish(candidate: dict, decision: dict, checked: dict) -> dict:
        # Not retried: a half-done publish is reported, not repeated (registry versions).
        return retrain.publish(checked["settings"], candidate, decision)

    choice = choose_preparation()
    checked = check_data()
    choice >> [prepare, checked]
    prepare >> checked
    trained = train_candidate.partial(checked=checked).expand(model=candidate_models(checked))
    best = pick(trained, checked)
    decision = gate(evaluate(best, checked), checked)
    publish(best, decision, checked)
