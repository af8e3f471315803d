"""How good a model is: metrics on the test split, plots, and a markdown report."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, precision_recall_curve, precision_score, recall_score, roc_auc_score, roc_curve  # noqa: E402


def threshold_for_fpr(normal_scores: np.ndarray, target_fpr: float) -> float:
    """The score at which about `target_fpr` of normal traffic is flagged (scores >= it)."""
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))
    k = int(np.ceil(len(s) * (1.0 - target_fpr)))
    if k >= len(s):
        return float(np.nextafter(s[-1], np.inf))
    # Flag strictly above the k-th normal score, so at most target_fpr of normals reach it.
    return float(np.nextafter(np.float32(s[k - 1]), np.float32(np.inf))) if k > 0 else float(s[0])


def detection_at_fpr(y: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """Share of attacks caught when the threshold lets through `fpr` of normal traffic."""
    normal = scores[y == 0]
    if len(normal) == 0 or (y == 1).sum() == 0:
        return float("nan")
    thr = threshold_for_fpr(normal, fpr)
    return float((scores[y == 1] >= thr).mean())


def metrics(y: np.ndarray, scores: np.ndarray, threshold: float, family: np.ndarray | None = None) -> dict:
    pred = (scores >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    m = {
        "roc_auc": float(roc_auc_score(y, scores)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, scores)) if both else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "fpr": float(pred[y == 0].mean()) if (y == 0).any() else float("nan"),
        "detection_at_fpr_1e-2": detection_at_fpr(y, scores, 1e-2),
        "detection_at_fpr_1e-3": detection_at_fpr(y, scores, 1e-3),
        "test_rows": int(len(y)),
        "test_attacks": int(y.sum()),
    }
    if family is not None:
        m["recall_by_family"] = {str(f): float(pred[family == f].mean()) for f in sorted(set(family[y == 1]))}
    return m


def plots(y: np.ndarray, scores: np.ndarray, threshold: float, out: Path, title: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(5, 4))
    fpr, tpr, _ = roc_curve(y, scores)
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {title}", xscale="log", xlim=(1e-4, 1))
    paths.append(_save(fig, out / "roc.png"))
    fig, ax = plt.subplots(figsize=(5, 4))
    p, r, _ = precision_recall_curve(y, scores)
    ax.plot(r, p)
    ax.set(xlabel="recall", ylabel="precision", title=f"PR: {title}")
    paths.append(_save(fig, out / "pr.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(np.quantile(scores, 0.001), np.quantile(scores, 0.999), 60)
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, label="normal", density=True)
    ax.hist(scores[y == 1], bins=bins, alpha=0.6, label="attack", density=True)
    ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set(xlabel="raw score", ylabel="density", title=f"Scores by class: {title}")
    ax.legend()
    paths.append(_save(fig, out / "score_histogram.png"))
    fig, ax = plt.subplots(figsize=(4, 4))
    cm = confusion_matrix(y, (scores >= threshold).astype(int), labels=[0, 1])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["normal", "anomalous"], yticklabels=["normal", "attack"], xlabel="verdict", ylabel="truth", title="Confusion at the threshold")
    paths.append(_save(fig, out / "confusion.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(title: str, info: dict, m: dict, plot_paths: list[Path], relative_to: Path) -> str:
    rows = [
        ("ROC-AUC", m["roc_auc"]), ("PR-AUC", m["pr_auc"]), ("F1 at the threshold", m["f1"]), ("precision", m["precision"]),
        ("recall", m["recall"]), ("false-positive rate on normal traffic", m["fpr"]),
        ("detection rate at FPR 1e-2", m["detection_at_fpr_1e-2"]), ("detection rate at FPR 1e-3", m["detection_at_fpr_1e-3"]),
    ]
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "| metric (test split) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in rows]
    if "recall_by_family" in m:
        lines += ["", "| attack family | recall |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in m["recall_by_family"].items()]
    lines += [""] + [f"![{p.stem}]({p.relative_to(relative_to)})" for p in plot_paths]
    return "\n".join(lines) + "\n"
