"""Agreement between a predicted and a true partition of one subset, and its summary over many subsets.

Metrics (all natural-log based, all equal to 1.0 for a perfect prediction):

- ``ami``: adjusted mutual information, (MI - E[MI]) / (mean(H_true, H_pred) - E[MI]), with the expectation taken over
  random labellings with the same cluster sizes (hypergeometric model; arithmetic-mean normalisation, as in
  scikit-learn's default).
- ``ari``: adjusted Rand index (pair counting, corrected for chance).
- ``nmi``: normalised mutual information, MI / mean(H_true, H_pred).
- ``ri``: Rand index, the fraction of entity pairs on which both partitions agree (same cluster or not).
- ``precision``: purity, (1/n) * sum over predicted clusters of its largest overlap with any true cluster.
- ``recall``: inverse purity, (1/n) * sum over true clusters of its largest overlap with any predicted cluster.
- ``f1``: harmonic mean of precision and recall.
- ``pair_precision``, ``pair_recall``, ``pair_f1``: over unordered entity pairs, the share of pairs put together that
  belong together, and of pairs that belong together that were put together (1.0 when there is no such pair).
- ``bcubed_precision``, ``bcubed_recall``, ``bcubed_f1``: the mean over entities of the share of its predicted
  cluster in its true class, and of its true class in its predicted cluster (B-cubed, Bagga and Baldwin 1998).

Degenerate subsets. Identical partitions score 1.0 on every metric by definition, including a single entity, one
cluster against one cluster, and all-singletons against all-singletons. In the last case AMI is 0/0 (MI = E[MI] = H):
scikit-learn divides two rounding errors clamped to +-eps, which gives 1.0 in version 1.9 but is not a definition to
rely on. In every other case the values follow scikit-learn (`adjusted_mutual_info_score`, `adjusted_rand_score`,
`normalized_mutual_info_score`, `rand_score`); in particular a single cluster on one side only gives
AMI = NMI = ARI = 0 (and RI = 0 when the other side is all singletons).

Fast path. Every metric is a function of a few sums over the contingency table (`ContingencySums`), and the expected
mutual information of a partition is a sum over its clusters of a per-size term that depends only on the true labels
(`expected_mutual_info_table`). So the metrics of many predicted partitions of the same subset, for example every
partition along a dendrogram, cost one table plus a few vectorised numpy operations.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("ami", "ari", "nmi", "ri", "precision", "recall", "f1", "pair_precision", "pair_recall", "pair_f1",
           "bcubed_precision", "bcubed_recall", "bcubed_f1")
# Where each metric can lie: the chance-adjusted ones go below 0; confidence intervals are clipped to these.
RANGES = {name: (-1.0, 1.0) if name in ("ami", "ari") else (0.0, 1.0) for name in METRICS}

_EPS = np.finfo(np.float64).eps


def encode_labels(labels: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Map any hashable labels to codes 0, 1, 2, ... in order of first appearance, (n,) int64."""
    if isinstance(labels, np.ndarray) and labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)


def expected_mutual_info_table(class_sizes: np.ndarray) -> np.ndarray:
    """Expected mutual information contributed by one predicted cluster, for every cluster size.

    Under the permutation model the overlap n_ij of true class i (size a_i) and predicted cluster j (size b) is
    hypergeometric, so E[MI] = sum_j E_table[b_j] with
    E_table[b] = sum_i sum_k P(n_ij = k) * (k / n) * log(n * k / (a_i * b)).

    Args:
        class_sizes: (K,) positive sizes of the true classes; n = their sum.

    Returns:
        (n + 1,) E_table[b] for b = 0..n, in nats (E_table[0] = 0).
    """
    sizes, multiplicity = np.unique(np.asarray(class_sizes, dtype=np.int64), return_counts=True)
    n = int((sizes * multiplicity).sum())
    log_fact = np.array([math.lgamma(k + 1) for k in range(n + 1)])
    a = sizes[:, None, None]  # (U, 1, 1) distinct class sizes
    b = np.arange(1, n + 1)[None, :, None]  # (1, n, 1) cluster sizes
    k = np.arange(1, sizes.max() + 1)[None, None, :]  # (1, 1, M) overlaps
    valid = (k <= np.minimum(a, b)) & (k >= a + b - n)

    def lf(x: np.ndarray) -> np.ndarray:  # log x!, with invalid (negative) entries masked later
        return log_fact[np.clip(x, 0, n)]

    log_p = lf(a) + lf(b) + lf(n - a) + lf(n - b) - lf(n) - lf(k) - lf(a - k) - lf(b - k) - lf(n - a - b + k)
    terms = (k / n) * (np.log(n * k) - np.log(a) - np.log(b)) * np.exp(np.where(valid, log_p, -np.inf))
    table = np.zeros(n + 1)
    table[1:] = multiplicity @ terms.sum(axis=2)
    return table


