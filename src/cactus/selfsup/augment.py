"""Text augmentations that turn one seed entity into a noisy copy of itself.

A synthetic cluster is a seed text and its augmented copies, so an augmentation must keep a copy recognisably about the
same thing while changing its surface. All augmentations here work on words (`str.split()`, re-joined by single
spaces) and never return an empty text: a copy that would lose every word keeps one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


class Augmentation(ABC):
    """A random, word-level rewrite of a text; subclasses implement `transform`.

    Call it as `augmentation(text, rng)`; it returns a non-empty string. Randomness comes only from `rng`.
    """

    name: ClassVar[str]

    def __call__(self, text: str, rng: np.random.Generator) -> str:
        words = text.split()
        if not words:
            raise ValueError(f"{self.name}: cannot augment a text without words: {text!r}")
        return " ".join(self.transform(words, rng))

    @abstractmethod
    def transform(self, words: list[str], rng: np.random.Generator) -> list[str]:
        """The augmented words of non-empty `words`; at least one word."""


@dataclass(frozen=True)
class WordDrop(Augmentation):
    """The paper's augmentation: draw p ~ U(p_low, p_high) for this copy, then drop each word with probability p.

    If every word is dropped, one word chosen uniformly at random is kept.
    """

    name: ClassVar[str] = "word_drop"
    p_low: float = 0.2
    p_high: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_low <= self.p_high <= 1.0:
            raise ValueError(f"word_drop needs 0 <= p_low <= p_high <= 1, got p_low={self.p_low}, p_high={self.p_high}")

    def transform(self, words: list[str], rng: np.random.Generator) -> list[str]:
        p = rng.uniform(self.p_low, self.p_high)
        keep = rng.random(len(words)) >= p
        if not keep.any():
            keep[rng.integers(len(words))] = True
        return [w for w, k in zip(words, keep) if k]


@dataclass(frozen=True)
class WordShuffle(Augmentation):
    """Shuffle word order, by default only locally: no word moves more than `window` positions.

    Local shuffling (Lample et al., 2018: sort positions i + U(0, window + 1)) scrambles phrasing but keeps the rough
    order, so a copy still reads like its seed; a full permutation of a long title is much harder to match.
    `window=None` shuffles the whole text.
    """

    name: ClassVar[str] = "word_shuffle"
    window: int | None = 3

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 1:
            raise ValueError(f"word_shuffle needs window >= 1 or None, got {self.window}")

    def transform(self, words: list[str], rng: np.random.Generator) -> list[str]:
        n = len(words)
        if self.window is None:
            order = rng.permutation(n)
        else:
            # Word i can only pass word j if their keys can cross, i.e. |i - j| <= window.
            order = np.argsort(np.arange(n) + rng.uniform(0, self.window + 1, size=n), kind="stable")
        return [words[i] for i in order]


@dataclass(frozen=True)
class SpanDelete(Augmentation):
    """Delete one contiguous span of words: length ~ U{1..floor(max_fraction * n)}, at a uniform position.

    The length is also capped at n - 1 so that one word survives; a text too short for any deletion under
    `max_fraction` (e.g. one word) is returned unchanged.
    """

    name: ClassVar[str] = "span_delete"
    max_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.max_fraction <= 1.0:
            raise ValueError(f"span_delete needs 0 < max_fraction <= 1, got {self.max_fraction}")

    def transform(self, words: list[str], rng: np.random.Generator) -> list[str]:
        n = len(words)
        max_len = min(int(self.max_fraction * n), n - 1)
        if max_len < 1:
            return list(words)
        length = int(rng.integers(1, max_len + 1))
        start = int(rng.integers(0, n - length + 1))
        return words[:start] + words[start + length :]


AUGMENTATIONS: dict[str, type[Augmentation]] = {cls.name: cls for cls in (WordDrop, WordShuffle, SpanDelete)}


def make_augmentation(name: str, **kwargs: Any) -> Augmentation:
    """The augmentation registered as `name` ("word_drop", "word_shuffle", "span_delete"), built with `kwargs`."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(sorted(AUGMENTATIONS))}")
    return AUGMENTATIONS[name](**kwargs)
