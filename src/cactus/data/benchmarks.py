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
- amazon_category, product_same, product_mixed: the product domain, built in `cactus.data.products`, whose
  docstring describes them. Both domains draw with the shared helpers of `cactus.data.sampling`.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cactus.version import __version__
from cactus.atomic import write_text
from cactus.data.io import write_subsets
from cactus.data.products import build_amazon_category, build_product_mixed, build_product_same
from cactus.data.sampling import (
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
    spread,
)
from cactus.data.sources import (
    AMAZON_CATEGORY_FILES,
    BANKING_FILES,
    CLINC_FILES,
    HWU64_FILES,
    PRODUCT_FILES,
    Hierarchy,
    Pools,
    load_banking77,
    load_clinc,
    load_hwu64,
    text_key,
)
from cactus.data.subsets import Subset

VAL_FRACTION = 0.15  # BANKING77, HWU64: val share of train.csv, about CLINC150's (20 of 120 non-test utterances)


# ---------------------------------------------------------------------------------------------------- families


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
) -> Draft | None:
    """Coarse labels (domains, scenarios) as clusters, each drawn from 2-4 of its intents (fewer if it has fewer).

    `twin` = (coarse label, intent -> utterances of an intent-level subset): that label is always in, and its
    cluster is drawn from those utterances only, re-grouping what the intent-level subset keeps apart.
    """
    k, n = draw_shape(rng)
    coarse = list(split.intents_of)
    if twin is None:
        chosen = choose(rng, coarse, k)
    else:
        chosen = [twin[0]] + choose(rng, [c for c in coarse if c != twin[0]], k - 1)
    feeds: list[Pools] = []
    for c in chosen:
        available = twin[1] if twin is not None and c == twin[0] else {i: split.pools[i] for i in split.intents_of[c]}
        intents = choose(rng, list(available), int(rng.integers(2, 5)))
        feeds.append({i: available[i] for i in intents})
    sizes = allocate(rng, n, [sum(map(len, f.values())) for f in feeds])
    if sum(sizes) < MIN_ENTITIES:
        return None
    clusters = [(c, spread(rng, feed, s)) for c, feed, s in zip(chosen, feeds, sizes)]
    return assemble(rng, clusters, {"level": level})


def _intent_subset(rng: np.random.Generator, split: _LevelPools) -> Draft | None:
    """3-10 intents of one coarse label (one with enough intents)."""
    coarse = split.seeds[int(rng.integers(len(split.seeds)))]
    return label_subset(rng, {i: split.pools[i] for i in split.intents_of[coarse]}, {"level": "intent"})


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

    def draw(rng: np.random.Generator, split: _LevelPools) -> list[Draft] | None:
        if kind == level:
            return one(_coarse_subset(rng, split, level))
        first = _intent_subset(rng, split)
        if first is None or kind == "intent":
            return one(first)
        # <dataset>_mixed: add the coarse-level twin of the intent-level subset.
        by_intent: Pools = {}
        for text, intent in zip(first.texts, first.labels):
            by_intent.setdefault(intent, []).append(text)
        second = _coarse_subset(rng, split, level, twin=(coarse_of[first.labels[0]], by_intent))
        return None if second is None else [first, second]

    return draw_splits(family, rng, sizes, draw, splits, shuffle=kind == "mixed")


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
    return draw_splits(family, subset_rng, sizes, draw_label_subset, pools)


_BUILDERS: dict[str, Callable[[str, Path, np.random.Generator, Sizes], dict[str, list[Subset]]]] = {
    "clinc_intent": _build_clinc,
    "clinc_domain": _build_clinc,
    "clinc_mixed": _build_clinc,
    "banking77": _build_banking77,
    "amazon_category": build_amazon_category,
    "product_same": build_product_same,
    "hwu64_intent": _build_hwu64,
    "hwu64_scenario": _build_hwu64,
    "hwu64_mixed": _build_hwu64,
    "product_mixed": build_product_mixed,
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
