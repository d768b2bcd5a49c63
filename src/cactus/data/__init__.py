"""Subsets: schema and validation, file readers and writers, benchmark builders."""

from cactus.data.io import read_subsets, write_subsets
from cactus.data.subsets import Subset, SubsetFormatError

__all__ = ["Subset", "SubsetFormatError", "read_subsets", "write_subsets"]
