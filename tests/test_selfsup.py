"""Augmentations and synthetic clusterings for self-supervised pretraining."""

import csv
from collections import Counter

import numpy as np
import pytest

from cactus.data import Subset
from cactus.selfsup import (
    Augmentation,
    SpanDelete,
    WordDrop,
    WordShuffle,
    make_augmentation,
    make_synthetic_subsets,
    unique_texts,
)
from conftest import SHARED_DATA

POOL = [
    "apple iphone 13 pro max 256gb graphite",
    "samsung galaxy s21 ultra phantom black",
    "sony wh-1000xm4 wireless noise cancelling headphones",
    "how do i reset my card pin",
    "why was my transfer declined",
    "organic green tea bags 100 count",
    "stainless steel water bottle 1 litre",
    "usb c charging cable 2 m braided",
    "where is my refund",
    "lego classic creative brick box",
    "kindle paperwhite waterproof e-reader",
    "one",
]


def is_subsequence(words: list[str], of: list[str]) -> bool:
    it = iter(of)
    return all(w in it for w in words)


def is_span_deletion(words: list[str], of: list[str], max_fraction: float) -> bool:
    d = len(of) - len(words)
    if d == 0:  # allowed only when no span may be deleted
        return words == of and min(int(max_fraction * len(of)), len(of) - 1) < 1
    return 0 < d <= max_fraction * len(of) and any(words == of[:i] + of[i + d :] for i in range(len(words) + 1))


DERIVED = {
    "word_drop": lambda out, seed: is_subsequence(out, seed),
    "word_shuffle": lambda out, seed: sorted(out) == sorted(seed),
    "span_delete": lambda out, seed: is_span_deletion(out, seed, 0.5),
}


def test_registry():
    assert isinstance(make_augmentation("word_drop"), WordDrop)
    assert make_augmentation("word_shuffle", window=None) == WordShuffle(window=None)
    assert make_augmentation("span_delete", max_fraction=0.3) == SpanDelete(0.3)
    with pytest.raises(ValueError, match="unknown augmentation 'char_swap'; known: span_delete, word_drop"):
        make_augmentation("char_swap")


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("word_drop", {"p_low": 0.8, "p_high": 0.2}),
        ("word_shuffle", {"window": 0}),
        ("span_delete", {"max_fraction": 0}),
    ],
)
def test_bad_augmentation_parameters(name, kwargs):
    with pytest.raises(ValueError, match=name):
        make_augmentation(name, **kwargs)


@pytest.mark.parametrize(
    "aug", [WordDrop(), WordDrop(1.0, 1.0), WordShuffle(), WordShuffle(None), SpanDelete(), SpanDelete(1.0)], ids=repr
)
def test_augmentations_keep_a_word(aug: Augmentation):
    rng = np.random.default_rng(0)
    for text in ["one", "two words", "  padded   spaces  ", "a b c d e f g"]:
        for _ in range(200):
            out = aug(text, rng)
            assert out.strip() and out == out.strip() and "  " not in out
    assert WordDrop(1.0, 1.0)("one", rng) == "one"
    assert SpanDelete(1.0)("one", rng) == "one"
    with pytest.raises(ValueError, match="without words"):
        aug("   ", rng)


def test_word_drop_rate_is_drawn_per_copy():
    """Drop fraction of a 100-word text: mean near (0.2 + 0.7) / 2, spread as wide as a per-copy p makes it."""
    words = [f"w{i}" for i in range(100)]
    rng = np.random.default_rng(1)
    fractions = []
    for _ in range(2000):
        out = WordDrop()(" ".join(words), rng).split()
        assert is_subsequence(out, words)
        fractions.append(1 - len(out) / len(words))
    fractions = np.array(fractions)
    assert 0.43 < fractions.mean() < 0.47
    # Per-copy p ~ U(0.2, 0.7): sd = sqrt(0.5**2 / 12 + E[p(1 - p)] / 100) ~ 0.15; one fixed p = 0.45 would give ~ 0.05.
    assert 0.13 < fractions.std() < 0.17


def test_local_shuffle_moves_words_at_most_window():
    words = [f"w{i}" for i in range(30)]
    rng = np.random.default_rng(2)
    moved = 0
    for _ in range(200):
        out = WordShuffle(window=3)(" ".join(words), rng).split()
        shifts = [abs(pos - int(w[1:])) for pos, w in enumerate(out)]
        assert sorted(out) == sorted(words) and max(shifts) <= 3
        moved = max(moved, max(shifts))
    assert moved == 3
    full = WordShuffle(window=None)(" ".join(words), rng).split()
    assert sorted(full) == sorted(words) and full != words


def test_span_delete_is_one_contiguous_span():
    words = [f"w{i}" for i in range(10)]
    rng = np.random.default_rng(3)
    lengths = Counter()
    for _ in range(500):
        out = SpanDelete(0.5)(" ".join(words), rng).split()
        assert is_span_deletion(out, words, 0.5)
        lengths[len(words) - len(out)] += 1
    assert set(lengths) == {1, 2, 3, 4, 5}


