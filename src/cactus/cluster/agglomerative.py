"""Average-link agglomerative clustering of one subset from its similarity matrix.

Threshold convention (defined here once, used everywhere): two clusters A and B merge while their average
similarity mean_{i in A, j in B} s_ij is at least the threshold t, i.e. merge iff average similarity >= t. In scipy's
terms the linkage runs on distance 1 - s and keeps every merge whose height is <= 1 - t (`merges_at`). Average
linkage is monotone, so cutting the tree this way equals merging greedily while the closest pair is >= t.

Order independence. Scipy's merge order, and the rounding of its averaged distances, depend on the order of the
entities, which matters whenever two merges tie. So the input is first made canonical:
  1. similarities are symmetrised, clipped to [-1, 1] and rounded to `SIMILARITY_DECIMALS` decimals, which absorbs
     the ~1e-7 noise of an encoder run on the entities in another order (and makes duplicate texts exact ties);
  2. the linkage runs on the entities sorted by a permutation-invariant key: colour refinement of the rounded
     matrix (start from each row's sorted values, then repeatedly refine by the multiset of (neighbour colour,
     similarity) pairs); entities still tied are structurally equivalent and keep their input order.
The partition of permuted input is then the permuted partition whenever entities left tied are interchangeable in
the result, e.g. duplicates, or any points that merge at a distinct height. Only a genuinely symmetric tie has no
order-free answer (four points on a square, each close to its two neighbours: pairing them either way is equally
valid), and there the input order decides.

Cluster ids are canonical: 0, 1, 2, ... in the order of each cluster's first entity in the input.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import linkage as scipy_linkage

SIMILARITY_DECIMALS = 6  # similarities are rounded to this many decimals before clustering
_SCALE = 10**SIMILARITY_DECIMALS


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
        linkage: (n - 1, 4) scipy linkage matrix in input order: row m merges nodes linkage[m, 0] and linkage[m, 1]
            (ids < n are entities by input index, id n + m is the cluster formed by row m) at height
            linkage[m, 2] = 1 - their average similarity, giving linkage[m, 3] entities. Heights are non-decreasing.
    """

    def __init__(self, similarity: np.ndarray):
        q = _quantise(similarity)
        n = self.n_entities = len(q)
        if n == 1:
            self.linkage = np.empty((0, 4))
            return
        order = _canonical_order(q)
        distance = 1.0 - q[np.ix_(order, order)][np.triu_indices(n, 1)] / _SCALE
        z = scipy_linkage(distance, method="average")
        nodes = z[:, :2].astype(np.int64)
        z[:, :2] = np.where(nodes < n, order[np.minimum(nodes, n - 1)], nodes)  # canonical leaf -> input index
        self.linkage = z

    @property
    def heights(self) -> np.ndarray:
        """(n - 1,) merge heights, 1 - average similarity, non-decreasing."""
        return self.linkage[:, 2]

    def merges_at(self, thresholds: float | np.ndarray) -> np.ndarray:
        """Number of merges made at each threshold: those with height <= 1 - t. Shape of `thresholds`, int64."""
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if np.isnan(thresholds).any():
            raise ValueError("threshold is NaN")
        return np.searchsorted(self.heights, 1.0 - thresholds, side="right")

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
        """(n,) canonical cluster ids at `threshold` (merge iff average similarity >= threshold)."""
        return self.cut(int(self.merges_at(threshold)))

    def distinct_partitions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every distinct partition along the tree, from all singletons to the last merge.

        Returns:
            heights: (P,) partition p is the one at every threshold t with heights[p] <= 1 - t < heights[p + 1]
                (heights[0] = -inf for all singletons; past the last entry, 1 - t is unbounded).
            labels: (P, n) canonical cluster ids of each partition.
        """
        levels = np.unique(self.heights)
        n_merges = np.searchsorted(self.heights, levels, side="right")
        labels = [self.cut(0)] + [self.cut(int(k)) for k in n_merges]
        return np.concatenate([[-np.inf], levels]), np.stack(labels)


def agglomerative_cluster(similarity: np.ndarray, threshold: float) -> np.ndarray:
    """Average-link clustering of one subset: clusters merge iff their average similarity >= `threshold`.

    Args:
        similarity: (n, n) similarity matrix (see `Dendrogram`).
        threshold: similarity threshold t.

    Returns:
        (n,) int64 cluster ids 0, 1, 2, ... in order of each cluster's first entity.
    """
    return Dendrogram(similarity).partition(threshold)
