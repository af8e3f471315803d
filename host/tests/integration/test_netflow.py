"""The `netflow` source against real exporters and a real collector, on 127.0.0.1.

Packets written with scapy (TCP conversations, UDP request/answer pairs, ICMP, IPv6) are read
by Debian's softflowd, which exports them as NetFlow v5, v9 or IPFIX (IPFIX also as RFC 5103
biflows), by pmacct's pmacctd, whose nfprobe plugin exports v9 or IPFIX, and by fprobe (v5),
which captures them sent onto `lo` in a network namespace of the test's own. A small UDP tee
in this test sends each datagram both to flowtag and to nfdump's
collector `nfcapd`, so both decode the same packets; every flow flowtag writes is compared
field by field with what `nfdump -o json` reads from nfcapd's file.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Flowtag, free_port, read_jsonl, wait_until
from testkit.pcap import write_pcap

REPO = Path(__file__).resolve().parents[3]

# softflowd, pmacct and nfdump are installed by scripts/setup.sh; without them these tests fail.
assert all(shutil.which(t) for t in ("softflowd", "softflowctl", "pmacctd", "nfcapd", "nfdump")), "run scripts/setup.sh"


class Tee:
    """Receives datagrams on a UDP port and sends each to every destination."""

    def __init__(self, destinations: list[int]):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.bind(("127.0.0.1", 0))
        self.destinations, self.packets = destinations, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            for port in self.destinations:
                self.out.sendto(data, ("127.0.0.1", port))
            self.packets += 1

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        self.out.close()


def softflowd(pcap: Path, port: int, version: str, tmp: Path, *extra: str):
    """Export the pcap's flows to 127.0.0.1:port and exit. softflowd 1.1 reads a pcap only once
    its control socket was contacted, and exports what it tracks on `softflowctl shutdown`."""
    ctl = tmp / f"softflowd-{version}.ctl"
    proc = subprocess.Popen(["softflowd", "-d", "-6", "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", version,
                             "-p", str(tmp / f"softflowd-{version}.pid"), "-c", str(ctl), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_until(lambda: ctl.exists(), 10, "softflowd's control socket")
    try:
        wait_until(lambda: b"Packets processed" in subprocess.run(["softflowctl", "-c", str(ctl), "statistics"],
                                                                  capture_output=True).stdout, 10, "softflowd to answer")
        time.sleep(0.5)
        subprocess.run(["softflowctl", "-c", str(ctl), "shutdown"], capture_output=True, timeout=10)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace")
    assert "Flows exported" in text, text
    return text


def exported_count(log: str) -> int:
    """The records softflowd exported: M in its log's "Flows exported: N (M records)"."""
    return int(log.split("Flows exported: ")[1].split(" ")[1].strip("("))


def nfdump_flows(capdir: Path) -> list[dict]:
    files = sorted(p for p in capdir.iterdir() if p.name.startswith("nfcapd."))
    assert files, f"nfcapd wrote nothing in {capdir}"
    flows = []
    for f in files:
        out = subprocess.run(["nfdump", "-r", str(f), "-o", "json"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "TZ": "UTC"})
        assert out.returncode == 0, out.stderr
        flows += [r for r in json.loads(out.stdout or "[]") if r.get("type") == "FLOW"]
    return flows


def ms(text: str) -> int:
    t = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    return round(t.timestamp() * 1000)


def flags(text: str) -> int:
    """nfdump's "...AP.SF" (CWR ECE URG ACK PSH RST SYN FIN) as tcpControlBits."""
    return sum(1 << (7 - i) for i, c in enumerate(text) if c != ".")


def key_nfdump(r: dict) -> tuple:
    ports = (0, 0) if r["proto"] in (1, 58) else (r.get("src_port", 0), r.get("dst_port", 0))
    return (r.get("src4_addr") or r.get("src6_addr"), r.get("dst4_addr") or r.get("dst6_addr"), r["proto"], *ports)


def key_flowtag(r: dict) -> tuple:
    """The flow's 5-tuple; ICMP flows by address only (exporters put type and code in
    `icmpTypeCodeIPv4` or in the destination port, and nfdump reads only the former)."""
    ports = (0, 0) if r["protocolIdentifier"] in (1, 58) else (r.get("sourceTransportPort", 0), r.get("destinationTransportPort", 0))
    return (r.get("sourceIPv4Address") or r.get("sourceIPv6Address"),
            r.get("destinationIPv4Address") or r.get("destinationIPv6Address"), r["protocolIdentifier"], *ports)


