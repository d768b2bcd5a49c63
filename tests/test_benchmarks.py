"""Benchmark builder: shape rules, split disjointness, label consistency, context pairs, determinism, errors."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from cactus.data import read_subsets
from cactus.data.benchmarks import (
    FAMILIES,
    build_benchmarks,
    build_family,
    family_stats,
    format_stats,
)
from cactus.data.sources import text_key
from cactus.data.subsets import Subset

from conftest import SHARED_DATA as DATA_DIR
SIZES = {"n_train": 50, "n_val": 20, "n_test": 20}

pytestmark = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"benchmark raw data not found at {DATA_DIR}")


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, list[Subset]]]:
    return {family: build_family(family, DATA_DIR, seed=0, **SIZES) for family in FAMILIES}


def _keys(subsets: list[Subset]) -> set[str]:
    return {text_key(t) for s in subsets for t in s.texts}


@pytest.mark.parametrize("family", FAMILIES)
def test_shape(built, family):
    splits = built[family]
    assert list(splits) == ["train", "val", "test"]
    for split, subsets in splits.items():
        assert len(subsets) == SIZES[f"n_{split}"]
        assert [s.id for s in subsets] == [f"{family}/{split}/{i:06d}" for i in range(len(subsets))]
        for s in subsets:
            assert 10 <= len(s) <= 50, s.id
            assert s.labels is not None and len(s.labels) == len(s.texts)
            sizes = Counter(s.labels)
            # Product-level subsets: most products appear with one offer; the rule counts real clusters (>= 2 members).
            by_product = family == "product_same" or s.extra.get("level") == "product"
            counted = sum(c >= 2 for c in sizes.values()) if by_product else len(sizes)
            assert 3 <= counted <= 10, s.id


@pytest.mark.parametrize("family", FAMILIES)
def test_no_duplicate_texts_or_subsets(built, family):
    for subsets in built[family].values():
        for s in subsets:
            assert len({text_key(t) for t in s.texts}) == len(s.texts), s.id
        assert len({frozenset(s.texts) for s in subsets}) == len(subsets)


@pytest.mark.parametrize("family", FAMILIES)
def test_splits_share_no_text(built, family):
    train, val, test = (_keys(built[family][s]) for s in ("train", "val", "test"))
    assert not train & test
    assert not train & val
    assert not val & test


@pytest.mark.parametrize("family", FAMILIES)
def test_labels_consistent(built, family):
    """A text has one label throughout a family (per level in the mixed families, where the level decides it)."""
    label_of: dict[tuple[str, str], set] = defaultdict(set)
    for subsets in built[family].values():
        for s in subsets:
            for t, lab in zip(s.texts, s.labels):
                label_of[(s.extra.get("level", ""), text_key(t))].add(lab)
    assert all(len(v) == 1 for v in label_of.values())


@pytest.mark.parametrize("family", ["amazon_category", "product_same", "product_mixed"])
def test_unseen_clusters(built, family):
    labels = {split: {lab for s in subsets for lab in s.labels} for split, subsets in built[family].items()}
    assert not labels["train"] & labels["test"]
    assert not labels["train"] & labels["val"]
    assert not labels["val"] & labels["test"]


def test_clinc_uses_official_splits(built):
    raw = json.loads((DATA_DIR / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    domains = json.loads((DATA_DIR / "clinc150" / "domains.json").read_text(encoding="utf-8"))
    domain_of = {i: d for d, intents in domains.items() for i in intents}
    raw_keys = {split: {text_key(t) for t, _ in raw[split]} for split in ("train", "val", "test")}
    for family in ("clinc_intent", "clinc_domain", "clinc_mixed"):
        for split, subsets in built[family].items():
            assert _keys(subsets) <= raw_keys[split], (family, split)
    for s in built["clinc_intent"]["train"]:
        assert len({domain_of[lab] for lab in s.labels}) == 1, s.id
    for s in built["clinc_domain"]["train"]:
        assert set(s.labels) <= set(domains), s.id


def _hwu64_rows(name: str) -> list[dict[str, str]]:
    with open(DATA_DIR / "hwu64" / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_hwu64_uses_official_test_split_and_scenarios(built):
    train_rows, test_rows = _hwu64_rows("train.csv"), _hwu64_rows("test.csv")
    scenario_of = {r["intent"]: r["scenario"] for r in train_rows + test_rows}
    scenarios = set(scenario_of.values())
    for family in ("hwu64_intent", "hwu64_scenario", "hwu64_mixed"):
        splits = built[family]
        assert _keys(splits["train"]) | _keys(splits["val"]) <= {text_key(r["text"]) for r in train_rows}, family
        assert _keys(splits["test"]) <= {text_key(r["text"]) for r in test_rows}, family
        for s in (s for subsets in splits.values() for s in subsets):
            if s.extra["level"] == "intent":
                assert len({scenario_of[lab] for lab in s.labels}) == 1, s.id
            else:
                assert s.extra["level"] == "scenario" and set(s.labels) <= scenarios, s.id
    # Scenarios with fewer than 3 intents (datetime, social, takeaway, cooking, news, weather) only appear as
    # scenario-level clusters.
    small = {sc for sc in scenarios if sum(v == sc for v in scenario_of.values()) < 3}
    assert small and all(
        scenario_of[lab] not in small for s in built["hwu64_intent"]["train"] for lab in s.labels
    )
    assert any(set(s.labels) & small for s in built["hwu64_scenario"]["train"])


def test_banking_uses_official_test_split(built):
    def texts(name: str) -> set[str]:
        with open(DATA_DIR / "banking77" / name, newline="", encoding="utf-8") as f:
            return {text_key(r["text"]) for r in csv.DictReader(f)}

    splits = built["banking77"]
    assert _keys(splits["train"]) | _keys(splits["val"]) <= texts("train.csv")
    assert _keys(splits["test"]) <= texts("test.csv")


def _context_pairs(subsets: list[Subset]) -> int:
    """Pairs of texts that are together in one subset and apart in another."""
    together: dict[tuple[str, str], set[bool]] = defaultdict(set)
    for s in subsets:
        for (a, la), (b, lb) in itertools.combinations(sorted(zip(s.texts, s.labels)), 2):
            together[(a, b)].add(la == lb)
    return sum(len(v) == 2 for v in together.values())


def test_clinc_mixed_needs_context(built):
    for split, subsets in built["clinc_mixed"].items():
        levels = Counter(s.extra["level"] for s in subsets)
        assert levels == {"intent": len(subsets) // 2, "domain": len(subsets) // 2}, split
        # Each intent-level subset has a domain-level twin that re-groups its utterances: many contrast pairs.
        assert _context_pairs(subsets) >= 2 * len(subsets), split
    # Fixed-level families never contradict themselves.
    assert _context_pairs(built["clinc_intent"]["train"]) == 0


def test_hwu64_mixed_needs_context(built):
    for split, subsets in built["hwu64_mixed"].items():
        levels = Counter(s.extra["level"] for s in subsets)
        assert levels == {"intent": len(subsets) // 2, "scenario": len(subsets) // 2}, split
        assert _context_pairs(subsets) >= 2 * len(subsets), split
    assert _context_pairs(built["hwu64_intent"]["train"]) == 0
    assert _context_pairs(built["hwu64_scenario"]["train"]) == 0


def test_product_mixed_levels_and_twins(built):
    with open(DATA_DIR / "walmart_amazon_categories" / "tableB.csv", newline="", encoding="utf-8") as f:
        categories = {" ".join(r["category"].split()) for r in csv.DictReader(f)}
    for split, subsets in built["product_mixed"].items():
        levels = Counter(s.extra["level"] for s in subsets)
        assert levels == {"product": len(subsets) // 2, "category": len(subsets) // 2}, split
        for s in subsets:
            if s.extra["level"] == "category":
                assert set(s.labels) <= categories, s.id
            else:
                assert s.extra["source"] in {"abt_buy", "amazon_google", "walmart_amazon"}, s.id
    # Twins: titles of two products of one product-level subset (apart there) form a category cluster elsewhere.
    train = built["product_mixed"]["train"]
    products = [dict(zip(map(text_key, s.texts), s.labels)) for s in train if s.extra["level"] == "product"]
    twins = 0
    for s in train:
        if s.extra["level"] != "category":
            continue
        clusters: dict[str, set[str]] = defaultdict(set)
        for t, lab in zip(s.texts, s.labels):
            clusters[lab].add(text_key(t))
        twins += any(len({p[k] for k in keys & p.keys()}) >= 2 for keys in clusters.values() for p in products)
    assert twins >= 3
    assert _context_pairs(train) >= twins


def test_stats_and_table(built):
    stats = family_stats(built["banking77"])
    assert stats["train"]["subsets"] == 50
    assert stats["train"]["entities"] == sum(len(s) for s in built["banking77"]["train"])
    assert 10 <= stats["test"]["entities_per_subset"]["min"] <= stats["test"]["entities_per_subset"]["max"] <= 50
    assert stats["test"]["texts_shared_with_train"] == 0
    table = format_stats({"banking77": stats})
    assert table.startswith("banking77") and "clusters>=2" in table


def test_build_benchmarks_is_deterministic(tmp_path):
    sizes = {"n_train": 30, "n_val": 10, "n_test": 10}
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    stats = build_benchmarks(DATA_DIR, a, families=("product_same",), seed=3, progress=False, **sizes)
    build_benchmarks(DATA_DIR, b, families=("product_same",), seed=3, progress=False, **sizes)
    build_benchmarks(DATA_DIR, c, families=("product_same",), seed=4, progress=False, **sizes)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert [str(f) for f in files] == [
        "manifest.json",
        "product_same/stats.json",
        "product_same/test.jsonl",
        "product_same/train.jsonl",
        "product_same/val.jsonl",
    ]
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "product_same/train.jsonl").read_bytes() != (c / "product_same/train.jsonl").read_bytes()
    assert [s.id for s in read_subsets(a / "product_same/test.jsonl")][-1] == "product_same/test/000009"
    assert json.loads((a / "product_same/stats.json").read_text()) == stats["product_same"]
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["sizes"] == {"train": 30, "val": 10, "test": 10}
    assert "product_matching/abt_buy/gt.csv" in manifest["sources"]

    # A fresh interpreter with another hash seed writes the same bytes (no dependence on set/dict hash order).
    code = (
        "import sys; from cactus.data.benchmarks import build_benchmarks; "
        "build_benchmarks(sys.argv[1], sys.argv[2], families=('product_same', 'clinc_mixed', 'hwu64_mixed', "
        "'product_mixed'), seed=3, "
        "n_train=30, n_val=10, n_test=10, progress=False)"
    )
    d = tmp_path / "d"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(DATA_DIR), str(d)], check=True, env=env)
    for f in ("train.jsonl", "val.jsonl", "test.jsonl"):
        assert (d / "product_same" / f).read_bytes() == (a / "product_same" / f).read_bytes()
    for family in ("clinc_mixed", "hwu64_mixed", "product_mixed"):
        mixed = build_family(family, DATA_DIR, seed=3, n_train=30, n_val=10, n_test=10)
        for split in ("train", "test"):
            written = read_subsets(d / family / f"{split}.jsonl")
            assert [(s.texts, s.labels, s.extra) for s in written] == [
                (s.texts, s.labels, s.extra) for s in mixed[split]
            ], (family, split)


def test_splits_are_independent_of_other_sizes():
    small = build_family("amazon_category", DATA_DIR, seed=0, n_train=5, n_val=5, n_test=5)
    large = build_family("amazon_category", DATA_DIR, seed=0, n_train=40, n_val=5, n_test=5)
    assert [s.texts for s in small["test"]] == [s.texts for s in large["test"]]


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark family"):
        build_family("nope", DATA_DIR)
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        build_family("banking77", missing)
    (tmp_path / "clinc150").mkdir()
    (tmp_path / "clinc150" / "data_full.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="domains.json"):
        build_family("clinc_intent", tmp_path)
    with pytest.raises(ValueError, match="n_train"):
        build_family("banking77", DATA_DIR, n_train=-1)
    (tmp_path / "hwu64").mkdir()
    (tmp_path / "hwu64" / "train.csv").write_text("text,scenario,intent\nwake me up,alarm,alarm_set\n")
    (tmp_path / "hwu64" / "test.csv").write_text("text,scenario,intent\nan alarm at six,iot,alarm_set\n")
    with pytest.raises(ValueError, match=r"test\.csv: intent 'alarm_set' is under scenarios 'alarm' and 'iot'"):
        build_family("hwu64_intent", tmp_path)
