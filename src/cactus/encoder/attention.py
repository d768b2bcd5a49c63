"""Scalable inter-entity attention (SIA), plugged into any transformers backbone through `AttentionInterface`.

The backbone runs on the packed real tokens of a batch (`cactus.text.SubsetBatch`) as a (T, 1) input: every token a
row of its own, so the token-wise work (embeddings, projections, feed-forward) touches no padding. Only the attention
sees the entities: each run of equal-length entities is a dense (count, H, length, d) block, and a token of entity i
attends to

    [ the `length` keys of entity i | N summary keys, one per entity slot of i's subset ]

where the summary of entity j is the mean of j's keys (and values) in that layer; summaries of empty slots and of i
itself are masked out. The summaries of all entities of the batch are taken in the same call, before any block
attends, which keeps the layers in lockstep across runs. One softmax over the length + N keys per block, computed by
`scaled_dot_product_attention`: the cost is O(n L (L + n)) per subset of n entities of L tokens.

The function is registered under `SIA_ATTENTION`; `attention_implementation` switches a backbone to it for one call.
Relative-position backbones (T5) get their own-key bias from `EntityLayout.relative_bias` and
`EntityLayout.summary_bias` on the summary keys.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, PreTrainedConfig

SIA_ATTENTION = "cactus_sia"


@dataclass
class EntityLayout:
    """Where the E packed entities of a batch sit in their subsets; the same for every layer.

    Attributes:
        runs: ((length, count), ...) the batch's runs of equal-length entities (`SubsetBatch.runs`).
        slot_index: (E,) long, every packed entity's slot b * N + n in the flattened (B * N) slots.
        subset_index: (E,) long, every packed entity's subset b.
        summary_mask: (E, N) bool, True on the summaries an entity may attend: the other real entities of its subset.
        n_subsets, n_slots: B and N.
        relative_bias: (1, H, L, L) own-key score bias of the longest entity L (T5: the relative positions; any
            shorter entity takes its top-left block), or None.
        summary_bias: (H,) score bias added to every summary key (T5: the far relative-position bucket), or None.
    """

    runs: tuple[tuple[int, int], ...]
    slot_index: torch.Tensor
    subset_index: torch.Tensor
    summary_mask: torch.Tensor
    n_subsets: int
    n_slots: int
    relative_bias: torch.Tensor | None = None
    summary_bias: torch.Tensor | None = None

    @classmethod
    def of(cls, entity_slot: torch.Tensor, runs, entity_mask: torch.Tensor, relative_bias: torch.Tensor | None = None,
           summary_bias: torch.Tensor | None = None) -> "EntityLayout":
        """Layout of a packed batch from its `entity_slot`, `runs` and (B, N) `entity_mask`."""
        B, N = entity_mask.shape
        subset, slot = entity_slot // N, entity_slot % N
        others = entity_mask[subset].clone()  # (E, N): the real slots of each entity's subset ...
        others[torch.arange(len(slot), device=slot.device), slot] = False  # ... except its own
        return cls(tuple(runs), entity_slot, subset, others, B, N, relative_bias, summary_bias)


def sia_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    entity_layout: EntityLayout | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SIA for one layer, with the signature of a transformers attention function.

    query, key, value: (T, H, 1, d), the packed tokens as rows of one. `attention_mask` is None (the model builds no
    mask for an unregistered implementation). `position_bias` (T5) is the model's bias for its (T, 1) input and is not
    used: the layout carries the entities' own. Returns the attention output (T, 1, H, d) and no weights.
    """
    if entity_layout is None:
        raise ValueError(f"the {SIA_ATTENTION!r} attention needs an `entity_layout` keyword argument")
    if attention_mask is not None:
        raise ValueError(f"the {SIA_ATTENTION!r} attention takes its mask from `entity_layout`, not `attention_mask`")
    lay = entity_layout
    q, k, v = query[:, :, 0], key[:, :, 0], value[:, :, 0]  # (T, H, d)
    T, H, d = q.shape
    sizes = [length * count for length, count in lay.runs]

    def blocks(x: torch.Tensor) -> list[torch.Tensor]:
        """(T, H, d) -> one (count, length, H, d) view per run."""
        return [part.view(count, length, H, d) for part, (length, count) in zip(x.split(sizes), lay.runs)]

    def summaries(parts: list[torch.Tensor]) -> torch.Tensor:
        """(B, H, N, d): every entity's mean, in its subset's slot (empty slots zero, and masked out)."""
        means = torch.cat([p.mean(1) for p in parts])  # (E, H, d)
        table = means.new_zeros(lay.n_subsets * lay.n_slots, H, d).index_copy(0, lay.slot_index, means)
        return table.view(lay.n_subsets, lay.n_slots, H, d).transpose(1, 2)

    qs, ks, vs = blocks(q), blocks(k), blocks(v)
    key_table, value_table = summaries(ks), summaries(vs)
    outs, first = [], 0
    for (length, count), qb, kb, vb in zip(lay.runs, qs, ks, vs):
        subset = lay.subset_index[first: first + count]
        # built in the (count, H, keys, d) layout that attention reads, so no transposed copy follows
        keys = torch.cat([kb.transpose(1, 2), key_table[subset]], 2)  # (count, H, length + N, d)
        values = torch.cat([vb.transpose(1, 2), value_table[subset]], 2)
        mask = F.pad(lay.summary_mask[first: first + count], (length, 0), value=True)[:, None, None, :]
        if lay.relative_bias is not None:
            far = lay.relative_bias.new_zeros(1, H, length, lay.n_slots)
            if lay.summary_bias is not None:
                far = far + lay.summary_bias.to(far.dtype).view(1, H, 1, 1)
            bias = torch.cat([lay.relative_bias[:, :, :length, :length].to(far.dtype), far], -1)
            mask = torch.where(mask, bias, torch.finfo(bias.dtype).min)  # (count, H, length, length + N)
        out = F.scaled_dot_product_attention(qb.transpose(1, 2), keys, values, attn_mask=mask, dropout_p=dropout,
                                             scale=scaling)
        outs.append(out.transpose(1, 2).reshape(count * length, H, d))
        first += count
    return torch.cat(outs)[:, None], None


AttentionInterface.register(SIA_ATTENTION, sia_attention)


@contextmanager
def attention_implementation(model: nn.Module, name: str):
    """Run `model` with the registered attention function `name` inside the block; the previous one comes back after.

    transformers dispatches on `config._attn_implementation`, read at every call; every distinct config object held by
    the model's modules is switched (they are usually one shared object).
    """
    configs = {id(c): c for m in model.modules() if isinstance(c := getattr(m, "config", None), PreTrainedConfig)}
    saved = [(c, c._attn_implementation) for c in configs.values()]
    for c, _ in saved:
        c._attn_implementation = name
    try:
        yield model
    finally:
        for c, previous in reversed(saved):
            c._attn_implementation = previous
