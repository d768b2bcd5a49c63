"""Average-link agglomerative clustering at a similarity threshold, choosing that threshold; cutting each subset's
dendrogram adaptively instead, and choosing the cut; k-means and spectral clustering told the number of clusters, or
choosing it by silhouette; describing the predicted clusters (names, top terms, representatives, cohesion)."""

from cactus.cluster.agglomerative import SIMILARITY_DECIMALS, Dendrogram, agglomerative_cluster, check_threshold
from cactus.cluster.cut import CRITERIA, CUTS, Cut, cut_cluster
from cactus.cluster.cut_tuning import CutChoice, tune_cut
from cactus.cluster.describe import ClusterDescription, SubsetDescription, cohesion, describe_subset
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
    "ClusterDescription",
    "SubsetDescription",
    "cohesion",
    "describe_subset",
    "CRITERIA",
    "CUTS",
    "Cut",
    "CutChoice",
    "cut_cluster",
    "tune_cut",
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
