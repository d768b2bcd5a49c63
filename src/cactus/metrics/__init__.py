"""Per-subset clustering metrics (AMI, ARI, NMI, RI, best-match, pairwise and
B-cubed precision / recall / F1) and their summaries."""

from cactus.metrics.partition import (
    METRICS,
    ContingencySums,
    contingency_metrics,
    contingency_sums,
    encode_labels,
    expected_mutual_info_table,
    metrics_from_sums,
    partition_metrics,
    summarize,
)

__all__ = [
    "METRICS",
    "ContingencySums",
    "contingency_metrics",
    "contingency_sums",
    "encode_labels",
    "expected_mutual_info_table",
    "metrics_from_sums",
    "partition_metrics",
    "summarize",
]
