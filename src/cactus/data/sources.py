"""Readers for the raw datasets under shared/data, turned into pools of clean texts.

Every reader normalises whitespace, drops empty texts and resolves repeats, so that downstream code can trust:
- a text (compared case-insensitively) has exactly one label;
- a text sits in one split only and once in its pool.
Raw data repeats some texts (CLINC150 has four utterances under two intents and a few shared between splits;
BANKING77 shares six queries between train and test; HWU64 repeats three utterances within train.csv;
Amazon titles recur under different categories).
Ambiguous texts (two labels) are dropped; a text seen in an earlier split is dropped from the later ones.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

Pools = dict[str, list[str]]
"""label -> its texts, in first-seen order."""

CLINC_FILES = ("clinc150/data_full.json", "clinc150/domains.json")
BANKING_FILES = ("banking77/train.csv", "banking77/test.csv")
HWU64_FILES = ("hwu64/train.csv", "hwu64/test.csv")
AMAZON_CATEGORY_FILES = ("walmart_amazon_categories/tableB.csv",)

# source name -> (table A, table B, title column, delimiter); the gt file is <source>/gt.csv.
PRODUCT_SOURCES: dict[str, tuple[str, str, str, str]] = {
    "abt_buy": ("abt.csv", "buy.csv", "name", "|"),
    "amazon_google": ("amazon.csv", "gp.csv", "title", "#"),
    "walmart_amazon": ("walmart.csv", "amazon.csv", "title", "|"),
}
PRODUCT_FILES = tuple(
    f"product_matching/{src}/{name}" for src, (a, b, _, _) in PRODUCT_SOURCES.items() for name in (a, b, "gt.csv")
)


def clean_text(text: str) -> str:
    """Whitespace-normalised text ('' when there is nothing left)."""
    return " ".join(text.split())


def text_key(text: str) -> str:
    """Identity of a text for de-duplication and split disjointness: case and spacing do not make a new entity."""
    return clean_text(text).casefold()


def require_file(data_dir: Path, relative: str) -> Path:
    """`data_dir / relative`, or a FileNotFoundError naming the missing path."""
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"benchmark data directory {data_dir} does not exist "
            "(expected clinc150/, banking77/, hwu64/, walmart_amazon_categories/, product_matching/ in it)"
        )
    path = data_dir / relative
    if not path.is_file():
        raise FileNotFoundError(f"benchmark data file {path} is missing")
    return path


def _read_csv(path: Path, delimiter: str, columns: Iterable[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing} (header: {reader.fieldnames})")
        return list(reader)


def disjoint_pools(rows_by_split: dict[str, Iterable[tuple[str, str]]]) -> dict[str, Pools]:
    """Label pools per split from (text, label) rows, with the guarantees of this module's docstring.

    Splits claim texts in the order of `rows_by_split`, so earlier splits (train) keep shared texts.
    """
    rows_by_split = {split: list(rows) for split, rows in rows_by_split.items()}
    labels_of: dict[str, set[str]] = defaultdict(set)
    for rows in rows_by_split.values():
        for text, label in rows:
            labels_of[text_key(text)].add(label)
    claimed: set[str] = set()
    out: dict[str, Pools] = {}
    for split, rows in rows_by_split.items():
        pools: Pools = {}
        for text, label in rows:
            key = text_key(text)
            if not key or len(labels_of[key]) > 1 or key in claimed:
                continue
            claimed.add(key)
            pools.setdefault(label, []).append(clean_text(text))
        out[split] = pools
    return out


@dataclass(frozen=True)
class Hierarchy:
    """Texts labelled at two granularities: fine labels (intents), each in one coarse label (domain, scenario).

    Attributes:
        splits: split -> intent -> texts (the dataset's own splits, made text-disjoint).
        intents_of: coarse label -> its intents, in the dataset's order.
    """

    splits: dict[str, Pools]
    intents_of: dict[str, list[str]]


def load_clinc(data_dir: Path) -> Hierarchy:
    """CLINC150 without out-of-scope utterances: "train"/"val"/"test" intent pools, domains from domains.json."""
    data_path, domains_path = (require_file(data_dir, f) for f in CLINC_FILES)
    data = json.loads(data_path.read_text(encoding="utf-8"))
    intents_of = json.loads(domains_path.read_text(encoding="utf-8"))
    missing = [s for s in ("train", "val", "test") if s not in data]
    if missing:
        raise ValueError(f"{data_path}: missing split(s) {missing}")
    # 'oos' is not a coherent cluster (see the dataset README); it lives in oos_* keys, filtered here too.
    splits = disjoint_pools({s: ((t, lab) for t, lab in data[s] if lab != "oos") for s in ("train", "val", "test")})
    known = {i for intents in intents_of.values() for i in intents}
    unknown = sorted({lab for pools in splits.values() for lab in pools} - known)
    if unknown:
        raise ValueError(f"{domains_path}: intents {unknown[:5]} of {data_path} belong to no domain")
    return Hierarchy(splits, intents_of)


def load_banking77(data_dir: Path) -> dict[str, Pools]:
    """BANKING77 intent pools for "train" and "test" (train.csv and test.csv, made text-disjoint)."""
    paths = {split: require_file(data_dir, f) for split, f in zip(("train", "test"), BANKING_FILES)}
    rows = {split: _read_csv(p, ",", ("text", "category")) for split, p in paths.items()}
    return disjoint_pools({split: ((r["text"], r["category"]) for r in rs) for split, rs in rows.items()})


def load_hwu64(data_dir: Path) -> Hierarchy:
    """HWU64 intent pools for "train" and "test" (train.csv and test.csv, made text-disjoint), grouped by scenario.

    Scenarios and their intents are in first-seen order (train.csv, then test.csv). An intent under two scenarios
    is a ValueError naming the file where the second one appears.
    """
    paths = {split: require_file(data_dir, f) for split, f in zip(("train", "test"), HWU64_FILES)}
    rows = {split: _read_csv(p, ",", ("text", "scenario", "intent")) for split, p in paths.items()}
    scenario_of: dict[str, str] = {}
    intents_of: dict[str, list[str]] = {}
    for split, rs in rows.items():
        for r in rs:
            intent, scenario = r["intent"].strip(), r["scenario"].strip()
            known = scenario_of.setdefault(intent, scenario)
            if known != scenario:
                raise ValueError(f"{paths[split]}: intent {intent!r} is under scenarios {known!r} and {scenario!r}")
            if intent not in intents_of.setdefault(scenario, []):
                intents_of[scenario].append(intent)
    splits = disjoint_pools({split: ((r["text"], r["intent"].strip()) for r in rs) for split, rs in rows.items()})
    return Hierarchy(splits, intents_of)


def load_amazon_categories(data_dir: Path, min_size: int) -> Pools:
    """Amazon product titles by category (tableB.csv); empty categories and those under `min_size` titles dropped."""
    path = require_file(data_dir, AMAZON_CATEGORY_FILES[0])
    rows = _read_csv(path, ",", ("title", "category"))
    pools = disjoint_pools({"all": ((r["title"], clean_text(r["category"])) for r in rows if r["category"].strip())})
    return {cat: titles for cat, titles in pools["all"].items() if len(titles) >= min_size}


@dataclass(frozen=True)
class Product:
    """One real-world product: the distinct titles of its offers (a connected component of the match graph)."""

    source: str
    texts: tuple[str, ...]


def load_products(data_dir: Path) -> list[Product]:
    """Products of the three entity-resolution benchmarks: matched offers grouped, unmatched offers as singletons.

    The graph's nodes are texts (by `text_key`), not records: offers with the same title are one entity, so a title
    never carries two product labels. This merges a few components (a generic title matched to several colour
    variants gives a product of 3-6 titles). A product belongs to the source where its first title appears.
    """
    parent: dict[str, str] = {}
    first_text: dict[str, str] = {}
    source_of: dict[str, str] = {}

    def find(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for source, (file_a, file_b, column, delimiter) in PRODUCT_SOURCES.items():
        titles: list[dict[str, str]] = []
        for name in (file_a, file_b):
            path = require_file(data_dir, f"product_matching/{source}/{name}")
            titles.append({r["id"]: clean_text(r[column]) for r in _read_csv(path, delimiter, ("id", column))})
        for table in titles:
            for text in table.values():
                key = text_key(text)
                if key and key not in first_text:
                    first_text[key], source_of[key] = text, source
                    find(key)
        gt_path = require_file(data_dir, f"product_matching/{source}/gt.csv")
        gt = _read_csv(gt_path, delimiter, ("D1", "D2"))
        for row in gt:
            try:
                a, b = text_key(titles[0][row["D1"]]), text_key(titles[1][row["D2"]])
            except KeyError as e:
                raise ValueError(f"{gt_path}: id {e.args[0]!r} is not in the record tables") from None
            if a and b:
                parent[find(a)] = find(b)

    members: dict[str, list[str]] = {}
    for key in first_text:  # insertion order: deterministic, whatever the hash seed
        members.setdefault(find(key), []).append(key)
    return [Product(source_of[keys[0]], tuple(first_text[k] for k in keys)) for keys in members.values()]
