"""Cluster descriptions: cohesion against its definition, representatives, class-based TF-IDF terms, and the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cactus.cluster import cohesion, describe_subset
from cactus.cluster.describe import medoid, top_terms


def random_similarity(rng, n):
    x = rng.normal(size=(n, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def brute_cohesion(sim, ids):
    out = []
    for i in range(len(ids)):
        own = [j for j in range(len(ids)) if ids[j] == ids[i] and j != i]
        others = [np.mean([sim[i, j] for j in range(len(ids)) if ids[j] == c]) for c in set(ids) if c != ids[i]]
        out.append((np.mean([sim[i, j] for j in own]) if own else 1.0) - (max(others) if others else 0.0))
    return np.array(out)


@pytest.mark.parametrize("seed", range(20))
def test_cohesion_equals_its_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25))
    ids = rng.integers(0, int(rng.integers(1, 6)), size=n)
    sim = random_similarity(rng, n)
    np.testing.assert_allclose(cohesion(sim, ids), brute_cohesion(sim, ids.tolist()), atol=1e-12)


def test_medoid_is_the_most_central_member():
    sim = np.array([[1.0, 0.9, 0.2, 0.8], [0.9, 1.0, 0.1, 0.85], [0.2, 0.1, 1.0, 0.3], [0.8, 0.85, 0.3, 1.0]])
    assert medoid(sim, np.array([0, 1, 3])) == 1  # 0.875 against 0.85 (0) and 0.825 (3)
    assert medoid(sim, np.array([2])) == 2


def test_top_terms_are_class_based_tf_idf():
    texts = ["red apple", "green apple", "apple pie", "blue car", "fast car", "the car"]
    terms = top_terms(texts, [0, 0, 0, 1, 1, 1], n_terms=3)
    assert terms[0][0] == "apple" and terms[1][0] == "car"
    assert "the" not in terms[1]  # a stop word
    assert top_terms(["a", "b", "the"], [0, 1, 1]) == [[], []]  # nothing but stop words and one-letter words


def test_descriptions_follow_first_appearance_and_name_every_cluster():
    texts = ["usb cable", "usb charger cable", "the", "banana bread", "banana"]
    sim = np.eye(5)
    d = describe_subset(texts, sim, np.array([4, 4, 7, 2, 2]))
    assert [c.id for c in d.clusters] == [4, 7, 2]
    assert [c.members for c in d.clusters] == [[0, 1], [2], [3, 4]]
    assert d.clusters[0].name.startswith("usb") or d.clusters[0].name.startswith("cable")
    assert d.clusters[1].name == "the"  # no term: named by its representative
    assert d.clusters[2].top_terms[0] == "banana"
    assert d.cohesion.shape == (5,) and d.cohesion[2] == 1.0  # alone, and similarity 0 to the rest
    json.dumps([c.to_dict() for c in d.clusters])  # plain JSON types


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cactus.cli", *args], capture_output=True, text=True)


def test_predict_describe_writes_clusters_and_keeps_labels(tmp_path, tiny_backbone):
    src = tmp_path / "in.jsonl"
    rows = [{"id": "a", "texts": ["red apple", "green apple", "fast car", "blue car"], "labels": [0, 0, 1, 1]},
            {"id": "b", "texts": ["banana bread"], "labels": ["x"]}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    proc = run_cli("predict", str(src), "-o", str(out), "--model", tiny_backbone, "--threshold", "0.5",
                   "--describe", "--quiet")
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    for rec, row in zip(got, rows):
        assert rec["labels"] == row["labels"]
        members = sorted(i for c in rec["clusters"] for i in c["members"])
        assert members == list(range(len(row["texts"])))
        assert len(rec["cohesion"]) == len(row["texts"])
        for c in rec["clusters"]:
            assert all(rec["cluster_ids"][i] == c["id"] for i in c["members"]) and c["size"] == len(c["members"])
            assert c["representative"] in c["members"]

    table = tmp_path / "out.csv"
    proc = run_cli("predict", str(src), "-o", str(table), "--model", tiny_backbone, "--threshold", "0.5",
                   "--describe", "--quiet")
    assert proc.returncode == 0, proc.stderr
    header = table.read_text().splitlines()[0].split(",")
    assert "cluster_name" in header and "cohesion" in header and "cluster_id" in header


def test_describe_refuses_to_overwrite_an_input_field(tmp_path, tiny_backbone):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "texts": ["x y", "z w"], "cohesion": "mine"}) + "\n")
    out = tmp_path / "out.jsonl"
    proc = run_cli("predict", str(src), "-o", str(out), "--model", tiny_backbone, "--threshold", "0.5", "--describe")
    assert proc.returncode == 3
    assert "subset 'a'" in proc.stderr and "'cohesion'" in proc.stderr
    assert not out.exists()
