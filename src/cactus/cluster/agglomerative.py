"""Average-link agglomerative clustering of one subset from its similarity matrix.

Threshold convention (defined here once, used everywhere): two clusters A and B merge while their average
similarity mean_{i in A, j in B} s_ij is at least the threshold t, i.e. merge iff average similarity >= t
(`Dendrogram.merges_at`). The linkage is scipy's, on distance 1 - s; average linkage is monotone, so keeping every
merge whose average similarity is >= t equals merging greedily while the closest pair of clusters is >= t.
Averages are exact: the mean of rounded similarities (below) over |A| * |B| pairs is a multiple of
1 / (10**SIMILARITY_DECIMALS * |A| * |B|), so scipy's floating-point average is snapped to the nearest such multiple,
and clusters whose average similarity is exactly t do merge. (Snapping needs scipy's rounding error to stay below
half that step, which holds for subsets of up to about a thousand entities.)

Order independence. Scipy's merge order, and the rounding of its averaged distances, depend on the order of the
entities, which matters whenever two merges tie. So the input is first made canonical:
  1. similarities are symmetrised, clipped to [-1, 1] and rounded to `SIMILARITY_DECIMALS` decimals, which absorbs
     the ~1e-7 noise of an encoder run on the entities in another order (and makes duplicate texts exact ties);
  2. the linkage runs on the entities sorted by a permutation-invariant key: colour refinement of the rounded
     matrix (start from each row's sorted values, then repeatedly refine by the multiset of (neighbour colour,
     similarity) pairs); entities still tied are structurally equivalent and keep their input order.
When every entity ends with its own colour (the usual case, even with many tied values) scipy sees the same matrix in
the same order whatever the input order, so the partition of permuted input is exactly the permuted partition.
Entities left sharing a colour are structurally alike: duplicates (always clustered together) or symmetric
configurations such as equidistant points, which are order-free too. Only a symmetric tie whose resolution changes
the partition has no order-free answer (four points on a square, each closest to its two neighbours: pairing them
either way is equally valid); there the input order decides.

Cluster ids are canonical: 0, 1, 2, ... in the order of each cluster's first entity in the input.
"""

from __future__ import annotations

import numpy as np

SIMILARITY_DECIMALS = 6  # similarities are rounded to this many decimals before clustering
_SCALE = 10**SIMILARITY_DECIMALS


