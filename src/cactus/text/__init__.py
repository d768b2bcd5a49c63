"""Tokenisation of subsets into packed batches of real tokens."""

from cactus.text.tokenize import SubsetBatch, token_batches, token_ids, tokenize_subsets

__all__ = ["SubsetBatch", "token_batches", "token_ids", "tokenize_subsets"]
