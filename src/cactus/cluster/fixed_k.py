"""Clustering into a given number of clusters k by spectral clustering, and choosing k by silhouette.

These are the unsupervised baselines: no threshold and no labels. `silhouette_cluster` tries k = 2 .. k_max with
k-means (`cactus.cluster.kmeans`) or spectral clustering and keeps the partition with the best silhouette score on
cosine distance 1 - s. Cluster ids are canonical, as everywhere in `cactus.cluster`: 0, 1, 2, ... in the order of
each cluster's first entity.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from sklearn.cluster import SpectralClustering
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score

from cactus.cluster.agglomerative import _first_appearance_ids
from cactus.cluster.kmeans import kmeans_cluster

_IDENTICAL = 1e-9  # entities whose cosine distances are all at most this count as identical


def spectral_cluster(similarity: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Spectral clustering of one subset into `n_clusters`.

    Args:
        similarity: (n, n) cosine similarities; symmetrised and clipped to [-1, 1], then shifted to the non-negative
            affinity (s + 1) / 2 (diagonal 1) for scikit-learn's `SpectralClustering(affinity="precomputed")`.
        n_clusters: k, in [1, n]; k = 1 puts every entity in one cluster.
        seed: seeds the eigensolver and the k-means step that assigns the labels.

    Returns:
        (n,) int64 cluster ids 0, 1, 2, ... in order of each cluster's first entity (fewer than k when entities
        coincide).
    """
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"similarity must be a non-empty square matrix, got shape {s.shape}")
    n = len(s)
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}], got {n_clusters}")
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64)
    affinity = (np.clip((s + s.T) / 2, -1.0, 1.0) + 1.0) / 2
    np.fill_diagonal(affinity, 1.0)
    with warnings.catch_warnings():  # coinciding entities: k-means finds fewer distinct points than k
        warnings.simplefilter("ignore", ConvergenceWarning)
        raw = SpectralClustering(n_clusters=n_clusters, affinity="precomputed", random_state=seed).fit_predict(affinity)
    return _first_appearance_ids(raw)


def silhouette_cluster(
    embeddings: np.ndarray,
    method: Literal["kmeans", "spectral"] = "kmeans",
    k_max: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Cluster one subset with the number of clusters chosen by silhouette on cosine distance.

    Tries k = 2 .. min(n - 1, k_max) (the silhouette is defined for 2 <= k <= n - 1) and keeps the partition with the
    highest mean silhouette on the distance 1 - cosine similarity; of equal scores the smallest k wins. A partition
    with fewer than 2 or with n distinct clusters (possible when entities coincide) is skipped. With no k left (n <= 2,
    or every entity identical) every entity goes into one cluster.

    Args:
        embeddings: (n, D) entity embeddings; L2-normalised here, so k-means and the similarities are cosine-based.
        method: "kmeans" (`kmeans_cluster` on the unit embeddings) or "spectral" (`spectral_cluster` on their
            (n, n) cosine similarities).
        k_max: largest k tried; None tries up to n - 1.
        seed: passed to every clustering, so the result is deterministic.

    Returns:
        (n,) int64 cluster ids 0, 1, 2, ... in order of each cluster's first entity.
    """
    if method not in ("kmeans", "spectral"):
        raise ValueError(f"method must be 'kmeans' or 'spectral', got {method!r}")
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or len(e) == 0:
        raise ValueError(f"embeddings must be a non-empty (n, D) array, got shape {e.shape}")
    n = len(e)
    if k_max is not None and k_max < 1:
        raise ValueError(f"k_max must be at least 1, got {k_max}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.where(norms > 0, norms, 1.0)
    similarity = np.clip(e @ e.T, -1.0, 1.0)
    distance = 1.0 - similarity
    np.fill_diagonal(distance, 0.0)

    best, best_score = np.zeros(n, dtype=np.int64), -np.inf
    if distance.max() <= _IDENTICAL:  # every entity identical: any split of them would score 0, keep one cluster
        return best
    for k in range(2, min(n - 1, n - 1 if k_max is None else k_max) + 1):
        with warnings.catch_warnings():  # coinciding entities: fewer distinct points than k
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = kmeans_cluster(e, k, seed) if method == "kmeans" else spectral_cluster(similarity, k, seed)
        if not 2 <= len(np.unique(labels)) <= n - 1:
            continue
        score = silhouette_score(distance, labels, metric="precomputed")
        if score > best_score + 1e-12:  # float noise does not make a larger k win a tie
            best, best_score = labels, score
    return best
