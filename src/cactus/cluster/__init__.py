"""Average-link agglomerative clustering at a similarity threshold, choosing that threshold; cutting each subset's
dendrogram adaptively instead, and choosing the cut; k-means and spectral clustering told the number of clusters, or
choosing it by silhouette; describing the predicted clusters (names, top terms, representatives, cohesion)."""

from cactus.lazy import lazy_exports

# Each name and the module that defines it, imported on first use (`cactus.lazy`).
EXPORTS = {
    "SIMILARITY_DECIMALS": ".agglomerative",
    "Dendrogram": ".agglomerative",
    "agglomerative_cluster": ".agglomerative",
    "check_threshold": ".agglomerative",
    "CRITERIA": ".cut",
    "CUTS": ".cut",
    "Cut": ".cut",
    "cut_cluster": ".cut",
    "CutChoice": ".cut_tuning",
    "tune_cut": ".cut_tuning",
    "ClusterDescription": ".describe",
    "SubsetDescription": ".describe",
    "cohesion": ".describe",
    "describe_subset": ".describe",
    "silhouette_cluster": ".fixed_k",
    "spectral_cluster": ".fixed_k",
    "kmeans_cluster": ".kmeans",
    "DEFAULT_GRID": ".threshold",
    "ThresholdCurve": ".threshold",
    "best_index": ".threshold",
    "parse_objective": ".threshold",
    "subset_threshold_scores": ".threshold",
    "tune_threshold": ".threshold",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
