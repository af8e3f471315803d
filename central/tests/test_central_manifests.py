"""The central platform's manifests (central/): `kubectl kustomize` of the base and of each
overlay validated against the Kubernetes 1.32 schemas (kubernetes-validate --strict), the
SparkApplication against the fields of spark-operator's published v1beta2 API we use (written
here: its CRD is not installable from a registry); every container probed, bounded and locked
down; secrets only from Secrets; every setting cross-checked against what reads it (Airflow's
config options, `mlflow server`'s environment variables, the FLOWTAG_* variables flowtag's code
reads, the image's paths); Services, NetworkPolicies, the HPA and PDBs pointed at pods that
exist. The database set-up script, the MLflow server's settings and Airflow's database settings
are then run for real against a PostgreSQL server started here. (No API server or container
engine runs here, so nothing is applied or built.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OVERLAYS = ["base", "overlays/kubernetes-executor", "overlays/s3-artifacts", "overlays/external-postgres"]


def build(overlay: str) -> list[dict]:
    out = subprocess.run([str(BIN / "kubectl"), "kustomize", str(REPO / "central" / overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def named(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind}/{name}"
    return found[0]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def pod_spec(d: dict) -> dict:
    return d["spec"]["template"]["spec"]


def pod_labels(d: dict) -> dict:
    return d["spec"]["template"]["metadata"]["labels"]


@pytest.fixture(scope="module", params=OVERLAYS)
def manifests(request, tmp_path_factory):
    docs = build(request.param)
    path = tmp_path_factory.mktemp("k8s") / "all.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] != "SparkApplication"]))
    return request.param, docs, path


def test_kubernetes_schemas_strict(manifests):
    overlay, docs, path = manifests
    out = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", "1.32.0", str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" passed for resource ") == len(docs) - 1, out.stdout
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job", "SparkApplication"} <= kinds
    assert ("StatefulSet" in kinds) == (overlay != "overlays/external-postgres")


#: The SparkApplication fields we use, as spark-operator's v1beta2 API reference defines them.
SPARK_APPLICATION = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "sparkoperator.k8s.io/v1beta2"}, "kind": {"const": "SparkApplication"}, "metadata": {"type": "object"},
        "spec": {
            "type": "object", "additionalProperties": False,
            "required": ["type", "mode", "image", "mainApplicationFile", "sparkVersion", "driver", "executor"],
            "properties": {
                "type": {"enum": ["Java", "Scala", "Python", "R"]}, "pythonVersion": {"enum": ["2", "3"]}, "mode": {"enum": ["cluster", "client", "in-cluster-client"]},
                "image": {"type": "string"}, "mainApplicationFile": {"type": "string", "pattern": "^(local|https?|s3a?|hdfs)://"},
                "arguments": {"type": "array", "items": {"type": "string"}}, "sparkVersion": {"type": "string"},
                "sparkConf": {"type": "object", "additionalProperties": {"type": "string"}},
                "restartPolicy": {"type": "object", "additionalProperties": False, "properties": {
                    "type": {"enum": ["Never", "Always", "OnFailure"]}, "onFailureRetries": {"type": "integer"}, "onFailureRetryInterval": {"type": "integer"},
                    "onSubmissionFailureRetries": {"type": "integer"}, "onSubmissionFailureRetryInterval": {"type": "integer"}}},
                "volumes": {"type": "array"},
                "driver": {"$ref": "#/$defs/pod"}, "executor": {"$ref": "#/$defs/pod"},
            },
        },
    },
    "$defs": {"pod": {"type": "object", "additionalProperties": False, "properties": {
        "cores": {"type": "integer", "minimum": 1}, "memory": {"type": "string", "pattern": "^[0-9]+[kmgt]$"}, "instances": {"type": "integer", "minimum": 1},
        "serviceAccount": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "env": {"type": "array", "items": {"type": "object", "required": ["name"]}}, "volumeMounts": {"type": "array"}}}},
}


def test_the_spark_application_runs_the_preparation_job(manifests):
    import jsonschema

    _, docs, _ = manifests
    app = named(docs, "SparkApplication", "flowtag-prepare")
    jsonschema.validate(app, SPARK_APPLICATION)
    spec = app["spec"]
    assert spec["image"] == image_of(docs)
    assert spec["mainApplicationFile"] == "local:///opt/flowtag/training/flowtag_train/spark_prepare_job.py"
    assert in_image("/opt/flowtag/training/flowtag_train/spark_prepare_job.py")
    settings = json.loads(spec["arguments"][0])
    from flowtag_train import retrain

    retrain.RetrainConfig.from_dict(settings)  # the job's settings are valid retrain settings
    assert spec["driver"]["serviceAccount"] == named(docs, "ServiceAccount", "flowtag-spark")["metadata"]["name"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
    assert claims <= {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert named(docs, "PersistentVolumeClaim", "spark-work")["spec"]["accessModes"] == ["ReadWriteMany"], "driver and executors write side by side"
    for role in ("driver", "executor"):
        assert spec[role]["labels"]["app.kubernetes.io/name"] == "flowtag-spark", "the NetworkPolicies know Spark's pods by this label"


def image_of(docs: list[dict]) -> str:
    images = {c["image"] for d in workloads(docs) for c in pod_spec(d)["containers"] if "postgres" not in c["image"]}
    assert len(images) == 1, images
    return images.pop()


def in_image(path: str) -> bool:
    """Whether central/Dockerfile puts the repository file behind `path` there."""
    docker = (REPO / "central/Dockerfile").read_text()
    for src, dst in re.findall(r"^COPY (?!--from)(.+) (/opt/flowtag/\S*)$", docker, re.M):
        for s in src.split():
            target = dst if not dst.endswith("/") else dst + Path(s).name
            if path == target or path.startswith(target.rstrip("/") + "/"):
                return (REPO / s / path[len(target):].lstrip("/")).exists() if path != target else (REPO / s).exists()
    return False


def test_every_container_is_probed_bounded_and_locked_down(manifests):
    _, docs, _ = manifests
    for d in workloads(docs):
        spec = pod_spec(d)
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", d["metadata"]["name"]
        for c in spec["containers"]:
            where = f"{d['kind']}/{d['metadata']['name']}/{c['name']}"
            assert c["resources"]["requests"] and c["resources"]["limits"], where
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"], where
            if d["kind"] != "Job":
                assert "livenessProbe" in c, where
            if d["kind"] != "Job" and c.get("ports"):
                assert "readinessProbe" in c, where
            # The root file system is read-only: whatever the program writes has a volume.
            assert any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])), where


def test_secrets_come_only_from_secrets(manifests):
    """No password, key or token in a manifest: each comes from a Secret, and a URL that holds
    one takes it from a variable set from a Secret."""
    _, docs, _ = manifests
    text = yaml.safe_dump_all(docs)
    assert not re.search(r"://[^/$\s:]+:[^$@\s]+@", text), "a URL with a literal password"
    for d in workloads(docs):
        for c in pod_spec(d)["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            for name, e in env.items():
                if re.search(r"PASSWORD|SECRET|TOKEN|KEY$|FERNET|WEBHOOK", name) and name != "FLOWTAG_SIGNING_KEY":
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{c['name']}: {name}"
                for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
                    before = list(env).index(name)
                    assert ref in list(env)[:before], f"{c['name']}: {name} uses $({ref}) before it is set"
                    assert "secretKeyRef" in env[ref]["valueFrom"]


def test_mlflow_settings_are_options_mlflow_server_reads(manifests):
    import mlflow.cli

    _, docs, _ = manifests
    server = mlflow.cli.cli.commands["server"]
    envvars = {p.envvar for p in server.params if getattr(p, "envvar", None)}
    options = {o for p in server.params for o in p.opts}
    d = named(docs, "Deployment", "mlflow")
    c = pod_spec(d)["containers"][0]
    assert c["command"] == ["mlflow", "server"]
    assert {a for a in c["args"] if a.startswith("--")} <= options
    ours = {"MLFLOW_DB_PASSWORD"}
    client_side = {"MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # read by MLflow's S3 artifact store (boto3)
    for e in c["env"]:
        assert e["name"] in envvars | ours | client_side, f"mlflow server does not read {e['name']}"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:$(MLFLOW_DB_PASSWORD)@postgres:5432/mlflow")
    dest = env["MLFLOW_ARTIFACTS_DESTINATION"]
    if dest.startswith("/"):
        mount = [m for m in c["volumeMounts"] if dest.startswith(m["mountPath"])]
        assert mount and not mount[0].get("readOnly")
        volume = [v for v in pod_spec(d)["volumes"] if v["name"] == mount[0]["name"]][0]
        pvc = named(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "two or more replicas share the artifacts"
    else:
        assert dest.startswith("s3://")
    hpa = named(docs, "HorizontalPodAutoscaler", "mlflow")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "mlflow" and hpa["spec"]["minReplicas"] >= 2 and d["spec"]["replicas"] >= 2
    assert named(docs, "PodDisruptionBudget", "mlflow")["spec"]["selector"]["matchLabels"].items() <= pod_labels(d).items()


def airflow_options() -> set[tuple[str, str]]:
    code = "import json; from airflow.configuration import conf; print(json.dumps([[s, o] for s, v in conf.configuration_description.items() for o in v['options']]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, "AIRFLOW_HOME": "/nonexistent"})
    assert out.returncode == 0, out.stderr
    return {(s, o) for s, o in json.loads(out.stdout.strip().splitlines()[-1])}


def read_by_flowtag(name: str) -> bool:
    """Whether flowtag's Python code (training, the DAG) reads this environment variable."""
    for folder in ("training/flowtag_train", "airflow/dags", "onnx-export/flowtag_export"):
        for f in (REPO / folder).rglob("*.py"):
            if name in f.read_text():
                return True
    return False


