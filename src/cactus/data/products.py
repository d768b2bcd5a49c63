"""Product-domain benchmark families. `cactus.data.benchmarks` registers them (`build_family`) and states the
guarantees and the determinism every family keeps. Families:
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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cactus.data.sampling import (
    MAX_CLUSTERS,
    MAX_ENTITIES,
    MIN_CLUSTERS,
    MIN_ENTITIES,
    SPLITS,
    Draft,
    Sizes,
    allocate,
    assemble,
    choose,
    draw_label_subset,
    draw_shape,
    draw_splits,
    label_subset,
    one,
    sample,
    unseen_split,
)
from cactus.data.sources import Pools, Product, load_amazon_categories, load_products, text_key
from cactus.data.subsets import Subset

MIN_CATEGORY_SIZE = 10  # Amazon categories with fewer distinct titles are dropped (282 of 706 remain)
RELATED_SHARE = 0.5  # product_same: chance that a further product shares the first product's leading word
PICK_TRIES = 20  # rejection-sampling tries for an unused product before falling back / giving up


def _category_pools(data_dir: Path, rng: np.random.Generator) -> dict[str, Pools]:
    """Amazon titles by category, the categories dealt to splits (unseen categories at val and test time)."""
    titles = load_amazon_categories(data_dir, MIN_CATEGORY_SIZE)
    categories = unseen_split(rng, list(titles), lambda c: len(titles[c]))
    return {split: {c: titles[c] for c in cats} for split, cats in categories.items()}


def build_amazon_category(
    family: str, data_dir: Path, rng: np.random.Generator, sizes: Sizes
) -> dict[str, list[Subset]]:
    split_rng, subset_rng = rng.spawn(2)
    pools = _category_pools(data_dir, split_rng)
    return draw_splits(family, subset_rng, sizes, draw_label_subset, pools)


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
) -> Draft | None:
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
    return assemble(rng, clusters, {"source": source})


def _product_label(products: list[Product], index: int) -> str:
    return f"{products[index].source}/{index:05d}"


def _product_pools(
    products: list[Product], rng: np.random.Generator, forced: dict[int, str | None] | None = None
) -> dict[str, dict[str, _ProductPool]]:
    """split -> source -> its products, dealt to splits by `unseen_split`.

    `forced` = product index -> its split, fixed beforehand (None: in no split); the other products are dealt.
    """
    forced = forced or {}
    sources = list(dict.fromkeys(p.source for p in products))
    pools: dict[str, dict[str, _ProductPool]] = {s: {} for s in SPLITS}
    for source in sources:
        # Split each source's products on their own, so that every split gets its share of each source.
        ids = [i for i, p in enumerate(products) if p.source == source]
        assigned = unseen_split(rng, [i for i in ids if i not in forced], lambda i: len(products[i].texts))
        for i in ids:
            split = forced.get(i)
            if split is not None:
                assigned[split].append(i)
        for split, members in assigned.items():
            pools[split][source] = _product_pool(products, sorted(members))
    return pools


def build_product_same(
    family: str, data_dir: Path, rng: np.random.Generator, sizes: Sizes
) -> dict[str, list[Subset]]:
    products = load_products(data_dir)
    split_rng, subset_rng = rng.spawn(2)
    pools = _product_pools(products, split_rng)

    def draw(rng: np.random.Generator, split_pools: dict[str, _ProductPool]) -> list[Draft] | None:
        return one(_product_subset(rng, products, split_pools))

    return draw_splits(family, subset_rng, sizes, draw, pools)


@dataclass
class _MixedProductPools:
    """One split of product_mixed: products by source, Amazon titles by category."""

    products: dict[str, _ProductPool]
    categories: Pools


def _category_twin(
    rng: np.random.Generator, pools: Pools, first: Draft, category_of: dict[str, str]
) -> Draft | None:
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
        return label_subset(rng, pools, {"level": "category"})
    category = twins[int(rng.integers(len(twins)))]
    titles = [t for t, _ in shared[category]]
    k, n = draw_shape(rng)
    others = choose(rng, [c for c in pools if c != category], k - 1)
    rest = n - len(titles)
    if rest < len(others):
        return None
    sizes = allocate(rng, rest, [len(pools[c]) for c in others])
    if len(titles) + sum(sizes) < MIN_ENTITIES:
        return None
    clusters = [(category, titles)] + [(c, sample(rng, pools[c], s)) for c, s in zip(others, sizes)]
    return assemble(rng, clusters, {"level": "category"})


def build_product_mixed(
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

    def draw(rng: np.random.Generator, split: _MixedProductPools) -> list[Draft] | None:
        first = _product_subset(rng, products, split.products)
        if first is None:
            return None
        first.extra = {"level": "product", **first.extra}
        second = _category_twin(rng, split.categories, first, category_of)
        return None if second is None else [first, second]

    return draw_splits(family, subset_rng, sizes, draw, pools, shuffle=True)
