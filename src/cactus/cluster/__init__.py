"""Average-link agglomerative clustering at a similarity threshold, choosing that threshold, and k-means."""

from cactus.cluster.agglomerative import SIMILARITY_DECIMALS, Dendrogram, agglomerative_cluster
from cactus.cluster.kmeans import kmeans_cluster
from cactus.cluster.threshold import (
    DEFAULT_GRID,
    ThresholdCurve,
    best_index,
    parse_objective,
    subset_threshold_scores,
    tune_threshold,
)

__all__ = [
    "DEFAULT_GRID",
    "SIMILARITY_DECIMALS",
    "Dendrogram",
    "ThresholdCurve",
    "agglomerative_cluster",
    "kmeans_cluster",
    "best_index",
    "parse_objective",
    "subset_threshold_scores",
    "tune_threshold",
]
