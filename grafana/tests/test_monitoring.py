"""The monitoring side: Prometheus rules (promtool check + unit tests), the Alertmanager config
(amtool check-config and its routes), the Grafana dashboard (Grafana's dashboard schema, its
provisioning), and end to end: a real Prometheus and Alertmanager (Debian's packages) on
127.0.0.1 scrape a running `flowtag` fed with `flowtag gen` attack traffic; the anomaly alert
fires and reaches a Slack webhook peer and an SMTP server; every dashboard query runs on that
Prometheus. (No Grafana server can be installed here: the dashboard is checked against the
schema Grafana publishes, and its queries against Prometheus.)"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from email import message_from_bytes
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller

from testkit.flowtag import Flowtag, file_source_head, free_port, http_ok, wait_until
from testkit.slack import SlackPeer

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "grafana/prometheus/flowtag-rules.yaml"
AM_CONFIG = REPO / "grafana/alertmanager/alertmanager.yml"
DASHBOARD = REPO / "grafana/dashboards/flowtag.json"


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, **kw)


def test_rules_check_and_unit_tests():
    out = run("promtool", "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    out = run("promtool", "test", "rules", str(RULES.with_name("flowtag-rules.test.yaml")))
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = set(re.findall(r"alertname: (\w+)", RULES.with_name("flowtag-rules.test.yaml").read_text()))
    assert alerts == tested, f"alerts without a unit test: {alerts - tested}"
    assert {"FlowtagAnomalyRateHigh", "FlowtagScoreDistributionShift", "FlowtagPipelineErrors", "FlowtagSinkRetrying",
            "FlowtagModelUpdateRefused", "FlowtagModelBehindChampion"} <= alerts


def test_alertmanager_config_and_routes():
    out = run("amtool", "check-config", str(AM_CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = yaml.safe_load(AM_CONFIG.read_text())
    assert {r["name"] for r in cfg["receivers"]} == {"security-slack", "platform-slack", "security-email"}
    assert cfg["inhibit_rules"]

    def routes(*labels: str) -> str:
        out = run("amtool", "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert routes("alertname=FlowtagAnomalyRateHigh", "severity=critical", "node=n1") == "security-slack,security-email"
    assert routes("alertname=FlowtagSinkRetrying", "severity=warning", "node=n1") == "platform-slack"
    assert routes("alertname=SomethingElse") == "security-email"


def test_dashboard_against_grafana_schema_and_provisioning():
    out = run("node", str(REPO / "schema-check/dashboard.mjs"), str(DASHBOARD))
    assert out.returncode == 0, out.stdout + out.stderr
    d = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in d["panels"]}
    assert {"Anomalies by node and model", "Top reasons", "Score histogram", "Throughput in and out", "Errors and retries",
            "Inference latency", "Model versions per node"} <= titles
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    prov = yaml.safe_load((REPO / "grafana/provisioning/dashboards/flowtag.yaml").read_text())
    assert prov["providers"][0]["type"] == "file" and prov["providers"][0]["options"]["path"]
    ds = yaml.safe_load((REPO / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"


def test_a_bad_dashboard_is_refused(tmp_path):
    d = json.loads(DASHBOARD.read_text())
    d["panels"][0]["gridPos"]["w"] = "wide"
    d["panels"][1]["targetz"] = d["panels"][1].pop("targets")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    out = run("node", str(REPO / "schema-check/dashboard.mjs"), str(bad))
    assert out.returncode == 1
    assert "'string' is not assignable to type 'number'" in out.stdout and "targetz" in out.stdout


# --- end to end ------------------------------------------------------------------------------


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def start(cmd: list[str], log: Path, ready: str, what: str) -> subprocess.Popen:
    f = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    wait_until(lambda: proc.poll() is not None or http_ok(ready), 60, what)
    assert proc.poll() is None, log.read_text()
    return proc


def query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def panel_queries() -> list[tuple[str, str]]:
    """Every dashboard query, with Grafana's variables as Grafana would fill them."""
    d = json.loads(DASHBOARD.read_text())
    subst = {"$__rate_interval": "1m", "$__range": "10m", "$node": ".*", "$model": ".*"}
    out = []
    for p in d["panels"]:
        for t in p["targets"]:
            e = t["expr"]
            for k, v in subst.items():
                e = e.replace(k, v)
            assert "$" not in e, f"{p['title']}: unknown variable in {t['expr']}"
            out.append((p["title"], e))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"]["query"])
            assert m, v
            out.append((f"variable {v['name']}", f"count by ({m.group(2)}) ({m.group(1)})"))
    return out


