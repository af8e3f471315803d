"""The demo's view of a running flowtag: a progress line from its /metrics while flows arrive,
then what a user wants to know: how many flows were tagged anomalous (against the labels `flowtag
gen` wrote), a few tagged records with their reasons, and the metrics. Standard library only, so
it runs before any Python environment exists."""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testkit.metrics import scrape, total  # noqa: E402  (standard library only)

def progress(api: str, count: int, log: str) -> list:
    start = time.monotonic()
    limit = 120 + count / 5_000  # bounded: the demo never waits for ever
    rows: list = []
    last = (start, 0.0)
    while time.monotonic() - start < limit:
        try:
            rows = scrape(api)
        except OSError:
            time.sleep(0.2)
            continue
        read = total(rows, "flowtag_component_received_events_total", component_id="flows")
        # Every flow ends in the archive or, if it could not be read or scored, a dead letter.
        tagged = total(rows, "flowtag_component_sent_events_total", component_id="tagged") + total(
            rows, "flowtag_component_sent_events_total", component_id="dead_letters"
        )
        anomalous = total(rows, "flowtag_anomalies_total")
        now = time.monotonic()
        rate = (tagged - last[1]) / max(now - last[0], 1e-9)
        last = (now, tagged)
        sys.stdout.write(
            f"\r  read {int(read):>9,}   delivered {int(tagged):>9,} / {count:,}   "
            f"anomalous {int(anomalous):>7,}   {rate:>9,.0f} flows/s "
        )
        sys.stdout.flush()
        if tagged >= count:
            print()
            return rows
        time.sleep(0.25)
    print()
    sys.exit(f"demo: timed out after {limit:.0f}s; flowtag's log:\n{open(log).read()[-4000:]}")


def summary(out: str, key: str = "anomaly") -> None:
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    samples: dict[str, dict] = {}
    total_anomalous = 0
    n = 0
    with open(out, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            tag = rec[key]
            n += 1
            kind = rec.get("attack_cat") or "Normal"
            by_kind[kind][tag["verdict"]] += 1
            if tag["verdict"] == "anomalous":
                total_anomalous += 1
                if kind != "Normal" and kind not in samples:
                    samples[kind] = rec
    model = tag["model"] if n else "?"
    print(f"\n{n:,} flows tagged by {model}: {total_anomalous:,} anomalous ({total_anomalous / max(n, 1):.1%})\n")
    print(f"  {'generated as':<16}{'flows':>9}{'anomalous':>11}{'share':>8}")
    for kind in sorted(by_kind, key=lambda k: (k != "Normal", k)):
        c = by_kind[kind]
        flows = sum(c.values())
        print(f"  {kind:<16}{flows:>9,}{c['anomalous']:>11,}{c['anomalous'] / flows:>8.1%}")
    print("\nA few tagged records (flow fields shortened):")
    for kind, rec in list(samples.items())[:3]:
        tag = rec.pop(key)
        brief = {k: rec[k] for k in ("proto", "service", "state", "dur", "spkts", "dpkts", "sbytes", "dbytes") if k in rec}
        print(f"\n  [{kind}] {json.dumps(brief)}")
        print(f"    {key}: score {tag['score']:.4f}  raw_score {tag['raw_score']:.4g}  verdict {tag['verdict']}  model {tag['model']}")
        for r in tag.get("reasons", []):
            print(f"      reason: {json.dumps(r)}")


def show_metrics(rows) -> None:
    print("\nMetrics (GET /metrics, excerpt):")
    keep = (
        "flowtag_component_dead_letter_events_total",
        "flowtag_component_received_events_total",
        "flowtag_component_sent_events_total",
        "flowtag_anomalies_total",
        "flowtag_component_errors_total",
        "flowtag_model_info",
    )
    for name, labels, value in rows:
        if name in keep:
            shown = ",".join(
                f'{k}="{v}"' for k, v in labels.items() if k in ("component_id", "model", "name", "version", "error_type", "cause")
            )
            print(f"  {name}{{{shown}}} {value:g}")
    hist = [(labels, v) for n, labels, v in rows if n == "flowtag_inference_seconds_sum"]
    cnt = [(labels, v) for n, labels, v in rows if n == "flowtag_inference_seconds_count"]
    if hist and cnt and cnt[0][1]:
        print(f"  flowtag_inference_seconds: {cnt[0][1]:g} batches, mean {hist[0][1] / cnt[0][1] * 1e3:.2f} ms per batch")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--siem", help="the SIEM sink's file, to compare with the archive")
    a = ap.parse_args()
    rows = progress(a.api, a.count, a.log)
    summary(a.out)
    if a.siem:
        siem_stream(a.out, a.siem)
    show_metrics(rows)


def siem_stream(archive: str, siem: str) -> None:
    """How much smaller the SIEM's stream is than the archive's."""
    def size(path: str) -> tuple[int, int]:
        with open(path, "rb") as f:
            data = f.read()
        return data.count(b"\n"), len(data)
    (a_n, a_b), (s_n, s_b) = size(archive), size(siem)
    sampled = 0
    with open(siem, encoding="utf-8") as f:
        sampled = sum(1 for line in f if '"sample_rate":' in line)
    print(f"\nTo the SIEM: {s_n:,} of {a_n:,} records ({s_n / max(a_n, 1):.1%}), {s_b / 1e6:.1f} MB of {a_b / 1e6:.1f} MB"
          f" ({s_b / max(a_b, 1):.1%}): every anomaly and {sampled:,} sampled normal flows (1 in 100, `sample_rate` = 100).")


if __name__ == "__main__":
    main()
