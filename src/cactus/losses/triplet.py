"""Plain triplet loss over every triplet of a subset (the first sum of the augmented triplet loss)."""

from __future__ import annotations

import torch
from torch import nn

from cactus.losses.pairs import LossOutput, pair_masks, reduce_subsets, similarities, triplet_terms


class TripletLoss(nn.Module):
    """L_subset = sum_T max(0, m - s_ap + s_an) / |T| over all triplets T = {(a, p, n): y_ap = 1, y_an = 0}.

    No sampling: every triplet of real entities counts. A subset without triplets (one cluster, or only singletons)
    is skipped.

    Args:
        margin: m, in cosine-similarity units.
        self_pairs: count a == p (s_aa = 1; default), as METHOD.md and the authors' code do; then a subset of
            singletons has triplets (a, a, n) that push every s_an below 1 - m. False requires a != p.
    """

    def __init__(self, margin: float = 0.3, self_pairs: bool = True) -> None:
        super().__init__()
        self.margin = margin
        self.self_pairs = self_pairs

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> LossOutput:
        """(B, N, D) L2-normalised embeddings, (B, N) cluster ids, (B, N) bool real entities -> LossOutput."""
        sim = similarities(embeddings, mask)
        positive, negative = pair_masks(labels, mask, self.self_pairs)
        total, count = triplet_terms(sim, positive, negative, self.margin)
        return reduce_subsets(total / count.clamp(min=1), count > 0)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, self_pairs={self.self_pairs}"
