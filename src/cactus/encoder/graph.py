"""The set encoder as one static graph, for export (`cactus.encoder.onnx`).

`SetEncoder` runs each run of equal-length entities as its own block: no padding anywhere, and on a CPU the blocks
stay in cache, but how many blocks there are depends on the data, which a static graph cannot express.
`GraphEncoder` computes the same embeddings (NIA and SIA) with every step a gather, scatter or batched product over
whole tensors, whose shapes follow the inputs' and with no Python loop over the data or data-dependent branch, so
that it traces and exports with any number of subsets, entities and tokens.

The token-wise work (embeddings, projections, feed-forward) still runs on the packed real tokens as (T, 1) rows. The
attention gathers them into grids of entities by place, and a token of entity i attends to

    [ the keys of entity i's own tokens | N summary keys, one per entity slot of i's subset ]   (SIA)
    [ the keys of entity i's own tokens ]                                                        (NIA)

with the places past an entity's end, empty slots and i's own summary masked out, in one softmax; the outputs are
gathered back to the packed rows. The summaries (each entity's mean key and value, in its subset's slot) are appended
as B * N extra rows after the T token rows, so that one gather per grid brings every entity its own keys and its
subset's summaries together, with no per-entity copy of the summaries. A grid pads its entities to its longest, and
the attention's work grows with the square of that width, so the batch's entities (ordered by length) are split into
a fixed number of width classes (`GRIDS`), each its own (E_g, L_g) grid, cut where the attention's padded work is
least (`width_classes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface

from cactus.encoder.attention import attention_implementation
from cactus.encoder.set_encoder import SetEncoder, pooler_set_aside
from cactus.text.tokenize import SubsetBatch

GRID_ATTENTION = "cactus_grid"
# Width classes of an exported graph: fewer pad more, more add operators per layer. 4 was the fastest of 1, 2, 4
# and 8 on both families of docs/benchmarks/onnx_speed.md (int8 SIA, 1.20x and 1.42x one grid's speed).
GRIDS = 4
# The graph's inputs: the batch's tokens and subsets, then each width class's entities (`graph_inputs`); its output.
BATCH_INPUTS = ("input_ids", "token_position", "token_place", "entity_mask")
OUTPUT_NAME = "embeddings"


def input_names(grids: int) -> tuple[str, ...]:
    """The names of a graph's inputs with `grids` width classes."""
    return (*BATCH_INPUTS, *(f"{name}_{g}" for g in range(grids) for name in ("entity_tokens", "entity_slot")))


@dataclass
class Grid:
    """One width class: E entities of the batch in an (E, L) grid by place, L the longest of them.

    Attributes:
        places: (E * L,) long, the packed index of token l of entity e (token 0 past the entity's end: masked).
        mean_weights: (E, L) float, 1 / length on an entity's own places, 0 past its end: a mean over the grid.
        key_places: (E * (L [+ N]),) long, the rows of `GridLayout`'s extended keys that entity e attends to: its own
            L places, then (SIA) its subset's N summary rows.
        n_entities, width, n_keys: E, L and the keys of each entity, L [+ N].
        score_bias: added to every layer's (H, E, L, L [+ N]) scores: the own-key bias (T5's relative positions,
            and the far bucket on the summaries), and the dtype's lowest value on masked keys.
    """

    places: torch.Tensor
    key_places: torch.Tensor
    mean_weights: torch.Tensor
    n_entities: int
    width: int
    n_keys: int
    score_bias: torch.Tensor

    @classmethod
    def of(cls, entity_tokens: torch.Tensor, entity_slot: torch.Tensor, entity_mask: torch.Tensor, n_tokens: int,
           summaries: bool, dtype: torch.dtype, relative_bias: torch.Tensor | None = None,
           summary_bias: torch.Tensor | None = None) -> "Grid":
        """The grid of one width class from its `graph_inputs` tensors, in a batch of `n_tokens` tokens; `summaries`
        False gives NIA's. relative_bias: (1, H, L, L) own-key score bias, summary_bias: (H,) bias of every summary
        key (T5), or None."""
        N = entity_mask.shape[1]
        n = torch.ones_like(entity_mask[0], dtype=entity_slot.dtype).sum()  # N as a tensor, as in GraphEncoder
        subset = torch.div(entity_slot, n, rounding_mode="floor")
        own = (entity_tokens >= 0).to(dtype)  # (E, L)
        keys = entity_tokens >= 0  # (E, L): the keys an entity attends to
        if summaries:  # the real slots of each entity's subset, except its own
            slot = entity_slot - subset * n
            others = entity_mask[subset] & (torch.arange(N, device=subset.device)[None, :] != slot[:, None])
            keys = torch.cat([keys, others], 1)
        bias = torch.zeros((), dtype=dtype)
        if relative_bias is not None:
            bias = relative_bias.to(dtype).transpose(0, 1)  # (H, 1, L, L)
            if summaries:
                far = (summary_bias.to(dtype) if summary_bias is not None else bias.new_zeros(bias.shape[0]))
                bias = torch.cat([bias, far.view(-1, 1, 1, 1).expand(-1, 1, bias.shape[2], N)], -1)
        score_bias = torch.where(keys[None, :, None, :], bias, torch.finfo(dtype).min)
        mean_weights = own / own.sum(1, keepdim=True)
        places = entity_tokens.clamp(min=0)
        key_places = places
        if summaries:  # the summary rows follow the T token rows, slot b * N + n of the table at T + b * N + n
            key_places = torch.cat([places, n_tokens + subset[:, None] * n + torch.arange(N, device=subset.device)], 1)
        return cls(places.flatten(), key_places.flatten(), mean_weights, places.shape[0], places.shape[1],
                   key_places.shape[1], score_bias)


