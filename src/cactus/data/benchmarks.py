"""Benchmark builder: subset families with train / val / test splits, drawn from the raw datasets in shared/data.

A family is one way of cutting a dataset into labelled subsets (10-50 entities, 3-10 clusters each, as in the
CACTUS paper). Families:
- clinc_intent: one CLINC150 domain per subset; clusters = 3-10 of its intents (fine-grained).
- clinc_domain: 3-10 domains per subset; clusters = domains, each drawn from 2-4 of its intents (coarse).
- clinc_mixed: the two kinds, half each, shuffled. Every domain-level subset is the twin of an intent-level one:
  its cluster for that domain re-uses utterances of the intent-level subset from 2-4 of its intents. Those pairs
  of utterances are apart in one subset and together in the other, so only a context-aware model can get both.
- hwu64_intent, hwu64_scenario, hwu64_mixed: the same three on HWU64, with its 18 scenarios as the coarse level
  (extra "level": "intent" / "scenario"). Scenarios hold 1-10 intents: only the 12 with >= 3 intents can hold
  an intent-level subset (datetime, social, takeaway have 2; cooking, news, weather 1), and 7 of those have
  exactly 3, so intent-level subsets have 4 clusters on average. All 18 can be clusters of a scenario-level
  subset, each drawn from 2-4 of its intents, or all of them when it has fewer.
- banking77: clusters = 3-10 of the 77 banking intents.
- amazon_category: Amazon product titles, clusters = categories; val and test categories are unseen in training.
- product_same: product offers, one cluster per real product (entity-resolution matches); val and test products
  are unseen in training. Subsets hold 3-10 products with >= 2 offers plus single offers of other products,
  so the 3-10 cluster rule counts clusters of >= 2 members here. Each further product is, with probability 1/2,
  one sharing the leading word (usually the brand) of the first, so that look-alikes of different products meet.
- product_mixed: the product domain's own granularity conflict: half product_same-style subsets (extra "level":
  "product"), half amazon_category-style ones ("level": "category"), shuffled. They are drawn in pairs: when
  titles of two or more products of the product-level subset share an Amazon category (Walmart-Amazon offers are
  mostly Amazon-table titles), its partner is a twin whose cluster for that category is exactly those titles,
  apart in one subset and together in the other (about 30% of the category-level subsets; abt_buy and
  amazon_google offers have no categories, so their partners are ordinary category subsets). The two tables
  share titles, so the splits are made to agree: categories are dealt to splits first, and a product with a
  title in a category's pool goes to that category's split (one whose titles fall in two splits is left out;
  one product has titles in two categories); the other products are dealt as in product_same.

Guarantees, per family: no text (compared case-insensitively) is in two splits, so no val or test subset can
re-use a training subset; a text has one label throughout the family (per level in the mixed families); no text
repeats inside a subset; subsets are distinct within a split. CLINC, HWU64 and BANKING77 keep the datasets' own
utterance splits (the train.csv of BANKING77 and of HWU64 is split per intent into train/val with the family's
seed); their intents are shared across splits (the clusters are known, the utterances are new).

Determinism: everything is drawn from `numpy.random.default_rng([seed, family offset])` (no global state, no
iteration over hash-ordered sets), so one seed gives byte-identical files on any run. Each split has its own
child generator, so a split's subsets do not change when another split's size does.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from cactus.version import __version__
from cactus.atomic import write_text
from cactus.data.io import write_subsets
from cactus.data.sources import (
    AMAZON_CATEGORY_FILES,
    BANKING_FILES,
    CLINC_FILES,
    HWU64_FILES,
    PRODUCT_FILES,
    Hierarchy,
    Pools,
    Product,
    load_amazon_categories,
    load_banking77,
    load_clinc,
    load_hwu64,
    load_products,
    text_key,
)
from cactus.data.subsets import Subset

SPLITS = ("train", "val", "test")
MIN_ENTITIES, MAX_ENTITIES = 10, 50
MIN_CLUSTERS, MAX_CLUSTERS = 3, 10
VAL_FRACTION = 0.15  # BANKING77, HWU64: val share of train.csv, about CLINC150's (20 of 120 non-test utterances)
MIN_CATEGORY_SIZE = 10  # Amazon categories with fewer distinct titles are dropped (282 of 706 remain)
# Unseen-cluster splits (categories, products): within each block of 20 items of similar size, 12 / 3 / 5.
SPLIT_BLOCK = ("train",) * 12 + ("val",) * 3 + ("test",) * 5
RELATED_SHARE = 0.5  # product_same: chance that a further product shares the first product's leading word
PICK_TRIES = 20  # rejection-sampling tries for an unused product before falling back / giving up



@dataclass
class _Draft:
    """A subset before it gets its id (ids follow the final order of a split)."""

    texts: list[str]
    labels: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


T = TypeVar("T")
P = TypeVar("P")
Draw = Callable[[np.random.Generator, P], "list[_Draft] | None"]
"""Draws one group of subsets (one, or a twin pair) from a split's pools; None when a draw misses the shape rules."""


