"""Failure and deadline notifications of the retraining orchestrations (the Airflow DAG's
callbacks; the Kubeflow pipeline's exit handler): always logged, and posted to the Slack incoming
webhook in FLOWTAG_SLACK_WEBHOOK when it is set. Plain functions of a context mapping, so this
module does not import Airflow."""

from __future__ import annotations

import logging
import os

import requests

log = logging.getLogger("flowtag.airflow")


def post(text: str) -> None:
    log.error(text)
    url = os.environ.get("FLOWTAG_SLACK_WEBHOOK")
    if not url:
        return
    try:
        requests.post(url, json={"text": text}, timeout=10).raise_for_status()
    except requests.RequestException as e:  # a notification must never fail the callback
        log.error("could not post to the Slack webhook: %s", e)


def on_task_failure(context) -> None:
    ti = context.get("task_instance") or context.get("ti")
    run = context.get("dag_run")
    error = context.get("exception")
    post(
        f":x: flowtag_retrain: task {getattr(ti, 'task_id', '?')} of run {getattr(run, 'run_id', '?')} failed "
        f"(try {getattr(ti, 'try_number', '?')}): {error}"
    )


def on_run_failure(context) -> None:
    run = context.get("dag_run")
    post(f":x: flowtag_retrain: run {getattr(run, 'run_id', '?')} failed: {context.get('reason') or context.get('exception') or 'see the task logs'}")


def on_deadline_missed(**context) -> None:
    run = context.get("dag_run") or context.get("context", {}).get("dag_run")
    post(f":hourglass: flowtag_retrain: run {getattr(run, 'run_id', run)} has not finished within its deadline")


def on_pipeline_exit(state: str, run: str | None, task: str | None, error: str | None) -> bool:
    """The Kubeflow pipeline's exit handler (a `PipelineTaskFinalStatus`): a run that did not
    succeed is reported; a successful one only logged. Returns whether it was reported."""
    if state == "SUCCEEDED":
        log.info("flowtag-retrain: run %s succeeded", run)
        return False
    post(f":x: flowtag-retrain: run {run or '?'} ended {state} ({task or 'the pipeline'}): {error or 'see the task logs'}")
    return True