@dataclass
class GridLayout:
    """Where a batch's packed tokens sit in its width classes' grids, the same for every layer (computed once per
    forward).

    Attributes:
        grids: the width classes, in packed order.
        token_place: (T,) long, every packed token's place in the grids' places laid end to end.
        slot_index: (E,) long, every entity's slot b * N + n in the flattened (B * N) slots, class after class.
        n_subsets, n_slots: B and N.
        summaries: SIA (True) or NIA.
    """

    grids: list[Grid]
    token_place: torch.Tensor
    slot_index: torch.Tensor
    n_subsets: int
    n_slots: int
    summaries: bool

    def slot_means(self, x: torch.Tensor) -> torch.Tensor:
        """(T, D) packed rows -> (B * N, D): every entity's mean over its tokens, in its slot; empty slots zero.

        Means over the grids, not a scatter-add over the tokens: onnxruntime's threaded ScatterND with reduction
        drops additions to a repeated index (seen at 2 threads), which is every entity's."""
        D = x.shape[-1]
        means = torch.cat([torch.matmul(g.mean_weights[:, None, :], x.index_select(0, g.places).view(
            g.n_entities, g.width, D)).squeeze(1) for g in self.grids])
        return means.new_zeros(self.n_subsets * self.n_slots, D).index_copy(0, self.slot_index, means)


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
    """NIA or SIA for one layer over the width classes' grids, with the signature of a transformers attention
    function.

    query, key, value: (T, H, 1, d), the packed tokens as rows of one; `attention_mask` is None and `position_bias`
    (T5) unused, as in `cactus.encoder.attention.sia_attention`. Returns the output (T, 1, H, d) and no weights.
    """
    if grid_layout is None:
        raise ValueError(f"the {GRID_ATTENTION!r} attention needs a `grid_layout` keyword argument")
    if dropout:
        raise ValueError(f"the {GRID_ATTENTION!r} attention is for inference: no dropout")
    lay = grid_layout
    T, H, _, d = query.shape
    scale = d ** -0.5 if scaling is None else scaling
    q, k, v = (x.reshape(T, H * d) for x in (query, key, value))
    if lay.summaries:
        # The summaries (every entity's mean key and value, in its (B, N) slot) become extra rows after the tokens',
        # so that each grid gathers its own keys and its subsets' summaries in one step, with no per-entity concat.
        k, v = (torch.cat([x, lay.slot_means(x)]) for x in (k, v))
    # Head-major for the products: one transpose each of the rows, and the grids gathered from them keep it (a
    # transposed grid would cost more than the products on a CPU).
    q, k, v = (x.view(-1, H, d).transpose(0, 1) for x in (q, k, v))  # (H, rows, d)
    grids = [[q.index_select(1, g.places).view(H, g.n_entities, g.width, d),
              *(x.index_select(1, g.key_places).view(H, g.n_entities, g.n_keys, d) for x in (k, v))] for g in lay.grids]
    out = []
    for g, (qg, kg, vg) in zip(lay.grids, grids):
        scores = torch.matmul(qg, kg.transpose(-1, -2)) * scale + g.score_bias
        out.append(torch.matmul(torch.softmax(scores, -1), vg).view(H, g.n_entities * g.width, d))
    out = torch.cat(out, 1).index_select(1, lay.token_place).transpose(0, 1)  # (T, H, d)
    return out.reshape(T, 1, H, d), None


AttentionInterface.register(GRID_ATTENTION, grid_attention)


