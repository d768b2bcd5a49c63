"""Tokenisation of subsets into (B, N, L) tensors."""

from cactus.text.tokenize import SubsetBatch, tokenize_subsets

__all__ = ["SubsetBatch", "tokenize_subsets"]