def test_synthetic_is_deterministic():
    a = make_synthetic_subsets(POOL, 20, seed=7)
    b = make_synthetic_subsets(POOL, 20, seed=7)
    assert [(s.id, s.texts, s.labels, s.extra) for s in a] == [(s.id, s.texts, s.labels, s.extra) for s in b]
    assert [s.texts for s in a] != [s.texts for s in make_synthetic_subsets(POOL, 20, seed=8)]
    epoch0 = make_synthetic_subsets(POOL, 20, seed=(7, 0))
    assert [s.texts for s in epoch0] == [s.texts for s in make_synthetic_subsets(POOL, 20, seed=(7, 0))]
    assert [s.texts for s in epoch0] != [s.texts for s in make_synthetic_subsets(POOL, 20, seed=(7, 1))]


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_synthetic_shapes_and_derivation(name):
    subsets = make_synthetic_subsets(POOL, 300, augmentation=name, seed=0)
    assert [s.id for s in subsets] == [f"synthetic/{i:06d}" for i in range(300)]
    for s in subsets:
        seeds = s.extra["seeds"]
        assert 2 <= len(seeds) <= 10 and len(set(seeds)) == len(seeds) and set(seeds) <= set(POOL)
        sizes = Counter(s.labels)
        assert set(sizes) == set(range(len(seeds))) and all(1 <= n <= 5 for n in sizes.values())
        for text, label in zip(s.texts, s.labels):
            assert text.strip() and DERIVED[name](text.split(), seeds[label].split())


def test_synthetic_covers_the_ranges():
    pool = [f"entity number {i} with several words" for i in range(50)]
    subsets = make_synthetic_subsets(pool, 500, seed=4)
    ks = Counter(len(s.extra["seeds"]) for s in subsets)
    sizes = Counter(n for s in subsets for n in Counter(s.labels).values())
    assert set(ks) == set(range(2, 11)) and set(sizes) == set(range(1, 6))
    # Shuffled within the subset: labels are not in sorted runs.
    assert any(s.labels != sorted(s.labels) for s in subsets)


def test_synthetic_custom_ranges_and_small_pool():
    subsets = make_synthetic_subsets(
        POOL, 100, WordDrop(0.0, 0.0), seed=5, min_clusters=3, max_clusters=3, min_size=2, max_size=2
    )
    for s in subsets:
        assert len(s.extra["seeds"]) == 3 and len(s) == 6
        # No drops: every member equals its seed, so identical copies are kept as one cluster's members.
        assert s.texts == [s.extra["seeds"][label] for label in s.labels]
    # Three unique texts (one repeated): K is capped at 3.
    small = make_synthetic_subsets(["a b", "c d", "a b", "e f"], 100, seed=6)
    assert {len(s.extra["seeds"]) for s in small} == {2, 3}


@pytest.mark.parametrize(
    "pool, kwargs, error, match",
    [
        ([], {}, ValueError, "0 unique texts, fewer than min_clusters=2"),
        (["only one", "only one"], {}, ValueError, "1 unique texts"),
        (["fine", "  "], {}, ValueError, "pool text 1"),
        (POOL, {"n_subsets": -1}, ValueError, "n_subsets"),
        (POOL, {"min_clusters": 5, "max_clusters": 4}, ValueError, "min_clusters <= max_clusters"),
        (POOL, {"min_clusters": 0}, ValueError, "1 <= min_clusters"),
        (POOL, {"min_size": 0}, ValueError, "min_size"),
        (POOL, {"min_size": 3, "max_size": 2}, ValueError, "min_size <= max_size"),
        (POOL, {"augmentation": "typo"}, ValueError, "unknown augmentation"),
        (POOL, {"augmentation": len}, TypeError, "Augmentation or a name"),
    ],
)
def test_synthetic_errors(pool, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_synthetic_subsets(pool, **{"n_subsets": 1, **kwargs})


def test_unique_texts_first_appearance():
    subsets = [Subset("a", ["x", "y", "x"], [0, 1, 0]), Subset("b", ["z", "y", "w"], [0, 0, 1])]
    assert unique_texts(subsets) == ["x", "y", "z", "w"]


BANKING_TRAIN = SHARED_DATA / "banking77" / "train.csv"


@pytest.mark.skipif(not BANKING_TRAIN.is_file(), reason=f"banking77 training data not found at {BANKING_TRAIN}")
def test_synthetic_from_banking77():
    with BANKING_TRAIN.open(newline="", encoding="utf-8") as f:
        rows = [row for _, row in zip(range(300), csv.DictReader(f))]
    by_category: dict[str, list[str]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row["text"])
    labelled = [Subset(c, texts, [c] * len(texts)) for c, texts in by_category.items()]
    pool = unique_texts(labelled)
    assert len(pool) > 10 and len(pool) == len(set(pool))
    for name, derived in DERIVED.items():
        for s in make_synthetic_subsets(pool, 50, augmentation=name, seed=0):
            assert all(derived(t.split(), s.extra["seeds"][label].split()) for t, label in zip(s.texts, s.labels))
