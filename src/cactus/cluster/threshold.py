"""Choosing the clustering threshold on labelled subsets.

For every threshold t of a grid, every subset is clustered (`cactus.cluster.agglomerative`, merge iff average
similarity >= t) and scored against its true labels; the threshold maximising an objective averaged over subsets wins.

Fast path. A subset's partition only changes at the similarities of its n - 1 merges, so each subset gets one
linkage. Walking up the tree, a merge adds two columns of the contingency table into one, which changes every
additive statistic of the table (`cactus.metrics.ContingencySums`) by (merged column) - (the two children): cumulative
sums give the statistics after every prefix of merges at once; the metrics are evaluated, vectorised, only on the
prefixes some grid point reaches, and each grid point finds its prefix with one searchsorted.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, fields

import numpy as np
from tqdm.auto import tqdm

from cactus.cluster.agglomerative import Dendrogram
from cactus.metrics import (
    METRICS,
    ContingencySums,
    contingency_sums,
    encode_labels,
    expected_mutual_info_table,
    metrics_from_sums,
)

DEFAULT_GRID = np.round(np.linspace(-1.0, 1.0, 201), 2)  # -1.00, -0.99, ..., 1.00
_TIE_TOLERANCE = 1e-12  # objective values this close count as equal when picking the best threshold (float noise)


@dataclass
class ThresholdCurve:
    """Mean score over subsets at every threshold of a grid.

    Attributes:
        thresholds: (G,) increasing grid.
        scores: metric name -> (G,) mean over subsets; every metric of `cactus.metrics.METRICS`, plus the objective
            under its own name (e.g. "ami+ari").
        objective: '+'-joined metric names; its score is the sum of those metrics' means.
        best_threshold: the chosen threshold, by `best_index`: the middle of the longest run of consecutive grid
            points attaining the best objective.
        best_score: objective at `best_threshold`.
    """

    thresholds: np.ndarray
    scores: dict[str, np.ndarray]
    objective: str
    best_threshold: float
    best_score: float

    def scores_at_best(self) -> dict[str, float]:
        """Every metric's mean over subsets at `best_threshold`."""
        at = int(np.flatnonzero(self.thresholds == self.best_threshold)[0])
        return {name: float(values[at]) for name, values in self.scores.items()}

    def to_dict(self) -> dict:
        """JSON-friendly copy: lists and floats only."""
        return {
            "thresholds": self.thresholds.tolist(),
            "scores": {name: values.tolist() for name, values in self.scores.items()},
            "objective": self.objective,
            "best_threshold": self.best_threshold,
            "best_score": self.best_score,
        }

    @classmethod
    def from_dict(cls, record: dict) -> ThresholdCurve:
        """Inverse of `to_dict`."""
        return cls(
            thresholds=np.asarray(record["thresholds"], dtype=np.float64),
            scores={name: np.asarray(values, dtype=np.float64) for name, values in record["scores"].items()},
            objective=record["objective"],
            best_threshold=float(record["best_threshold"]),
            best_score=float(record["best_score"]),
        )


