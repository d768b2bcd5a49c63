"""Average-link agglomerative clustering at a similarity threshold, choosing that threshold; k-means and spectral
clustering told the number of clusters, or choosing it by silhouette."""

from cactus.cluster.agglomerative import SIMILARITY_DECIMALS, Dendrogram, agglomerative_cluster, check_threshold
from cactus.cluster.fixed_k import silhouette_cluster, spectral_cluster
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
    "check_threshold",
    "kmeans_cluster",
    "silhouette_cluster",
    "spectral_cluster",
    "best_index",
    "parse_objective",
    "subset_threshold_scores",
    "tune_threshold",
]
