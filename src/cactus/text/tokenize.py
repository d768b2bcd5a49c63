"""Tokenisation of a batch of subsets into one packed run of real tokens, with truncation accounting.

Every entity is tokenised on its own (with the backbone's special tokens) and cut at `max_tokens` tokens,
special tokens included. Truncation is never silent: the batch carries the count of cut entities and the caller
reports it. Nothing is padded: the encoder runs the real tokens only (see `SubsetBatch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Sequence

import torch


@dataclass
class SubsetBatch:
    """The real tokens of a batch of B subsets, packed with no padding.

    Entities are ordered by token count, shortest first (ties keep subset, then entity order), and each entity's
    tokens are consecutive. The entities of one length therefore form a run that is a dense (count, length) block of
    `input_ids`: the encoder runs every block without a mask and without a padding position.

    Attributes:
        input_ids: (T,) long, the real tokens of all entities in packed order; T is the batch's real token count.
        entity_slot: (E,) long, every packed entity's slot b * N + n in the (B, N) layout of the subsets.
        runs: ((length, count), ...) the runs of equal-length entities, in packed order (lengths increasing).
        entity_mask: (B, N) bool, True where subset b has an entity n (N: the largest subset).
        n_truncated: number of entities in the batch cut at the token limit.
    """

    input_ids: torch.Tensor
    entity_slot: torch.Tensor
    runs: tuple[tuple[int, int], ...]
    entity_mask: torch.Tensor
    n_truncated: int = 0

    @classmethod
    def from_token_ids(cls, ids: Sequence[Sequence[int]], sizes: Sequence[int], n_truncated: int = 0) -> "SubsetBatch":
        """Pack the token id lists `ids` of sum(sizes) entities, subset after subset (`sizes[b]` entities each)."""
        if sum(sizes) != len(ids) or min(sizes, default=1) < 1:
            raise ValueError(f"{len(ids)} entities do not split into subsets of sizes {list(sizes)} (each >= 1)")
        if min(map(len, ids), default=1) < 1:
            raise ValueError("every entity needs at least one token")
        n_max = max(sizes, default=0)
        slots = [b * n_max + n for b, size in enumerate(sizes) for n in range(size)]
        order = sorted(range(len(ids)), key=lambda e: len(ids[e]))  # stable: ties keep the input order
        runs = tuple((length, sum(1 for _ in group)) for length, group in groupby(len(ids[e]) for e in order))
        entity_mask = torch.arange(n_max)[None, :] < torch.tensor(list(sizes), dtype=torch.long)[:, None]
        return cls(
            torch.tensor([t for e in order for t in ids[e]], dtype=torch.long),
            torch.tensor([slots[e] for e in order], dtype=torch.long),
            runs, entity_mask, n_truncated,
        )

    @property
    def n_tokens(self) -> int:
        return sum(length * count for length, count in self.runs)

    def positions(self) -> torch.Tensor:
        """(T,) long, every token's place in its entity (0 at the first token)."""
        return torch.cat([torch.arange(length).repeat(count) for length, count in self.runs]).to(self.input_ids.device)

    def lengths(self) -> torch.Tensor:
        """(E,) long, every packed entity's token count."""
        return torch.tensor([length for length, count in self.runs for _ in range(count)], device=self.input_ids.device)

    def padded(self, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, N, L) token ids (`pad_id` where padded) and attention mask of the same subsets, L the longest
        entity: the layout a padded encoder would run, for reference and inspection."""
        B, N = self.entity_mask.shape
        L = self.runs[-1][0]
        ids = torch.full((B * N, L), pad_id, dtype=torch.long, device=self.input_ids.device)
        mask = torch.zeros_like(ids)
        entity, place = torch.repeat_interleave(self.entity_slot, self.lengths()), self.positions()
        ids[entity, place] = self.input_ids
        mask[entity, place] = 1
        return ids.view(B, N, L), mask.view(B, N, L)

    def to(self, device: torch.device | str) -> "SubsetBatch":
        return SubsetBatch(self.input_ids.to(device), self.entity_slot.to(device), self.runs,
                           self.entity_mask.to(device), self.n_truncated)


def token_ids(tokenizer, texts: Sequence[str], max_tokens: int) -> tuple[list[list[int]], int]:
    """Every text's token ids (special tokens included, cut at `max_tokens`), and how many were cut."""
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2 (room for special tokens), got {max_tokens}")
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    long = [i for i, x in enumerate(ids) if len(x) > max_tokens]
    if long:
        cut = tokenizer([texts[i] for i in long], add_special_tokens=True, truncation=True, max_length=max_tokens)
        for i, x in zip(long, cut["input_ids"]):
            ids[i] = x
    return ids, len(long)


def tokenize_subsets(tokenizer, subsets: Sequence[Sequence[str]], max_tokens: int) -> SubsetBatch:
    """Tokenise `subsets` (B lists of texts) into a packed `SubsetBatch`."""
    ids, n_truncated = token_ids(tokenizer, [t for texts in subsets for t in texts], max_tokens)
    return SubsetBatch.from_token_ids(ids, [len(t) for t in subsets], n_truncated)


def token_batches(sizes: Sequence[int], tokens: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Index lists of whole subsets with at most `batch_tokens` real tokens each (a subset with more forms a batch of
    its own). `sizes[i]` and `tokens[i]` are subset i's entity and token counts. Subsets go in order of size, so that
    the subsets of a batch have similar sizes (SIA gives every entity one summary slot per entity of the largest)."""
    batches: list[list[int]] = []
    batch: list[int] = []
    total = 0
    for i in sorted(range(len(sizes)), key=lambda i: sizes[i]):
        if batch and total + tokens[i] > batch_tokens:
            batches.append(batch)
            batch, total = [], 0
        batch.append(i)
        total += tokens[i]
    if batch:
        batches.append(batch)
    return batches
