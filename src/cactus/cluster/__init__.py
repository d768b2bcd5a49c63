"""Average-link agglomerative clustering at a similarity threshold, and choosing that threshold."""

from cactus.cluster.agglomerative import SIMILARITY_DECIMALS, Dendrogram, agglomerative_cluster
from cactus.cluster.threshold import (
    DEFAULT_GRID,
    ThresholdCurve,
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
    "parse_objective",
    "subset_threshold_scores",
    "tune_threshold",
]
