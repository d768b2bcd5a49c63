"""Evaluation of predicted partitions against labelled subsets: a report dict and a printable table, and the matching
of a predictions file to the labelled subsets by content (subset ids, then each entity's id or text)."""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from cactus.data.subsets import Label, Subset, SubsetFormatError, require_labels
from cactus.metrics import METRICS, partition_metrics, summarize

logger = logging.getLogger(__name__)

_INTEGER = re.compile(r"-?\d+")
_SHOWN = 3  # how many missing or extra ids an error lists


def evaluate_predictions(subsets: Sequence[Subset], predictions: Sequence[Sequence[int] | np.ndarray]) -> dict:
    """Score `predictions` (one (n_i,) cluster-id array per subset, in the subset's entity order) against the
    subsets' labels.

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


def match_predictions(gold: Sequence[Subset], predicted: Sequence[Subset],
                      source: str | None = None) -> tuple[list[list[Label]], int]:
    """The predicted cluster ids of each gold subset's entities, in the gold order, and how many subsets had their
    entities in another order.

    Subsets pair by id (1 and "1" alike: a CSV holds text). Entities pair by `entity_ids` when both sides have them,
    else by text: the same ones in the same order are taken as they are; the same ones in another order are put in
    the gold order (equal texts in their order of appearance); anything else is a SubsetFormatError naming the
    subset and what is missing or extra. A prediction for a subset not in `gold` is left out, with a warning.
    """
    by_id = {str(p.id): p for p in predicted}
    missing = [s.id for s in gold if str(s.id) not in by_id]
    if missing:
        raise SubsetFormatError(f"no prediction for {len(missing)} of {len(gold)} subsets "
                                f"(missing: {_listed(missing)})", source=source, subset_id=missing[0])
    gold_ids = {str(s.id) for s in gold}
    extra = [p.id for p in predicted if str(p.id) not in gold_ids]
    if extra:
        logger.warning("%s: %d predicted subsets are not in the labelled file and are not scored (%s)",
                       source, len(extra), _listed(extra))
    out, reordered = [], 0
    for s in gold:
        p = by_id[str(s.id)]
        ids = predicted_ids(p, source)
        order = _entity_order(s, p, source)
        reordered += order != list(range(len(s)))
        out.append([ids[j] for j in order])
    return out, reordered


def predicted_ids(p: Subset, source: str | None = None) -> list[Label]:
    """A predicted subset's cluster ids: `cluster_ids`, or, in the older layout, integer `labels`."""
    if p.cluster_ids is not None:
        return p.cluster_ids
    if p.labels is not None and all(isinstance(v, int) or _INTEGER.fullmatch(v) for v in p.labels):
        return p.labels
    raise SubsetFormatError("no predicted 'cluster_ids' (nor integer 'labels', the older layout)", source=source,
                            subset_id=p.id)


def _entity_order(gold: Subset, pred: Subset, source: str | None) -> list[int]:
    """For each gold entity, the index of the same entity in `pred`."""
    by_ids = gold.entity_ids is not None and pred.entity_ids is not None
    what = "entity ids" if by_ids else "texts"
    want = [str(e) for e in gold.entity_ids] if by_ids else gold.texts
    have = [str(e) for e in pred.entity_ids] if by_ids else pred.texts
    if want == have:
        order = list(range(len(want)))
    else:
        lacking, surplus = Counter(want) - Counter(have), Counter(have) - Counter(want)
        if lacking or surplus:
            raise SubsetFormatError(
                f"the predictions hold other {what} than the labelled subset: missing {_listed(list(lacking))}, "
                f"extra {_listed(list(surplus))}", source=source, subset_id=gold.id)
        positions: dict[str, list[int]] = defaultdict(list)
        for j, key in reversed(list(enumerate(have))):
            positions[key].append(j)
        order = [positions[key].pop() for key in want]
    if by_ids:
        for i, j in enumerate(order):
            if gold.texts[i] != pred.texts[j]:
                raise SubsetFormatError(f"entity id {gold.entity_ids[i]!r} has another text in the predictions "
                                        f"({pred.texts[j]!r}, not {gold.texts[i]!r})", source=source,
                                        subset_id=gold.id)
    return order


def _listed(values: list) -> str:
    shown = ", ".join(repr(v) for v in values[:_SHOWN])
    more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
    return f"{shown}{more}" if values else "none"


def format_summary(summary: dict) -> str:
    """A table of mean and 95% confidence interval per metric."""
    width = max(len("metric"), *map(len, summary))
    lines = [f"{'metric':<{width}} {'mean':>7}  95% CI", "-" * (width + 26)]
    for name, s in summary.items():
        lines.append(f"{name:<{width}} {s['mean']:7.4f}  [{s['ci_low']:.4f}, {s['ci_high']:.4f}]")
    count = next(iter(summary.values()))["count"]
    lines.append(f"({count} subsets)")
    return "\n".join(lines)
