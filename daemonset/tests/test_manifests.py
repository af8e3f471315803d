"""The DaemonSet manifests: `kubectl kustomize` output of the base and of the production overlay
validated against the Kubernetes 1.32 schemas (kubernetes-validate --strict) and, for the
PodMonitor and the PrometheusRule, against prometheus-operator's CRD models; the properties the
node agent relies on; and each ConfigMap's flowtag.toml passes `flowtag validate` with exactly
the environment the pod gives it, naming only paths the pod mounts or the image ships. (No API
server or container engine runs here, so nothing is applied or built.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IMAGE_PATHS = ("/usr/share/flowtag/", "/usr/lib/flowtag/")


def build(overlay: str) -> list[dict]:
    out = subprocess.run([str(BIN / "kubectl"), "kustomize", str(REPO / "daemonset" / overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


@pytest.fixture(scope="module", params=["base", "overlays/production"])
def manifests(request, tmp_path_factory):
    docs = build(request.param)
    path = tmp_path_factory.mktemp("k8s") / "all.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return request.param, docs, path


def test_kubernetes_schemas_strict(manifests):
    _, docs, path = manifests
    out = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", "1.32.0", str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    passed = out.stdout.count(" passed for resource ")
    crds = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert passed == len(docs) - len(crds), out.stdout
    assert {d["kind"] for d in docs} == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "DaemonSet", "Service", "PodMonitor", "PrometheusRule", "NetworkPolicy"}


def test_podmonitor_against_prometheus_operator_crd(manifests):
    _, docs, _ = manifests
    crds = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    out = subprocess.run(["node", str(REPO / "schema-check/podmonitor.mjs")], input=json.dumps(crds), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    pm = one(docs, "PodMonitor")
    ds = one(docs, "DaemonSet")
    assert pm["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    port = pm["spec"]["podMetricsEndpoints"][0]["port"]
    assert port in {p["name"] for p in ds["spec"]["template"]["spec"]["containers"][0]["ports"]}


def test_prometheusrule_carries_the_rule_file(manifests):
    """The PrometheusRule (validated against the CRD above) holds exactly the groups of the rule
    file that promtool tests, in the pods' namespace."""
    _, docs, _ = manifests
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == one(docs, "DaemonSet")["metadata"]["namespace"]
    assert rule["spec"]["groups"] == yaml.safe_load((REPO / "grafana/prometheus/flowtag-rules.yaml").read_text())["groups"]


