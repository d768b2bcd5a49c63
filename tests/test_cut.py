"""The cut of each subset's dendrogram (cactus.cluster.cut) and its tuning (cactus.cluster.cut_tuning)."""

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score, silhouette_score

from cactus.cluster import CRITERIA, Cut, Dendrogram, cut_cluster, tune_cut, tune_threshold
from cactus.cluster.cut import (calinski_harabasz, candidates, centred_similarity, criterion_scores, gaps, pick,
                                silhouettes)
from cactus.metrics import partition_metrics
from test_cluster import clustered_similarity, same_partition


def unit_vectors(rng, n, n_clusters, noise=0.8, dim=16):
    labels = rng.integers(0, n_clusters, n)
    x = rng.normal(size=(n_clusters, dim))[labels] + noise * rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


@pytest.mark.parametrize("n", [3, 7, 30, 120])
def test_criteria_of_every_cut_match_scikit_learn(n):
    x, _ = unit_vectors(np.random.default_rng(n), n, 4)
    dendrogram = Dendrogram(x @ x.T)
    sil, ch = silhouettes(dendrogram), calinski_harabasz(dendrogram)
    distance = 1.0 - dendrogram.rounded
    np.fill_diagonal(distance, 0.0)
    assert np.isnan(sil[[0, n - 1]]).all() and np.isnan(ch[[0, n - 1]]).all()  # one cluster or n clusters
    for k in range(1, n - 1):
        labels = dendrogram.cut(k)
        assert sil[k] == pytest.approx(silhouette_score(distance, labels, metric="precomputed"), abs=1e-12)
        # CH from the rounded similarities, against the embeddings themselves: equal up to the rounding
        assert ch[k] == pytest.approx(calinski_harabasz_score(x, labels), rel=1e-4)


def test_silhouette_of_chosen_cuts_only_equals_the_full_pass():
    x, _ = unit_vectors(np.random.default_rng(1), 40, 5)
    dendrogram = Dendrogram(x @ x.T)
    wanted = np.zeros(40, dtype=bool)
    wanted[[3, 10, 20]] = True
    some = silhouettes(dendrogram, wanted)
    full = silhouettes(Dendrogram(x @ x.T))  # a fresh tree: nothing read back from the first call
    np.testing.assert_array_equal(some[wanted], full[wanted])
    assert np.isnan(some[~wanted]).all()
    # the same tree asked again, for more cuts: the kept values and the new ones, as a fresh pass gives them
    np.testing.assert_array_equal(silhouettes(dendrogram), full)
    np.testing.assert_array_equal(silhouettes(dendrogram, centre=0.5), silhouettes(Dendrogram(x @ x.T), centre=0.5))


def test_candidates_and_gaps_follow_the_merge_similarities():
    # A, B, C, D: AB merge at 0.9, CD at 0.8, AB-CD at 0.15
    s = np.array([[1, .9, .1, .3], [.9, 1, .2, 0], [.1, .2, 1, .8], [.3, 0, .8, 1]])
    dendrogram = Dendrogram(s)
    np.testing.assert_allclose(dendrogram.similarities, [0.9, 0.8, 0.15])
    # cut k holds for h[k] < t <= h[k-1]: k=0 for t > 0.9, k=1 (0.8, 0.9], k=2 (0.15, 0.8], k=3 t <= 0.15
    assert candidates(dendrogram, (0.05, 0.7)).tolist() == [False, False, True, True]
    assert candidates(dendrogram, (0.85, 0.95)).tolist() == [True, True, False, False]
    np.testing.assert_allclose(gaps(dendrogram, (0.05, 0.7))[2:], [0.7 - 0.15, 0.15 - 0.05])
    assert cut_cluster(s, Cut("adaptive", "gap", (0.05, 0.7)), None).tolist() == [0, 0, 1, 1]


def test_ties_go_to_the_fewest_merges_and_undefined_falls_back():
    assert pick(np.array([np.nan, 0.5, 0.5 + 1e-12, 0.2])) == 1
    assert pick(np.array([np.nan, np.nan])) is None
    # two entities: no cut has a silhouette, so the fallback threshold decides
    s = np.array([[1.0, 0.4], [0.4, 1.0]])
    cut = Cut("adaptive")
    assert cut_cluster(s, cut, 0.3).tolist() == [0, 0] and cut_cluster(s, cut, 0.5).tolist() == [0, 1]
    assert cut_cluster(s, cut, None).tolist() == [0, 0]  # the band's middle, 0.375
    assert cut_cluster(np.ones((1, 1)), cut, None).tolist() == [0]


@pytest.mark.parametrize("n, centre", [(3, 0.5), (30, 0.25), (30, 1.0), (120, 0.5)])
def test_centred_silhouette_is_that_of_the_centred_embeddings(n, centre):
    x, _ = unit_vectors(np.random.default_rng(n), n, 4)
    dendrogram = Dendrogram(x @ x.T)
    shifted = x - centre * x.mean(0)
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    expected = shifted @ shifted.T
    # from the similarities alone (rounded to 1e-6 by the dendrogram) as from the embeddings themselves
    np.testing.assert_allclose(centred_similarity(x @ x.T, centre), expected, atol=1e-12)
    distance = 1.0 - centred_similarity(dendrogram.rounded, centre)
    np.fill_diagonal(distance, 0.0)
    np.testing.assert_allclose(distance, np.where(np.eye(n, dtype=bool), 0.0, 1.0 - expected), atol=1e-4)
    sil = silhouettes(dendrogram, centre=centre)
    for k in range(1, n - 1):
        assert sil[k] == pytest.approx(silhouette_score(distance, dendrogram.cut(k), metric="precomputed"), abs=1e-12)
    # an entity at the subset's mean has no direction left: similarity 0 to the others, not NaN
    two = np.array([[1.0, 1.0], [1.0, 1.0]])
    assert np.array_equal(centred_similarity(two, 1.0), np.zeros((2, 2)))


