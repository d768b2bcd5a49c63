"""Synthetic clusterings for self-supervised pretraining (METHOD.md section 3).

A synthetic subset: K ~ U{min_clusters..max_clusters} distinct seed texts drawn without replacement from a pool of
unlabelled entities; seed k grows a cluster of size ~ U{min_size..max_size}; every member is an augmented copy of its
seed, with fresh randomness per copy; label = k. Entities are shuffled within the subset so that position says nothing
about the cluster.

Decisions:
- The seed itself is not a member verbatim; all members are augmented copies, as in the authors' code, so that no
  member is special (the model cannot learn to spot the untouched original).
- Two copies may come out identical (short seeds, light drops). They are kept: they truly share a cluster, and a
  `Subset` may repeat a text (nothing downstream is keyed by text).
- A pool with fewer unique texts than `max_clusters` caps K at the pool size (small training sets still pretrain);
  one with fewer than `min_clusters` is an error.
- Everything random comes from `numpy.random.default_rng(seed)`. `seed` may be a sequence of ints, so a trainer draws
  a different, reproducible set each epoch with `seed=(seed, epoch)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cactus.data import Subset
from cactus.selfsup.augment import Augmentation, make_augmentation


def unique_texts(subsets: Sequence[Subset]) -> list[str]:
    """The unique entity texts of `subsets`, in order of first appearance (the pretraining pool)."""
    return list(dict.fromkeys(t for s in subsets for t in s.texts))


def make_synthetic_subsets(
    pool: Sequence[str],
    n_subsets: int,
    augmentation: Augmentation | str = "word_drop",
    seed: int | Sequence[int] = 0,
    min_clusters: int = 2,
    max_clusters: int = 10,
    min_size: int = 1,
    max_size: int = 5,
) -> list[Subset]:
    """`n_subsets` synthetic labelled subsets drawn from the texts in `pool`, reproducible from `seed`.

    Args:
        pool: unlabelled entity texts; repeats are dropped (keeping first appearances) before seeds are drawn.
        n_subsets: how many subsets to draw.
        augmentation: an `Augmentation`, or a registered name built with its defaults.
        seed: int, or ints such as (seed, epoch), for `numpy.random.default_rng`.
        min_clusters, max_clusters: range of K, inclusive; K is capped at the number of unique texts.
        min_size, max_size: range of each cluster's size, inclusive.

    Returns:
        Subsets with ids "synthetic/000000", ...; `labels` are seed indices 0..K-1 (ints) and `extra["seeds"]` lists
        the seed texts, so `extra["seeds"][label]` is the text a member was made from.
    """
    if isinstance(augmentation, str):
        augmentation = make_augmentation(augmentation)
    elif not isinstance(augmentation, Augmentation):
        raise TypeError(f"augmentation must be an Augmentation or a name, got {type(augmentation).__name__}")
    if n_subsets < 0:
        raise ValueError(f"n_subsets must be >= 0, got {n_subsets}")
    if not 1 <= min_clusters <= max_clusters:
        raise ValueError(f"need 1 <= min_clusters <= max_clusters, got {min_clusters}, {max_clusters}")
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    for i, t in enumerate(pool):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"pool text {i} must be a non-empty string, got {t!r}")
    texts = list(dict.fromkeys(pool))
    if len(texts) < min_clusters:
        raise ValueError(f"the pool has {len(texts)} unique texts, fewer than min_clusters={min_clusters}")
    top_k = min(max_clusters, len(texts))

    rng = np.random.default_rng(seed)
    subsets = []
    for index in range(n_subsets):
        k = int(rng.integers(min_clusters, top_k + 1))
        seeds = [texts[i] for i in rng.choice(len(texts), size=k, replace=False)]
        sizes = rng.integers(min_size, max_size + 1, size=k)
        members = [(augmentation(s, rng), label) for label, s in enumerate(seeds) for _ in range(sizes[label])]
        members = [members[i] for i in rng.permutation(len(members))]
        subsets.append(
            Subset(
                id=f"synthetic/{index:06d}",
                texts=[text for text, _ in members],
                labels=[label for _, label in members],
                extra={"seeds": seeds},
            )
        )
    return subsets