class GraphEncoder(nn.Module):
    """`SetEncoder`'s NIA or SIA embeddings from the tensors of `graph_inputs`, as one static graph.

    forward(input_ids (T,), token_position (T,), token_place (T,), entity_mask (B, N), then per width class
    entity_tokens (E_g, L_g) and entity_slot (E_g,)) -> (B, N, D) L2-normalised embeddings, empty slots zero:
    `SetEncoder.forward` of the same batch, to float rounding.
    """

    def __init__(self, encoder: SetEncoder):
        super().__init__()
        if encoder.attention not in ("nia", "sia"):
            raise ValueError(f"attention {encoder.attention!r} has no static graph: export supports nia and sia")
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, token_position: torch.Tensor, token_place: torch.Tensor,
                entity_mask: torch.Tensor, *classes: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        dtype = enc.backbone.dtype
        summaries = enc.attention == "sia"
        kwargs = {}
        if not enc.relative_positions:
            kwargs["position_ids"] = token_position[:, None] + enc.position_offset()
        grids = []
        for entity_tokens, entity_slot in zip(classes[::2], classes[1::2]):
            biases = enc.relative_biases(entity_tokens.shape[1]) if enc.relative_positions else (None, None)
            grids.append(Grid.of(entity_tokens, entity_slot, entity_mask, input_ids.shape[0], summaries, dtype,
                                 *biases))
        B, N = entity_mask.shape
        layout = GridLayout(grids, token_place, torch.cat(classes[1::2]), B, N, summaries)
        with pooler_set_aside(enc.backbone), attention_implementation(enc.backbone, GRID_ATTENTION):
            hidden = enc.backbone(input_ids=input_ids[:, None], grid_layout=layout, **kwargs).last_hidden_state[:, 0]
        return F.normalize(layout.slot_means(hidden), dim=-1).view(B, N, -1)  # empty slots stay zero


def width_classes(batch: SubsetBatch, grids: int, summaries: bool) -> list[tuple[int, int]]:
    """`grids` ranges (start, stop) of the batch's packed entities (ordered by length) that split them into width
    classes, cut between runs of equal length where the attention's padded work, the sum over classes of
    E_g * L_g * (L_g [+ N]), is least (the earliest cuts when several tie). A batch with fewer runs than `grids` has
    that many classes, then empty ones (start = stop = E)."""
    lengths = [length for length, _ in batch.runs]
    ends = [0]
    for _, count in batch.runs:
        ends.append(ends[-1] + count)
    extra = batch.entity_mask.shape[1] if summaries else 0

    def work(i: int, j: int) -> int:  # runs i to j - 1 as one class
        return (ends[j] - ends[i]) * lengths[j - 1] * (lengths[j - 1] + extra)

    used = min(grids, len(lengths))  # cutting a class never adds work, so every class that can be is used
    # least[g][j]: the least work of runs 0 to j - 1 in g + 1 classes, and where the last class starts
    least = [{j: (work(0, j), 0) for j in range(1, len(lengths) + 1)}]
    for g in range(1, used):
        least.append({j: min((least[g - 1][i][0] + work(i, j), i) for i in range(g, j))
                      for j in range(g + 1, len(lengths) + 1)})
    classes, j = [], len(lengths)
    for g in reversed(range(used)):
        i = least[g][j][1]
        classes.append((ends[i], ends[j]))
        j = i
    return classes[::-1] + [(ends[-1], ends[-1])] * (grids - used)


def graph_inputs(batch: SubsetBatch, grids: int = GRIDS, summaries: bool = True,
                 classes: list[tuple[int, int]] | None = None) -> tuple[torch.Tensor, ...]:
    """The graph's inputs (`input_names(grids)`) for a batch: its tokens, every token's position in its entity and
    place in the grids, its (B, N) slots, then each width class's (E_g, L_g) packed token indices (-1 past an
    entity's end) and (E_g,) slots. `classes` (entity ranges) overrides `width_classes`."""
    classes = width_classes(batch, grids, summaries) if classes is None else classes
    device = batch.input_ids.device
    lengths = batch.lengths()
    first = lengths.cumsum(0) - lengths  # every entity's first packed token
    bounds = first.tolist() + [batch.n_tokens]
    positions = batch.positions()
    token_place = torch.empty_like(batch.input_ids)
    per_class, offset = [], 0
    for start, stop in classes:
        own = lengths[start:stop]
        width = int(own[-1]) if stop > start else 1  # the longest: entities are ordered by length
        places = torch.arange(width, device=device)
        per_class += [torch.where(places < own[:, None], first[start:stop, None] + places, -1),
                      batch.entity_slot[start:stop]]
        tokens = slice(bounds[start], bounds[stop])
        entity = torch.repeat_interleave(torch.arange(stop - start, device=device), own)
        token_place[tokens] = offset + entity * width + positions[tokens]
        offset += (stop - start) * width
    return (batch.input_ids, positions, token_place, batch.entity_mask, *per_class)
