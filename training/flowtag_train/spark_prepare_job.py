"""The Spark application the Airflow DAG (SparkSubmitOperator) and a spark-operator
SparkApplication run: the retraining's preparation step on the cluster spark-submit names.

    spark-submit --master local[2] flowtag_train/spark_prepare_job.py '<retrain settings JSON>' OUT

Prints the settings for the next steps (with `prepared` set to OUT) as JSON on its last line.
"""

import json
import shutil
import sys

from flowtag_train import retrain
from flowtag_train import spark as spark_mod


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: spark_prepare_job.py '<retrain settings JSON>' OUT", file=sys.stderr)
        return 2
    settings = {**json.loads(argv[0]), "prepare_engine": "spark"}
    # The folder is this run's: a retried job starts it afresh.
    shutil.rmtree(argv[1], ignore_errors=True)
    session = spark_mod.session(app="flowtag-prepare")
    try:
        done = retrain.prepare_data(settings, out=argv[1], spark=session)
    except (retrain.DataCheckError, retrain.ConfigError) as e:
        print(f"flowtag prepare job: {e}", file=sys.stderr)
        return 2
    finally:
        session.stop()
    print(json.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
