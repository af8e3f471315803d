"""The fault suite: flowtag under faults, with every event counted in and out, and memory
sampled. One command, figures printed (like the benchmarks; nothing here is a pass/fail test,
though a lost event is reported as LOST and makes the exit status 1).

    .venv/bin/python bench/fault_suite.py [--only connections,kill9,outage] [--outage 60]

- connections: 10,000 short-lived connections to each of the tcp, http and fluent sources (one
  record each), flowtag's RSS before (after 100 of each to warm up) and after.
- kill9: records at about 20,000 a second into a source, flowtag (source -> http sink with a
  disk buffer, into a peer that records every seq) killed with SIGKILL at 5 random moments and
  restarted; at the end every seq must have reached the peer. Duplicates are counted. Run for
  each of `--sources` (file: a growing file, one line in ten malformed, which must arrive as an
  error record; http: POSTed batches, sent again until answered 200, one line in ten malformed;
  fluent: forward-protocol chunks, sent again until acknowledged).
- outage: the same pipelines with the peer answering 503 for --outage seconds while records
  keep coming; flowtag's peak RSS sampled every 0.2 s, then every seq counted after it is back.

`--buffer memory` runs the same with the sink's memory buffer.
"""

from __future__ import annotations

import argparse
import http.client
import re
import http.server
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testkit.flowtag import file_source_head, free_port, http_ok, wait_until  # noqa: E402
from testkit.metrics import scrape, total  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOWTAG = ROOT / "target/release/flowtag"


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(work: Path, config: str, api: int) -> subprocess.Popen:
    path = work / "flowtag.toml"
    path.write_text(config)
    log = open(work / "flowtag.log", "ab")
    proc = subprocess.Popen([str(FLOWTAG), "run", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: proc.poll() is not None or http_ok(f"http://127.0.0.1:{api}/health"), 60, "flowtag to start")
    assert proc.poll() is None, (work / "flowtag.log").read_text()[-3000:]
    return proc


def sent(api: int, component: str) -> float:
    try:
        return total(scrape(f"127.0.0.1:{api}"), "flowtag_component_sent_events_total", component_id=component)
    except OSError:
        return 0.0


def api_head(work: Path, api: int) -> str:
    """`data_dir` in `work` and the API on 127.0.0.1:`api`."""
    return f'''data_dir = "{work / 'data'}"
[api]
address = "127.0.0.1:{api}"
'''


def listener(source: str, kind: str, port: int) -> str:
    """A network source table listening on 127.0.0.1."""
    return f'''[sources.{source}]
type = "{kind}"
address = "127.0.0.1:{port}"
'''


def connections(work: Path, n: int) -> list[str]:
    api, tcp, web, fwd = free_port(), free_port(), free_port(), free_port()
    config = api_head(work, api) + listener("tcp", "tcp", tcp) + listener("web", "http", web) + listener("fwd", "fluent", fwd) + '''[sinks.nowhere]
type = "blackhole"
inputs = ["tcp", "web", "fwd"]
'''
    proc = start(work, config, api)
    try:
        record = {"proto": "tcp", "dur": 0.5, "sbytes": 100}
        line = (json.dumps(record) + "\n").encode()
        message = msgpack.packb(["app", int(time.time()), record])
        warm = 100
        initial = rss_mib(proc.pid)
        before = initial
        t0 = time.monotonic()
        for i in range(warm + n):
            if i == warm:
                # After a warm-up: what the allocator keeps from the first connections is not growth.
                wait_until(lambda: sent(api, "nowhere") >= 3 * warm, 60, "the warm-up records")
                time.sleep(1)
                before = rss_mib(proc.pid)
                t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", tcp)) as s:
                s.sendall(line)
            c = http.client.HTTPConnection("127.0.0.1", web, timeout=10)
            c.request("POST", "/", body=line)
            assert c.getresponse().status == 200
            c.close()
            with socket.create_connection(("127.0.0.1", fwd)) as s:
                s.sendall(message)
        took = time.monotonic() - t0
        wait_until(lambda: sent(api, "nowhere") >= 3 * (warm + n), 60, "every record")
        time.sleep(1)
        after = rss_mib(proc.pid)
        got = int(sent(api, "nowhere")) - 3 * warm
        return [
            f"| connections | {n:,} short-lived connections to each of tcp, http, fluent ({3 * n:,} in {took:.0f} s, after {warm} of each "
            f"to warm up), one record each | {got:,} of {3 * n:,} records delivered | RSS {before:.1f} MiB before, {after:.1f} MiB after "
            f"({(after / before - 1):+.1%}; {initial:.1f} MiB before the warm-up) |"
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


# `"seq":N` in a record, `\"seq\":N` in an error record's `message`.
SEQ = re.compile(rb'"seq\\?":(\d+)')


class Peer:
    """An HTTP peer that records every seq it accepts (from a record, or from the `message` of
    an error record that holds a malformed line); `down` makes it answer 503."""

    def __init__(self):
        self.seqs: list[int] = []
        self.down = False
        self.lock = threading.Lock()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if peer.down:
                    self.send_response(503)
                else:
                    seqs = [int(m.group(1)) for line in body.splitlines() if (m := SEQ.search(line))]
                    with peer.lock:
                        peer.seqs.extend(seqs)
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def lines(first: int, n: int, malformed_every: int = 10) -> str:
    """Records `first`..`first + n` as JSON lines; every `malformed_every`-th is cut short."""
    pad = "x" * 200
    out = []
    for seq in range(first, first + n):
        line = f'{{"seq":{seq},"proto":"udp","pad":"{pad}"}}'
        out.append(line[:-30] if malformed_every and seq % malformed_every == 0 else line)
    return "\n".join(out) + "\n"


class Feeder:
    """Sends records with a `seq` at about `rate` a second until stopped, in batches of a
    twentieth of that: `send(first, n)` returns once the batch is taken (and is called again
    with the same batch until it is)."""

    def __init__(self, rate: int):
        self.rate, self.written, self.malformed = rate, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            n = self.rate // 20
            while not self.send(self.written, n):
                time.sleep(0.1)
            self.malformed += sum(1 for s in range(self.written, self.written + n) if s % 10 == 0) if self.MALFORMED else 0
            self.written += n
            time.sleep(0.05)

    MALFORMED = False

    def send(self, first: int, n: int) -> bool:
        raise NotImplementedError

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=120)
        return self.written


class FileFeeder(Feeder):
    """Appends to a file (one line in ten malformed)."""

    MALFORMED = True

    def __init__(self, path: Path, rate: int):
        self.f = open(path, "a")
        super().__init__(rate)

    def send(self, first: int, n: int) -> bool:
        self.f.write(lines(first, n))
        self.f.flush()
        return True


class HttpFeeder(Feeder):
    """POSTs each batch to the http source until it answers 200 (one line in ten malformed)."""

    MALFORMED = True

    def __init__(self, port: int, rate: int):
        self.port = port
        super().__init__(rate)

    def send(self, first: int, n: int) -> bool:
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            c.request("POST", "/", body=lines(first, n).encode())
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except OSError:
            return False


class FluentFeeder(Feeder):
    """Sends each batch as a forward-protocol chunk until the fluent source acknowledges it."""

    def __init__(self, port: int, rate: int):
        self.port = port
        super().__init__(rate)

    def send(self, first: int, n: int) -> bool:
        chunk = f"chunk-{first}"
        now = int(time.time())
        entries = [[now, {"seq": s, "proto": "udp", "pad": "x" * 200}] for s in range(first, first + n)]
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                s.sendall(msgpack.packb(["app", entries, {"chunk": chunk}]))
                unpacker = msgpack.Unpacker(raw=False)
                while True:
                    data = s.recv(65536)
                    if not data:
                        return False
                    unpacker.feed(data)
                    for answer in unpacker:
                        return isinstance(answer, dict) and answer.get("ack") == chunk
        except OSError:
            return False


def pipeline(work: Path, api: int, peer: Peer, source: str, port: int, buffer: str) -> str:
    if source == "file":
        head = file_source_head(work / "data", api, work / "flows.jsonl") + 'read_from = "beginning"\n'
    else:
        head = api_head(work, api) + listener("flows", source, port)
    disk = 'buffer.type = "disk"\nbuffer.max_size = 2147483648\n' if buffer == "disk" else ""
    return head + f'''[sinks.out]
type = "http"
inputs = ["flows"]
uri = "http://127.0.0.1:{peer.port}/"
request.retry_initial_backoff = "100ms"
request.retry_max_backoff = "500ms"
{disk}'''


def feeder(work: Path, source: str, port: int) -> Feeder:
    if source == "file":
        return FileFeeder(work / "flows.jsonl", 20_000)
    if source == "http":
        return HttpFeeder(port, 20_000)
    return FluentFeeder(port, 20_000)


def count(peer: Peer, written: int) -> tuple[int, int]:
    """(lost, duplicates) of seqs 0..written."""
    with peer.lock:
        seqs = list(peer.seqs)
    got = set(seqs)
    lost = sum(1 for s in range(written) if s not in got)
    return lost, len(seqs) - len(got)


def kill9(work: Path, kills: int, source: str, buffer: str) -> list[str]:
    peer = Peer()
    port = free_port()
    writer = None
    rows = []
    try:
        for k in range(kills + 1):
            api = free_port()
            proc = start(work, pipeline(work, api, peer, source, port, buffer), api)
            writer = writer or feeder(work, source, port)
            if k == kills:
                written = writer.stop()
                wait_until(lambda: count(peer, written)[0] == 0, 120, "every record after the last restart")
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                break
            time.sleep(random.uniform(0.5, 3.0))
            proc.kill()
            proc.wait()
        lost, dups = count(peer, written)
        bad = f", {writer.malformed:,} of them malformed" if writer.malformed else ""
        rows.append(
            f"| kill9 | {source} -> http sink ({buffer} buffer), SIGKILL at {kills} random moments, {written:,} records at ~20 k/s{bad} "
            f"| {'LOST ' if lost else ''}{lost} lost, {dups:,} duplicates ({dups / kills:,.0f} per crash) | |"
        )
    finally:
        if writer:
            writer.stop()
        peer.close()
    return rows


def outage(work: Path, seconds: int, source: str, buffer: str) -> list[str]:
    peer = Peer()
    port, api = free_port(), free_port()
    proc = start(work, pipeline(work, api, peer, source, port, buffer), api)
    writer = feeder(work, source, port)
    peak = 0.0
    try:
        time.sleep(2)
        base = rss_mib(proc.pid)
        peer.down = True
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, rss_mib(proc.pid))
            time.sleep(0.2)
        peer.down = False
        written = writer.stop()
        wait_until(lambda: count(peer, written)[0] == 0, 180, "every record after the outage")
        lost, dups = count(peer, written)
        return [
            f"| outage | {source} -> http sink ({buffer} buffer): its peer answers 503 for {seconds} s while ~20 k records/s come in "
            f"({written:,} in all) | {'LOST ' if lost else ''}{lost} lost, {dups:,} duplicates | RSS {base:.1f} MiB before, peak {peak:.1f} MiB during |"
        ]
    finally:
        writer.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        peer.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="connections,kill9,outage")
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--outage", type=int, default=60)
    ap.add_argument("--sources", default="file,http,fluent")
    ap.add_argument("--buffer", default="disk", choices=["disk", "memory"])
    a = ap.parse_args()
    rows = []
    for name in a.only.split(","):
        for source in a.sources.split(",") if name in ("kill9", "outage") else [None]:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                if name == "connections":
                    rows += connections(work, a.connections)
                elif name == "kill9":
                    rows += kill9(work, a.kills, source, a.buffer)
                elif name == "outage":
                    rows += outage(work, a.outage, source, a.buffer)
                else:
                    sys.exit(f"unknown scenario {name}")
            print(rows[-1], flush=True)
    print("| fault | what | events | memory |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 1 if any("LOST" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
