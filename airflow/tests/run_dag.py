"""Run `flowtag_retrain` once with `dag.test()` (as `airflow dags test` does) and print the run's
state and every task instance's state and try number as JSON on a line starting `RESULT `.

    python airflow/tests/run_dag.py '{"limit": 4000, ...}'

The caller sets AIRFLOW_HOME (a migrated sqlite metadata database) and the FLOWTAG_* variables.
"""

import json
import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

dags = Path(__file__).resolve().parents[1] / "dags"
bag = DagBag(dag_folder=str(dags))
if bag.import_errors:
    sys.exit(f"DAG import errors: {bag.import_errors}")
run = bag.dags["flowtag_retrain"].test(run_conf=json.loads(sys.argv[1]))
tasks = {}
for ti in run.get_task_instances():
    key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
    tasks[key] = {"state": str(ti.state), "try_number": ti.try_number}
# Marked: a Spark session a task started logs its shutdown on stdout after this line.
print("RESULT " + json.dumps({"state": str(run.state), "tasks": tasks}), flush=True)
