"""The set encoder as one static graph, for export (`cactus.encoder.onnx`).

`SetEncoder` runs each run of equal-length entities as its own block: no padding anywhere, and on a CPU the blocks
stay in cache, but how many blocks there are depends on the data, which a static graph cannot express.
`GraphEncoder` computes the same embeddings (NIA and SIA) with every step a gather, scatter or batched product over
whole tensors, whose shapes follow the inputs' and with no Python loop or data-dependent branch, so that it traces and
exports with any number of subsets, entities and tokens.

The token-wise work (embeddings, projections, feed-forward) still runs on the packed real tokens as (T, 1) rows. The
attention gathers them into an (E, L) grid of entities by place (L the longest entity of the batch) and a token of
entity i attends to

    [ the keys of entity i's own tokens | N summary keys, one per entity slot of i's subset ]   (SIA)
    [ the keys of entity i's own tokens ]                                                        (NIA)

with the places past an entity's end, empty slots and i's own summary masked out, in one softmax; the outputs are
gathered back to the packed rows. The grid pads the attention (not the token-wise work) to the batch's longest
entity, which is why the eager path keeps its runs (docs/encoder.md measures both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface

from cactus.encoder.attention import attention_implementation
from cactus.encoder.set_encoder import SetEncoder, pooler_set_aside

GRID_ATTENTION = "cactus_grid"
# The graph's inputs, the tensors of a `cactus.text.SubsetBatch`, and its output.
INPUT_NAMES = ("input_ids", "token_place", "entity_tokens", "entity_slot", "entity_mask")
OUTPUT_NAME = "embeddings"


@dataclass
class GridLayout:
    """Where the E packed entities of a batch sit in the (E, L) grid, and who attends to whom; the same for every
    layer, so computed once per forward.

    Attributes:
        places: (E * L,) long, the packed index of token l of entity e (token 0 past the entity's end: masked).
        token_place: (T,) long, every packed token's place e * L + l in the grid.
        mean_weights: (E, L) float, 1 / length on an entity's own places, 0 past its end: a mean over the grid.
        subset_index: (E,) long, every entity's subset b.
        slot_index: (E,) long, every entity's slot b * N + n in the flattened (B * N) slots.
        summary_mask: (E, N) bool, True on the summaries an entity may attend (the other real entities of its
            subset); None for NIA.
        n_subsets, n_slots, n_entities, width: B, N, E and L.
        score_bias: added to every layer's (H, E, L, L [+ N]) scores: the own-key bias (T5's relative positions,
            and the far bucket on the summaries), and the dtype's lowest value on masked keys.
    """

    places: torch.Tensor
    token_place: torch.Tensor
    mean_weights: torch.Tensor
    subset_index: torch.Tensor
    slot_index: torch.Tensor
    summary_mask: torch.Tensor | None
    n_subsets: int
    n_slots: int
    n_entities: int
    width: int
    score_bias: torch.Tensor

    @classmethod
    def of(cls, entity_tokens: torch.Tensor, token_place: torch.Tensor, entity_slot: torch.Tensor,
           entity_mask: torch.Tensor, summaries: bool, dtype: torch.dtype,
           relative_bias: torch.Tensor | None = None, summary_bias: torch.Tensor | None = None) -> "GridLayout":
        """The layout of a batch from its tensors (`SubsetBatch`); `summaries` False gives NIA's. relative_bias:
        (1, H, L, L) own-key score bias, summary_bias: (H,) bias of every summary key (T5), or None."""
        B, N = entity_mask.shape
        n = torch.ones_like(entity_mask[0], dtype=entity_slot.dtype).sum()  # N as a tensor, as in GraphEncoder
        subset = torch.div(entity_slot, n, rounding_mode="floor")
        slot = entity_slot - subset * n
        own = (entity_tokens >= 0).to(dtype)  # (E, L)
        keys = entity_tokens >= 0  # (E, L): the keys an entity attends to
        others = None
        if summaries:  # the real slots of each entity's subset, except its own
            others = entity_mask[subset] & (torch.arange(N, device=slot.device)[None, :] != slot[:, None])
            keys = torch.cat([keys, others], 1)
        bias = torch.zeros((), dtype=dtype)
        if relative_bias is not None:
            bias = relative_bias.to(dtype).transpose(0, 1)  # (H, 1, L, L)
            if summaries:
                far = (summary_bias.to(dtype) if summary_bias is not None else bias.new_zeros(bias.shape[0]))
                bias = torch.cat([bias, far.view(-1, 1, 1, 1).expand(-1, 1, bias.shape[2], N)], -1)
        score_bias = torch.where(keys[None, :, None, :], bias, torch.finfo(dtype).min)
        mean_weights = own / own.sum(1, keepdim=True)
        places = entity_tokens.clamp(min=0).flatten()
        return cls(places, token_place, mean_weights, subset, entity_slot, others, B, N, *entity_tokens.shape,
                   score_bias)


def grid_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    grid_layout: GridLayout | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """NIA or SIA for one layer over the (E, L) grid, with the signature of a transformers attention function.

    query, key, value: (T, H, 1, d), the packed tokens as rows of one; `attention_mask` is None and `position_bias`
    (T5) unused, as in `cactus.encoder.attention.sia_attention`. Returns the output (T, 1, H, d) and no weights.
    """
    if grid_layout is None:
        raise ValueError(f"the {GRID_ATTENTION!r} attention needs a `grid_layout` keyword argument")
    if dropout:
        raise ValueError(f"the {GRID_ATTENTION!r} attention is for inference: no dropout")
    lay = grid_layout
    T, H, _, d = query.shape
    E, L = lay.n_entities, lay.width

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(T, H, d).transpose(0, 1)  # (T, H, 1, d) -> (H, T, d): head-major, one transpose of T rows

    # Head-major throughout: the grid gathers, the summaries and both products keep (H, E, ...) with no transpose of
    # the (E, L) grid, which costs more than the products on a CPU.
    q, k, v = (heads(x).index_select(1, lay.places).view(H, E, L, d) for x in (query, key, value))
    if lay.summary_mask is not None:

        def summaries(x: torch.Tensor) -> torch.Tensor:
            """(H, E, N, d): the means of the entities of each entity's subset, slot by slot (empty slots zero)."""
            means = (x * lay.mean_weights[None, :, :, None]).sum(2)  # (H, E, d)
            table = means.new_zeros(H, lay.n_subsets * lay.n_slots, d).index_copy(1, lay.slot_index, means)
            return table.view(H, lay.n_subsets, lay.n_slots, d).index_select(1, lay.subset_index)

        k, v = torch.cat([k, summaries(k)], 2), torch.cat([v, summaries(v)], 2)  # (H, E, L + N, d)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (d ** -0.5 if scaling is None else scaling) + lay.score_bias
    out = torch.matmul(torch.softmax(scores, -1), v)  # (H, E, L, d)
    out = out.view(H, E * L, d).index_select(1, lay.token_place).transpose(0, 1)  # (T, H, d)
    return out.reshape(T, 1, H, d), None