@pytest.fixture
def stack(tmp_path, flowtag):
    """flowtag tailing a growing flow log of generated traffic (30% attacks) and a file of
    malformed rows; Prometheus scraping it every second with our rules; Alertmanager with our
    config pointed at a Slack peer and an SMTP server on 127.0.0.1."""
    procs = []
    slack = SlackPeer(fail_first=False)
    box = Mailbox()
    smtp_port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        flows = tmp_path / "flows"
        flows.mkdir()
        (flows / "malformed.csv").write_text("dur,proto,service,state,spkts,dpkts,sbytes,dbytes\n" + "x,tcp,-,FIN,many,2,3,4\n" * 50)
        gen_out = open(flows / "generated.csv", "wb")
        gen = subprocess.Popen([str(flowtag), "gen", "--schema", "unsw", "--count", "200000", "--rate", "300", "--attack-share", "0.3", "--seed", "7"],
                               stdout=gen_out, stderr=subprocess.DEVNULL)
        procs.append(gen)
        api = free_port()
        ft = Flowtag(flowtag, tmp_path, f"""
{file_source_head(tmp_path / "data", api, f"{flows}/*.csv")}
decoding = "unsw"
read_from = "beginning"
poll_interval = "200ms"
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{REPO / 'models/unsw-supervised'}"
[sinks.out]
type = "file"
inputs = ["tag"]
path = "{tmp_path / 'tagged.jsonl'}"
""", api)

        am_port = free_port()
        (tmp_path / "slack-url").write_text(slack.url)
        am = yaml.safe_load(AM_CONFIG.read_text())
        g = am["global"]
        g.update(smtp_smarthost=f"127.0.0.1:{smtp_port}", smtp_require_tls=False, slack_api_url_file=str(tmp_path / "slack-url"))
        for k in ("smtp_auth_username", "smtp_auth_password_file"):
            g.pop(k)  # the local SMTP server takes mail without AUTH (no TLS to protect it)
        (tmp_path / "am.yml").write_text(yaml.safe_dump(am))
        procs.append(start(["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
                            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                           tmp_path / "am.log", f"http://127.0.0.1:{am_port}/-/ready", "Alertmanager"))

        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "flowtag", "static_configs": [{"targets": [f"127.0.0.1:{api}"], "labels": {"node": "node-a"}}]}],
        }))
        procs.append(start(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                            f"--web.listen-address=127.0.0.1:{prom_port}"],
                           tmp_path / "prometheus.log", f"http://127.0.0.1:{prom_port}/-/ready", "Prometheus"))
        yield {"dir": tmp_path, "prometheus": prom_port, "alertmanager": am_port, "slack": slack, "mail": box, "flowtag": ft}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
        if "ft" in locals():
            ft.stop()
        smtp.stop()
        slack.close()


def test_attack_traffic_fires_the_anomaly_alert_to_slack_and_email(stack):
    prom = stack["prometheus"]
    # The recording rules run every 30 s and the alert waits 2 minutes: about 3 to 4 minutes.
    try:
        wait_until(lambda: stack["slack"].posts and stack["mail"].messages, 360, "the anomaly alert in Slack and by email", every=2)
    except AssertionError:
        diagnosis = {e: query(prom, e).get("data", {}).get("result") for e in
                     ("ALERTS", "node_model:flowtag_anomaly_ratio:rate5m", "node_model:flowtag_scored_events:rate5m", "up")}
        logs = {n: (stack["dir"] / n).read_text()[-3000:] for n in ("am.log", "prometheus.log") if (stack["dir"] / n).exists()}
        raise AssertionError(f"no alert arrived; Slack {len(stack['slack'].posts)}, mail {len(stack['mail'].messages)}; {json.dumps(diagnosis)}; {logs}")

    post = next(p for p in stack["slack"].posts if "FlowtagAnomalyRateHigh" in json.dumps(p) or "anomalous" in p.get("text", "") + json.dumps(p.get("attachments", "")))
    body = json.dumps(post)
    assert "node-a" in body and "unsw-supervised@" in body and "FIRING" in body
    mail = stack["mail"].messages[0]
    assert mail["Subject"].startswith("[flowtag] FIRING FlowtagAnomalyRateHigh node-a")
    assert mail["To"] == "security-oncall@example.org"

    firing = query(prom, 'ALERTS{alertname="FlowtagAnomalyRateHigh", alertstate="firing"}')["data"]["result"]
    assert firing and firing[0]["metric"]["node"] == "node-a"
    ratio = float(query(prom, "node_model:flowtag_anomaly_ratio:rate5m")["data"]["result"][0]["value"][1])
    assert ratio > 0.05

    # Every dashboard query runs; those the traffic feeds return series.
    empty_allowed = {"Score distribution shift"}  # needs an hour of data at the 1h window's first evaluation
    for title, expr in panel_queries():
        res = query(prom, expr)
        assert res["status"] == "success", f"{title}: {expr}: {res}"
        if title not in empty_allowed and "retries" not in expr and "reloads" not in expr:
            assert res["data"]["result"], f"{title}: no series for {expr}"
    reasons = query(prom, "sum by (feature) (flowtag_anomaly_top_reason_total)")["data"]["result"]
    assert len(reasons) >= 1
    errors = query(prom, 'sum(flowtag_component_errors_total{error_type="unscored"})')["data"]["result"]
    assert float(errors[0]["value"][1]) == 50.0, "the malformed rows were counted, not dropped"
