"""The set encoder: entity embeddings of a padded batch of subsets.

(B, N, L) token ids -> backbone, with entities of a subset seeing each other or not -> masked mean over each entity's
tokens -> L2-normalised (B, N, D). Padded entities are never run through the backbone and come out as zero vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cactus.encoder.attention import SIA_ATTENTION, EntityLayout, attention_implementation
from cactus.text.tokenize import SubsetBatch

# How the entities of a subset see each other while encoded: the one list of modes, with the words users read.
ATTENTION_MODES = {
    "nia": "no inter-entity attention: every entity is encoded alone (context-free)",
    "fia": "full inter-entity attention over the subset's concatenated tokens",
    "sia": "scalable inter-entity attention: each entity's tokens also attend to one summary per other entity "
           "(the method's)",
}


class SetEncoder(nn.Module):
    """Wraps a pretrained encoder (BERT family or T5 encoder); `attention` chooses how entities of a subset interact.

    - "nia": no inter-entity attention, every entity is encoded alone (the context-free baseline).
    - "fia": full inter-entity attention. The real tokens of a subset are packed into one sequence and run through the
      stock model. Absolute-position backbones (BERT) get position ids restarting at 0 in every entity (the BERT
      convention; RoBERTa-style offsets are not applied), so hundreds of entities fit under `max_position_embeddings`
      and the entities' order does not matter. Relative-position backbones (T5) keep the concatenation's own relative
      positions, as the paper's code does: order matters, but distances saturate at `relative_attention_max_distance`.
    - "sia": scalable inter-entity attention (see `cactus.encoder.attention`): every entity's tokens attend to its own
      tokens and to one mean key/value per other entity of the subset, in every layer.

    The backbone is used as it is: its attention implementation is switched to SIA only for the duration of an SIA
    forward. A BERT pooler, if loaded, still runs (one D x D product per sequence) but its output is never used, so its
    parameters get no gradient; it is kept so that a saved backbone reloads without missing weights.
    """

    def __init__(self, backbone: nn.Module, attention: str = "nia"):
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {attention!r}")
        if attention == "sia" and backbone.config.model_type == "umt5":
            raise NotImplementedError("sia: UMT5 has a relative position bias per layer; only T5 / MT5 are supported")
        self.backbone = backbone
        self.attention = attention
        self._relative_positions = hasattr(backbone.config, "relative_attention_num_buckets")  # T5 family

    @property
    def dim(self) -> int:
        config = self.backbone.config
        return config.hidden_size if hasattr(config, "hidden_size") else config.d_model

    def forward(self, batch: SubsetBatch) -> torch.Tensor:
        """(B, N, D) L2-normalised entity embeddings; padded entities are zero vectors."""
        B, N, L = batch.input_ids.shape
        tokens = batch.attention_mask[batch.entity_mask]  # (E, L): the real entities, flattened
        if self.attention == "fia":
            hidden = self._fia_hidden(batch)
        elif self.attention == "nia":
            ids = batch.input_ids[batch.entity_mask]
            hidden = self.backbone(input_ids=ids, attention_mask=tokens).last_hidden_state
        else:
            ids = batch.input_ids[batch.entity_mask]
            layout = EntityLayout.from_masks(batch.attention_mask, batch.entity_mask, self._summary_bias())
            with attention_implementation(self.backbone, SIA_ATTENTION):
                hidden = self.backbone(input_ids=ids, entity_layout=layout).last_hidden_state
        pooled = masked_mean(hidden, tokens)  # (E, D)
        out = pooled.new_zeros(B, N, pooled.shape[-1])
        out[batch.entity_mask] = F.normalize(pooled, dim=-1)
        return out

    def _fia_hidden(self, batch: SubsetBatch) -> torch.Tensor:
        """(E, L, D) token states of the real entities, every subset's real tokens run as one packed sequence."""
        real = batch.attention_mask.bool() & batch.entity_mask[..., None]  # (B, N, L)
        B, N, L = real.shape
        flat = real.view(B, N * L)
        row = torch.arange(B, device=real.device)[:, None].expand(B, N * L)[flat]  # subset of every real token
        col = (flat.cumsum(1) - 1)[flat]  # its place in the packed sequence
        ids = batch.input_ids.new_zeros(B, int(flat.sum(1).max()))  # (B, T); the filler id is masked out
        ids[row, col] = batch.input_ids.view(B, N * L)[flat]
        mask = torch.zeros_like(ids)
        mask[row, col] = 1
        kwargs = {}
        if not self._relative_positions:
            positions = torch.zeros_like(ids)
            positions[row, col] = (real.cumsum(-1) - 1).view(B, N * L)[flat]  # restart at 0 in every entity
            kwargs["position_ids"] = positions
        packed = self.backbone(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state  # (B, T, D)
        hidden = packed.new_zeros(B, N, L, packed.shape[-1])
        hidden[real] = packed[row, col]
        return hidden[batch.entity_mask]

    def _summary_bias(self) -> torch.Tensor | None:
        """(H,) T5 only: the relative-position bias of the far bucket, for the summary keys, else None.

        All summaries sit "far after" every query (distance >= relative_attention_max_distance, the last bucket), as
        in the paper's code. T5 shares layer 0's bias table across layers, so one (H,) vector serves all of them.
        """
        if not self._relative_positions:
            return None
        attn = next(m for m in self.backbone.modules() if getattr(m, "has_relative_attention_bias", False))
        far = torch.tensor(attn.relative_attention_max_distance)
        bucket = attn._relative_position_bucket(
            far, bidirectional=True, num_buckets=attn.relative_attention_num_buckets, max_distance=int(far)
        )
        return attn.relative_attention_bias.weight[bucket]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (..., L, D) `hidden` over the positions where (..., L) `mask` is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(-2) / m.sum(-2).clamp(min=1.0)