def test_airflow_settings_are_options_airflow_and_flowtag_read(manifests):
    _, docs, _ = manifests
    options = airflow_options()
    env = named(docs, "ConfigMap", "airflow-env")["data"]
    components = [d for d in workloads(docs) if pod_labels(d).get("app.kubernetes.io/component") == "airflow"]
    assert {d["metadata"]["name"] for d in components} >= {"airflow-scheduler", "airflow-api-server", "airflow-dag-processor", "airflow-triggerer", "airflow-migrate"}
    names = set(env)
    for d in components:
        for c in pod_spec(d)["containers"]:
            names |= {e["name"] for e in c.get("env", [])}
            assert c["command"] == ["airflow"] and c["args"][0] in {"scheduler", "api-server", "dag-processor", "triggerer", "db"}
    for name in sorted(names):
        if name.startswith("AIRFLOW__"):
            section, key = name[len("AIRFLOW__"):].lower().split("__")
            assert (section, key) in options, f"Airflow has no option [{section}] {key}"
        elif name.startswith("AIRFLOW_CONN_"):
            conn = json.loads(env[name])
            assert conn["conn_type"] == "spark" and name[len("AIRFLOW_CONN_"):].lower() == env["FLOWTAG_SPARK_CONN_ID"]
        elif name.startswith(("FLOWTAG_", "MLFLOW_")):
            assert read_by_flowtag(name), f"nothing reads {name}"
        else:
            assert name in {"AIRFLOW_DB_PASSWORD"}, f"unexplained variable {name}"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/flowtag/airflow/dags" and in_image("/opt/flowtag/airflow/dags/flowtag_retrain.py")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    json.loads(env["FLOWTAG_SPARK_CONF"])
    scheduler = named(docs, "Deployment", "airflow-scheduler")
    c = pod_spec(scheduler)["containers"][0]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for key in ("FLOWTAG_DATASETS", "FLOWTAG_RETRAIN_WORK", "FLOWTAG_SIGNING_KEY"):
        under = [m for p, m in mounts.items() if env[key].startswith(p.rstrip("/") + "/") or env[key] == p]
        assert under, f"{key} = {env[key]} is on no volume the scheduler mounts"
        assert bool(under[0].get("readOnly")) == (key != "FLOWTAG_RETRAIN_WORK"), key
    api = named(docs, "Deployment", "airflow-api-server")
    assert api["spec"]["replicas"] >= 2 and named(docs, "PodDisruptionBudget", "airflow-api-server")["spec"]["selector"]["matchLabels"].items() <= pod_labels(api).items()
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-api-server:8080/")