@dataclass
class ContingencySums:
    """Sufficient statistics of P contingency tables (K true classes x J predicted clusters) of one subset.

    Every field is (P,) float64; n_ij are the cells, b_j the predicted cluster sizes.

    Attributes:
        n_clusters: number of non-empty predicted clusters.
        b_log_b: sum_j b_j log b_j.
        nij_log_nij: sum_ij n_ij log n_ij.
        b_sq: sum_j b_j^2.
        nij_sq: sum_ij n_ij^2.
        emi: expected mutual information, sum_j E_table[b_j].
        purity: sum_j max_i n_ij (precision numerator).
        inverse_purity: sum_i max_j n_ij (recall numerator).
        bcubed_precision: sum_j sum_i n_ij^2 / b_j (B-cubed precision numerator).
        bcubed_recall: sum_ij n_ij^2 / a_i, a_i the true class sizes (B-cubed recall numerator).
    """

    n_clusters: np.ndarray
    b_log_b: np.ndarray
    nij_log_nij: np.ndarray
    b_sq: np.ndarray
    nij_sq: np.ndarray
    emi: np.ndarray
    purity: np.ndarray
    inverse_purity: np.ndarray
    bcubed_precision: np.ndarray
    bcubed_recall: np.ndarray


def _xlogx(x: np.ndarray) -> np.ndarray:
    return x * np.log(np.maximum(x, 1))  # 0 log 0 = 0; counts are integers, so log(max(x, 1)) is exact where x > 0


def contingency_sums(tables: np.ndarray, emi_table: np.ndarray | None = None,
                     class_sizes: np.ndarray | None = None) -> ContingencySums:
    """`ContingencySums` of a batch of contingency tables over the same true classes.

    Args:
        tables: (P, K, J) non-negative counts. Empty predicted clusters (all-zero columns) are allowed, so tables
            with different numbers of clusters can be padded.
        emi_table: `expected_mutual_info_table` of the true class sizes; by default that of the first table's row
            sums (pass it when the tables are parts of partitions, e.g. one cluster each).
        class_sizes: (K,) the true class sizes; by default the first table's row sums (pass them with `emi_table`).
    """
    tables = np.asarray(tables, dtype=np.float64)
    b = tables.sum(axis=1)  # (P, J)
    a = tables[0].sum(axis=1) if class_sizes is None else np.asarray(class_sizes, dtype=np.float64)
    if emi_table is None:
        emi_table = expected_mutual_info_table(a)
    squares = tables**2
    return ContingencySums(
        n_clusters=(b > 0).sum(axis=1).astype(np.float64),
        b_log_b=_xlogx(b).sum(axis=1),
        nij_log_nij=_xlogx(tables).sum(axis=(1, 2)),
        b_sq=(b**2).sum(axis=1),
        nij_sq=squares.sum(axis=(1, 2)),
        emi=emi_table[b.astype(np.int64)].sum(axis=1),
        purity=tables.max(axis=1).sum(axis=1),
        inverse_purity=tables.max(axis=2).sum(axis=1),
        bcubed_precision=(squares.sum(axis=1) / np.maximum(b, 1)).sum(axis=1),
        bcubed_recall=(squares / np.maximum(a, 1)[None, :, None]).sum(axis=(1, 2)),
    )


def metrics_from_sums(class_sizes: np.ndarray, sums: ContingencySums) -> dict[str, np.ndarray]:
    """All `METRICS` of P predicted partitions of one subset.

    Args:
        class_sizes: (K,) positive sizes of the true classes.
        sums: statistics of the P contingency tables.

    Returns:
        metric name -> (P,) scores.
    """
    a = np.asarray(class_sizes, dtype=np.float64)
    n = a.sum()
    log_n, a_log_a = math.log(n), _xlogx(a).sum()
    h_true = log_n - a_log_a / n
    h_pred = log_n - sums.b_log_b / n
    one_side_trivial = (len(a) == 1) | (sums.n_clusters == 1)
    identical = (sums.purity == n) & (sums.inverse_purity == n)  # every cluster pure and every class whole

    mi = log_n + (sums.nij_log_nij - a_log_a - sums.b_log_b) / n
    mi = np.where(one_side_trivial, 0.0, np.maximum(mi, 0.0))
    normaliser = (h_true + h_pred) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        nmi = np.where(mi == 0, 0.0, mi / normaliser)

    # As scikit-learn: keep numerator and denominator at least one eps away from zero, preserving their sign.
    def away_from_zero(x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, np.minimum(x, -_EPS), np.maximum(x, _EPS))

    ami = np.where(one_side_trivial, 0.0, away_from_zero(mi - sums.emi) / away_from_zero(normaliser - sums.emi))

    # Pair counts over ordered pairs i != j, as scikit-learn's pair_confusion_matrix.
    same_both = sums.nij_sq - n
    same_pred_only = sums.b_sq - sums.nij_sq
    same_true_only = (a**2).sum() - sums.nij_sq
    different_both = n**2 - same_pred_only - same_true_only - sums.nij_sq
    with np.errstate(divide="ignore", invalid="ignore"):
        ari = (
            2.0
            * (same_both * different_both - same_true_only * same_pred_only)
            / (
                (same_both + same_true_only) * (same_true_only + different_both)
                + (same_both + same_pred_only) * (same_pred_only + different_both)
            )
        )
        ri = (same_both + different_both) / (n**2 - n)

    precision = sums.purity / n
    recall = sums.inverse_purity / n
    scores = {
        "ami": ami,
        "ari": ari,
        "nmi": nmi,
        "ri": ri,
        "precision": precision,
        "recall": recall,
        "f1": _harmonic(precision, recall),
        **_pairs_and_bcubed(a, sums),
    }
    return {name: np.where(identical, 1.0, value) for name, value in scores.items()}


