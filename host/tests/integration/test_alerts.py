"""Edge alerts against real peers on 127.0.0.1: a real Alertmanager (Debian's
prometheus-alertmanager), a real SMTP server with STARTTLS (aiosmtpd), and a webhook peer that
checks Slack's incoming-webhook payload shape. Bursts of anomalous flows must become one alert
with the right count; the cooldown and the daily budget must hold; a destination that fails
is retried."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import time
from email import message_from_bytes
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Flowtag, file_source_head, free_port, http_ok, read_jsonl, wait_until
from testkit.slack import SlackPeer

REPO = Path(__file__).resolve().parents[3]


def certificate(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flowtag test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


class Mailbox:
    def __init__(self):
        self.messages = []
        self.tls = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        self.tls.append(session.ssl is not None)
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path):
    ca, cert, key = certificate(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    box = Mailbox()
    port = free_port()
    c = Controller(box, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True)
    c.start()
    try:
        yield port, ca, box
    finally:
        c.stop()


@pytest.fixture
def alertmanager(tmp_path):
    port = free_port()
    (tmp_path / "am.yml").write_text("route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n")
    log = open(tmp_path / "am.log", "wb")
    proc = subprocess.Popen(["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None or http_ok(f"http://127.0.0.1:{port}/-/ready"), 30, "Alertmanager")
        assert proc.poll() is None, (tmp_path / "am.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def am_alerts(port: int) -> list[dict]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts?active=true", timeout=5) as r:
        return [a for a in json.loads(r.read()) if a["labels"].get("alertname") == "FlowtagEdgeAnomaly"]


def anomalous_record() -> dict:
    m = json.loads((REPO / "models/flows-portable/manifest.json").read_text())
    return next(c["record"] for c in m["canaries"] if c["verdict"] == "anomalous")


def burst(path: Path, start: int, n: int, host: str) -> None:
    rec = anomalous_record()
    with open(path, "a") as f:
        f.write("".join(json.dumps({"seq": start + i, "srcip": host, **rec}) + "\n" for i in range(n)))


def test_bursts_become_single_alerts_with_cooldown_budget_and_retries(tmp_path, flowtag, alertmanager, smtp_server):
    smtp_port, ca, mailbox = smtp_server
    slack = SlackPeer()
    api = free_port()
    flows = tmp_path / "flows.jsonl"
    flows.write_text("")
    config = f"""
{file_source_head(tmp_path / "data", api, flows)}
poll_interval = "50ms"
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{REPO / 'models/flows-portable'}"
[sinks.out]
type = "file"
inputs = ["tag"]
path = "{tmp_path / 'out.jsonl'}"
[alerts.slack]
type = "slack"
inputs = ["tag"]
when = "anomaly_rate > 0.2 over 20s"
url = "{slack.url}"
group_wait = "1s"
cooldown = "4s"
daily_budget = 2
[alerts.am]
type = "alertmanager"
inputs = ["tag"]
when = "anomalies_per_host > 50 over 30s"
url = "http://127.0.0.1:{alertmanager}"
group_wait = "1s"
cooldown = "1h"
labels = {{ team = "netsec" }}
[alerts.mail]
type = "email"
inputs = ["tag"]
when = "anomaly_rate > 0.2 over 20s"
smtp = "127.0.0.1:{smtp_port}"
from = "flowtag@example.com"
to = ["soc@example.com"]
starttls = "always"
tls.ca_file = "{ca}"
group_wait = "1s"
cooldown = "1h"
"""
    ft = Flowtag(flowtag, tmp_path, config, api)
    try:
        t0 = time.monotonic()
        burst(flows, 0, 200, "10.0.0.66")
        # One alert each, with the burst's count; Slack's first answer was a 500 (retried).
        wait_until(lambda: len(slack.posts) >= 1, 20, "the Slack alert")
        assert slack.failed_first
        assert "200 anomalous flows" in slack.posts[0]["text"], slack.posts[0]
        assert "10.0.0.66 (200)" in json.dumps(slack.posts[0]["blocks"])
        wait_until(lambda: len(mailbox.messages) >= 1, 20, "the email")
        sender, rcpts, msg = mailbox.messages[0]
        assert sender == "flowtag@example.com" and rcpts == ["soc@example.com"] and mailbox.tls[0]
        assert "200 anomalous flows" in msg["Subject"] and "10.0.0.66 (200)" in msg.get_payload()
        wait_until(lambda: am_alerts(alertmanager), 20, "the Alertmanager alert")
        (a,) = am_alerts(alertmanager)
        assert a["labels"]["rule"] == "am" and a["labels"]["team"] == "netsec"
        assert a["annotations"]["count"] == "200"
        assert datetime.datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) > datetime.datetime.now(datetime.timezone.utc)

        # A second burst inside the cooldown: no new alert until it passes, then one reminder
        # with the new count.
        burst(flows, 200, 100, "10.0.0.66")
        time.sleep(1.5)
        assert len(slack.posts) == 1, "the cooldown holds"
        wait_until(lambda: len(slack.posts) >= 2, 15, "the reminder after the cooldown")
        assert "100 anomalous flows" in slack.posts[1]["text"]
        assert time.monotonic() - t0 >= 4

        # A third burst: the daily budget (2) is spent, so it is held back and counted.
        burst(flows, 300, 50, "10.0.0.66")
        wait_until(lambda: ft.metric("flowtag_alerts_suppressed_total", component_id="slack", reason="budget") >= 1, 20, "the budget to hold")
        time.sleep(1)
        assert len(slack.posts) == 2
        assert len(mailbox.messages) == 1 and len(am_alerts(alertmanager)) == 1
        assert ft.metric("flowtag_alerts_sent_total", component_id="slack") == 2
        assert ft.metric("flowtag_alerts_sent_total", component_id="mail") == 1
        assert ft.metric("flowtag_alerts_sent_total", component_id="am") == 1
        assert ft.metric("flowtag_alerts_suppressed_total", component_id="mail", reason="cooldown") >= 1
        # Alerting never held the log path: every record reached the sink.
        wait_until(lambda: len(read_jsonl(tmp_path / "out.jsonl")) >= 350, 20, "every record out")

        # A restart keeps the day's budget and the open episodes (data_dir/alerts/): a burst
        # right after it brings no new alert anywhere. Without the saved state the cooldowns and
        # the budget would start afresh and all three would alert again.
        assert ft.stop() == 0, ft.log()
        ft = Flowtag(flowtag, tmp_path, config, api)
        burst(flows, 350, 100, "10.0.0.66")
        wait_until(lambda: ft.metric("flowtag_alerts_suppressed_total", component_id="slack", reason="budget") >= 1, 20, "the budget to hold after the restart")
        wait_until(lambda: ft.metric("flowtag_alerts_suppressed_total", component_id="mail", reason="cooldown") >= 1, 20, "the cooldown to hold after the restart")
        assert len(slack.posts) == 2 and len(mailbox.messages) == 1 and len(am_alerts(alertmanager)) == 1
        assert ft.metric("flowtag_alerts_sent_total") == 0
    finally:
        assert ft.stop() == 0, ft.log()
        slack.server.shutdown()


def test_a_bad_alert_config_names_the_key(tmp_path, flowtag):
    base = f"""
[sources.s]
type = "stdin"
[sinks.o]
type = "console"
inputs = ["s"]
[alerts.a]
inputs = ["s"]
"""
    def validate(extra: str) -> str:
        (tmp_path / "c.toml").write_text(base + extra)
        r = subprocess.run([str(flowtag), "validate", "--no-environment", "--config", str(tmp_path / "c.toml")], capture_output=True, text=True)
        assert r.returncode != 0, extra
        return r.stderr

    assert "alerts.a.when" in validate('type = "slack"\nurl = "http://127.0.0.1:1/x"\nwhen = "rate > 1"\n')
    assert "alerts.a.url" in validate('type = "slack"\nwhen = "score > 0.99"\n')
    assert "alerts.a.smtp" in validate('type = "email"\nwhen = "score > 0.99"\nfrom = "a@b"\nto = ["c@d"]\n')
    assert "needs a window" in validate('type = "slack"\nurl = "http://127.0.0.1:1/x"\nwhen = "anomaly_rate > 0.1"\n')
