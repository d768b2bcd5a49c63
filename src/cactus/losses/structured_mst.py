"""Structured supervised clustering loss with maximum-spanning-forest inference (Barnabo et al., 2023).

Barnabo et al., "Supervised clustering loss for clustering-friendly sentence embeddings: an application to intent
clustering" (Amazon Science, 2023). The definition below is the one of the authors' reference code
(amazon-science/supervised-intent-clustering), which the CACTUS authors reuse for their comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from cactus.losses.pairs import LossOutput, pair_masks, reduce_subsets, similarities


@torch.no_grad()
def max_spanning_forest(weight: torch.Tensor, allowed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Maximum-weight spanning forest of each subset's graph (Prim's algorithm, batched over subsets).

    Args:
        weight: (B, N, N) symmetric edge weights.
        allowed: (B, N, N) symmetric bool, the edges that exist (no self-loops, none to padded entities).
        mask: (B, N) bool real entities.
    Returns:
        (B, N, N) bool symmetric adjacency of the forest: a maximum spanning tree of each connected component.
    Ties go to the lowest index; the forest's weight does not depend on them. The loop runs over entities, each
    step vectorised over subsets and candidate edges.
    """
    B, N, _ = weight.shape
    rows = torch.arange(B, device=weight.device)
    w = weight.masked_fill(~allowed, -torch.inf)
    best = torch.full((B, N), -torch.inf, dtype=weight.dtype, device=weight.device)  # best edge into the tree
    parent = torch.zeros((B, N), dtype=torch.long, device=weight.device)  # its other end
    todo = mask.clone()  # real entities not yet in the forest
    forest = torch.zeros((B, N, N), dtype=torch.bool, device=weight.device)
    for _ in range(N):
        top, j = best.masked_fill(~todo, -torch.inf).max(1)
        joins = top > -torch.inf  # j joins the current tree through the edge (parent[j], j) ...
        j = torch.where(joins, j, todo.int().argmax(1))  # ... else j starts a new tree (a no-op once todo is empty)
        forest[rows, parent[rows, j], j] |= joins
        todo[rows, j] = False
        edges = w[rows, j]  # (B, N) weights of the edges from j, the tree's newest node
        better = edges > best
        best = torch.where(better, edges, best)
        parent = torch.where(better, j[:, None], parent)
    return forest | forest.transpose(1, 2)


class StructuredMSTLoss(nn.Module):
    """Max-margin structured loss whose structures are spanning forests of the similarity graph.

    A clustering is represented by a spanning forest (its clusters are the trees), scored by the sum of similarities
    over its edges, score(W) = sum_{ij in W} s_ij. For a subset of n entities in k true clusters:
      - W_gt: the best forest consistent with the truth, a maximum spanning tree of each true cluster (n - k edges,
        same-cluster edges only, whatever their sign);
      - Delta(W) = (n - k) - #same-cluster edges of W + r * #cross-cluster edges of W, the structured error, 0 iff
        W's trees are exactly the true clusters;
      - W_pred: loss-augmented inference, argmax_W score(W) + c * Delta(W) over all forests, i.e. the
        maximum-weight spanning forest of S_aug = S + c * r * (1 - Y) - c * Y keeping only edges with S_aug > 0
        (an edge of negative weight would lower the objective: this is where the forest stops merging);
      - L_subset = max(0, score(W_pred) + c * Delta(W_pred) - score(W_gt)), and 0 when Delta(W_pred) = 0 (then
        W_pred is a spanning tree of every true cluster, so the difference is <= 0 up to rounding).
    Like the reference code, there is no normalisation by the subset size. The forests are found without gradient
    (Prim on the detached matrices); the scores are differentiable in S. A subset with < 2 entities is skipped.
    Defaults c = 0.15, r = 0.5 as in METHOD.md (the CACTUS authors' settings).

    Args:
        c: the margin scale C: weight of the structured error against the similarity score.
        r: relative cost of a wrong cross-cluster edge against a missing same-cluster edge.
    """

    def __init__(self, c: float = 0.15, r: float = 0.5) -> None:
        super().__init__()
        self.c = c
        self.r = r

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> LossOutput:
        """(B, N, D) L2-normalised embeddings, (B, N) cluster ids, (B, N) bool real entities -> LossOutput."""
        sim = similarities(embeddings, mask)
        positive, negative = pair_masks(labels, mask)
        augmented = sim.detach() + self.c * (self.r * negative.to(sim.dtype) - positive.to(sim.dtype))
        gold = max_spanning_forest(sim.detach(), positive, mask)
        pred = max_spanning_forest(augmented, (positive | negative) & (augmented > 0), mask)
        # Sums over the symmetric adjacency count each edge twice.
        n_gold = gold.sum((1, 2)) / 2
        delta = n_gold - (pred & positive).sum((1, 2)) / 2 + self.r * (pred & negative).sum((1, 2)) / 2
        margin = ((sim * pred).sum((1, 2)) - (sim * gold).sum((1, 2))) / 2 + self.c * delta
        values = torch.relu(margin) * (delta > 0)
        return reduce_subsets(values, mask.sum(1) >= 2)

    def extra_repr(self) -> str:
        return f"c={self.c}, r={self.r}"
