"""Web access logs written by a real nginx (Debian's nginx-light, its default `combined` format)
for requests this test sends on 127.0.0.1, read by flowtag's `combined` decoder: every request
comes out with its method, target, path, query, status, size and user agent, the odd ones too
(quotes, percent-encoding, a TLS handshake on the plain-text port)."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import Flowtag, file_source_head, free_port, read_jsonl, wait_until

assert shutil.which("nginx"), "nginx is installed by scripts/setup.sh"


def nginx(tmp: Path, port: int) -> subprocess.Popen:
    (tmp / "logs").mkdir()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/logs/access.log combined;
    client_body_temp_path {tmp}/body;
    server {{
        listen 127.0.0.1:{port};
        root {tmp};
        location / {{ return 200 "ok\\n"; }}
        location /missing {{ return 404; }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)], stderr=subprocess.PIPE)
    wait_until(lambda: proc.poll() is not None or _listening(port), 10, "nginx to listen")
    assert proc.poll() is None, proc.stderr.read().decode()
    return proc


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def request(port: int, method: str, target: str, headers: dict) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.putrequest(method, target, skip_accept_encoding=True)
    for k, v in headers.items():
        c.putheader(k, v)
    c.endheaders()
    status = c.getresponse().status
    c.close()
    return status


SENT = [
    ("GET", "/index.html", {"User-Agent": "curl/7.88.1"}),
    ("GET", "/search?q=%27+or+1%3D1--&page=2", {"User-Agent": "sqlmap/1.7", "Referer": "http://127.0.0.1/"}),
    ("POST", "/login", {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}),
    ("GET", "/index.html?a=1", {"User-Agent": 'evil "quoted" agent'}),
    # nginx answers 400 before reading the headers: no user agent in the log.
    ("GET", "/missing/../../etc/passwd", {"User-Agent": "never logged"}),
    ("HEAD", "/q?x=<script>alert(1)</script>", {"User-Agent": "a\\b"}),
]


def test_nginx_combined_logs_decode_request_by_request(flowtag, tmp_path):
    port = free_port()
    server = nginx(tmp_path, port)
    try:
        statuses = [request(port, m, t, h) for m, t, h in SENT]
        with socket.create_connection(("127.0.0.1", port)) as s:  # a TLS ClientHello on plain HTTP
            s.sendall(bytes.fromhex("16030100fa010000f60303") + b"\x00" * 32)
            s.settimeout(5)
            s.recv(1024)
    finally:
        server.terminate()
        server.wait(timeout=10)
    log = tmp_path / "logs" / "access.log"
    assert len(log.read_text().splitlines()) == len(SENT) + 1

    api = free_port()
    out = tmp_path / "requests.jsonl"
    config = file_source_head(tmp_path / "data", api, log) + f'''decoding = "combined"
read_from = "beginning"
[sinks.out]
type = "file"
inputs = ["flows"]
path = "{out}"
'''
    ft = Flowtag(flowtag, tmp_path, config, api)
    try:
        wait_until(lambda: len(read_jsonl(out)) == len(SENT) + 1, 30, "every request decoded")
        time.sleep(0.2)
        errors = ft.metric("flowtag_component_errors_total", component_id="flows")
    finally:
        assert ft.stop() == 0, ft.log()
    records = read_jsonl(out)
    assert errors == 0 and not [r for r in records if "decode_error" in r]
    for (method, target, headers), status, r in zip(SENT, statuses, records):
        assert (r["method"], r["target"], r["status"]) == (method, target, status), r
        path, _, query = target.partition("?")
        assert r["path"] == path and r.get("query", "") == query
        if status == 400:
            assert "user_agent" not in r, r
        else:
            assert r["user_agent"] == headers["User-Agent"], r
            assert r.get("referrer") == headers.get("Referer")
        assert r["client_address"] == "127.0.0.1" and r["protocol"] == "HTTP/1.1"
        assert isinstance(r["bytes"], int) and len(r["time"]) == len("05/Dec/2026:10:40:12 +0000")
    handshake = records[-1]
    assert handshake["status"] == 400 and handshake["request"].startswith("\u0016\u0003\u0001"), handshake
