"""Plugin throughput next to onnxruntime's, on the same rows.

    .venv/bin/python bench/plugin_report.py            # runs `cargo bench -p flowtag-plugin` first
    .venv/bin/python bench/plugin_report.py --no-run   # only reads the last criterion results

For each golden-fixture model: records/s of the full JSON path (scan, featurize, score, tag) at
batch 1, 64, 256 and 4096; score-only rows/s at 256 and 4096; onnxruntime's single-thread rows/s
on the same feature rows and the ratio. Figures are per core (everything runs on one thread).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from flowtag_export.runtime import session

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "plugin/tests/fixtures"
CRITERION = ROOT / "target/criterion"
MODELS = ["iforest", "classifier", "forest", "autoencoder"]


def criterion_rate(group: str, batch: int) -> float | None:
    est = CRITERION / group.replace("/", "_") / str(batch) / "new/estimates.json"
    if not est.exists():
        return None
    ns = json.loads(est.read_text())["mean"]["point_estimate"]
    return batch / ns * 1e9


def fixture_rows(width: int) -> np.ndarray:
    feats = json.loads((FIXTURES / "features.json").read_text())
    rows = [r for r in feats["rows"] if r is not None]
    return np.array(rows, dtype=np.float32).reshape(-1, width)


def ort_rate(model: str, batch: int, seconds: float = 2.0) -> float:
    sess = session(FIXTURES / model / "model.onnx")
    width = sess.get_inputs()[0].shape[1]
    rows = fixture_rows(width)
    x = rows[np.arange(batch) % len(rows)]
    sess.run(None, {"input": x})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sess.run(None, {"input": x})
        n += batch
    return n / (time.perf_counter() - start)


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-run", action="store_true", help="do not run cargo bench first")
    a = ap.parse_args()
    if not a.no_run:
        subprocess.run(["cargo", "bench", "-p", "flowtag-plugin", "--bench", "filter", "--", "--noplot"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print("| model | full JSON path, records/s at batch 1 / 64 / 256 / 4096 | score-only rows/s at 256 / 4096 | onnxruntime 1 thread, rows/s at 256 / 4096 | ratio at 4096 |")
    print("|---|---|---|---|---|")
    for m in MODELS:
        full = [criterion_rate(f"full_json/{m}", b) for b in (1, 64, 256, 4096)]
        score = [criterion_rate(f"score_only/{m}", b) for b in (256, 4096)]
        base = [ort_rate(m, b) for b in (256, 4096)]
        ratio = f"{score[1] / base[1]:.1f}x" if score[1] else "-"
        print(f"| {m} | {' / '.join(fmt(v) for v in full)} | {' / '.join(fmt(v) for v in score)} | {' / '.join(fmt(v) for v in base)} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