def test_centring_changes_the_cut_where_shared_context_hides_the_groups():
    """Groups of 8, 8, 3 and 1 entities on top of a large direction that every entity shares: on raw cosine the
    best silhouette merges some of the groups; less half the subset's mean, the centred silhouette finds them all."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], [8, 8, 3, 1])
    shared = np.zeros(16)
    shared[0] = 4.0
    groups = rng.normal(size=(4, 16))
    groups[:, 0] = 0
    x = shared + groups[labels] + 0.6 * rng.normal(size=(20, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    plain = cut_cluster(x @ x.T, Cut("adaptive"), None)
    centred = cut_cluster(x @ x.T, Cut("adaptive", centre=0.5), None)
    assert partition_metrics(labels, plain)["ami"] < 0.5
    assert partition_metrics(labels, centred)["ami"] == 1.0


@pytest.mark.parametrize("criterion, centre", [(c, 0.0) for c in CRITERIA] + [("silhouette", 0.5)])
def test_adaptive_cut_does_not_depend_on_entity_order(criterion, centre):
    rng = np.random.default_rng(3)
    cut = Cut("adaptive", criterion, centre=centre)
    for n in (5, 25, 60):
        s, _ = clustered_similarity(rng, n, 4)
        base = cut_cluster(s, cut, 0.3)
        assert np.array_equal(base, cut_cluster(s, cut, 0.3))  # deterministic
        for _ in range(3):
            p = rng.permutation(n)
            assert same_partition(base[p], cut_cluster(s[np.ix_(p, p)], cut, 0.3))


def test_adaptive_cut_finds_well_separated_clusters_whatever_their_similarity():
    """Three tight groups: silhouette and Calinski-Harabasz recover them whether the groups sit at similarity 0.2
    or 0.6 from each other, where any one threshold in between fails on one of the two. (The gap criterion takes
    the widest threshold range, here one cluster below 0.6.)"""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 6)
    for between in (0.2, 0.6):
        s = np.where(labels[:, None] == labels[None], 0.9, between) + 0.01 * rng.normal(size=(18, 18))
        s = (s + s.T) / 2
        for criterion in ("silhouette", "calinski_harabasz"):
            got = cut_cluster(s, Cut("adaptive", criterion, (0.05, 0.85)), None)
            assert partition_metrics(labels, got)["ari"] == 1.0, (criterion, between)


def test_cut_validation_and_round_trip():
    with pytest.raises(ValueError, match="cut must be one of threshold, adaptive"):
        Cut("best")
    with pytest.raises(ValueError, match="criterion must be one of"):
        Cut("adaptive", "dunn")
    with pytest.raises(ValueError, match="low 0.5 is above high 0.2"):
        Cut("adaptive", band=(0.5, 0.2))
    with pytest.raises(ValueError, match=r"cut band must be a number in \[-1, 1\]"):
        Cut("adaptive", band=(0.1, 2.0))
    for bad in (-0.1, 1.5, float("nan"), "half"):
        with pytest.raises(ValueError, match="cut centre must be a number in \\[0, 1\\]"):
            Cut("adaptive", centre=bad)
    with pytest.raises(ValueError, match="applies to the adaptive silhouette cut only, not to adaptive gap"):
        Cut("adaptive", "gap", centre=0.5)
    with pytest.raises(ValueError, match="not to threshold"):
        Cut(centre=0.5)
    for cut in (Cut(), Cut("adaptive", "gap", (0.1, 0.6)), Cut("adaptive", centre=0.5)):
        assert Cut.from_dict(cut.to_dict()) == cut
    assert "centre" not in Cut("adaptive").to_dict()  # configs saved before centring read and write the same
    assert Cut("adaptive", centre=0.5).to_dict()["centre"] == 0.5
    assert "less 0.5 x their subset's mean" in Cut("adaptive", centre=0.5).describe()
    with pytest.raises(ValueError, match="needs a threshold"):
        cut_cluster(np.eye(3), Cut(), None)


def test_tune_cut_scores_every_rule_as_clustering_would():
    rng = np.random.default_rng(5)
    data = [clustered_similarity(rng, int(rng.integers(8, 30)), int(rng.integers(2, 6))) for _ in range(12)]
    sims, labels = [d[0] for d in data], [d[1] for d in data]
    choice = tune_cut(sims, labels)
    curve = tune_threshold(sims, labels)
    assert choice.curve.best_threshold == curve.best_threshold
    assert choice.rules[0]["cut"] == {"rule": "threshold"}
    assert choice.rules[0]["objective"] == pytest.approx(curve.best_score)
    for rule in choice.rules:  # each rule's score is the mean of clustering every subset with it
        cut = Cut.from_dict(rule["cut"])
        got = [partition_metrics(y, cut_cluster(s, cut, curve.best_threshold)) for s, y in zip(sims, labels)]
        assert rule["scores"]["ami"] == pytest.approx(np.mean([g["ami"] for g in got]), abs=1e-9)
    assert choice.best_score == max(r["objective"] for r in choice.rules)
    assert choice.cut == Cut.from_dict(max(choice.rules, key=lambda r: r["objective"])["cut"])


def test_criterion_scores_are_nan_outside_the_band():
    s, _ = clustered_similarity(np.random.default_rng(2), 20, 3)
    dendrogram = Dendrogram(s)
    band = (0.3, 0.5)
    for criterion in CRITERIA:
        scores = criterion_scores(dendrogram, Cut("adaptive", criterion, band))
        assert np.isnan(scores[~candidates(dendrogram, band)]).all()
