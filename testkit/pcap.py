"""Packet captures for the tests that run real flow tools (softflowd, the `cicflowmeter`
package): written with scapy, seeded, so every run sees the same packets."""

from __future__ import annotations

import random
from pathlib import Path


def write_pcap(path: Path, seed: int = 7) -> tuple[int, dict]:
    """Flows of several kinds, interleaved in time; returns how many distinct directions, and
    the TCP flags seen per direction (source, destination, 6, source port, destination port)."""
    from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6, Raw, wrpcap  # noqa: PLC0415 (heavy import)

    rng = random.Random(seed)
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    packets: list[tuple[float, object]] = []
    directions = 0

    def conversation(start: float, fwd, rev, steps):
        t = start
        for forward, pkt in steps:
            t += rng.uniform(0.001, 0.05)
            p = eth / (fwd if forward else rev) / pkt
            packets.append((t, p))

    base = 1_700_000_000.0
    for i in range(70):  # TCP: handshake, data both ways, FIN or RST
        c, s = f"10.1.{i // 50}.{i % 50 + 1}", f"10.2.0.{i % 7 + 1}"
        sport, dport = 30000 + i, rng.choice([22, 80, 443, 8080])
        fwd, rev = IP(src=c, dst=s, tos=rng.choice([0, 0x10, 0x28])), IP(src=s, dst=c)
        steps = [(True, TCP(sport=sport, dport=dport, flags="S")), (False, TCP(sport=dport, dport=sport, flags="SA")),
                 (True, TCP(sport=sport, dport=dport, flags="A"))]
        for _ in range(rng.randint(1, 6)):
            steps.append((True, TCP(sport=sport, dport=dport, flags="PA") / Raw(b"q" * rng.randint(1, 900))))
            steps.append((False, TCP(sport=dport, dport=sport, flags="PA") / Raw(b"r" * rng.randint(1, 1400))))
        steps.append((True, TCP(sport=sport, dport=dport, flags=rng.choice(["FA", "R"]))))
        conversation(base + rng.uniform(0, 20), fwd, rev, steps)
        directions += 2
    for i in range(40):  # UDP request and answer
        c, s = f"10.3.0.{i + 1}", rng.choice(["10.9.9.53", "10.9.9.123"])
        sport, dport = 40000 + i, 53 if s.endswith("53") else 123
        conversation(base + rng.uniform(0, 20), IP(src=c, dst=s), IP(src=s, dst=c),
                     [(True, UDP(sport=sport, dport=dport) / Raw(b"d" * rng.randint(20, 60))),
                      (False, UDP(sport=dport, dport=sport) / Raw(b"a" * rng.randint(40, 400)))])
        directions += 2
    for i in range(8):  # ICMP echo, one way
        conversation(base + rng.uniform(0, 20), IP(src=f"10.4.0.{i + 1}", dst="10.9.9.1"), None,
                     [(True, ICMP(type=8, code=0, id=i)) for _ in range(rng.randint(1, 4))])
        directions += 1
    for i in range(12):  # IPv6 TCP and UDP
        c, s = f"fd00::{i + 1:x}", "fd00::ff"
        conversation(base + rng.uniform(0, 20), IPv6(src=c, dst=s), IPv6(src=s, dst=c),
                     [(True, TCP(sport=50000 + i, dport=443, flags="S")), (False, TCP(sport=443, dport=50000 + i, flags="SA")),
                      (True, UDP(sport=50000 + i, dport=53) / Raw(b"6" * (10 + i)))])
        directions += 3
    packets.sort(key=lambda tp: tp[0])
    out, tcp_flags = [], {}
    for t, p in packets:
        p.time = t
        out.append(p)
        if TCP in p:
            ip = p[IP] if IP in p else p[IPv6]
            key = (ip.src, ip.dst, 6, p[TCP].sport, p[TCP].dport)
            tcp_flags[key] = tcp_flags.get(key, 0) | int(p[TCP].flags)
    wrpcap(str(path), out)
    return directions, tcp_flags
