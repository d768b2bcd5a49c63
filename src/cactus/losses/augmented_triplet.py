"""The CACTUS loss: triplet loss augmented with a learnable neutral similarity s0 (METHOD.md section 2)."""

from __future__ import annotations

import torch
from torch import nn

from cactus.losses.pairs import LossOutput, pair_masks, reduce_subsets, similarities, triplet_terms


class AugmentedTripletLoss(nn.Module):
    """Triplet loss plus, for every pair, a triplet with a shared "neutral" entity of similarity s0 to all others.

        L_subset = [ sum_T max(0, m - s_ap + s_an) + sum_P max(0, m/2 - s_ij + s0) + sum_N max(0, m/2 - s0 + s_ij) ]
                   / (|T| + |P| + |N|)

    T = triplets (a, p, n) with y_ap = 1, y_an = 0; P = ordered pairs (i, j) of one cluster; N = ordered pairs
    of different clusters. As METHOD.md states (y_ii = 1) and the authors' code does, a == p and i == j count by
    default (`self_pairs`). Ordered, as in the authors' code (sums over the full similarity matrix): each unordered
    pair gives two terms, and both are counted. Same-cluster pairs are pushed above s0 + m/2, others below s0 - m/2,
    so all subsets share one reference and one clustering threshold fits them all. A subset with one entity has no
    term and is skipped; one cluster of >= 2 entities still has P terms (the neutral edge gives it gradient).

    Args:
        margin: m.
        init_neutral: initial s0.
        self_pairs: count i == j in P and a == p in T (y_ii = 1; default), exactly as the authors' code; then even a
            single entity has a (zero-gradient unless s0 > 1 - m/2) term and is not skipped. False leaves them out.

    `neutral` (a scalar nn.Parameter) is the module's only parameter: give `loss.parameters()` (or `[loss.neutral]`)
    its own optimizer group, e.g. without weight decay.
    """

    def __init__(self, margin: float = 0.3, init_neutral: float = 0.0, self_pairs: bool = True) -> None:
        super().__init__()
        self.margin = margin
        self.self_pairs = self_pairs
        self.neutral = nn.Parameter(torch.tensor(float(init_neutral)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> LossOutput:
        """(B, N, D) L2-normalised embeddings, (B, N) cluster ids, (B, N) bool real entities -> LossOutput."""
        sim = similarities(embeddings, mask)
        positive, negative = pair_masks(labels, mask, self.self_pairs)
        total, count = triplet_terms(sim, positive, negative, self.margin)
        s0 = self.neutral.to(sim.dtype)
        total = total + (torch.relu(self.margin / 2 - sim + s0) * positive).sum((1, 2))
        total = total + (torch.relu(self.margin / 2 - s0 + sim) * negative).sum((1, 2))
        count = count + positive.sum((1, 2)) + negative.sum((1, 2))
        return reduce_subsets(total / count.clamp(min=1), count > 0)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, self_pairs={self.self_pairs}"
