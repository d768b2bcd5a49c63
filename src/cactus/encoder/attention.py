"""Scalable inter-entity attention (SIA), plugged into any transformers backbone through `AttentionInterface`.

The backbone runs on the E real entities of a batch flattened to (E, L) token rows, as in NIA. Only the attention
changes: in every layer a token of entity i attends to

    [ the L keys of entity i (padding masked) | N summary keys, one per entity slot of i's subset ]

where the summary of entity j is the masked mean of j's keys (and values) in that layer; summaries of padding slots and
of i itself are masked out. One softmax over the L + N keys, computed by `scaled_dot_product_attention`: the cost is
O(n L (L + n)) per subset of n entities, and the largest tensors are the (E, H, L + N, d) keys and values.

The function is registered under `SIA_ATTENTION`; `attention_implementation` switches a backbone to it for one call.
Models whose attention passes a `position_bias` (T5) get the bias on the own keys as usual and
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
    """Where the E flattened entities of a (B, N, L) batch sit in their subsets; the same for every layer.

    Attributes:
        token_weight: (E, L) float, 1 / length on an entity's real tokens, 0 on padding: masked-mean weights.
        slot_index: (E,) long, every entity's slot in the flattened (B * N) slots.
        subset_rows: per subset, the (start, stop) range of its entities' rows: the flattened entities are
            `entity_mask`'s True slots in order, so a subset's entities are consecutive.
        entity_mask: (B, N) bool, real entity slots.
        key_mask: (E, 1, 1, L + N) bool, True where a key may be attended: own real tokens, and the summaries of the
            other real entities of the same subset.
        summary_bias: (H,) score bias added to every summary key (T5: the far relative-position bucket), or None.
    """

    token_weight: torch.Tensor
    slot_index: torch.Tensor
    subset_rows: list[tuple[int, int]]
    entity_mask: torch.Tensor
    key_mask: torch.Tensor
    summary_bias: torch.Tensor | None = None

    @classmethod
    def from_masks(
        cls, attention_mask: torch.Tensor, entity_mask: torch.Tensor, summary_bias: torch.Tensor | None = None
    ) -> "EntityLayout":
        """Layout of a batch from its (B, N, L) token mask and (B, N) entity mask."""
        B, N, L = attention_mask.shape
        tokens = attention_mask[entity_mask].bool()  # (E, L)
        weight = tokens.float() / tokens.sum(-1, keepdim=True).clamp(min=1)
        subset, slot = entity_mask.nonzero(as_tuple=True)  # (E,), (E,)
        others = entity_mask[subset].clone()  # (E, N): the real slots of each entity's subset ...
        others[torch.arange(len(slot), device=slot.device), slot] = False  # ... except its own
        key_mask = torch.cat([tokens, others], dim=-1)[:, None, None, :]
        ends = entity_mask.sum(1).cumsum(0).tolist()
        rows = list(zip([0] + ends[:-1], ends))
        return cls(weight, subset * N + slot, rows, entity_mask, key_mask, summary_bias)


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

    query, key, value: (E, H, L, d). `attention_mask` is None (the model builds no mask for an unregistered
    implementation); padding comes from `entity_layout`, passed as a keyword to the model's forward.
    position_bias: (1 or E, H, L, L) additive bias on the own keys (T5), or None.
    Returns the attention output (E, L, H, d) and no weights.
    """
    if entity_layout is None:
        raise ValueError(f"the {SIA_ATTENTION!r} attention needs an `entity_layout` keyword argument")
    if attention_mask is not None:
        raise ValueError(f"the {SIA_ATTENTION!r} attention takes its mask from `entity_layout`, not `attention_mask`")
    lay = entity_layout
    B, N = lay.entity_mask.shape
    weight = lay.token_weight.to(key.dtype)

    def with_summaries(x: torch.Tensor) -> torch.Tensor:
        """(E, H, L, d) -> (E, H, L + N, d): every entity's own rows, then the N slot means of its subset."""
        E, H, L, d = x.shape
        mean = torch.einsum("ehld,el->ehd", x, weight)
        # index_copy, not boolean indexing: no device sync in every layer
        table = mean.new_zeros(B * N, H, d).index_copy(0, lay.slot_index, mean).view(B, N, H, d)
        # (E, L + N, H, d) storage: the projections come as (E, L, H, d), so both copies below are contiguous runs
        out = x.new_empty(E, L + N, H, d)
        out[:, :L] = x.transpose(1, 2)
        for b, (start, stop) in enumerate(lay.subset_rows):
            out[start:stop, L:] = table[b]  # broadcast to the subset's entities, never gathered per entity
        return out.transpose(1, 2)

    key, value = with_summaries(key), with_summaries(value)
    mask = lay.key_mask
    if position_bias is not None:
        far = position_bias.new_zeros(*position_bias.shape[:-1], N)
        if lay.summary_bias is not None:
            far = far + lay.summary_bias.to(far.dtype).view(1, -1, 1, 1)
        bias = torch.cat([position_bias, far], dim=-1)  # (1 or E, H, L, L + N)
        mask = torch.where(mask, bias, torch.finfo(bias.dtype).min)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


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
