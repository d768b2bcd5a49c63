import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from cactus.metrics import METRICS, contingency_metrics, expected_mutual_info_table, partition_metrics, summarize


def brute_pairs_and_bcubed(labels_true, labels_pred) -> dict[str, float]:
    """Pairwise and B-cubed precision / recall / F1 by their definitions: every pair, every entity."""
    n = len(labels_true)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    both = sum(labels_true[i] == labels_true[j] and labels_pred[i] == labels_pred[j] for i, j in pairs)
    pred = sum(labels_pred[i] == labels_pred[j] for i, j in pairs)
    true = sum(labels_true[i] == labels_true[j] for i, j in pairs)
    bp = np.mean([np.mean([labels_true[j] == labels_true[i] for j in range(n) if labels_pred[j] == labels_pred[i]])
                  for i in range(n)])
    br = np.mean([np.mean([labels_pred[j] == labels_pred[i] for j in range(n) if labels_true[j] == labels_true[i]])
                  for i in range(n)])
    pp, pr = (both / pred if pred else 1.0), (both / true if true else 1.0)

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r else 0.0

    return {"pair_precision": pp, "pair_recall": pr, "pair_f1": f1(pp, pr),
            "bcubed_precision": bp, "bcubed_recall": br, "bcubed_f1": f1(bp, br)}


def reference_metrics(labels_true, labels_pred) -> dict[str, float]:
    """scikit-learn's scores, with purity / inverse purity from its contingency matrix and the identity convention;
    pairwise and B-cubed scores by brute force."""
    table = skm.cluster.contingency_matrix(labels_true, labels_pred)
    n = len(labels_true)
    precision, recall = table.max(axis=0).sum() / n, table.max(axis=1).sum() / n
    identical = (table > 0).sum(axis=0).max() == 1 and (table > 0).sum(axis=1).max() == 1
    scores = {
        "ami": skm.adjusted_mutual_info_score(labels_true, labels_pred),
        "ari": skm.adjusted_rand_score(labels_true, labels_pred),
        "nmi": skm.normalized_mutual_info_score(labels_true, labels_pred),
        "ri": skm.rand_score(labels_true, labels_pred),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall),
        **brute_pairs_and_bcubed(list(labels_true), list(labels_pred)),
    }
    return {name: 1.0 if identical else float(value) for name, value in scores.items()}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=30))
def test_pairwise_and_bcubed_equal_brute_force(pairs):
    true, pred = [t for t, _ in pairs], [p for _, p in pairs]
    ours, ref = partition_metrics(true, pred), brute_pairs_and_bcubed(true, pred)
    identical = partition_metrics(true, pred)["ri"] == 1.0
    for name, value in ref.items():
        assert ours[name] == pytest.approx(1.0 if identical else value, abs=1e-12), name


def test_matches_sklearn_on_random_labelings():
    rng = np.random.default_rng(0)
    for _ in range(400):
        n = int(rng.integers(1, 61))
        true = rng.integers(0, rng.integers(1, n + 1), n)
        pred = rng.integers(0, rng.integers(1, n + 1), n)
        ours, ref = partition_metrics(true, pred), reference_metrics(true, pred)
        assert list(ours) == list(METRICS)
        for name in METRICS:
            assert ours[name] == pytest.approx(ref[name], abs=1e-9), (name, true, pred)


def test_matches_sklearn_on_larger_subsets():
    rng = np.random.default_rng(1)
    for n in (200, 500):
        true = rng.integers(0, 30, n)
        pred = np.where(rng.random(n) < 0.7, true, rng.integers(0, 60, n))  # related, but not identical
        ours, ref = partition_metrics(true, pred), reference_metrics(true, pred)
        for name in METRICS:
            assert ours[name] == pytest.approx(ref[name], abs=1e-9), name


def test_identical_partitions_score_one():
    rng = np.random.default_rng(2)
    for n in range(1, 40):
        true = rng.integers(0, rng.integers(1, n + 1), n)
        relabelled = np.array(["c" + str(7 * int(label)) for label in true])  # same partition, other labels
        assert partition_metrics(true, relabelled) == {name: 1.0 for name in METRICS}


@pytest.mark.parametrize("n", [1, 2, 7])
def test_degenerate_identical(n):
    assert partition_metrics([0] * n, ["x"] * n) == {name: 1.0 for name in METRICS}  # one cluster in both
    assert partition_metrics(range(n), range(n)) == {name: 1.0 for name in METRICS}  # all singletons in both


