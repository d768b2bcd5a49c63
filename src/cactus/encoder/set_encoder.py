"""The set encoder: entity embeddings of a packed batch of subsets.

Packed real tokens (`SubsetBatch`) -> backbone, with entities of a subset seeing each other or not -> mean over each
entity's tokens -> L2-normalised (B, N, D). No padding position is ever run: NIA runs every run of equal-length
entities as one dense block, SIA runs the packed tokens in one call, FIA packs each subset into one sequence.
Empty entity slots come out as zero vectors.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from cactus.encoder.attention import SIA_ATTENTION, EntityLayout, attention_implementation
from cactus.encoder.modes import ATTENTION_MODES
from cactus.text.tokenize import SubsetBatch



class SetEncoder(nn.Module):
    """Wraps a pretrained encoder (BERT family or T5 encoder); `attention` chooses how entities of a subset interact.

    - "nia": no inter-entity attention, every entity is encoded alone (the context-free baseline). The stock model
      runs each run of equal-length entities as one (count, length) block: no mask, no padding.
    - "fia": full inter-entity attention. The real tokens of a subset are packed into one sequence and run through the
      stock model. Absolute-position backbones (BERT) get position ids restarting in every entity (at 0, or at the
      padding index + 1 for the RoBERTa family, as their own convention), so hundreds of entities fit under
      `max_position_embeddings` and the entities' order does not matter. Relative-position backbones (T5) keep the
      concatenation's own relative positions, as the paper's code does: order matters, but distances saturate at
      `relative_attention_max_distance`.
    - "sia": scalable inter-entity attention (see `cactus.encoder.attention`): every entity's tokens attend to its own
      tokens and to one mean key/value per other entity of the subset, in every layer. The packed tokens run as
      (T, 1) rows in one call, positions restarting in every entity as in FIA.

    The backbone is used as it is: its attention implementation is switched to SIA only for the duration of an SIA
    forward. A BERT pooler, if loaded, is set aside during every forward (its output is never used, and in SIA it
    would run on every token); it is kept so that a saved backbone reloads without missing weights.
    """

    def __init__(self, backbone: nn.Module, attention: str = "nia"):
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {attention!r}")
        if attention == "sia" and backbone.config.model_type == "umt5":
            raise NotImplementedError("sia: UMT5 has a relative position bias per layer; only T5 / MT5 are supported")
        self.backbone = backbone
        self.attention = attention
        self.relative_positions = hasattr(backbone.config, "relative_attention_num_buckets")  # T5 family

    @property
    def dim(self) -> int:
        config = self.backbone.config
        return config.hidden_size if hasattr(config, "hidden_size") else config.d_model

    def forward(self, batch: SubsetBatch) -> torch.Tensor:
        """(B, N, D) L2-normalised entity embeddings; empty slots are zero vectors."""
        with pooler_set_aside(self.backbone):
            hidden = {"nia": self._nia_hidden, "fia": self._fia_hidden, "sia": self._sia_hidden}[self.attention](batch)
        means = torch.cat([part.view(count, length, -1).mean(1) for part, (length, count)
                           in zip(hidden.split([length * count for length, count in batch.runs]), batch.runs)])
        B, N = batch.entity_mask.shape
        out = means.new_zeros(B * N, means.shape[-1]).index_copy(0, batch.entity_slot, F.normalize(means, dim=-1))
        return out.view(B, N, -1)

    def _nia_hidden(self, batch: SubsetBatch) -> torch.Tensor:
        """(T, D) token states: every run of equal-length entities through the stock model as one unmasked block."""
        parts = batch.input_ids.split([length * count for length, count in batch.runs])
        return torch.cat([
            self.backbone(input_ids=part.view(count, length)).last_hidden_state.reshape(count * length, -1)
            for part, (length, count) in zip(parts, batch.runs)
        ])

    def _sia_hidden(self, batch: SubsetBatch) -> torch.Tensor:
        """(T, D) token states: the packed tokens as (T, 1) rows in one call, the entities joined in the attention."""
        relative_bias = summary_bias = None
        kwargs = {}
        if self.relative_positions:
            relative_bias, summary_bias = self.relative_biases(batch.runs[-1][0])
        else:
            kwargs["position_ids"] = batch.positions()[:, None] + self.position_offset()
        layout = EntityLayout.of(batch.entity_slot, batch.runs, batch.entity_mask, relative_bias, summary_bias)
        with attention_implementation(self.backbone, SIA_ATTENTION):
            hidden = self.backbone(input_ids=batch.input_ids[:, None], entity_layout=layout, **kwargs)
        return hidden.last_hidden_state[:, 0]

    def _fia_hidden(self, batch: SubsetBatch) -> torch.Tensor:
        """(T, D) token states, every subset's real tokens (in entity order) run as one sequence."""
        B, N = batch.entity_mask.shape
        positions = batch.positions()
        slot = torch.repeat_interleave(batch.entity_slot, batch.lengths())  # (T,) every token's entity slot
        order = torch.argsort(slot * (batch.runs[-1][0] + 1) + positions, stable=True)  # by subset, entity, place
        subset = slot[order] // N
        per_subset = torch.bincount(subset, minlength=B)
        col = torch.arange(len(order), device=order.device) - (per_subset.cumsum(0) - per_subset)[subset]
        ids = batch.input_ids.new_zeros(B, int(per_subset.max()))  # (B, S); the filler id is masked out
        ids[subset, col] = batch.input_ids[order]
        mask = torch.zeros_like(ids)
        mask[subset, col] = 1
        kwargs = {}
        if not self.relative_positions:
            kwargs["position_ids"] = torch.zeros_like(ids)
            kwargs["position_ids"][subset, col] = positions[order] + self.position_offset()  # restart per entity
        packed = self.backbone(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state  # (B, S, D)
        hidden = packed.new_empty(len(order), packed.shape[-1])
        hidden[order] = packed[subset, col]
        return hidden

    def position_offset(self) -> int:
        """The first absolute position of a sequence: 0 (BERT), or padding index + 1 (RoBERTa family)."""
        padding_idx = getattr(getattr(self.backbone, "embeddings", None), "padding_idx", None)
        return 0 if padding_idx is None else padding_idx + 1

    def relative_biases(self, longest: int) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 only: the (1, H, L, L) relative-position bias of a `longest`-token entity (a shorter entity's is its
        top-left block), and the (H,) bias of the summary keys.

        All summaries sit "far after" every query (distance >= relative_attention_max_distance, the last bucket), as
        in the paper's code. T5 shares layer 0's bias table across layers, so these serve all of them.
        """
        attn = next(m for m in self.backbone.modules() if getattr(m, "has_relative_attention_bias", False))
        far = torch.tensor(attn.relative_attention_max_distance)
        bucket = attn._relative_position_bucket(
            far, bidirectional=True, num_buckets=attn.relative_attention_num_buckets, max_distance=int(far)
        )
        weight = attn.relative_attention_bias.weight
        return attn.compute_bias(longest, longest, device=weight.device), weight[bucket]


@contextmanager
def pooler_set_aside(backbone: nn.Module):
    """Run `backbone` without its pooler (BERT family) inside the block."""
    pooler = getattr(backbone, "pooler", None)
    if pooler is None:
        yield
        return
    backbone.pooler = None
    try:
        yield
    finally:
        backbone.pooler = pooler
