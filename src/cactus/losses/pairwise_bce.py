"""Pairwise binary cross-entropy on similarities mapped to probabilities."""

from __future__ import annotations

import torch
from torch import nn

from cactus.losses.pairs import LossOutput, pair_masks, reduce_subsets, similarities


class PairwiseBCELoss(nn.Module):
    """Mean over ordered pairs i != j of BCE(p_ij, y_ij), with p_ij = clamp((s_ij + 1) / 2, eps, 1 - eps).

    Cosine similarity in [-1, 1] is read as the probability that i and j share a cluster. The clamp keeps the log
    finite (and, as in the authors' code, gives no gradient beyond it). A subset with < 2 entities is skipped.

    Args:
        eps: clamp of the probabilities (the authors' code uses 1e-5).
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> LossOutput:
        """(B, N, D) L2-normalised embeddings, (B, N) cluster ids, (B, N) bool real entities -> LossOutput."""
        sim = similarities(embeddings, mask)
        positive, negative = pair_masks(labels, mask)
        p = ((sim + 1) / 2).clamp(self.eps, 1 - self.eps)
        total = -(torch.log(p) * positive).sum((1, 2)) - (torch.log1p(-p) * negative).sum((1, 2))
        count = (positive.sum((1, 2)) + negative.sum((1, 2))).to(sim.dtype)
        return reduce_subsets(total / count.clamp(min=1), count > 0)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
