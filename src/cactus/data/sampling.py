"""Drawing subsets, shared by the benchmark families (`benchmarks` for intents, `products` for products).

The shape rules (10-50 entities, 3-10 clusters, as in the CACTUS paper), clusters sampled from label pools, a
split's distinct subsets drawn from its pools, and items (categories, products) dealt to splits so that val and
test ones are unseen in training. Every draw takes its `numpy.random.Generator`; nothing here keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from cactus.data.sources import Pools, text_key
from cactus.data.subsets import Subset

SPLITS = ("train", "val", "test")
MIN_ENTITIES, MAX_ENTITIES = 10, 50
MIN_CLUSTERS, MAX_CLUSTERS = 3, 10
# Unseen-cluster splits (categories, products): within each block of 20 items of similar size, 12 / 3 / 5.
SPLIT_BLOCK = ("train",) * 12 + ("val",) * 3 + ("test",) * 5


@dataclass
class Draft:
    """A subset before it gets its id (ids follow the final order of a split)."""

    texts: list[str]
    labels: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


T = TypeVar("T")
P = TypeVar("P")
Draw = Callable[[np.random.Generator, P], "list[Draft] | None"]
"""Draws one group of subsets (one, or a twin pair) from a split's pools; None when a draw misses the shape rules."""


# ---------------------------------------------------------------------------------------------- sampling helpers


def draw_shape(rng: np.random.Generator) -> tuple[int, int]:
    """Number of clusters k and of entities n, with n >= 2k so that clusters are not mostly singletons."""
    k = int(rng.integers(MIN_CLUSTERS, MAX_CLUSTERS + 1))
    n = int(rng.integers(max(MIN_ENTITIES, 2 * k), MAX_ENTITIES + 1))
    return k, n


def choose(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    """min(k, len(items)) distinct items in random order."""
    return [items[i] for i in rng.choice(len(items), size=min(k, len(items)), replace=False)]


def sample(rng: np.random.Generator, texts: Sequence[str], count: int) -> list[str]:
    return [texts[i] for i in rng.choice(len(texts), size=count, replace=False)]


def allocate(rng: np.random.Generator, n: int, caps: Sequence[int]) -> list[int]:
    """Cluster sizes: each >= 1 and <= its cap (needs n >= len(caps), caps >= 1), summing to min(n, sum(caps)).

    Proportions are Dirichlet(1), so clusters are unevenly sized, as in real subsets.
    """
    k = len(caps)
    cap = np.asarray(caps)
    sizes = np.minimum(1 + rng.multinomial(n - k, rng.dirichlet(np.ones(k))), cap)
    # What capped clusters could not take goes, one entity at a time, to clusters with room.
    for _ in range(n - int(sizes.sum())):
        room = cap - sizes
        if room.sum() == 0:
            break
        sizes[rng.choice(k, p=room / room.sum())] += 1
    return sizes.tolist()


def spread(rng: np.random.Generator, pools: Pools, size: int) -> list[str]:
    """`size` texts drawn across the pools, each chosen pool giving at least one (a cluster that mixes them)."""
    labels = choose(rng, list(pools), size)
    counts = allocate(rng, size, [len(pools[lab]) for lab in labels])
    return [t for lab, c in zip(labels, counts) for t in sample(rng, pools[lab], c)]


def assemble(rng: np.random.Generator, clusters: list[tuple[str, list[str]]], extra: dict[str, Any]) -> Draft:
    """Flatten (label, texts) clusters into one subset, entities shuffled so that clusters are not contiguous."""
    texts = [t for _, ts in clusters for t in ts]
    labels = [lab for lab, ts in clusters for _ in ts]
    order = rng.permutation(len(texts))
    return Draft([texts[i] for i in order], [labels[i] for i in order], extra)


def label_subset(rng: np.random.Generator, pools: Pools, extra: dict[str, Any] | None = None) -> Draft | None:
    """A subset whose clusters are 3-10 of the pools' labels."""
    k, n = draw_shape(rng)
    labels = choose(rng, list(pools), k)
    if len(labels) < MIN_CLUSTERS:
        return None
    sizes = allocate(rng, n, [len(pools[lab]) for lab in labels])
    if sum(sizes) < MIN_ENTITIES:
        return None
    return assemble(rng, [(lab, sample(rng, pools[lab], s)) for lab, s in zip(labels, sizes)], extra or {})


def draw_label_subset(rng: np.random.Generator, pools: Pools) -> list[Draft] | None:
    return one(label_subset(rng, pools))


def one(draft: Draft | None) -> list[Draft] | None:
    return None if draft is None else [draft]


def _draw_split(
    rng: np.random.Generator, family: str, split: str, n: int, draw: Draw[P], pools: P, shuffle: bool = False
) -> list[Subset]:
    """`n` distinct subsets named `<family>/<split>/<index>`; `shuffle` mixes the order of the drawn groups."""
    drafts: list[Draft] = []
    seen: set[frozenset[str]] = set()
    attempts = 0
    while len(drafts) < n:
        attempts += 1
        if attempts > 10 * n + 100:
            raise RuntimeError(f"{family}/{split}: drew only {len(drafts)} of {n} distinct subsets; pools too small")
        group = draw(rng, pools)
        if group is None:
            continue
        keys = [frozenset(map(text_key, d.texts)) for d in group]
        if len(set(keys)) < len(keys) or any(k in seen for k in keys):
            continue
        seen.update(keys)
        drafts.extend(group)
    drafts = drafts[:n]
    if shuffle:
        drafts = [drafts[i] for i in rng.permutation(n)]
    return [Subset(f"{family}/{split}/{i:06d}", d.texts, d.labels, extra=dict(d.extra)) for i, d in enumerate(drafts)]


def unseen_split(rng: np.random.Generator, items: Sequence[T], size_of: Callable[[T], int]) -> dict[str, list[T]]:
    """Assign items (categories, products) to splits, stratified by size: sort by size, deal blocks of SPLIT_BLOCK."""
    ordered = sorted(items, key=lambda it: -size_of(it))  # stable: ties keep the (deterministic) input order
    out: dict[str, list[T]] = {s: [] for s in SPLITS}
    for start in range(0, len(ordered), len(SPLIT_BLOCK)):
        block = ordered[start : start + len(SPLIT_BLOCK)]
        slots = [SPLIT_BLOCK[i] for i in rng.permutation(len(SPLIT_BLOCK))]
        for item, split in zip(block, slots):
            out[split].append(item)
    return out


Sizes = dict[str, int]


def draw_splits(
    family: str, rng: np.random.Generator, sizes: Sizes, draw: Draw[P], pools: dict[str, P], shuffle: bool = False
) -> dict[str, list[Subset]]:
    """All three splits, each from its own pools and its own child generator."""
    rngs = dict(zip(SPLITS, rng.spawn(len(SPLITS))))
    return {s: _draw_split(rngs[s], family, s, sizes[s], draw, pools[s], shuffle) for s in SPLITS}
