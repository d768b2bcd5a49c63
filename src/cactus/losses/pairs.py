"""Pieces shared by the subset losses: similarities, pair masks, and the reduction of per-subset losses.

Every loss takes a batch of padded subsets: (B, N, D) L2-normalised embeddings, (B, N) cluster ids and a (B, N) bool
mask of real entities, and returns a `LossOutput`. Pairs are ordered: (i, j) and (j, i) are two terms, as in the
authors' code, which sums over the whole (N, N) matrix. Triplets (a, p, n) are ordered by nature (the anchor matters),
so ordered pairs weigh a pair term like a triplet term, and every count below counts what its sum sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossOutput:
    """What a subset loss returns.

    Attributes:
        loss: scalar, the mean of `per_subset` over the subsets that were not skipped. When every subset is skipped
            it is a zero still connected to the graph (of the embeddings and the loss's own parameters), so backward
            and DDP's gradient hooks run as usual.
        per_subset: (B,) the loss of each subset, in the graph (e.g. for a trainer's own weighting); NaN for skipped
            subsets, so that they cannot pass for a perfect 0 (use nansum / nanmean; the NaNs get no gradient).
        n_skipped: how many subsets had no term at all (e.g. a single entity) and were left out of the mean.
    """

    loss: torch.Tensor
    per_subset: torch.Tensor
    n_skipped: int


def similarities(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, D) embeddings, (B, N) mask -> (B, N, N) dot products; padded rows and columns are 0.

    Padded embeddings are zeroed first, not only masked afterwards: garbage there (even NaN or inf) would otherwise
    leak into the gradients of real entities through the matrix product's backward (0 * NaN = NaN).
    """
    x = embeddings.masked_fill(~mask[..., None], 0.0)
    return x @ x.transpose(1, 2)


def pair_masks(labels: torch.Tensor, mask: torch.Tensor, self_pairs: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) cluster ids and mask -> (positive, negative) (B, N, N) bool masks of ordered pairs of real entities.

    positive: same cluster, i != j (or also i == j if `self_pairs`, as y_ii = 1 in the authors' code);
    negative: different clusters (so i != j).
    """
    real = mask[:, :, None] & mask[:, None, :]
    same = labels[:, :, None] == labels[:, None, :]
    positive = real & same
    if not self_pairs:
        positive &= ~torch.eye(labels.shape[1], dtype=torch.bool, device=labels.device)
    return positive, real & ~same


def triplet_terms(
    sim: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of max(0, margin - s_ap + s_an) over every triplet (a, p, n) of each subset.

    Args:
        sim: (B, N, N) similarities.
        positive, negative: (B, N, N) pair masks from `pair_masks`; a triplet is positive[a, p] & negative[a, n].
    Returns:
        (B,) sums and (B,) counts (float). Built on the full (B, N, N, N) cube: cheap for N up to ~100.
    """
    triplets = positive[:, :, :, None] & negative[:, :, None, :]  # (B, a, p, n)
    hinge = torch.relu(margin - sim[:, :, :, None] + sim[:, :, None, :])
    return (hinge * triplets).sum((1, 2, 3)), triplets.sum((1, 2, 3)).to(sim.dtype)


def reduce_subsets(values: torch.Tensor, kept: torch.Tensor) -> LossOutput:
    """(B,) per-subset losses and (B,) bool kept -> LossOutput with the mean over the kept subsets.

    `values` must be finite and built from the embeddings even where not kept: the mean then stays connected to
    the graph when nothing is kept (it is 0 * values).
    """
    n_kept = kept.sum()
    loss = torch.where(kept, values, 0.0).sum() / n_kept.clamp(min=1)
    per_subset = torch.where(kept, values, torch.nan)
    return LossOutput(loss=loss, per_subset=per_subset, n_skipped=int(kept.numel() - n_kept))
