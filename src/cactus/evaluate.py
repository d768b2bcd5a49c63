"""Evaluation of predicted partitions against labelled subsets: a report dict and a printable table."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cactus.data.subsets import Subset, require_labels
from cactus.metrics import METRICS, partition_metrics, summarize


def evaluate_predictions(subsets: Sequence[Subset], predictions: Sequence[Sequence[int] | np.ndarray]) -> dict:
    """Score `predictions` (one (n_i,) cluster-id array per subset) against the subsets' labels.

    Returns:
        {"summary": metric -> {mean, ci_low, ci_high, count}, "per_subset": [{id, n, true_clusters,
        predicted_clusters, <metric>: score, ...}, ...]}
    """
    require_labels(subsets, "evaluation")
    if len(predictions) != len(subsets):
        raise ValueError(f"{len(predictions)} predictions for {len(subsets)} subsets")
    per_subset = []
    for s, p in zip(subsets, predictions):
        if len(p) != len(s):
            raise ValueError(f"subset {s.id!r}: {len(p)} predicted labels for {len(s)} entities")
        scores = partition_metrics(s.labels, p)
        per_subset.append({"id": s.id, "n": len(s), "true_clusters": len(set(s.labels)),
                           "predicted_clusters": len(set(np.asarray(p).tolist())), **scores})
    summary = summarize([{m: row[m] for m in METRICS} for row in per_subset])
    return {"summary": summary, "per_subset": per_subset}


def format_summary(summary: dict) -> str:
    """A table of mean and 95% confidence interval per metric."""
    lines = [f"{'metric':<10} {'mean':>7}  95% CI", "-" * 34]
    for name, s in summary.items():
        lines.append(f"{name:<10} {s['mean']:7.4f}  [{s['ci_low']:.4f}, {s['ci_high']:.4f}]")
    count = next(iter(summary.values()))["count"]
    lines.append(f"({count} subsets)")
    return "\n".join(lines)