def _pairs_and_bcubed(class_sizes: np.ndarray, sums: ContingencySums) -> dict[str, np.ndarray]:
    """Pairwise and B-cubed precision / recall / F1 (see the module docstring), each (P,)."""
    a = class_sizes
    n = a.sum()
    # Unordered pairs: together in both / together in the prediction / together in the truth (each x 2).
    together, pred_pairs, true_pairs = sums.nij_sq - n, sums.b_sq - n, (a**2).sum() - n
    with np.errstate(divide="ignore", invalid="ignore"):
        pair_precision = np.where(pred_pairs > 0, together / pred_pairs, 1.0)
        pair_recall = np.where(true_pairs > 0, together / true_pairs, 1.0)
    bcubed_precision, bcubed_recall = sums.bcubed_precision / n, sums.bcubed_recall / n
    return {
        "pair_precision": pair_precision,
        "pair_recall": pair_recall,
        "pair_f1": _harmonic(pair_precision, pair_recall),
        "bcubed_precision": bcubed_precision,
        "bcubed_recall": bcubed_recall,
        "bcubed_f1": _harmonic(bcubed_precision, bcubed_recall),
    }


def _harmonic(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Harmonic mean, 0 where both are 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p + r > 0, 2 * p * r / (p + r), 0.0)


def contingency_metrics(tables: np.ndarray) -> dict[str, np.ndarray]:
    """All `METRICS` for a batch of contingency tables of the same true labels.

    Args:
        tables: (P, K, J) or (K, J) counts, rows = true classes, columns = predicted clusters (zero columns allowed).

    Returns:
        metric name -> (P,) scores, or floats for a single (K, J) table.
    """
    tables = np.asarray(tables)
    single = tables.ndim == 2
    tables = tables[None] if single else tables
    class_sizes = tables[0].sum(axis=1)
    if not (tables.sum(axis=2) == class_sizes).all():
        raise ValueError("all tables must have the same row sums (the same true labels)")
    present = class_sizes > 0  # empty true classes carry no information
    scores = metrics_from_sums(class_sizes[present], contingency_sums(tables[:, present]))
    return {name: float(value[0]) for name, value in scores.items()} if single else scores


def partition_metrics(
    labels_true: Sequence[Hashable] | np.ndarray, labels_pred: Sequence[Hashable] | np.ndarray
) -> dict[str, float]:
    """All `METRICS` comparing a predicted partition of one subset with the true one.

    Args:
        labels_true: (n,) true cluster of each entity, any hashable labels; n >= 1.
        labels_pred: (n,) predicted cluster of each entity.

    Returns:
        metric name -> score.
    """
    true, pred = encode_labels(labels_true), encode_labels(labels_pred)
    if len(true) != len(pred):
        raise ValueError(f"labels_true has {len(true)} entities, labels_pred {len(pred)}")
    if len(true) == 0:
        raise ValueError("cannot score an empty subset")
    n_true, n_pred = true.max() + 1, pred.max() + 1
    table = np.bincount(true * n_pred + pred, minlength=n_true * n_pred).reshape(n_true, n_pred)
    return contingency_metrics(table)


def summarize(per_subset: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean over subsets and its 95% confidence interval, for every metric.

    The interval is the normal approximation mean +- 1.96 * sd / sqrt(k) over the k subsets, sd with ddof=1, clipped
    to the metric's range (`RANGES`; a metric not listed is not clipped); with k = 1 it has zero width.

    Args:
        per_subset: one dict metric -> score per subset (as `partition_metrics` returns), all with the same keys.

    Returns:
        metric -> {"mean", "ci_low", "ci_high", "count"}.
    """
    if not per_subset:
        raise ValueError("nothing to summarize: no subsets")
    names = list(per_subset[0])
    if any(set(scores) != set(names) for scores in per_subset):
        raise ValueError(f"every subset must have the same metrics, expected {names}")
    summary = {}
    for name in names:
        values = np.array([scores[name] for scores in per_subset], dtype=np.float64)
        k = len(values)
        mean = float(values.mean())
        half_width = 1.96 * float(values.std(ddof=1)) / math.sqrt(k) if k > 1 else 0.0
        low, high = RANGES.get(name, (-math.inf, math.inf))
        summary[name] = {"mean": mean, "ci_low": max(mean - half_width, low), "ci_high": min(mean + half_width, high),
                         "count": k}
    return summary