def check_threshold(threshold, name: str = "threshold") -> float:
    """`threshold` as a float, or ValueError naming `name`: a number in [-1, 1] (cosine similarities lie there; a
    threshold beyond them would leave every entity alone, or put all in one cluster)."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [-1, 1], got {threshold!r}") from None
    if not -1.0 <= t <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be a number in [-1, 1], got {threshold!r}")
    return t


def _quantise(similarity: np.ndarray) -> np.ndarray:
    """(n, n) similarities -> (n, n) int64 in units of 10**-SIMILARITY_DECIMALS; symmetric, diagonal ignored (= 1)."""
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"similarity must be a non-empty square matrix, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("similarity contains NaN or infinite values")
    q = np.rint(np.clip((s + s.T) / 2, -1.0, 1.0) * _SCALE).astype(np.int64)
    np.fill_diagonal(q, _SCALE)
    return q


def _canonical_order(q: np.ndarray) -> np.ndarray:
    """Permutation sorting entities by a permutation-invariant colour (colour refinement), ties in input order."""
    n = len(q)
    colour = np.zeros(n, dtype=np.int64)
    n_colours = 1
    while n_colours < n:
        # Signature of i: its colour, then its sorted (colour_j, q_ij) pairs, each packed into one int64.
        pairs = np.sort(colour[None, :] * (2 * _SCALE + 1) + (q + _SCALE), axis=1)
        signature = np.column_stack([colour, pairs])
        order = np.lexsort(signature.T[::-1])  # lexicographic order of the signatures
        new_colour = np.any(signature[order[1:]] != signature[order[:-1]], axis=1)
        colour[order] = np.concatenate([[0], np.cumsum(new_colour)])
        if colour.max() + 1 == n_colours:
            break
        n_colours = colour.max() + 1
    return np.argsort(colour, kind="stable")


def _first_appearance_ids(raw: np.ndarray) -> np.ndarray:
    """Relabel (n,) cluster ids as 0, 1, 2, ... in order of first appearance."""
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse.ravel()]


class Dendrogram:
    """Average-link merge tree of one subset: built once, cut at any threshold.

    Args:
        similarity: (n, n) similarities, e.g. cosine of entity embeddings; symmetrised, clipped to [-1, 1] and
            rounded (see the module docstring). The diagonal is ignored.

    Attributes:
        n_entities: n.
        rounded: (n, n) the similarities as clustered: symmetrised, clipped and rounded (diagonal 1).
        similarities: (n - 1,) average similarity of the two clusters joined by each merge, non-increasing.
        linkage: (n - 1, 4) scipy linkage matrix in input order: row m merges nodes linkage[m, 0] and linkage[m, 1]
            (ids < n are entities by input index, id n + m is the cluster formed by row m) at height
            linkage[m, 2] = 1 - similarities[m], giving linkage[m, 3] entities.
        derived: values other modules compute from the tree once and read again (the cut criteria of
            `cactus.cluster.cut`, when several rules cut the same subset), by their own keys.
    """

    def __init__(self, similarity: np.ndarray):
        q = _quantise(similarity)
        n = self.n_entities = len(q)
        self.rounded = q / _SCALE
        self.derived: dict = {}
        if n == 1:
            self.similarities, self.linkage = np.empty(0), np.empty((0, 4))
            return
        order = _canonical_order(q)
        distance = (_SCALE - q[np.ix_(order, order)][np.triu_indices(n, 1)]) / _SCALE
        from scipy.cluster.hierarchy import linkage  # here: scipy's import would slow the command line's start

        z = linkage(distance, method="average")
        nodes = z[:, :2].astype(np.int64)
        sizes = np.concatenate([np.ones(n), z[:, 3]])  # entities per tree node
        n_pairs = _SCALE * sizes[nodes[:, 0]] * sizes[nodes[:, 1]]
        exact = (n_pairs - np.rint(z[:, 2] * n_pairs)) / n_pairs  # sum of rounded similarities / number of pairs
        # Monotone in exact arithmetic; the running minimum only guards against scipy ordering near-equal merges.
        self.similarities = np.minimum.accumulate(exact)
        z[:, :2] = np.where(nodes < n, order[np.minimum(nodes, n - 1)], nodes)  # canonical leaf -> input index
        z[:, 2] = 1.0 - self.similarities
        self.linkage = z

    def merges_at(self, thresholds: float | np.ndarray) -> np.ndarray:
        """Number of merges made at each threshold: those with average similarity >= t. Shape of `thresholds`."""
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if np.isnan(thresholds).any():
            raise ValueError("threshold is NaN")
        return np.searchsorted(-self.similarities, -thresholds, side="right")

    def cut(self, n_merges: int) -> np.ndarray:
        """(n,) canonical cluster ids after the first `n_merges` merges."""
        n = self.n_entities
        parent = np.arange(2 * n - 1)
        children = self.linkage[:n_merges, :2].astype(np.int64)
        parent[children[:, 0]] = parent[children[:, 1]] = n + np.arange(n_merges)
        while True:  # pointer jumping: every node ends up pointing at its root
            grandparent = parent[parent]
            if np.array_equal(grandparent, parent):
                return _first_appearance_ids(parent[:n])
            parent = grandparent

    def partition(self, threshold: float) -> np.ndarray:
        """(n,) canonical cluster ids at `threshold`: clusters merge iff their average similarity >= threshold."""
        return self.cut(int(self.merges_at(threshold)))

    def distinct_partitions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every distinct partition along the tree, from all singletons to the last merge.

        Returns:
            levels: (P,) decreasing; partition p is the one at every threshold t with levels[p + 1] < t <= levels[p]
                (levels[0] = +inf for all singletons; the last partition holds for every t <= levels[-1]).
            labels: (P, n) canonical cluster ids of each partition.
        """
        levels = np.unique(self.similarities)[::-1]
        labels = [self.cut(0)] + [self.cut(int(k)) for k in self.merges_at(levels)]
        return np.concatenate([[np.inf], levels]), np.stack(labels)


def agglomerative_cluster(similarity: np.ndarray, threshold: float) -> np.ndarray:
    """Average-link clustering of one subset: clusters merge iff their average similarity >= `threshold`.

    Args:
        similarity: (n, n) similarity matrix (see `Dendrogram`).
        threshold: similarity threshold t.

    Returns:
        (n,) int64 cluster ids 0, 1, 2, ... in order of each cluster's first entity.
    """
    return Dendrogram(similarity).partition(threshold)
