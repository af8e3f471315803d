"""Web access logs written by real servers for requests this test sends on 127.0.0.1 (Debian's
nginx-light with its default `combined` format; Debian's apache2 with `vhost_combined` and
`common`), read by flowtag's `combined` decoder: every request comes out with its method,
target, path, query, status, size and user agent, the odd ones too (quotes and backslashes,
percent-encoding, a 400 before headers, a TLS handshake on the plain-text port)."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import Flowtag, file_source_head, free_port, read_jsonl, wait_until

assert shutil.which("nginx") and shutil.which("apache2"), "nginx and apache2 are installed by scripts/setup.sh"


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


def send_all(port: int) -> list[int]:
    """Every request of SENT, then a TLS ClientHello on the plain-text port; the statuses."""
    statuses = [request(port, m, t, h) for m, t, h in SENT]
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(bytes.fromhex("16030100fa010000f60303") + b"\x00" * 32 + b"\r\n\r\n")
        s.settimeout(5)
        s.recv(1024)
    return statuses


def decoded(flowtag, tmp: Path, log: Path, n: int) -> list[dict]:
    """The records flowtag's `combined` decoder makes of `log` (n lines), checked error-free."""
    api = free_port()
    out = tmp / f"{log.stem}.jsonl"
    config = file_source_head(tmp / f"data-{log.stem}", api, log) + f'''decoding = "combined"
read_from = "beginning"
[sinks.out]
type = "file"
inputs = ["flows"]
path = "{out}"
'''
    work = tmp / f"flowtag-{log.stem}"
    work.mkdir()
    ft = Flowtag(flowtag, work, config, api)
    try:
        wait_until(lambda: len(read_jsonl(out)) == n, 30, f"{n} requests decoded")
        time.sleep(0.2)
        errors = ft.metric("flowtag_component_errors_total", component_id="flows")
    finally:
        assert ft.stop() == 0, ft.log()
    records = read_jsonl(out)
    assert errors == 0 and not [r for r in records if "decode_error" in r], records
    return records


def check(records: list[dict], statuses: list[int], agents: bool, agents_on_400: bool = False) -> None:
    """Each record against the request sent; `agents`: the format logs the user agent and
    referrer (for a 400 only when the server read the headers first: Apache does, nginx not)."""
    for (method, target, headers), status, r in zip(SENT, statuses, records):
        assert (r["method"], r["target"], r["status"]) == (method, target, status), r
        path, _, query = target.partition("?")
        assert r["path"] == path and r.get("query", "") == query
        if agents and (status != 400 or agents_on_400):
            assert r["user_agent"] == headers["User-Agent"], r
            assert r.get("referrer") == headers.get("Referer")
        else:  # nginx answers 400 before reading headers; `common` logs none
            assert "user_agent" not in r and "referrer" not in r, r
        assert r["client_address"] == "127.0.0.1" and r["protocol"] == "HTTP/1.1"
        assert isinstance(r["bytes"], int) and len(r["time"]) == len("05/Dec/2026:10:40:12 +0000")
    handshake = records[len(SENT)]
    assert handshake["status"] == 400 and handshake["request"].startswith("\u0016\u0003\u0001"), handshake


def test_nginx_combined_logs_decode_request_by_request(flowtag, tmp_path):
    port = free_port()
    server = nginx(tmp_path, port)
    try:
        statuses = send_all(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    log = tmp_path / "logs" / "access.log"
    assert len(log.read_text().splitlines()) == len(SENT) + 1
    check(decoded(flowtag, tmp_path, log, len(SENT) + 1), statuses, agents=True)


def test_apache_vhost_combined_and_common_logs(flowtag, tmp_path):
    port = free_port()
    (tmp_path / "logs").mkdir()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hi\n")
    conf = tmp_path / "httpd.conf"
    conf.write_text(f'''ServerRoot {tmp_path}
PidFile {tmp_path}/httpd.pid
Listen 127.0.0.1:{port}
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
ServerName localhost
ErrorLog {tmp_path}/logs/error.log
LogFormat "%v:%p %h %l %u %t \\"%r\\" %>s %O \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\"" vhost_combined
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog {tmp_path}/logs/vhost.log vhost_combined
CustomLog {tmp_path}/logs/common.log common
DocumentRoot {tmp_path}/www
<Directory {tmp_path}/www>
  Require all granted
</Directory>
''')
    server = subprocess.Popen(["apache2", "-X", "-f", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_until(lambda: server.poll() is not None or _listening(port), 10, "apache2 to listen")
        assert server.poll() is None, server.stderr.read().decode()
        statuses = send_all(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    n = len(SENT) + 1
    vhost = decoded(flowtag, tmp_path, tmp_path / "logs" / "vhost.log", n)
    assert all(r["vhost"] == "localhost:80" for r in vhost), vhost[0]
    assert any('\\' in r.get("user_agent", "") for r in vhost), "Apache's \\\\ escape read back"
    check(vhost, statuses, agents=True, agents_on_400=True)
    check(decoded(flowtag, tmp_path, tmp_path / "logs" / "common.log", n), statuses, agents=False)
