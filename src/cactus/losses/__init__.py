"""Losses over batches of subsets: the CACTUS augmented triplet loss and the losses it is compared with.

All share one call: loss(embeddings (B, N, D) L2-normalised, labels (B, N) cluster ids, mask (B, N) bool real
entities) -> LossOutput(loss, per_subset, n_skipped). Similarities are dot products (cosine); padded entities,
whatever their embeddings and labels, change nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cactus.lazy import lazy_exports

if TYPE_CHECKING:
    from torch import nn

# Each loss module's names, imported on first use (`cactus.lazy`): LOSSES alone needs no torch.
EXPORTS = {
    "AugmentedTripletLoss": ".augmented_triplet",
    "LossOutput": ".pairs",
    "PairwiseBCELoss": ".pairwise_bce",
    "StructuredMSTLoss": ".structured_mst",
    "max_spanning_forest": ".structured_mst",
    "TripletLoss": ".triplet",
}
__getattr__ = lazy_exports(__name__, EXPORTS)

# The one list of training losses: name -> what it is, in the words users read.
LOSSES = {
    "augmented_triplet": "the method's: triplets plus a learnable neutral similarity s0 to every entity",
    "triplet": "triplets of an anchor, a same-cluster and an other-cluster entity, with a margin",
    "pairwise_bce": "binary cross-entropy of every pair's (similarity + 1) / 2 against same-cluster",
    "structured_mst": "max-margin over spanning forests of the similarity graph",
}


def make_loss(name: str, margin: float = 0.3, init_neutral: float = 0.0) -> nn.Module:
    """The loss module called `name` (one of `LOSSES`); `margin` serves the triplet losses, `init_neutral` (s0's
    start) the augmented one."""
    from cactus.losses.augmented_triplet import AugmentedTripletLoss
    from cactus.losses.pairwise_bce import PairwiseBCELoss
    from cactus.losses.structured_mst import StructuredMSTLoss
    from cactus.losses.triplet import TripletLoss

    if name == "augmented_triplet":
        return AugmentedTripletLoss(margin=margin, init_neutral=init_neutral)
    if name == "triplet":
        return TripletLoss(margin=margin)
    if name == "pairwise_bce":
        return PairwiseBCELoss()
    if name == "structured_mst":
        return StructuredMSTLoss()
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}")


__all__ = ["LOSSES", "make_loss", *EXPORTS]
