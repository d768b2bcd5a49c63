"""Losses over batches of subsets: the CACTUS augmented triplet loss and the losses it is compared with.

All share one call: loss(embeddings (B, N, D) L2-normalised, labels (B, N) cluster ids, mask (B, N) bool real
entities) -> LossOutput(loss, per_subset, n_skipped). Similarities are dot products (cosine); padded entities,
whatever their embeddings and labels, change nothing.
"""

from cactus.losses.augmented_triplet import AugmentedTripletLoss
from cactus.losses.pairs import LossOutput
from cactus.losses.pairwise_bce import PairwiseBCELoss
from cactus.losses.structured_mst import StructuredMSTLoss, max_spanning_forest
from cactus.losses.triplet import TripletLoss

__all__ = [
    "AugmentedTripletLoss",
    "LossOutput",
    "PairwiseBCELoss",
    "StructuredMSTLoss",
    "TripletLoss",
    "max_spanning_forest",
]
