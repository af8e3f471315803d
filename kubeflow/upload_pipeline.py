"""Upload the compiled retraining pipeline to Kubeflow Pipelines: a new pipeline `flowtag-retrain`
the first time, a new version of it afterwards (named after the file's SHA-256, so uploading the
same file twice is a no-op).

    KFP_HOST=http://ml-pipeline.kubeflow.svc.cluster.local:8888 python kubeflow/upload_pipeline.py [PIPELINE.yaml]

The central platform's `kfp-upload-pipeline` Job runs it (central/base/kubeflow-upload.yaml).
No Kubeflow Pipelines API server runs here, so this is not exercised by the tests.
"""

import hashlib
import os
import sys
from pathlib import Path

NAME = "flowtag-retrain"


def main(argv: list[str]) -> int:
    import kfp

    path = Path(argv[0]) if argv else Path(__file__).with_name("flowtag_retrain.yaml")
    host = os.environ.get("KFP_HOST")
    if not host:
        print("upload_pipeline: set KFP_HOST to the Kubeflow Pipelines API", file=sys.stderr)
        return 2
    version = f"{NAME}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    client = kfp.Client(host=host)
    pipeline_id = client.get_pipeline_id(NAME)
    if pipeline_id is None:
        client.upload_pipeline(str(path), pipeline_name=NAME, description="Retrain flowtag's flow model; promote only a better candidate")
        print(f"uploaded {NAME}")
        return 0
    versions = client.list_pipeline_versions(pipeline_id, page_size=200).pipeline_versions or []
    if any(v.display_name == version for v in versions):
        print(f"{NAME}: version {version} is already there")
        return 0
    client.upload_pipeline_version(str(path), pipeline_version_name=version, pipeline_id=pipeline_id)
    print(f"uploaded {NAME} version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