def test_the_kubernetes_executor_overlay(tmp_path):
    docs = build("overlays/kubernetes-executor")
    env = named(docs, "ConfigMap", "airflow-env")["data"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "KubernetesExecutor"
    template_cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("airflow-pod-template")][0]
    pod = yaml.safe_load(template_cm["data"]["pod-template.yaml"])
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    out = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", "1.32.0", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    [c] = pod["spec"]["containers"]
    assert c["name"] == "base" and c["image"] == image_of(docs)
    scheduler = named(docs, "Deployment", "airflow-scheduler")
    sc = pod_spec(scheduler)["containers"][0]
    assert c["env"] == sc["env"] and c["envFrom"] == sc["envFrom"], "task pods see what the scheduler's tasks saw"
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"].startswith([m["mountPath"] for m in sc["volumeMounts"] if m["name"] == "pod-template"][0])
    assert pod_spec(scheduler)["serviceAccountName"] == "airflow-scheduler" and pod_spec(scheduler)["automountServiceAccountToken"] is True
    role = named(docs, "Role", "airflow-pod-launcher")
    assert {"create", "delete", "watch"} <= set(role["rules"][0]["verbs"]) and role["rules"][0]["resources"] == ["pods"]
    assert named(docs, "PersistentVolumeClaim", "airflow-work")["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "airflow", "task pods reach PostgreSQL and MLflow"
    from airflow.providers.cncf.kubernetes.executors.kubernetes_executor import KubernetesExecutor  # noqa: F401 (the image has the provider)


def selects(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items() and not selector.get("matchExpressions")


def test_services_and_network_policies_point_at_pods_that_exist(manifests):
    _, docs, _ = manifests
    pods = {d["metadata"]["name"]: d for d in workloads(docs)}
    for s in (d for d in docs if d["kind"] == "Service" and d["spec"].get("type") != "ExternalName"):
        targets = [d for d in pods.values() if selects({"matchLabels": s["spec"]["selector"]}, pod_labels(d))]
        assert targets, f"Service {s['metadata']['name']} selects no pod"
        ports = {p["name"] for d in targets for c in pod_spec(d)["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in s["spec"]["ports"]} <= ports
    spark_labels = {"app.kubernetes.io/name": "flowtag-spark"}
    for np in (d for d in docs if d["kind"] == "NetworkPolicy"):
        sel = np["spec"]["podSelector"]
        if sel:
            assert any(selects(sel, pod_labels(d)) for d in pods.values()) or selects(sel, spark_labels), np["metadata"]["name"]
        for rule in np["spec"].get("ingress", []):
            for peer in rule["from"]:
                if "podSelector" in peer:
                    assert any(selects(peer["podSelector"], pod_labels(d)) for d in pods.values()) or selects(peer["podSelector"], spark_labels), np["metadata"]["name"]
    assert named(docs, "NetworkPolicy", "default-deny-ingress")["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    if "postgres" in pods:
        rule = named(docs, "NetworkPolicy", "postgres")["spec"]["ingress"][0]
        allowed = [d for d in pods.values() if any(selects(p["podSelector"], pod_labels(d)) for p in rule["from"])]
        assert {d["metadata"]["name"] for d in allowed} >= {"mlflow", "airflow-scheduler", "airflow-migrate"}
        assert "kfp-upload-pipeline" not in {d["metadata"]["name"] for d in allowed}
    nodes = named(docs, "NetworkPolicy", "mlflow")["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "flowtag"}}} in nodes, "the node agents pull bundles"


def test_generated_airflow_manifests_are_up_to_date():
    out = subprocess.run([sys.executable, str(REPO / "central/generate_airflow.py"), "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("generate_airflow", REPO / "central/generate_airflow.py")
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    kustomization = yaml.safe_load((REPO / "central/base/kustomization.yaml").read_text())
    image = [i for i in kustomization["images"] if i["name"] == "flowtag-central"][0]
    assert module.IMAGE == f"{image['newName']}:{image['newTag']}"
    assert in_image("/opt/flowtag/kubeflow/upload_pipeline.py") and in_image("/opt/flowtag/kubeflow/flowtag_retrain.yaml")


def test_the_settings_work_against_a_real_postgresql(tmp_path):
    """init-databases.sh creates the roles and databases on a real server; `mlflow server`
    with the Deployment's arguments and environment, and `airflow db migrate` with the
    components' database URL (Kubernetes' $(VAR) expanded, the host pointed at the test
    server), both start on them."""
    from testkit.flowtag import free_port, http_ok, wait_until
    from testkit.postgres import postgres_server

    docs = build("base")
    db_env = {e["name"]: e for e in pod_spec(named(docs, "StatefulSet", "postgres"))["containers"][0]["env"]}
    passwords = {"MLFLOW_DB_PASSWORD": "m" + os.urandom(8).hex(), "AIRFLOW_DB_PASSWORD": "a" + os.urandom(8).hex()}
    assert set(passwords) <= set(db_env)
    with postgres_server(tmp_path) as pg:
        script = (REPO / "central/base/init-databases.sh").read_text()
        env = {**os.environ, **passwords, "POSTGRES_USER": pg.user, "PGHOST": pg.host, "PGPORT": str(pg.port), "PGPASSWORD": pg.password,
               "PATH": f"{pg.bin}{os.pathsep}{os.environ['PATH']}"}
        out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert {"mlflow", "airflow"} <= set(pg.psql("postgres", "SELECT datname FROM pg_database").split())

        def expand(value: str, extra: dict) -> str:
            value = re.sub(r"\$\((\w+)\)", lambda m: extra[m.group(1)], value)
            return value.replace("@postgres:5432/", f"@{pg.host}:{pg.port}/")

        mlflow = pod_spec(named(docs, "Deployment", "mlflow"))["containers"][0]
        port = free_port()
        args = [a if a != "5000" else str(port) for a in mlflow["args"]]
        args[args.index("--host") + 1] = "127.0.0.1"
        menv = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        for e in mlflow["env"]:
            if "value" in e:
                menv[e["name"]] = expand(e["value"], passwords)
        menv["MLFLOW_ARTIFACTS_DESTINATION"] = str(tmp_path / "artifacts")
        menv["MLFLOW_SERVER_ALLOWED_HOSTS"] += f",127.0.0.1:{port}"
        log = open(tmp_path / "mlflow.log", "wb")
        proc = subprocess.Popen([str(BIN / "mlflow"), *mlflow["command"][1:], *args], env=menv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: proc.poll() is not None or http_ok(f"http://127.0.0.1:{port}/health"), 120, "mlflow server")
            assert proc.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            from flowtag_train import tracking

            assert tracking.alias_version("flows", "champion", uri=f"http://127.0.0.1:{port}") is None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
        assert "experiments" in pg.psql("mlflow", "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()

        scheduler = pod_spec(named(docs, "Deployment", "airflow-scheduler"))["containers"][0]
        conn = [e["value"] for e in scheduler["env"] if e["name"] == "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"][0]
        aenv = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": expand(conn, passwords),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        out = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=aenv, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "dag_run" in pg.psql("airflow", "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()