def netflow_config(tmp: Path, api: int, port: int, out: Path) -> str:
    """A `netflow` source `exporters` on 127.0.0.1:port, archived to `out`."""
    return f"""data_dir = "{tmp / 'data'}"
[api]
address = "127.0.0.1:{api}"
[sources.exporters]
type = "netflow"
address = "127.0.0.1:{port}"
[sinks.archive]
type = "file"
inputs = ["exporters"]
path = "{out}"
"""


@pytest.fixture(scope="module")
def pcap(tmp_path_factory) -> tuple[Path, int, dict]:
    path = tmp_path_factory.mktemp("pcap") / "flows.pcap"
    return path, *write_pcap(path)


def pmacctd(pcap: Path, port: int, version: str, tmp: Path) -> None:
    """pmacct's pmacctd reading the pcap, its nfprobe plugin exporting v9 or IPFIX to
    127.0.0.1:port; flows per 5-tuple and ToS, expired within a second."""
    conf = tmp / f"pmacctd-{version}.conf"
    conf.write_text(f"""daemonize: false
pcap_savefile: {pcap}
pcap_savefile_wait: false
plugins: nfprobe
nfprobe_receiver: 127.0.0.1:{port}
nfprobe_version: {version}
aggregate: src_host, dst_host, src_port, dst_port, proto, tos
nfprobe_timeouts: tcp=1:tcp.rst=1:tcp.fin=1:udp=1:icmp=1:general=1:maxlife=1:expint=1
""")
    out = subprocess.run(["pmacctd", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def settled(path: Path, quiet: float = 1.5, limit: float = 30) -> list[dict]:
    """The records of `path` once it stopped growing for `quiet` seconds."""
    last, since, end = -1, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < end:
        n = len(read_jsonl(path))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.1)
    return read_jsonl(path)


@pytest.mark.parametrize("exporter,version,extra", [
    ("softflowd", "5", ("-a",)), ("softflowd", "9", ("-a",)), ("softflowd", "10", ("-A", "milli")),
    ("softflowd", "10", ("-b", "-A", "milli")), ("pmacct", "9", ()), ("pmacct", "10", ()),
], ids=["softflowd-v5", "softflowd-v9", "softflowd-ipfix", "softflowd-ipfix-biflow", "pmacct-v9", "pmacct-ipfix"])
def test_exported_flows_match_nfdump(flowtag, pcap, tmp_path, exporter, version, extra):
    pcap_path, directions, tcp_flags = pcap
    api, port, nf_port = free_port(), free_port(), free_port()
    out = tmp_path / "flows.jsonl"
    config = netflow_config(tmp_path, api, port, out)
    capdir = tmp_path / "nfcapd"
    capdir.mkdir()
    nfcapd = subprocess.Popen(["nfcapd", "-w", str(capdir), "-p", str(nf_port), "-b", "127.0.0.1", "-t", "3600"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ft = Flowtag(flowtag, tmp_path, config, api)
    tee = Tee([port, nf_port])
    try:
        if exporter == "pmacct":
            pmacctd(pcap_path, tee.port, version, tmp_path)
            exported = len(settled(out))
            assert exported >= directions - 12, "about one flow per direction (pmacct keeps ICMP echoes apart)"
        else:
            log = softflowd(pcap_path, tee.port, version, tmp_path, *extra)
            exported = exported_count(log)
        if exporter == "pmacct":
            expected = None
        elif version == "5":
            expected = directions - 12 * 3  # NetFlow v5 carries no IPv6
        elif "-b" in extra:
            expected = None  # biflows: checked against nfdump below
        else:
            expected = directions
        if expected is not None:
            assert exported == expected, log
        wait_until(lambda: len(read_jsonl(out)) >= exported, 30, f"{exported} records from flowtag")
        time.sleep(0.3)
        errors = ft.metric("flowtag_component_errors_total", component_id="exporters")
    finally:
        tee.close()
        ft_status = ft.stop()
        nfcapd.send_signal(signal.SIGTERM)
        nfcapd.wait(timeout=30)
    assert ft_status == 0, ft.log()
    ours = read_jsonl(out)
    theirs = nfdump_flows(capdir)
    assert len(ours) == len(theirs) == exported, (len(ours), len(theirs), exported)
    assert_same_flows(ours, theirs, tcp_flags, biflows="-b" in extra)
    assert errors == 0


def assert_same_flows(ours: list[dict], theirs: list[dict], tcp_flags: dict, biflows: bool = False) -> None:
    """flowtag's records and nfdump's flows of the same export agree field by field, and TCP
    flags agree with the packets' own."""
    assert not [r for r in ours if "decode_error" in r]
    by_key = {key_nfdump(r): r for r in theirs}
    assert len(by_key) == len(theirs), "flows are unique by 5-tuple"
    compared = 0
    for r in ours:
        n = by_key.pop(key_flowtag(r), None)
        assert n is not None, f"flowtag has a flow nfdump does not: {r}"
        assert r["packetDeltaCount"] == n["in_packets"], (r, n)
        assert r["octetDeltaCount"] == n["in_bytes"], (r, n)
        assert r["flowStartMilliseconds"] == ms(n["first"]), (r, n)
        assert r["flowEndMilliseconds"] == ms(n["last"]), (r, n)
        assert r["flowDurationMilliseconds"] == ms(n["last"]) - ms(n["first"]), (r, n)
        if r["protocolIdentifier"] == 6:
            assert r["tcpControlBits"] == tcp_flags[key_flowtag(r)], (r, "the packets' flags")
        if biflows:
            # nfdump 1.7.1 shows a biflow's reverse flags (and ToS) as its own; we keep both.
            reverse = r.get("reverseTcpControlBits", r.get("tcpControlBits", 0))
            assert reverse == flags(n.get("tcp_flags", "........")), (r, n)
            if "reverseTcpControlBits" in r and r["protocolIdentifier"] == 6:
                k = key_flowtag(r)
                assert reverse == tcp_flags[(k[1], k[0], 6, k[4], k[3])], (r, "the answers' flags")
        else:
            assert r.get("tcpControlBits", 0) == flags(n.get("tcp_flags", "........")), (r, n)
        tos = r.get("reverseIpClassOfService", r.get("ipClassOfService")) if biflows else r.get("ipClassOfService")
        assert tos == n.get("src_tos", 0), (r, n)
        assert r["exporterIPv4Address"] == n["ip4_router"] == "127.0.0.1"
        if biflows:
            assert r.get("reversePacketDeltaCount", 0) == n.get("out_packets", 0), (r, n)
            assert r.get("reverseOctetDeltaCount", 0) == n.get("out_bytes", 0), (r, n)
        compared += 1
    assert not by_key, f"nfdump has flows flowtag does not: {list(by_key.values())[:3]}"
    assert compared >= 50
    if biflows:
        assert sum(1 for r in ours if r.get("reversePacketDeltaCount", 0) > 0) >= 100, "biflows carry the answer"


def test_malformed_and_early_data_are_counted_not_lost(flowtag, tmp_path):
    """A packet that is not NetFlow goes to the dead-letter file with its bytes; data sent before
    its template is decoded once the template comes."""
    api, port = free_port(), free_port()
    out, dead = tmp_path / "flows.jsonl", tmp_path / "dead.jsonl"
    config = netflow_config(tmp_path, api, port, out) + f"""[sinks.dead]
type = "file"
inputs = ["exporters.dead_letter"]
path = "{dead}"
"""
    ft = Flowtag(flowtag, tmp_path, config, api)
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        header = (9).to_bytes(2, "big") + (1).to_bytes(2, "big") + (5000).to_bytes(4, "big") + (1_700_000_000).to_bytes(4, "big") + bytes(8)
        fields = [(8, 4), (12, 4), (2, 4), (1, 4)]
        template = (256).to_bytes(2, "big") + len(fields).to_bytes(2, "big") + b"".join(a.to_bytes(2, "big") + b.to_bytes(2, "big") for a, b in fields)
        record = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + (3).to_bytes(4, "big") + (300).to_bytes(4, "big")
        s.sendto(header + (256).to_bytes(2, "big") + (4 + len(record)).to_bytes(2, "big") + record, ("127.0.0.1", port))
        s.sendto(b"GET / HTTP/1.1\r\n\r\n", ("127.0.0.1", port))
        time.sleep(0.3)
        assert read_jsonl(out) == [], "no template yet"
        s.sendto(header + (0).to_bytes(2, "big") + (4 + len(template)).to_bytes(2, "big") + template, ("127.0.0.1", port))
        wait_until(lambda: read_jsonl(out), 10, "the held record")
        wait_until(lambda: read_jsonl(dead), 10, "the dead letter")
        s.close()
    finally:
        assert ft.stop() == 0, ft.log()
    [flow] = read_jsonl(out)
    assert (flow["sourceIPv4Address"], flow["packetDeltaCount"], flow["octetDeltaCount"]) == ("10.0.0.1", 3, 300)
    [bad] = read_jsonl(dead)
    assert "version 18245" in bad["decode_error"], bad
    assert bad["dead_letter"]["cause"] == "decode"
    assert bad["packet_base64"] == "R0VUIC8gSFRUUC8xLjENCg0K"


def tagged_by(flowtag: Path, work: Path, model: Path, pcap: Path, version: str, *extra: str) -> tuple[list[dict], int]:
    """softflowd exports the pcap in `version` to a netflow source whose records `model` tags;
    the tagged records, and how many flows softflowd exported."""
    work.mkdir()
    api, port = free_port(), free_port()
    tagged = work / "tagged.jsonl"
    config = netflow_config(work, api, port, tagged).replace('inputs = ["exporters"]', 'inputs = ["tag"]') + f"""[transforms.tag]
type = "anomaly"
inputs = ["exporters"]
model = "{model}"
"""
    ft = Flowtag(flowtag, work, config, api)
    try:
        log = softflowd(pcap, port, version, work, *extra)
        exported = exported_count(log)
        wait_until(lambda: len(read_jsonl(tagged)) >= exported, 30, "tagged records")
    finally:
        assert ft.stop() == 0, ft.log()
    return read_jsonl(tagged), exported


def test_a_baseline_learned_from_netflow_records_scores_them_at_the_edge(flowtag, pcap, tmp_path):
    """Records archived from the netflow source train a bundle with `flowtag-train baseline`
    (no schema file: IANA names read as they come); the host then scores NetFlow with it."""
    pcap_path, _, _ = pcap
    api, port = free_port(), free_port()
    archive = tmp_path / "archive.jsonl"
    ft = Flowtag(flowtag, tmp_path, netflow_config(tmp_path, api, port, archive), api)
    try:
        log = softflowd(pcap_path, port, "9", tmp_path, "-a")
        exported = exported_count(log)
        wait_until(lambda: len(read_jsonl(archive)) >= exported, 30, "the archive")
    finally:
        assert ft.stop() == 0, ft.log()
    bundle = tmp_path / "site-bundle"
    out = subprocess.run([str(REPO / ".venv/bin/flowtag-train"), "baseline", "--format", "netflow", "--input", str(archive),
                          "--out", str(bundle), "--model", "isolation_forest"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert {"octetDeltaCount", "packetDeltaCount", "flowDurationMilliseconds", "destinationTransportPort", "protocolIdentifier"} <= set(result["features"])
    left_out = result["left_out"]
    assert {left_out[k] for k in ("sourceIPv4Address", "exporterIPv4Address")} == {"address"}
    assert left_out["flowStartMilliseconds"] == "time" and left_out["sourceTransportPort"].startswith("source port")
    manifest = json.loads((bundle / "manifest.json").read_text())
    kinds = {f["name"]: f["type"] for f in manifest["features"]}
    assert kinds["destinationTransportPort"] == kinds["protocolIdentifier"] == "categorical"

    # The host tags NetFlow with it: every record scored, IPv4 and IPv6, ICMP (no ports) too.
    records, tagged_count = tagged_by(flowtag, tmp_path / "edge", bundle, pcap_path, "10", "-A", "milli")
    assert len(records) == tagged_count == exported
    assert all(r["anomaly"]["verdict"] in ("normal", "anomalous") for r in records), [r["anomaly"] for r in records][:3]
    assert any("sourceIPv6Address" in r for r in records) and any(r["protocolIdentifier"] == 1 for r in records)
    assert sum(r["anomaly"]["verdict"] == "anomalous" for r in records) <= len(records) * 0.2


def test_the_portable_bundle_scores_netflow_as_training_reads_it(flowtag, pcap, tmp_path):
    """The shipped `flows-portable` bundle on the netflow source, with no bundle of its own:
    softflowd's IPFIX biflows are all scored, each exactly as the Python twin of the featurizer
    scores the same record (the bundle's aliases turn milliseconds into seconds, protocol
    numbers into names and server ports into services); unidirectional v9 flows, which carry no
    answer direction, are tagged unscored with the field they lack."""
    sys.path.insert(0, str(REPO / "onnx-export"))
    from flowtag_export.parity import onnx_raw
    from flowtag_export.spec import FeatureSpec, loads_record

    bundle = REPO / "models/flows-portable"
    spec = FeatureSpec.from_manifest(json.loads((bundle / "manifest.json").read_text()))
    pcap_path, _, _ = pcap
    runs = {version: tagged_by(flowtag, tmp_path / f"v{version}", bundle, pcap_path, version, *extra)[0]
            for version, extra in (("10", ("-b", "-A", "milli")), ("9", ()))}

    biflows = runs["10"]
    assert all(r["anomaly"]["verdict"] in ("normal", "anomalous") for r in biflows), [r["anomaly"] for r in biflows][:3]
    assert any(r.get("destinationTransportPort") == 80 for r in biflows) and any(r["protocolIdentifier"] == 17 for r in biflows)
    lines = [json.dumps({k: v for k, v in r.items() if k != "anomaly"}) for r in biflows]
    X, errors = spec.featurize_records([loads_record(line) for line in lines])
    assert errors == [None] * len(lines)
    expected = onnx_raw(bundle, X)
    got = [r["anomaly"]["raw_score"] for r in biflows]
    for e, g, line in zip(expected, got, lines):
        assert abs(e - g) <= 1e-5 * max(1.0, abs(e)), (e, g, line)

    oneway = runs["9"]
    assert oneway and all(r["anomaly"]["verdict"] == "unscored" for r in oneway)
    assert all("dpkts" in r["anomaly"]["error"] for r in oneway), oneway[0]["anomaly"]


CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def own_network_namespace():
    """This thread (and what it starts) in a network namespace of its own, with only `lo`: a
    capture there sees only what the test sends. Needs CAP_SYS_ADMIN (root), as CI has."""
    name = f"flowtag-test-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
        yield
    finally:
        libc.setns(original, CLONE_NEWNET)
        os.close(original)
        os.close(target)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def test_fprobe_flows_match_nfdump(flowtag, pcap, tmp_path):
    """fprobe captures from an interface only: in a namespace of the test's own, it captures
    the pcap's packets sent onto `lo` with scapy and exports NetFlow v5 (it speaks v1, v5 and v7)
    to flowtag and nfcapd alike."""
    from scapy.all import rdpcap, sendp

    pcap_path, _, tcp_flags = pcap
    with own_network_namespace():
        api, port, nf_port = free_port(), free_port(), free_port()
        out = tmp_path / "flows.jsonl"
        capdir = tmp_path / "nfcapd"
        capdir.mkdir()
        nfcapd = subprocess.Popen(["nfcapd", "-w", str(capdir), "-p", str(nf_port), "-b", "127.0.0.1", "-t", "3600"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ft = Flowtag(flowtag, tmp_path, netflow_config(tmp_path, api, port, out), api)
        tee = Tee([port, nf_port])
        # Only the pcap's own addresses; a pending-packet queue that holds the whole burst (its
        # default of 100 drops most of it); idle flows expire after 1 s, and SIGTERM emits the rest.
        fprobe = subprocess.Popen(["fprobe", "-i", "lo", "-p", "-f", "net 10.0.0.0/8", "-q", "10000", "-d", "1", "-s", "1",
                                   "-e", "60", "-n", "5", "-l", "2", f"127.0.0.1:{tee.port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.0)  # the capture is open
            assert fprobe.poll() is None, fprobe.communicate()[0]
            packets = [p for p in rdpcap(str(pcap_path)) if p.haslayer("IP")]
            sendp(packets, iface="lo", verbose=False)
            flows = len({(p["IP"].src, p["IP"].dst, p["IP"].proto) + ((p.sport, p.dport) if p["IP"].proto in (6, 17) else ())
                         for p in packets})
            time.sleep(1.5)
            fprobe.terminate()
            assert "Emitting flows cache" in fprobe.communicate(timeout=30)[0].decode()
            wait_until(lambda: len(read_jsonl(out)) >= flows, 30, f"{flows} flows from fprobe")
            time.sleep(0.5)
            errors = ft.metric("flowtag_component_errors_total", component_id="exporters")
        finally:
            if fprobe.poll() is None:
                fprobe.kill()
            tee.close()
            ft_status = ft.stop()
            nfcapd.send_signal(signal.SIGTERM)
            nfcapd.wait(timeout=30)
        assert ft_status == 0, ft.log()
        ours, theirs = read_jsonl(out), nfdump_flows(capdir)
    assert len(ours) == len(theirs) == flows, (len(ours), len(theirs), flows)
    assert_same_flows(ours, theirs, tcp_flags)
    assert errors == 0
