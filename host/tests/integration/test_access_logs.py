"""Web access logs written by real servers for requests this test sends on 127.0.0.1 (Debian's
nginx-light with its default `combined` format, with a JSON `escape=json` format, and logging
through syslog; Debian's apache2 with `vhost_combined` and `common`), read by flowtag's
`combined` and `json_access` decoders and its `syslog` source: every request comes out with its
method, target, path, query, status, size and user agent, the odd ones too (quotes and
backslashes, percent-encoding, a 400 before headers, a TLS handshake on the plain-text port).
Syslog over TCP (both RFC 6587 framings, RFC 5424 and 3164) is sent by this test, as no
syslog daemon runs here."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import Flowtag, file_source_head, free_port, read_jsonl, wait_until

assert shutil.which("nginx") and shutil.which("apache2"), "nginx and apache2 are installed by scripts/setup.sh"


JSON_FORMAT = ("log_format jsonlog escape=json '{\"time_local\":\"$time_local\",\"remote_addr\":\"$remote_addr\",\"request\":\"$request\","
               "\"request_method\":\"$request_method\",\"request_uri\":\"$request_uri\",\"server_protocol\":\"$server_protocol\","
               "\"status\":\"$status\",\"body_bytes_sent\":\"$body_bytes_sent\",\"http_referer\":\"$http_referer\","
               "\"http_user_agent\":\"$http_user_agent\",\"request_time\":\"$request_time\"}';")


def nginx(tmp: Path, port: int, access_log: str | None = None) -> subprocess.Popen:
    (tmp / "logs").mkdir()
    conf = tmp / "nginx.conf"
    access_log = access_log or f"access_log {tmp}/logs/access.log combined;"
    conf.write_text(f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    {JSON_FORMAT}
    {access_log}
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


def decoded(flowtag, tmp: Path, log: Path, n: int, decoding: str = "combined") -> list[dict]:
    """The records flowtag's `decoding` makes of `log` (n lines), checked error-free."""
    api = free_port()
    out = tmp / f"{log.stem}.jsonl"
    config = file_source_head(tmp / f"data-{log.stem}", api, log) + f'''decoding = "{decoding}"
read_from = "beginning"
[sinks.out]
type = "file"
inputs = ["flows"]
path = "{out}"
'''
    work = tmp / f"flowtag-{log.stem}"
    work.mkdir()
    return collect(Flowtag(flowtag, work, config, api), out, n)


def collect(ft: Flowtag, out: Path, n: int) -> list[dict]:
    """Wait for `n` records in `out`, stop flowtag, and check that none had a decode error."""
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


def test_nginx_json_logs_decode_as_combined_ones_do(flowtag, tmp_path):
    port = free_port()
    server = nginx(tmp_path, port, f"access_log {tmp_path}/logs/access.json jsonlog;")
    try:
        statuses = send_all(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    log = tmp_path / "logs" / "access.json"
    records = decoded(flowtag, tmp_path, log, len(SENT) + 1, decoding="json_access")
    check(records, statuses, agents=True)
    assert all("request_time" in r for r in records), "members the mapping does not read are kept"


def syslog_flowtag(flowtag, tmp: Path, mode: str, port: int, out: Path, decoding: str | None = "combined") -> Flowtag:
    api = free_port()
    decoding_line = f'decoding = "{decoding}"' if decoding else ""
    config = f'''data_dir = "{tmp}/data-{mode}"
[api]
address = "127.0.0.1:{api}"
[sources.flows]
type = "syslog"
mode = "{mode}"
address = "127.0.0.1:{port}"
{decoding_line}
[sinks.out]
type = "file"
inputs = ["flows"]
path = "{out}"
'''
    work = tmp / f"flowtag-{mode}"
    work.mkdir()
    return Flowtag(flowtag, work, config, api)


def test_nginx_logging_through_syslog_over_udp(flowtag, tmp_path):
    sport, port = free_port(), free_port()
    out = tmp_path / "syslog.jsonl"
    ft = syslog_flowtag(flowtag, tmp_path, "udp", sport, out)
    try:
        server = nginx(tmp_path, port, f"access_log syslog:server=127.0.0.1:{sport},tag=nginx combined;")
        try:
            statuses = send_all(port)
        finally:
            server.terminate()
            server.wait(timeout=10)
    except BaseException:
        ft.stop()
        raise
    records = collect(ft, out, len(SENT) + 1)
    check(records, statuses, agents=True)
    for r in records:
        s = r["syslog"]
        assert (s["rfc"], s["app_name"], s["facility"], s["severity"]) == (3164, "nginx", 23, 6), s
        assert s["peer"].startswith("127.0.0.1:")


def test_syslog_over_tcp_in_both_framings_and_both_rfcs(flowtag, tmp_path):
    sport = free_port()
    out = tmp_path / "tcp.jsonl"
    ft = syslog_flowtag(flowtag, tmp_path, "tcp", sport, out, decoding=None)
    messages = [
        b"<165>1 2026-12-05T10:41:07.003Z web1 nginx 4321 ID47 [origin ip=\"10.0.0.1\"] \xef\xbb\xbfoctet counted 5424",
        b"<134>Dec  5 10:41:07 web2 apache2[812]: newline framed 3164",
        b"<14>1 - - - - - - message with\nan embedded newline (octet counting keeps it)",
        b"not syslog at all",
    ]
    try:
        with socket.create_connection(("127.0.0.1", sport)) as s:
            stream = (b"%d " % len(messages[0]) + messages[0] + messages[1] + b"\n" + b"%d " % len(messages[2]) + messages[2] + messages[3] + b"\n")
            for i in range(0, len(stream), 7):  # in small pieces, split anywhere
                s.sendall(stream[i:i + 7])
                time.sleep(0.001)
        wait_until(lambda: len(read_jsonl(out)) == 4, 30, "4 syslog messages")
        errors = ft.metric("flowtag_component_errors_total", component_id="flows")
    finally:
        assert ft.stop() == 0, ft.log()
    r = read_jsonl(out)
    assert r[0]["message"] == "octet counted 5424" and r[0]["syslog"]["structured_data"] == '[origin ip="10.0.0.1"]', r[0]
    assert (r[0]["syslog"]["rfc"], r[0]["syslog"]["procid"], r[0]["syslog"]["msgid"]) == (5424, "4321", "ID47")
    assert (r[1]["message"], r[1]["syslog"]["hostname"], r[1]["syslog"]["procid"]) == ("newline framed 3164", "web2", "812")
    assert r[2]["message"] == "message with\nan embedded newline (octet counting keeps it)"
    assert r[3]["message"] == "not syslog at all" and "<PRI>" in r[3]["decode_error"], "a bad header goes on, with the reason"
    assert errors == 1
