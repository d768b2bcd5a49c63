import json

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from cactus.cluster import (
    DEFAULT_GRID,
    Dendrogram,
    ThresholdCurve,
    agglomerative_cluster,
    best_index,
    kmeans_cluster,
    parse_objective,
    silhouette_cluster,
    spectral_cluster,
    tune_threshold,
)
from cactus.metrics import METRICS
from test_metrics import reference_metrics


def clustered_similarity(rng, n, n_clusters, noise=0.8, dim=16):
    """Cosine similarities of random unit vectors around random centres, and the true labels."""
    labels = rng.integers(0, n_clusters, n)
    x = rng.normal(size=(n_clusters, dim))[labels] + noise * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T, labels


def same_partition(a, b) -> bool:
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


# --- agglomerative_cluster and Dendrogram ---------------------------------------------------------------------------

# A, B, C, D. Average link: AB at 0.9, CD at 0.8, then AB-CD at mean(0.1, 0.3, 0.2, 0.0) = 0.15
# (single link would join them at 0.3, complete link at 0.0).
HAND = {("A", "B"): 0.9, ("C", "D"): 0.8, ("A", "C"): 0.1, ("A", "D"): 0.3, ("B", "C"): 0.2, ("B", "D"): 0.0}


def hand_similarity(order: str) -> np.ndarray:
    s = np.eye(len(order))
    for (u, v), value in HAND.items():
        s[order.index(u), order.index(v)] = s[order.index(v), order.index(u)] = value
    return s


def test_hand_computed_average_link():
    s = hand_similarity("CADB")  # ids follow first appearance: C first
    assert Dendrogram(s).similarities.tolist() == [0.9, 0.8, 0.15]  # exact, despite scipy's float averaging
    expected = {0.95: [0, 1, 2, 3], 0.9: [0, 1, 2, 1], 0.81: [0, 1, 2, 1], 0.8: [0, 1, 0, 1], 0.25: [0, 1, 0, 1]}
    expected |= {0.16: [0, 1, 0, 1], 0.15: [0, 0, 0, 0], -1.0: [0, 0, 0, 0]}
    for threshold, labels in expected.items():
        assert agglomerative_cluster(s, threshold).tolist() == labels, threshold


def test_threshold_boundary_on_every_grid_point():
    for t in DEFAULT_GRID:
        s = np.array([[1.0, t], [t, 1.0]])
        assert agglomerative_cluster(s, t).tolist() == [0, 0], t  # similarity exactly t: merge
        if t > -1.0:
            below = s - 1e-6 * (1 - np.eye(2))  # one rounding step below t
            assert agglomerative_cluster(below, t).tolist() == [0, 1], t


def test_similarities_are_rounded_and_clipped():
    assert agglomerative_cluster(np.array([[1, 0.3 - 4e-7], [0.3 - 4e-7, 1]]), 0.3).tolist() == [0, 0]
    assert agglomerative_cluster(np.array([[1, 1.2], [1.2, 1]]), 1.0).tolist() == [0, 0]
    asymmetric = np.array([[1, 0.5], [0.1, 1]])  # symmetrised to 0.3
    assert agglomerative_cluster(asymmetric, 0.3).tolist() == [0, 0]
    assert agglomerative_cluster(asymmetric, 0.31).tolist() == [0, 1]