@pytest.mark.parametrize("n", [2, 3, 10])
def test_degenerate_one_cluster_against_singletons(n):
    for true, pred in ([[0] * n, list(range(n))], [list(range(n)), [0] * n]):
        scores = partition_metrics(true, pred)
        assert scores["ami"] == scores["nmi"] == scores["ari"] == scores["ri"] == 0.0
        assert {scores["precision"], scores["recall"]} == {1.0, 1 / n}
        assert scores["f1"] == pytest.approx(2 / (n + 1))


def test_one_cluster_against_some_split():
    scores = partition_metrics([0, 0, 0, 0], [0, 0, 1, 1])
    assert scores["ami"] == scores["nmi"] == scores["ari"] == 0.0
    assert scores["ri"] == pytest.approx(2 / 6)  # the 2 pairs inside the predicted clusters agree
    assert (scores["precision"], scores["recall"]) == (1.0, 0.5)


def test_best_match_precision_recall_by_hand():
    # true: {a, a, a, b}, {c, c}; predicted clusters: {0, 0}, {1, 1, 1, 1}
    scores = partition_metrics(["a", "a", "a", "b", "c", "c"], [0, 0, 1, 1, 1, 1])
    # purity: cluster 0 -> 2 (a), cluster 1 -> 2 (c); inverse purity: a -> 2, b -> 1, c -> 2
    assert scores["precision"] == pytest.approx(4 / 6)
    assert scores["recall"] == pytest.approx(5 / 6)
    assert scores["f1"] == pytest.approx(2 * (4 / 6) * (5 / 6) / (4 / 6 + 5 / 6))


def test_any_hashable_labels():
    true = [("x", 1), ("x", 1), None, None, 3.5]
    pred = ["p", "p", "q", "r", "r"]
    assert partition_metrics(true, pred) == partition_metrics([0, 0, 1, 1, 2], [0, 0, 1, 2, 2])


def test_input_validation():
    with pytest.raises(ValueError, match="entities"):
        partition_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        partition_metrics([], [])


def test_expected_mutual_info_sums_over_clusters():
    # E[MI] of all singletons is H(true): every singleton is pure under any permutation.
    sizes = np.array([3, 1, 4, 2])
    n = sizes.sum()
    entropy = -sum(a / n * math.log(a / n) for a in sizes)
    assert expected_mutual_info_table(sizes)[1] * n == pytest.approx(entropy, abs=1e-12)
    # One cluster of everything carries no information.
    assert expected_mutual_info_table(sizes)[n] == pytest.approx(0.0, abs=1e-12)


def test_contingency_batch_matches_single_tables():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 4, 40)
    preds = [rng.integers(0, k, 40) for k in (1, 2, 5, 9)] + [true.copy()]
    tables = np.zeros((len(preds), 4, 12), dtype=np.int64)  # padded with empty clusters
    for p, pred in enumerate(preds):
        np.add.at(tables[p], (true, pred), 1)
    batch = contingency_metrics(tables)
    for p, pred in enumerate(preds):
        single = partition_metrics(true, pred)
        for name in METRICS:
            assert batch[name][p] == pytest.approx(single[name], abs=1e-12)
    with pytest.raises(ValueError, match="row sums"):
        contingency_metrics(np.array([[[1, 0]], [[2, 0]]]))


def test_summarize():
    per_subset = [{"ami": 0.2, "ari": 1.0}, {"ami": 0.4, "ari": 1.0}, {"ami": 0.9, "ari": 1.0}]
    summary = summarize(per_subset)
    values = np.array([0.2, 0.4, 0.9])
    half = 1.96 * values.std(ddof=1) / math.sqrt(3)
    assert summary["ami"]["mean"] == pytest.approx(0.5)
    assert (summary["ami"]["ci_low"], summary["ami"]["ci_high"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert summary["ami"]["count"] == 3
    assert summary["ari"] == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0, "count": 3}


def test_confidence_intervals_stay_in_the_metric_range():
    summary = summarize([{"precision": 1.0, "ami": -0.9}, {"precision": 0.2, "ami": 0.1}])
    assert summary["precision"]["ci_high"] == 1.0 and summary["precision"]["ci_low"] == 0.0
    assert summary["ami"]["ci_low"] == -1.0 and summary["ami"]["ci_high"] < 1.0


def test_summarize_single_subset_and_errors():
    assert summarize([{"ami": 0.3}]) == {"ami": {"mean": 0.3, "ci_low": 0.3, "ci_high": 0.3, "count": 1}}
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError, match="same metrics"):
        summarize([{"ami": 0.3}, {"ari": 0.3}])
