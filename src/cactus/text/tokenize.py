"""Tokenisation of a batch of subsets into padded (B, N, L) tensors, with truncation accounting.

Every entity is tokenised on its own (with the backbone's special tokens) and cut at `max_tokens` tokens,
special tokens included. Truncation is never silent: the batch carries the count of cut entities and the caller
reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class SubsetBatch:
    """A padded batch of subsets.

    Attributes:
        input_ids: (B, N, L) token ids, pad id where padded.
        attention_mask: (B, N, L) 1 for real tokens, 0 for padding (padded entities are all 0).
        entity_mask: (B, N) True for real entities.
        n_truncated: number of entities in the batch cut at the token limit.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    entity_mask: torch.Tensor
    n_truncated: int

    def to(self, device: torch.device | str) -> "SubsetBatch":
        return SubsetBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.entity_mask.to(device), self.n_truncated
        )


def tokenize_subsets(tokenizer, subsets: Sequence[Sequence[str]], max_tokens: int) -> SubsetBatch:
    """Tokenise `subsets` (B lists of texts) into a `SubsetBatch` padded to the longest subset and entity."""
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2 (room for special tokens), got {max_tokens}")
    flat = [t for texts in subsets for t in texts]
    ids = tokenizer(flat, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    long = [i for i, x in enumerate(ids) if len(x) > max_tokens]
    if long:
        cut = tokenizer([flat[i] for i in long], add_special_tokens=True, truncation=True, max_length=max_tokens)
        for i, x in zip(long, cut["input_ids"]):
            ids[i] = x
    n_max = max(len(t) for t in subsets)
    l_max = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # One padded (E, L) table of the real entities, then scattered into the (B, N) slots in one indexing step.
    flat_ids = torch.tensor([x + [pad] * (l_max - len(x)) for x in ids], dtype=torch.long)
    flat_mask = torch.tensor([[1] * len(x) + [0] * (l_max - len(x)) for x in ids], dtype=torch.long)
    entity_mask = torch.arange(n_max)[None, :] < torch.tensor([len(t) for t in subsets])[:, None]  # (B, N)
    input_ids = torch.full((len(subsets), n_max, l_max), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(subsets), n_max, l_max), dtype=torch.long)
    input_ids[entity_mask] = flat_ids
    attention_mask[entity_mask] = flat_mask
    return SubsetBatch(input_ids, attention_mask, entity_mask, len(long))
