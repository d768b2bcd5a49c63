"""Self-supervised pretraining data: synthetic clusterings of augmented copies of unlabelled entities."""

from cactus.selfsup.augment import (
    AUGMENTATIONS,
    Augmentation,
    SpanDelete,
    WordDrop,
    WordShuffle,
    make_augmentation,
)
from cactus.selfsup.synthetic import make_synthetic_subsets, unique_texts

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "SpanDelete",
    "WordDrop",
    "WordShuffle",
    "make_augmentation",
    "make_synthetic_subsets",
    "unique_texts",
]
