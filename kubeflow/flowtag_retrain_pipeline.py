"""The Kubeflow Pipelines (v2) version of `flowtag_retrain`: the same steps as the Airflow DAG,
as lightweight components that call `flowtag_train.retrain` and nothing else.

    prepare_data -> check_data -> train_candidate (ParallelFor over the model kinds) -> pick
        -> evaluate -> gate -> publish (only when the gate says promote)
    report_outcome: the exit handler, after all of them whatever happened

A run that fails posts to the Slack incoming webhook in FLOWTAG_SLACK_WEBHOOK (`report_outcome`,
`flowtag_train.notify`, as the Airflow DAG's callbacks do); give the exit task's pod that
variable from a Secret (kfp-kubernetes `use_secret_as_env`, or a PodDefault), else the failure
is only logged.

`prepare_data` is the DAG's preparation step: with `prepare_engine` in the settings ("spark",
Spark in the component's pod, `local[*]` or FLOWTAG_SPARK_MASTER; or "pandas") it prepares the
data into its `prepared` Dataset artifact, which the later components take as an input (KFP
copies it to their pods) and read instead of the files; without it the artifact stays empty.

Values between components are JSON structs without nulls (`retrain.without_none`: KFP cannot
carry None). Components do not share a disk on a cluster: each candidate bundle travels through MLflow (the
training run's `bundle` artifacts, which later steps download) and is also recorded as the
task's `Model` artifact for lineage. The components run in the `flowtag-train` image
(kubeflow/Dockerfile: Python, the locked requirements, training/ and onnx-export/); its pods
need FLOWTAG_DATASETS and, for publishing, MLFLOW_TRACKING_URI or `tracking_uri` in the settings.

    python kubeflow/flowtag_retrain_pipeline.py            # writes kubeflow/flowtag_retrain.yaml

The compiled YAML is committed; a test fails when it is out of date with this file. (No
`from __future__ import annotations` here: KFP reads the annotations as types.)
"""


from pathlib import Path
from typing import List

from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Model, Output

IMAGE = "flowtag-train:0.1.0"
YAML = Path(__file__).resolve().with_name("flowtag_retrain.yaml")


def component(fn):
    return dsl.component(fn, base_image=IMAGE, install_kfp_package=False)


@component
def prepare_data(settings: dict, models: List[str], prepared: Output[Dataset]) -> dict:
    import os

    from flowtag_train import retrain

    cfg = retrain.RetrainConfig.from_dict({**settings, "models": list(models)}).to_dict()
    if cfg.get("prepare_engine"):
        cfg = retrain.prepare_data(cfg, out=prepared.path)
    else:
        os.makedirs(prepared.path, exist_ok=True)
    prepared.metadata.update({"engine": cfg.get("prepare_engine") or "none"})
    return retrain.without_none(cfg)


@component
def check_data(settings: dict, models: List[str], prepared: Input[Dataset]) -> dict:
    from flowtag_train import retrain

    cfg = retrain.RetrainConfig.from_dict({**settings, "models": list(models)}).to_dict()
    if cfg.get("prepare_engine"):
        cfg["prepared"] = prepared.path
    return retrain.without_none({"settings": cfg, "data": retrain.check_data(cfg)})


@component
def train_candidate(settings: dict, models: List[str], model: str, prepared: Input[Dataset], bundle: Output[Model]) -> dict:
    import shutil
    import tempfile

    from flowtag_train import retrain

    # The pipeline's own inputs, not check_data's output: KFP's local runner hands a ParallelFor
    # body the loop item in place of any upstream task output.
    cfg = retrain.RetrainConfig.from_dict({**settings, "models": list(models)}).to_dict()
    if cfg.get("prepare_engine"):
        cfg["prepared"] = prepared.path
    # A scratch folder of this pod only: later steps fetch the bundle from the MLflow run.
    scratch = tempfile.mkdtemp(prefix="flowtag-train-")
    try:
        candidate = retrain.train_candidate({**cfg, "work_dir": scratch}, model)
        shutil.copytree(candidate["bundle_dir"], bundle.path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bundle.metadata.update({"model": model, "run_id": candidate["run_id"], "version": candidate["version"], **{k: v for k, v in candidate["metrics"].items() if v is not None}})
    return retrain.without_none(candidate)


@component
def pick(checked: dict, candidates: List[dict]) -> dict:
    from flowtag_train import retrain

    return retrain.pick(checked["settings"], list(candidates))


@component
def evaluate(checked: dict, candidate: dict, prepared: Input[Dataset]) -> dict:
    from flowtag_train import retrain

    cfg = dict(checked["settings"])
    if cfg.get("prepare_engine"):
        cfg["prepared"] = prepared.path
    return retrain.without_none(retrain.evaluate_against_champion(cfg, candidate))


@component
def gate(checked: dict, evaluation: dict) -> bool:
    import json

    from flowtag_train import retrain

    decision = retrain.gate(checked["settings"], evaluation)
    print(json.dumps(decision, indent=2))
    return bool(decision["promote"])


@component
def publish(checked: dict, candidate: dict, evaluation: dict) -> dict:
    from flowtag_train import retrain

    # The gate task returns only its verdict (a pipeline condition needs a bool); the decision
    # with its reasons is recomputed here from the same evaluation: cheap and deterministic.
    decision = retrain.gate(checked["settings"], evaluation)
    return retrain.without_none(retrain.publish(checked["settings"], candidate, decision))


@component
def report_outcome(status: dsl.PipelineTaskFinalStatus) -> bool:
    from flowtag_train import notify

    return notify.on_pipeline_exit(status.state, status.pipeline_job_resource_name, status.pipeline_task_name, status.error_message)


@dsl.pipeline(name="flowtag-retrain", description="Retrain flowtag's flow model; promote only a better candidate within the false-positive budget")
def flowtag_retrain(settings: dict = {}, models: List[str] = ["gradient_boosting"]):
    outcome = report_outcome().set_caching_options(False)
    with dsl.ExitHandler(outcome, name="retrain"):
        prepared = prepare_data(settings=settings, models=models).set_caching_options(False)
        prepared.set_cpu_limit("4").set_memory_limit("16G")
        data = prepared.outputs["prepared"]
        checked = check_data(settings=settings, models=models, prepared=data).set_caching_options(False).output
        with dsl.ParallelFor(models) as model:
            trained = train_candidate(settings=settings, models=models, model=model, prepared=data).after(checked.task).set_caching_options(False)
            trained.set_cpu_limit("2").set_memory_limit("8G")
        best = pick(checked=checked, candidates=dsl.Collected(trained.outputs["Output"])).set_caching_options(False)
        evaluation = evaluate(checked=checked, candidate=best.output, prepared=data).set_caching_options(False)
        promote = gate(checked=checked, evaluation=evaluation.output).set_caching_options(False)
        with dsl.If(promote.output == True):  # noqa: E712 (a pipeline condition, not a Python comparison)
            publish(checked=checked, candidate=best.output, evaluation=evaluation.output).set_caching_options(False).set_retry(0)


def compile_to(path: Path = YAML) -> Path:
    compiler.Compiler().compile(flowtag_retrain, str(path))
    return path


if __name__ == "__main__":
    print(compile_to())