def test_single_entity_and_validation():
    assert agglomerative_cluster(np.ones((1, 1)), 0.5).tolist() == [0]
    levels, labels = Dendrogram(np.ones((1, 1))).distinct_partitions()
    assert levels.tolist() == [np.inf] and labels.tolist() == [[0]]
    with pytest.raises(ValueError, match="square"):
        agglomerative_cluster(np.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        agglomerative_cluster(np.array([[1, np.nan], [np.nan, 1]]), 0.5)


def test_matches_scipy_fcluster_without_ties():
    rng = np.random.default_rng(0)
    for _ in range(10):
        s, _ = clustered_similarity(rng, 30, 4)
        s = np.round(s, 6)
        z = linkage(1 - s[np.triu_indices(30, 1)], method="average")
        dendrogram = Dendrogram(s)
        assert np.all(np.diff(dendrogram.similarities) <= 0)
        for t in np.linspace(-0.5, 1, 31):
            ours = dendrogram.partition(t)
            assert same_partition(ours, fcluster(z, 1 - t, criterion="distance"))
            assert ours.tolist() == agglomerative_cluster(s, t).tolist()


def tie_heavy_matrices(rng) -> dict[str, np.ndarray]:
    def duplicated(n_base, n):
        x = rng.normal(size=(n_base, 8))
        x = x[rng.integers(0, n_base, n)]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T

    blocks = np.repeat(np.arange(3), 4)
    copies = rng.integers(0, 8, 20)
    coarse = np.round(rng.uniform(-1, 1, (15, 15)) * 10) / 10  # few distinct values: plain scipy is order-dependent
    return {
        "random": clustered_similarity(rng, 25, 4)[0],
        "duplicates": duplicated(6, 20),
        "duplicates of clusters": clustered_similarity(rng, 8, 3)[0][np.ix_(copies, copies)],
        "equidistant": np.full((7, 7), 0.5),
        "equidistant blocks": np.where(blocks[:, None] == blocks[None, :], 0.7, 0.2),
        "coarse": (coarse + coarse.T) / 2,
    }


@pytest.mark.parametrize(
    "name", ["random", "duplicates", "duplicates of clusters", "equidistant", "equidistant blocks", "coarse"]
)
def test_permuting_the_input_permutes_the_partition(name):
    rng = np.random.default_rng(1)
    s = tie_heavy_matrices(rng)[name]
    n = len(s)
    reference = Dendrogram(s)
    thresholds = np.unique(np.concatenate([np.linspace(-1, 1, 41), reference.similarities]))  # includes every tie
    expected = [reference.partition(t) for t in thresholds]
    for _ in range(40):
        perm = rng.permutation(n)
        noise = 1e-8 * rng.uniform(-1, 1, (n, n)) if name == "coarse" else 0.0  # encoder-like float noise
        permuted = Dendrogram(s[np.ix_(perm, perm)] + noise)
        for t, labels in zip(thresholds, expected):
            assert same_partition(permuted.partition(t), labels[perm]), t


def test_distinct_partitions_follow_the_merge_heights():
    rng = np.random.default_rng(2)
    s, _ = clustered_similarity(rng, 20, 3)
    entities = np.arange(20)
    entities[3] = 2  # a duplicate: a merge at height 0
    s = s[np.ix_(entities, entities)]
    dendrogram = Dendrogram(s)
    levels, labels = dendrogram.distinct_partitions()
    assert len(levels) == len(np.unique(dendrogram.similarities)) + 1 == len(labels)
    assert levels[1] == 1.0  # the duplicate
    assert labels[0].tolist() == list(range(20)) and labels[-1].tolist() == [0] * 20
    for p in range(1, len(levels)):
        # partition p holds for levels[p + 1] < t <= levels[p]
        assert dendrogram.partition(levels[p]).tolist() == labels[p].tolist()
        assert dendrogram.partition(np.nextafter(levels[p], 2)).tolist() == labels[p - 1].tolist()
        assert labels[p].max() < labels[p - 1].max()  # each level has fewer clusters


# --- tune_threshold -------------------------------------------------------------------------------------------------


def test_curve_matches_slow_reference():
    rng = np.random.default_rng(3)
    subsets = [clustered_similarity(rng, int(rng.integers(1, 40)), int(rng.integers(1, 8)), 0.6) for _ in range(30)]
    similarities, labels = zip(*subsets)
    grid = np.round(np.linspace(-1, 1, 41), 2)
    curve = tune_threshold(similarities, labels, grid=grid, objective="nmi+ami+ri+ari")
    for g, t in enumerate(grid):
        per_subset = [reference_metrics(y, agglomerative_cluster(s, t)) for s, y in subsets]
        for name in METRICS:
            assert curve.scores[name][g] == pytest.approx(np.mean([scores[name] for scores in per_subset]), abs=1e-9)
    objective = curve.scores["nmi"] + curve.scores["ami"] + curve.scores["ri"] + curve.scores["ari"]
    assert np.allclose(curve.scores["nmi+ami+ri+ari"], objective, atol=1e-12)
    assert curve.best_threshold in grid.tolist()
    assert curve.best_score == pytest.approx(objective.max(), abs=1e-12)
    restored = ThresholdCurve.from_dict(json.loads(json.dumps(curve.to_dict())))
    assert restored.thresholds.tolist() == curve.thresholds.tolist() and restored.scores.keys() == curve.scores.keys()
    assert restored.to_dict() == curve.to_dict()


def test_best_threshold_is_the_middle_of_the_best_plateau():
    # Two tight clusters: perfect for every threshold in (0.1, 0.9], i.e. grid points 0.11 .. 0.90.
    labels = np.array([0, 0, 0, 1, 1])
    s = np.where(labels[:, None] == labels[None, :], 0.9, 0.1)
    curve = tune_threshold([s], [labels])
    assert len(curve.thresholds) == 201
    perfect = curve.thresholds[curve.scores["ami+ari"] == 2.0]
    assert perfect.min() == 0.11 and perfect.max() == 0.9
    assert curve.best_threshold == 0.5 and curve.best_score == 2.0


def test_best_index_tie_rule():
    assert best_index(np.array([0, 1, 1, 0, 1, 1, 1, 0.5])) == 5  # middle of the longest run
    assert best_index(np.array([1, 1, 0, 1, 1])) == 0  # first of equally long runs, lower middle
    assert best_index(np.array([0.3, 0.7 + 1e-13, 0.7, 0.2])) == 1  # float noise counts as a tie
    assert best_index(np.array([0.5])) == 0


def test_objective_parsing():
    assert parse_objective("nmi+ami+ri+ari") == ["nmi", "ami", "ri", "ari"]
    assert parse_objective(" AMI + f1") == ["ami", "f1"]
    with pytest.raises(ValueError, match="unknown metric.*'vi'"):
        parse_objective("ami+vi")
    with pytest.raises(ValueError, match="twice"):
        parse_objective("ami+ami")
    labels = np.array([0, 0, 1])
    with pytest.raises(ValueError, match="unknown metric"):
        tune_threshold([np.eye(3)], [labels], objective="accuracy")
    assert tune_threshold([np.eye(3)], [labels], objective="ARI").objective == "ari"


def test_tune_threshold_input_checks():
    with pytest.raises(ValueError, match="label arrays"):
        tune_threshold([np.eye(2)], [])
    with pytest.raises(ValueError, match="no subsets"):
        tune_threshold([], [])
    with pytest.raises(ValueError, match="labels for a 2-entity"):
        tune_threshold([np.eye(2)], [[0, 1, 2]])
    with pytest.raises(ValueError, match="empty threshold grid"):
        tune_threshold([np.eye(2)], [[0, 1]], grid=[])
    assert tune_threshold([np.eye(2)], [[0, 1]], progress=True).best_score == 2.0


def test_scores_at_best_reads_the_curve_at_the_best_threshold():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    curve = tune_threshold([x @ x.T], [rng.integers(0, 3, 12)])
    at = list(curve.thresholds).index(curve.best_threshold)
    assert curve.scores_at_best() == {name: float(values[at]) for name, values in curve.scores.items()}
    assert curve.scores_at_best()[curve.objective] == curve.best_score


# --- kmeans_cluster, spectral_cluster, silhouette_cluster -----------------------------------------------------------


def three_blobs(seed=0, n=30, dim=8, noise=0.05):
    """(n, dim) unit vectors around three orthogonal directions, entities shuffled, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 3)
    x = np.eye(dim)[labels] + noise * rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def is_canonical(ids: np.ndarray) -> bool:
    """Ids 0, 1, 2, ... in order of first appearance."""
    _, first = np.unique(ids, return_index=True)
    return ids.dtype == np.int64 and np.array_equal(ids[np.sort(first)], np.arange(len(first)))


@pytest.mark.parametrize("method", ["kmeans", "spectral"])
def test_silhouette_finds_three_blobs(method):
    x, labels = three_blobs()
    ids = silhouette_cluster(x, method, seed=0)
    assert ids.max() + 1 == 3 and same_partition(ids, labels) and is_canonical(ids)
    assert silhouette_cluster(x, method, k_max=15).tolist() == ids.tolist()  # k_max above the best k changes nothing
    capped = silhouette_cluster(x, method, k_max=2)
    assert capped.max() + 1 == 2 and is_canonical(capped)
    assert silhouette_cluster(3.0 * x, method).tolist() == ids.tolist()  # cosine: the scale of embeddings is ignored


def test_fixed_k_clusterings_recover_blobs_with_canonical_ids():
    x, labels = three_blobs(seed=1)
    for ids in (kmeans_cluster(x, 3), spectral_cluster(x @ x.T, 3)):
        assert same_partition(ids, labels) and is_canonical(ids)
    assert spectral_cluster(x @ x.T, 1).tolist() == [0] * 30


@pytest.mark.parametrize("method", ["kmeans", "spectral"])
def test_silhouette_is_deterministic_under_the_seed(method):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(25, 6))  # no clear structure: the restarts and the seed matter
    for seed in (0, 7):
        assert silhouette_cluster(x, method, seed=seed).tolist() == silhouette_cluster(x, method, seed=seed).tolist()
    assert spectral_cluster(x @ x.T, 4, seed=7).tolist() == spectral_cluster(x @ x.T, 4, seed=7).tolist()


@pytest.mark.parametrize("method", ["kmeans", "spectral"])
def test_silhouette_small_subsets_and_identical_entities(method):
    rng = np.random.default_rng(5)
    assert silhouette_cluster(rng.normal(size=(1, 4)), method).tolist() == [0]
    assert silhouette_cluster(rng.normal(size=(2, 4)), method).tolist() == [0, 0]  # no k in 2 .. n - 1
    three = silhouette_cluster(np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]]), method)  # only k = 2 is tried
    assert three.tolist() == [0, 0, 1]
    assert silhouette_cluster(np.ones((6, 4)), method).tolist() == [0] * 6  # all identical: one cluster
    two_points = np.repeat(np.eye(4)[:2], 3, axis=0)[[0, 3, 1, 4, 2, 5]]  # two distinct points, three copies each
    assert silhouette_cluster(two_points, method).tolist() == [0, 1, 0, 1, 0, 1]
    assert silhouette_cluster(np.vstack([np.zeros((1, 4)), np.ones((3, 4))]), method).dtype == np.int64


def test_fixed_k_input_checks():
    x, _ = three_blobs()
    with pytest.raises(ValueError, match="method"):
        silhouette_cluster(x, "dbscan")
    with pytest.raises(ValueError, match="k_max"):
        silhouette_cluster(x, k_max=0)
    with pytest.raises(ValueError, match="n_clusters"):
        spectral_cluster(x @ x.T, 31)
    with pytest.raises(ValueError, match="square"):
        spectral_cluster(x, 2)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_cluster(x, 0)