AttentionInterface.register(GRID_ATTENTION, grid_attention)


class GraphEncoder(nn.Module):
    """`SetEncoder`'s NIA or SIA embeddings from the tensors of a `SubsetBatch`, as one static graph.

    forward(input_ids (T,), token_place (T,), entity_tokens (E, L), entity_slot (E,), entity_mask (B, N)) -> (B, N, D)
    L2-normalised embeddings, empty slots zero: `SetEncoder.forward` of the same batch, to float rounding.
    """

    def __init__(self, encoder: SetEncoder):
        super().__init__()
        if encoder.attention not in ("nia", "sia"):
            raise ValueError(f"attention {encoder.attention!r} has no static graph: export supports nia and sia")
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, token_place: torch.Tensor, entity_tokens: torch.Tensor,
                entity_slot: torch.Tensor, entity_mask: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        E, L = entity_tokens.shape
        # L as a tensor: arithmetic with a shape would export as an operation on a Python number.
        width = torch.ones_like(entity_tokens[0]).sum()
        token_entity = torch.div(token_place, width, rounding_mode="floor")
        relative_bias = summary_bias = None
        kwargs = {}
        if enc.relative_positions:
            relative_bias, summary_bias = enc.relative_biases(L)
        else:
            kwargs["position_ids"] = (token_place - token_entity * width)[:, None] + enc.position_offset()
        layout = GridLayout.of(entity_tokens, token_place, entity_slot, entity_mask, enc.attention == "sia",
                               enc.backbone.dtype, relative_bias, summary_bias)
        with pooler_set_aside(enc.backbone), attention_implementation(enc.backbone, GRID_ATTENTION):
            hidden = enc.backbone(input_ids=input_ids[:, None], grid_layout=layout, **kwargs).last_hidden_state[:, 0]
        # Means over the grid, here and for the summaries, not a scatter-add over the tokens: onnxruntime's threaded
        # ScatterND with reduction drops additions to a repeated index (seen at 2 threads), which is every entity's.
        means = (hidden.index_select(0, layout.places).view(E, L, -1) * layout.mean_weights[..., None]).sum(1)
        B, N = entity_mask.shape
        out = means.new_zeros(B * N, means.shape[-1]).index_copy(0, entity_slot, F.normalize(means, dim=-1))
        return out.view(B, N, -1)


def graph_inputs(batch) -> tuple[torch.Tensor, ...]:
    """The graph's inputs (`INPUT_NAMES`) for a `cactus.text.SubsetBatch`."""
    return batch.input_ids, batch.token_place(), batch.entity_tokens(), batch.entity_slot, batch.entity_mask
