"""k-means with a given number of clusters: a reference that is told the true number of clusters."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from cactus.cluster.agglomerative import _first_appearance_ids


def kmeans_cluster(embeddings: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """(n,) cluster ids of (n, D) unit `embeddings` split into `n_clusters` by k-means (10 restarts).

    Ids are 0, 1, 2, ... in order of each cluster's first entity.
    """
    n = len(embeddings)
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}], got {n_clusters}")
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64)
    return _first_appearance_ids(KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(embeddings))
