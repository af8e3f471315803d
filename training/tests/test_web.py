"""The web model family end to end on generated logs: `flowtag gen --schema access-log` writes a
shop's requests, `flowtag decode` reads them, `flowtag-train baseline --format combined` learns
the site, and `flowtag score` finds the injected attacks with reasons in decoded text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from flowtag_train import web


def gen(flowtag: Path, path: Path, fmt: str, count: int, share: float, seed: int) -> None:
    with open(path, "wb") as f:
        subprocess.run([str(flowtag), "gen", "--schema", "access-log", "--format", fmt, "--count", str(count), "--attack-share", str(share), "--seed", str(seed)],
                       stdout=f, check=True)


def test_site_baseline_from_a_generated_access_log_finds_the_attacks(flowtag, tmp_path):
    log, test = tmp_path / "access.log", tmp_path / "test.jsonl"
    gen(flowtag, log, "combined", 20000, 0.002, 11)  # a few attacks among the site's own requests
    gen(flowtag, test, "json", 5000, 0.1, 12)
    out = tmp_path / "shop"
    done = subprocess.run([sys.executable, "-m", "flowtag_train.cli", "baseline", "--format", "combined", "--input", str(log), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["requests"] == 20000
    scored = subprocess.run([str(flowtag), "score", "--model", str(out), str(test)], capture_output=True, check=True).stdout
    rows = [json.loads(line) for line in scored.splitlines()]
    label = np.array([r["label"] for r in rows])
    flagged = np.array([r["anomaly"]["verdict"] == "anomalous" for r in rows])
    assert flagged[label == 1].mean() >= 0.95 and flagged[label == 0].mean() <= 0.02
    sqli = [r for r in rows if r["attack"] == "sqli" and "UNION" in r["target"]]
    reason = sqli[0]["anomaly"]["reasons"][0]
    assert reason["feature"] == "target" and "UNION SELECT" in reason["value"], reason


def test_flowtag_decode_reads_what_the_sources_read(flowtag, tmp_path):
    log = tmp_path / "access.log"
    gen(flowtag, log, "combined", 200, 0.1, 5)
    records = web.decode_logs([str(log)], "combined", flowtag)
    assert len(records) == 200 and all(r["method"] and r["target"].startswith("/") for r in records)
    bad = tmp_path / "bad.log"
    bad.write_text("not an access log line\n")
    done = subprocess.run([str(flowtag), "decode", "--format", "combined", str(bad)], capture_output=True)
    assert done.returncode == 1 and b"decode_error" in done.stdout
    assert subprocess.run([str(flowtag), "gen", "--schema", "access-log", "--count", "1"], capture_output=True).returncode == 2


def test_threshold_at_keeps_the_false_positive_rate():
    rng = np.random.default_rng(1)
    for scores in (rng.normal(size=1000), np.round(rng.exponential(size=1000), 1), np.zeros(1000)):
        t = web.threshold_at(scores, 0.01)
        assert (scores >= t).mean() <= 0.01