def parse_objective(objective: str) -> list[str]:
    """'nmi+ami+ri+ari' -> ['nmi', 'ami', 'ri', 'ari']; unknown or repeated names raise ValueError."""
    names = [name.strip().lower() for name in objective.split("+")]
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown} in objective {objective!r}; choose from {list(METRICS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"objective {objective!r} names a metric twice")
    return names


def _take(sums: ContingencySums, index: np.ndarray) -> ContingencySums:
    return ContingencySums(**{f.name: getattr(sums, f.name)[index] for f in fields(ContingencySums)})


def _merge_prefix_sums(dendrogram: Dendrogram, codes: np.ndarray, emi_table: np.ndarray) -> ContingencySums:
    """Contingency statistics after k = 0 .. n-1 merges of the dendrogram, each field (n,).

    Args:
        codes: (n,) true class of each entity, 0 .. K-1.
    """
    n = dendrogram.n_entities
    children = dendrogram.linkage[:, :2].astype(np.int64)
    counts = np.zeros((2 * n - 1, codes.max() + 1))  # row = tree node (entity, then merge), column = true class
    counts[np.arange(n), codes] = 1
    for m, (left, right) in enumerate(children):
        counts[n + m] = counts[left] + counts[right]
    node = contingency_sums(counts[:, :, None], emi_table, counts[:n].sum(axis=0))  # every node as a one-cluster
    # table, fields (2n - 1,)

    def after_merges(value: np.ndarray) -> np.ndarray:  # an additive statistic, summed over the current clusters
        change = value[n:] - value[children[:, 0]] - value[children[:, 1]]
        return value[:n].sum() + np.concatenate([[0.0], np.cumsum(change)])

    return ContingencySums(
        n_clusters=n - np.arange(n, dtype=np.float64),
        b_log_b=after_merges(node.b_log_b),
        nij_log_nij=after_merges(node.nij_log_nij),
        b_sq=after_merges(node.b_sq),
        nij_sq=after_merges(node.nij_sq),
        emi=after_merges(node.emi),
        purity=after_merges(node.purity),
        bcubed_precision=after_merges(node.bcubed_precision),
        bcubed_recall=after_merges(node.bcubed_recall),
        # Every node made so far lies inside a current cluster, so max over current clusters = running max over nodes.
        inverse_purity=np.maximum.accumulate(np.vstack([counts[:n].max(axis=0), counts[n:]]), axis=0).sum(axis=1),
    )


def merge_prefix_scores(
    dendrogram: Dendrogram, labels: Sequence[Hashable] | np.ndarray, prefixes: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Every metric of the partitions after `prefixes` merges of a subset's dendrogram (default: all, 0 .. n - 1).

    Args:
        dendrogram: the subset's `Dendrogram`.
        labels: (n,) true cluster of each entity.
        prefixes: (P,) merge counts, sorted and distinct.

    Returns:
        metric name -> (P,) scores.
    """
    codes = encode_labels(labels)
    if len(codes) != dendrogram.n_entities:
        raise ValueError(f"{len(codes)} labels for a {dendrogram.n_entities}-entity similarity matrix")
    class_sizes = np.bincount(codes)
    prefix = _merge_prefix_sums(dendrogram, codes, expected_mutual_info_table(class_sizes))
    if prefixes is not None:
        prefix = _take(prefix, prefixes)
    return metrics_from_sums(class_sizes, prefix)


def subset_threshold_scores(
    similarity: np.ndarray, labels: Sequence[Hashable] | np.ndarray, thresholds: np.ndarray
) -> dict[str, np.ndarray]:
    """Every metric of one subset's partition at each threshold.

    Args:
        similarity: (n, n) similarity matrix.
        labels: (n,) true cluster of each entity.
        thresholds: (G,) thresholds.

    Returns:
        metric name -> (G,) scores.
    """
    dendrogram = Dendrogram(similarity)
    reached, grid_to_reached = np.unique(dendrogram.merges_at(thresholds), return_inverse=True)
    scores = merge_prefix_scores(dendrogram, labels, reached)
    return {name: values[grid_to_reached.ravel()] for name, values in scores.items()}


def best_index(objective_scores: np.ndarray) -> int:
    """The tie rule: the middle of the longest run of consecutive grid points attaining the best score.

    Scores within 1e-12 of the maximum count as attaining it; of equally long runs the first (lowest thresholds)
    wins; a run of even length gives its lower middle point.

    Args:
        objective_scores: (G,) objective at each threshold of an increasing grid.
    """
    is_best = np.concatenate([[False], objective_scores >= objective_scores.max() - _TIE_TOLERANCE, [False]])
    edges = np.flatnonzero(np.diff(is_best.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]  # run = grid points starts[r] .. ends[r] - 1
    r = int(np.argmax(ends - starts))
    return int((starts[r] + ends[r] - 1) // 2)


def tune_threshold(
    similarities: Sequence[np.ndarray],
    labels: Sequence[Sequence[Hashable] | np.ndarray],
    grid: Sequence[float] | np.ndarray | None = None,
    objective: str = "ami+ari",
    progress: bool = False,
) -> ThresholdCurve:
    """Score every threshold of a grid on labelled subsets and pick the best.

    Args:
        similarities: one (n_i, n_i) similarity matrix per subset.
        labels: one (n_i,) array of true cluster labels per subset.
        grid: thresholds to try (sorted and deduplicated); default -1.00 .. 1.00 step 0.01 (201 points).
        objective: '+'-joined metric names from `cactus.metrics.METRICS`, summed after averaging over subsets
            (the paper's is "nmi+ami+ri+ari").
        progress: show a progress bar over subsets.

    Returns:
        The `ThresholdCurve`.
    """
    names = parse_objective(objective)
    if len(similarities) != len(labels):
        raise ValueError(f"{len(similarities)} similarity matrices but {len(labels)} label arrays")
    if len(similarities) == 0:
        raise ValueError("no subsets to tune on")
    thresholds = DEFAULT_GRID.copy() if grid is None else np.unique(np.asarray(grid, dtype=np.float64))
    if len(thresholds) == 0:
        raise ValueError("empty threshold grid")
    totals = {name: np.zeros(len(thresholds)) for name in METRICS}
    for similarity, subset_labels in tqdm(
        zip(similarities, labels), total=len(labels), disable=not progress, desc="tuning threshold"
    ):
        for name, values in subset_threshold_scores(similarity, subset_labels, thresholds).items():
            totals[name] += values
    scores = {name: total / len(labels) for name, total in totals.items()}
    objective = "+".join(names)
    scores[objective] = sum(scores[name] for name in names)
    best = best_index(scores[objective])
    return ThresholdCurve(
        thresholds=thresholds,
        scores=scores,
        objective=objective,
        best_threshold=float(thresholds[best]),
        best_score=float(scores[objective][best]),
    )