# ---------------------------------------------------------------------------------------------- sampling helpers


def _draw_shape(rng: np.random.Generator) -> tuple[int, int]:
    """Number of clusters k and of entities n, with n >= 2k so that clusters are not mostly singletons."""
    k = int(rng.integers(MIN_CLUSTERS, MAX_CLUSTERS + 1))
    n = int(rng.integers(max(MIN_ENTITIES, 2 * k), MAX_ENTITIES + 1))
    return k, n


def _choose(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    """min(k, len(items)) distinct items in random order."""
    return [items[i] for i in rng.choice(len(items), size=min(k, len(items)), replace=False)]


def _sample(rng: np.random.Generator, texts: Sequence[str], count: int) -> list[str]:
    return [texts[i] for i in rng.choice(len(texts), size=count, replace=False)]


def _allocate(rng: np.random.Generator, n: int, caps: Sequence[int]) -> list[int]:
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


def _spread(rng: np.random.Generator, pools: Pools, size: int) -> list[str]:
    """`size` texts drawn across the pools, each chosen pool giving at least one (a cluster that mixes them)."""
    labels = _choose(rng, list(pools), size)
    counts = _allocate(rng, size, [len(pools[lab]) for lab in labels])
    return [t for lab, c in zip(labels, counts) for t in _sample(rng, pools[lab], c)]


def _assemble(rng: np.random.Generator, clusters: list[tuple[str, list[str]]], extra: dict[str, Any]) -> _Draft:
    """Flatten (label, texts) clusters into one subset, entities shuffled so that clusters are not contiguous."""
    texts = [t for _, ts in clusters for t in ts]
    labels = [lab for lab, ts in clusters for _ in ts]
    order = rng.permutation(len(texts))
    return _Draft([texts[i] for i in order], [labels[i] for i in order], extra)


def _label_subset(rng: np.random.Generator, pools: Pools, extra: dict[str, Any] | None = None) -> _Draft | None:
    """A subset whose clusters are 3-10 of the pools' labels."""
    k, n = _draw_shape(rng)
    labels = _choose(rng, list(pools), k)
    if len(labels) < MIN_CLUSTERS:
        return None
    sizes = _allocate(rng, n, [len(pools[lab]) for lab in labels])
    if sum(sizes) < MIN_ENTITIES:
        return None
    return _assemble(rng, [(lab, _sample(rng, pools[lab], s)) for lab, s in zip(labels, sizes)], extra or {})


def _draw_label_subset(rng: np.random.Generator, pools: Pools) -> list[_Draft] | None:
    return _one(_label_subset(rng, pools))


def _one(draft: _Draft | None) -> list[_Draft] | None:
    return None if draft is None else [draft]


def _draw_split(
    rng: np.random.Generator, family: str, split: str, n: int, draw: Draw[P], pools: P, shuffle: bool = False
) -> list[Subset]:
    """`n` distinct subsets named `<family>/<split>/<index>`; `shuffle` mixes the order of the drawn groups."""
    drafts: list[_Draft] = []
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


def _unseen_split(rng: np.random.Generator, items: Sequence[T], size_of: Callable[[T], int]) -> dict[str, list[T]]:
    """Assign items (categories, products) to splits, stratified by size: sort by size, deal blocks of SPLIT_BLOCK."""
    ordered = sorted(items, key=lambda it: -size_of(it))  # stable: ties keep the (deterministic) input order
    out: dict[str, list[T]] = {s: [] for s in SPLITS}
    for start in range(0, len(ordered), len(SPLIT_BLOCK)):
        block = ordered[start : start + len(SPLIT_BLOCK)]
        slots = [SPLIT_BLOCK[i] for i in rng.permutation(len(SPLIT_BLOCK))]
        for item, split in zip(block, slots):
            out[split].append(item)
    return out


# ---------------------------------------------------------------------------------------------------- families

Sizes = dict[str, int]


def _draw_splits(
    family: str, rng: np.random.Generator, sizes: Sizes, draw: Draw[P], pools: dict[str, P], shuffle: bool = False
) -> dict[str, list[Subset]]:
    """All three splits, each from its own pools and its own child generator."""
    rngs = dict(zip(SPLITS, rng.spawn(len(SPLITS))))
    return {s: _draw_split(rngs[s], family, s, sizes[s], draw, pools[s], shuffle) for s in SPLITS}


@dataclass
class _LevelPools:
    """One split of a two-level dataset (CLINC150, HWU64)."""

    pools: Pools  # intent -> texts
    intents_of: dict[str, list[str]]  # coarse label -> its intents that have texts in this split
    seeds: list[str]  # coarse labels with >= MIN_CLUSTERS intents: those that can hold an intent-level subset


def _level_pools(pools: Pools, intents_of: dict[str, list[str]]) -> _LevelPools:
    present = {c: [i for i in intents if i in pools] for c, intents in intents_of.items()}
    present = {c: intents for c, intents in present.items() if intents}
    return _LevelPools(pools, present, [c for c, intents in present.items() if len(intents) >= MIN_CLUSTERS])


def _coarse_subset(
    rng: np.random.Generator, split: _LevelPools, level: str, twin: tuple[str, Pools] | None = None
) -> _Draft | None:
    """Coarse labels (domains, scenarios) as clusters, each drawn from 2-4 of its intents (fewer if it has fewer).

    `twin` = (coarse label, intent -> utterances of an intent-level subset): that label is always in, and its
    cluster is drawn from those utterances only, re-grouping what the intent-level subset keeps apart.
    """
    k, n = _draw_shape(rng)
    coarse = list(split.intents_of)
    if twin is None:
        chosen = _choose(rng, coarse, k)
    else:
        chosen = [twin[0]] + _choose(rng, [c for c in coarse if c != twin[0]], k - 1)
    feeds: list[Pools] = []
    for c in chosen:
        available = twin[1] if twin is not None and c == twin[0] else {i: split.pools[i] for i in split.intents_of[c]}
        intents = _choose(rng, list(available), int(rng.integers(2, 5)))
        feeds.append({i: available[i] for i in intents})
    sizes = _allocate(rng, n, [sum(map(len, f.values())) for f in feeds])
    if sum(sizes) < MIN_ENTITIES:
        return None
    clusters = [(c, _spread(rng, feed, s)) for c, feed, s in zip(chosen, feeds, sizes)]
    return _assemble(rng, clusters, {"level": level})


def _intent_subset(rng: np.random.Generator, split: _LevelPools) -> _Draft | None:
    """3-10 intents of one coarse label (one with enough intents)."""
    coarse = split.seeds[int(rng.integers(len(split.seeds)))]
    return _label_subset(rng, {i: split.pools[i] for i in split.intents_of[coarse]}, {"level": "intent"})


def _build_hierarchy(
    family: str, hierarchy: Hierarchy, level: str, rng: np.random.Generator, sizes: Sizes
) -> dict[str, list[Subset]]:
    """`<dataset>_intent`, `<dataset>_<level>` or `<dataset>_mixed` subsets of a two-level dataset.

    `level` names the coarse labels (domain, scenario); `hierarchy.splits` must hold train, val and test.
    """
    kind = family.rsplit("_", 1)[1]
    coarse_of = {i: c for c, intents in hierarchy.intents_of.items() for i in intents}
    splits = {s: _level_pools(hierarchy.splits[s], hierarchy.intents_of) for s in SPLITS}
    if kind != level:
        for s, split in splits.items():
            if not split.seeds:
                raise RuntimeError(f"{family}/{s}: no {level} has {MIN_CLUSTERS} intents for an intent-level subset")

    def draw(rng: np.random.Generator, split: _LevelPools) -> list[_Draft] | None:
        if kind == level:
            return _one(_coarse_subset(rng, split, level))
        first = _intent_subset(rng, split)
        if first is None or kind == "intent":
            return _one(first)
        # <dataset>_mixed: add the coarse-level twin of the intent-level subset.
        by_intent: Pools = {}
        for text, intent in zip(first.texts, first.labels):
            by_intent.setdefault(intent, []).append(text)
        second = _coarse_subset(rng, split, level, twin=(coarse_of[first.labels[0]], by_intent))
        return None if second is None else [first, second]

    return _draw_splits(family, rng, sizes, draw, splits, shuffle=kind == "mixed")


def _build_clinc(family: str, data_dir: Path, rng: np.random.Generator, sizes: Sizes) -> dict[str, list[Subset]]:
    return _build_hierarchy(family, load_clinc(data_dir), "domain", rng, sizes)


def _carve_val(rng: np.random.Generator, train: Pools) -> tuple[Pools, Pools]:
    """(train, val) pools: VAL_FRACTION of each label's texts (at least one), drawn with `rng`, become val."""
    rest: Pools = {}
    val: Pools = {}
    for label, texts in train.items():
        shuffled = [texts[i] for i in rng.permutation(len(texts))]
        n_val = max(1, round(VAL_FRACTION * len(texts)))
        val[label], rest[label] = shuffled[:n_val], shuffled[n_val:]
    return rest, val


def _build_hwu64(family: str, data_dir: Path, rng: np.random.Generator, sizes: Sizes) -> dict[str, list[Subset]]:
    hwu = load_hwu64(data_dir)
    split_rng, subset_rng = rng.spawn(2)
    train, val = _carve_val(split_rng, hwu.splits["train"])
    hierarchy = Hierarchy({"train": train, "val": val, "test": hwu.splits["test"]}, hwu.intents_of)
    return _build_hierarchy(family, hierarchy, "scenario", subset_rng, sizes)


def _build_banking77(family: str, data_dir: Path, rng: np.random.Generator, sizes: Sizes) -> dict[str, list[Subset]]:
    raw = load_banking77(data_dir)
    split_rng, subset_rng = rng.spawn(2)
    train, val = _carve_val(split_rng, raw["train"])
    pools = {"train": train, "val": val, "test": raw["test"]}
    return _draw_splits(family, subset_rng, sizes, _draw_label_subset, pools)


def _category_pools(data_dir: Path, rng: np.random.Generator) -> dict[str, Pools]:
    """Amazon titles by category, the categories dealt to splits (unseen categories at val and test time)."""
    titles = load_amazon_categories(data_dir, MIN_CATEGORY_SIZE)
    categories = _unseen_split(rng, list(titles), lambda c: len(titles[c]))
    return {split: {c: titles[c] for c in cats} for split, cats in categories.items()}


def _build_amazon_category(
    family: str, data_dir: Path, rng: np.random.Generator, sizes: Sizes
) -> dict[str, list[Subset]]:
    split_rng, subset_rng = rng.spawn(2)
    pools = _category_pools(data_dir, split_rng)
    return _draw_splits(family, subset_rng, sizes, _draw_label_subset, pools)


def _leading_word(text: str) -> str:
    """First word of a title, lower-cased: usually the brand, a cheap proxy for 'similar product'."""
    words = text_key(text).split()
    return words[0].strip("-,.:;()[]'\"") if words else ""


@dataclass
class _ProductPool:
    """One source's products in one split (indices into the product list)."""

    all: list[int]
    multi: list[int]  # products with >= 2 titles: the clusters that count
    all_by_word: dict[str, list[int]]
    multi_by_word: dict[str, list[int]]


def _product_pool(products: list[Product], indices: list[int]) -> _ProductPool:
    all_by_word: dict[str, list[int]] = {}
    multi_by_word: dict[str, list[int]] = {}
    for i in indices:
        word = _leading_word(products[i].texts[0])
        all_by_word.setdefault(word, []).append(i)
        if len(products[i].texts) >= 2:
            multi_by_word.setdefault(word, []).append(i)
    multi = [i for i in indices if len(products[i].texts) >= 2]
    return _ProductPool(list(indices), multi, all_by_word, multi_by_word)


def _pick(rng: np.random.Generator, pool: Sequence[int], used: set[int]) -> int | None:
    """A random product of `pool` not in `used`, or None if rejection sampling keeps hitting used ones."""
    for _ in range(PICK_TRIES if pool else 0):
        p = pool[int(rng.integers(len(pool)))]
        if p not in used:
            return p
    return None


def _pick_related(
    rng: np.random.Generator, related: Sequence[int], everything: Sequence[int], used: set[int]
) -> int | None:
    p = _pick(rng, related, used) if rng.random() < RELATED_SHARE else None
    return _pick(rng, everything, used) if p is None else p


def _product_subset(
    rng: np.random.Generator, products: list[Product], pools: dict[str, _ProductPool]
) -> _Draft | None:
    """3-10 products with all their offers, plus single offers of other products (at most 2/3 of the subset)."""
    source = list(pools)[int(rng.integers(len(pools)))]
    pool = pools[source]
    k = int(rng.integers(MIN_CLUSTERS, MAX_CLUSTERS + 1))
    anchor = pool.multi[int(rng.integers(len(pool.multi)))]
    word = _leading_word(products[anchor].texts[0])
    chosen, used = [anchor], {anchor}
    while len(chosen) < k:
        p = _pick_related(rng, pool.multi_by_word.get(word, []), pool.multi, used)
        if p is None:
            return None
        chosen.append(p)
        used.add(p)
    clusters = [(_product_label(products, p), list(products[p].texts)) for p in chosen]
    m = sum(len(ts) for _, ts in clusters)
    if m > MAX_ENTITIES:
        return None
    n = int(rng.integers(max(MIN_ENTITIES, m), min(MAX_ENTITIES, 3 * m) + 1))
    for _ in range(n - m):
        p = _pick_related(rng, pool.all_by_word.get(word, []), pool.all, used)
        if p is None:
            return None
        used.add(p)
        titles = products[p].texts
        clusters.append((_product_label(products, p), [titles[int(rng.integers(len(titles)))]]))
    return _assemble(rng, clusters, {"source": source})


def _product_label(products: list[Product], index: int) -> str:
    return f"{products[index].source}/{index:05d}"


def _product_pools(
    products: list[Product], rng: np.random.Generator, forced: dict[int, str | None] | None = None
) -> dict[str, dict[str, _ProductPool]]:
    """split -> source -> its products, dealt to splits by `_unseen_split`.

    `forced` = product index -> its split, fixed beforehand (None: in no split); the other products are dealt.
    """
    forced = forced or {}
    sources = list(dict.fromkeys(p.source for p in products))
    pools: dict[str, dict[str, _ProductPool]] = {s: {} for s in SPLITS}
    for source in sources:
        # Split each source's products on their own, so that every split gets its share of each source.
        ids = [i for i, p in enumerate(products) if p.source == source]
        assigned = _unseen_split(rng, [i for i in ids if i not in forced], lambda i: len(products[i].texts))
        for i in ids:
            split = forced.get(i)
            if split is not None:
                assigned[split].append(i)
        for split, members in assigned.items():
            pools[split][source] = _product_pool(products, sorted(members))
    return pools


def _build_product_same(
    family: str, data_dir: Path, rng: np.random.Generator, sizes: Sizes
) -> dict[str, list[Subset]]:
    products = load_products(data_dir)
    split_rng, subset_rng = rng.spawn(2)
    pools = _product_pools(products, split_rng)

    def draw(rng: np.random.Generator, split_pools: dict[str, _ProductPool]) -> list[_Draft] | None:
        return _one(_product_subset(rng, products, split_pools))

    return _draw_splits(family, subset_rng, sizes, draw, pools)


@dataclass
class _MixedProductPools:
    """One split of product_mixed: products by source, Amazon titles by category."""

    products: dict[str, _ProductPool]
    categories: Pools


def _category_twin(
    rng: np.random.Generator, pools: Pools, first: _Draft, category_of: dict[str, str]
) -> _Draft | None:
    """The category-level partner of a product-level subset.

    When titles of two or more different products of `first` share a category, the partner is its twin: that
    category is always in, and its cluster is exactly those titles (apart at the product level, together here);
    2-9 other categories fill the subset. Otherwise the partner is an ordinary category subset.
    """
    shared: dict[str, list[tuple[str, str]]] = {}
    for text, label in zip(first.texts, first.labels):
        category = category_of.get(text_key(text))
        if category in pools:  # always, as the family's splits agree on shared titles; guarded all the same
            shared.setdefault(category, []).append((text, label))
    twins = [c for c, members in shared.items() if len({lab for _, lab in members}) >= 2]
    if not twins:
        return _label_subset(rng, pools, {"level": "category"})
    category = twins[int(rng.integers(len(twins)))]
    titles = [t for t, _ in shared[category]]
    k, n = _draw_shape(rng)
    others = _choose(rng, [c for c in pools if c != category], k - 1)
    rest = n - len(titles)
    if rest < len(others):
        return None
    sizes = _allocate(rng, rest, [len(pools[c]) for c in others])
    if len(titles) + sum(sizes) < MIN_ENTITIES:
        return None
    clusters = [(category, titles)] + [(c, _sample(rng, pools[c], s)) for c, s in zip(others, sizes)]
    return _assemble(rng, clusters, {"level": "category"})


def _build_product_mixed(
    family: str, data_dir: Path, rng: np.random.Generator, sizes: Sizes
) -> dict[str, list[Subset]]:
    """product_same-style and amazon_category-style subsets, in pairs (a product-level one and its partner).

    The two tables share titles (most Amazon offers of walmart_amazon are tableB titles), so the splits are made
    to agree: categories are dealt first, and a product with titles in a category's pool goes to that
    category's split (a product whose titles fall in categories of two splits is left out); the other products
    are dealt as in product_same. A title is then in one split for both levels.
    """
    products = load_products(data_dir)
    split_rng, subset_rng = rng.spawn(2)
    categories = _category_pools(data_dir, split_rng)
    split_of = {text_key(t): s for s, pools in categories.items() for ts in pools.values() for t in ts}
    category_of = {text_key(t): c for pools in categories.values() for c, ts in pools.items() for t in ts}
    forced: dict[int, str | None] = {}
    for i, product in enumerate(products):
        found = sorted({split_of[k] for k in map(text_key, product.texts) if k in split_of})
        if found:
            forced[i] = found[0] if len(found) == 1 else None
    product_pools = _product_pools(products, split_rng, forced)
    pools = {s: _MixedProductPools(product_pools[s], categories[s]) for s in SPLITS}

    def draw(rng: np.random.Generator, split: _MixedProductPools) -> list[_Draft] | None:
        first = _product_subset(rng, products, split.products)
        if first is None:
            return None
        first.extra = {"level": "product", **first.extra}
        second = _category_twin(rng, split.categories, first, category_of)
        return None if second is None else [first, second]

    return _draw_splits(family, subset_rng, sizes, draw, pools, shuffle=True)


_BUILDERS: dict[str, Callable[[str, Path, np.random.Generator, Sizes], dict[str, list[Subset]]]] = {
    "clinc_intent": _build_clinc,
    "clinc_domain": _build_clinc,
    "clinc_mixed": _build_clinc,
    "banking77": _build_banking77,
    "amazon_category": _build_amazon_category,
    "product_same": _build_product_same,
    "hwu64_intent": _build_hwu64,
    "hwu64_scenario": _build_hwu64,
    "hwu64_mixed": _build_hwu64,
    "product_mixed": _build_product_mixed,
}
FAMILIES: tuple[str, ...] = tuple(_BUILDERS)
FAMILY_FILES: dict[str, tuple[str, ...]] = {
    "clinc_intent": CLINC_FILES,
    "clinc_domain": CLINC_FILES,
    "clinc_mixed": CLINC_FILES,
    "banking77": BANKING_FILES,
    "amazon_category": AMAZON_CATEGORY_FILES,
    "product_same": PRODUCT_FILES,
    "hwu64_intent": HWU64_FILES,
    "hwu64_scenario": HWU64_FILES,
    "hwu64_mixed": HWU64_FILES,
    "product_mixed": PRODUCT_FILES + AMAZON_CATEGORY_FILES,
}
"""Raw files each family reads, relative to the data directory."""


def build_family(
    name: str, data_dir: str | Path, seed: int = 0, n_train: int = 2000, n_val: int = 200, n_test: int = 500
) -> dict[str, list[Subset]]:
    """Subsets of one family: {"train": [...], "val": [...], "test": [...]}, deterministic in `seed`."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown benchmark family {name!r}; known: {', '.join(FAMILIES)}")
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for split, n in sizes.items():
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n_{split} must be a non-negative integer, got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    # The family's own stream: the offset keeps families independent, a fixed hash keeps it stable across runs.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return _BUILDERS[name](name, Path(data_dir), rng, sizes)


# ------------------------------------------------------------------------------------------- statistics, output


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "mean": None, "max": None}
    return {"min": min(values), "mean": round(sum(values) / len(values), 2), "max": max(values)}


def family_stats(splits: dict[str, list[Subset]]) -> dict[str, dict[str, Any]]:
    """Per split: subset and entity counts, entities / clusters / clusters of >= 2 members per subset
    (min, mean, max), mean words per unique text, and how many unique texts also occur in train."""
    train_keys = {text_key(t) for s in splits.get("train", []) for t in s.texts}
    out: dict[str, dict[str, Any]] = {}
    for split, subsets in splits.items():
        unique = sorted({t for s in subsets for t in s.texts})
        counts = [Counter(s.labels or []) for s in subsets]
        stats: dict[str, Any] = {
            "subsets": len(subsets),
            "entities": sum(len(s) for s in subsets),
            "unique_texts": len(unique),
            "entities_per_subset": _summary([len(s) for s in subsets]),
            "clusters_per_subset": _summary([len(c) for c in counts]),
            "multi_clusters_per_subset": _summary([sum(v >= 2 for v in c.values()) for c in counts]),
            "words_per_text": round(sum(len(t.split()) for t in unique) / len(unique), 2) if unique else None,
        }
        if split != "train":
            stats["texts_shared_with_train"] = sum(text_key(t) in train_keys for t in unique)
        out[split] = stats
    return out


def format_stats(stats: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A readable table per family of `family_stats` results ({family: {split: stats}})."""
    header = [
        "split", "subsets", "entities", "unique", "entities/subset", "clusters", "clusters>=2", "words", "in train"
    ]

    def mmm(s: dict[str, float | None]) -> str:
        return "-" if s["min"] is None else f"{s['min']} / {s['mean']:.1f} / {s['max']}"

    blocks = []
    for family, splits in stats.items():
        rows = [header] + [
            [
                split,
                str(st["subsets"]),
                str(st["entities"]),
                str(st["unique_texts"]),
                mmm(st["entities_per_subset"]),
                mmm(st["clusters_per_subset"]),
                mmm(st["multi_clusters_per_subset"]),
                "-" if st["words_per_text"] is None else f"{st['words_per_text']:.2f}",
                str(st.get("texts_shared_with_train", "-")),
            ]
            for split, st in splits.items()
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        # Split names left-aligned, numbers right-aligned.
        lines = ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]) for r in rows]
        blocks.append("\n".join([family, *lines]))
    return "\n\n".join(blocks)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_benchmarks(
    data_dir: str | Path,
    out_dir: str | Path,
    families: Sequence[str] = FAMILIES,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 500,
    progress: bool = True,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Build families into `out_dir/<family>/{train,val,test}.jsonl` and `stats.json`, plus `out_dir/manifest.json`.

    Returns {family: family_stats}. `progress` prints one line per family to stderr.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    unknown = [f for f in families if f not in _BUILDERS]
    if unknown:
        raise ValueError(f"unknown benchmark families {unknown}; known: {', '.join(FAMILIES)}")
    all_stats: dict[str, dict[str, dict[str, Any]]] = {}
    for family in families:
        start = time.perf_counter()
        splits = build_family(family, data_dir, seed, n_train, n_val, n_test)
        for split, subsets in splits.items():
            write_subsets(out_dir / family / f"{split}.jsonl", subsets)
        all_stats[family] = family_stats(splits)
        write_text(out_dir / family / "stats.json", json.dumps(all_stats[family], indent=2) + "\n")
        if progress:
            n_subsets = sum(map(len, splits.values()))
            print(f"{family}: {n_subsets} subsets in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    files = sorted({f for family in families for f in FAMILY_FILES[family]})
    manifest = {
        "cactus_version": __version__,
        "seed": seed,
        "sizes": {"train": n_train, "val": n_val, "test": n_test},
        "families": list(families),
        "data_dir": str(data_dir),  # as given, so a relative path keeps the manifest portable
        "sources": {f: {"sha256": _sha256(data_dir / f)} for f in files},
        "family_sources": {family: list(FAMILY_FILES[family]) for family in families},
    }
    write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return all_stats
