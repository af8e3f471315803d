"""Send the web demo's requests to flowtag as nginx does through syslog, wait for them, and
report what the SIEM would get (used by scripts/demo_web.sh)."""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections import Counter
from pathlib import Path


def combined(r: dict) -> str:
    return (f'{r["client_address"]} - - [{r["time"]}] "{r["method"]} {r["target"]} {r["protocol"]}" {r["status"]} {r["bytes"]} '
            f'"{r.get("referrer", "-")}" "{r["user_agent"]}"')


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--api", required=True)
    p.add_argument("--syslog", required=True)
    p.add_argument("--requests", required=True, type=Path)
    p.add_argument("--archive", required=True, type=Path)
    p.add_argument("--siem", required=True, type=Path)
    a = p.parse_args()
    host, port = a.syslog.split(":")
    requests = [json.loads(x) for x in a.requests.read_text().splitlines()]
    for _ in range(300):  # flowtag is ready when its API answers
        try:
            socket.create_connection(tuple(a.api.split(":")), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i, r in enumerate(requests):
        # A request's index rides in the syslog header's timestamp-free tag, so labels can be matched.
        s.sendto(f"<190>Dec  5 10:41:07 shop nginx[{i}]: {combined(r)}".encode(), (host, int(port)))
        if i % 200 == 199:
            time.sleep(0.01)
    deadline = time.time() + 60
    while time.time() < deadline and len(lines(a.archive)) < len(requests):
        time.sleep(0.5)
    time.sleep(0.5)
    got = lines(a.archive)
    siem = lines(a.siem)
    by_index = {int(r["syslog"]["procid"]): r for r in got}
    print(f"sent {len(requests)} requests as syslog datagrams; {len(got)} arrived (UDP may drop under load)")
    flagged = Counter()
    for i, r in by_index.items():
        want = requests[i]["label"] == 1
        hit = r["attack"]["verdict"] == "anomalous" or r["site"]["verdict"] == "anomalous"
        flagged[(want, hit)] += 1
    attacks = flagged[(True, True)] + flagged[(True, False)]
    normal = flagged[(False, True)] + flagged[(False, False)]
    print(f"to the SIEM: {len(siem)} of {len(got)} requests ({100 * len(siem) / max(len(got), 1):.1f} %)")
    print(f"injected attacks found: {flagged[(True, True)]} of {attacks}; normal requests flagged: {flagged[(False, True)]} of {normal}")
    shown = 0
    for r in siem:
        for key in ("attack", "site"):
            reasons = r[key].get("reasons") or []
            if r[key]["verdict"] == "anomalous" and reasons and shown < 4:
                print(f"  {key:6} {r['method']} {r['target'][:60]:60}  <- {reasons[0].get('part', '')}: {reasons[0]['value']!r}")
                shown += 1
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main())