def test_committed_prometheusrule_is_up_to_date():
    out = subprocess.run([sys.executable, str(REPO / "daemonset/generate_prometheusrule.py")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (REPO / "daemonset/base/prometheusrule.yaml").read_text(), "run daemonset/generate_prometheusrule.py"


def test_daemonset_runs_everywhere_locked_down(manifests):
    _, docs, _ = manifests
    ds = one(docs, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    c = one([{"kind": "c", **x} for x in spec["containers"] if x["name"] == "flowtag"], "c")
    assert {"operator": "Exists"} in spec["tolerations"], "every node, tainted ones included"
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health" and c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert volumes["flow-logs"]["hostPath"] and mounts["flow-logs"]["readOnly"] is True
    assert volumes["data"]["hostPath"]["path"] == "/var/lib/flowtag" and not mounts["data"].get("readOnly")
    assert "models" in volumes
    token = [e for e in c["env"] if e["name"] == "SPLUNK_HEC_TOKEN"]
    assert token and token[0]["valueFrom"]["secretKeyRef"]["name"] == "flowtag-hec"
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert one(docs, "Role")["rules"] == []
    assert one(docs, "Service")["spec"]["selector"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert "--watch-config" in c["args"], "a ConfigMap update reloads the node's config"
    # Kubernetes kills at the grace period: it must outlast flowtag's graceful-shutdown limit.
    limit = 60
    if "--graceful-shutdown-limit" in c["args"]:
        limit = int(c["args"][c["args"].index("--graceful-shutdown-limit") + 1].rstrip("s"))
    assert spec["terminationGracePeriodSeconds"] > limit


def config_paths(cfg: dict) -> list[tuple[str, str]]:
    """(key, path) of every file or folder a flowtag config names."""
    out = [("data_dir", cfg["data_dir"])]
    for sid, s in cfg.get("sources", {}).items():
        out += [(f"sources.{sid}.include", p) for p in s.get("include", [])]
    for tid, t in cfg.get("transforms", {}).items():
        out += [(f"transforms.{tid}.{k}", t[k]) for k in ("model", "plugin") if k in t]
        up = t.get("updates", {})
        out += [(f"transforms.{tid}.updates.{k}", up[k]) for k in ("path", "public_key") if k in up]
    out += [(f"sinks.{kid}.path", k["path"]) for kid, k in cfg.get("sinks", {}).items() if "path" in k]
    return out


def test_configmap_config_validates_with_the_pods_environment(manifests, flowtag, tmp_path):
    overlay, docs, _ = manifests
    ds = one(docs, "DaemonSet")
    c = [x for x in ds["spec"]["template"]["spec"]["containers"] if x["name"] == "flowtag"][0]
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["name"] in {v.get("configMap", {}).get("name") for v in ds["spec"]["template"]["spec"]["volumes"]}
    text = cm["data"]["flowtag.toml"]
    config = tmp_path / "flowtag.toml"
    config.write_text(text)
    # Exactly the variables the pod sets (values are placeholders): a ${VAR} the pod lacks fails.
    env = {"PATH": os.environ["PATH"], **{e["name"]: f"placeholder-{e['name'].lower()}" for e in c["env"]}}
    out = subprocess.run([str(flowtag), "validate", "--no-environment", "--config", str(config)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{overlay}: {out.stderr}"
    assert "ok (" in out.stdout

    cfg = tomllib.loads(text)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for key, p in config_paths(cfg):
        if p.startswith(IMAGE_PATHS):
            # The image ships models/ at /usr/share/flowtag/models (daemonset/Dockerfile).
            if p.startswith("/usr/share/flowtag/models/"):
                assert (REPO / "models" / p.removeprefix("/usr/share/flowtag/models/") / "manifest.json").is_file(), f"{key}: {p}"
            continue
        under = [m for mp, m in mounts.items() if p == mp or p.startswith(mp.rstrip("/") + "/")]
        assert under, f"{overlay}: {key} = {p} is on no volume the pod mounts"
        if key.startswith("sinks."):
            assert not under[0].get("readOnly"), f"{overlay}: {key} = {p} is on a read-only volume"
    data = [m for mp, m in mounts.items() if cfg["data_dir"].startswith(mp)]
    assert not data[0].get("readOnly"), "data_dir must be writable"
    api_port = int(cfg["api"]["address"].rsplit(":", 1)[1])
    assert api_port in {p["containerPort"] for p in c["ports"]}


def test_the_api_takes_a_token_from_a_secret_and_only_prometheus_reaches_it(manifests):
    """The API listens beyond loopback (Prometheus scrapes it), so its POST endpoints need the
    token, which comes from a Secret; a NetworkPolicy lets only the monitoring namespace in,
    on the API port only."""
    _, docs, _ = manifests
    ds = one(docs, "DaemonSet")
    c = [x for x in ds["spec"]["template"]["spec"]["containers"] if x["name"] == "flowtag"][0]
    token = [e for e in c["env"] if e["name"] == "FLOWTAG_API_TOKEN"]
    assert token and token[0]["valueFrom"]["secretKeyRef"]["name"] == "flowtag-api"
    assert '${FLOWTAG_API_TOKEN}' in one(docs, "ConfigMap")["data"]["flowtag.toml"]
    np = one(docs, "NetworkPolicy")
    assert np["spec"]["podSelector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert np["spec"]["policyTypes"] == ["Ingress"]
    [rule] = np["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [9598]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
