"""Scoring predictions against labelled subsets, and matching a predictions file to them by content."""

import logging

import numpy as np
import pytest

from cactus.data import Subset, SubsetFormatError, read_subsets
from cactus.evaluate import evaluate_predictions, match_predictions
from conftest import EXAMPLES


def predicted(gold: list[Subset], seed: int = 0) -> list[Subset]:
    """Predictions of some quality: each subset's labels with a few entities moved to another cluster."""
    rng = np.random.default_rng(seed)
    out = []
    for s in gold:
        codes = {label: i for i, label in enumerate(dict.fromkeys(s.labels))}
        ids = [codes[label] if rng.random() > 0.3 else int(rng.integers(0, 3)) for label in s.labels]
        out.append(s.with_clusters(ids))
    return out


def shuffled(subsets: list[Subset], seed: int = 1) -> list[Subset]:
    rng = np.random.default_rng(seed)
    out = []
    for s in subsets[::-1]:
        order = rng.permutation(len(s))
        out.append(Subset(s.id, [s.texts[i] for i in order], None,
                          None if s.entity_ids is None else [s.entity_ids[i] for i in order],
                          cluster_ids=[s.cluster_ids[i] for i in order]))
    return out


def score(gold, preds) -> float:
    return evaluate_predictions(gold, preds)["summary"]["ami"]["mean"]


def test_entities_in_another_order_are_matched_by_text():
    gold = read_subsets(EXAMPLES)
    preds = predicted(gold)
    in_order, n = match_predictions(gold, preds)
    assert n == 0
    reordered, n = match_predictions(gold, shuffled(preds))
    assert n == len(gold)
    assert reordered == in_order
    # pairing by position, as before, scores another (wrong) number
    by_position = [s.cluster_ids for s in shuffled(preds)[::-1]]
    assert score(gold, reordered) == score(gold, in_order) != pytest.approx(score(gold, by_position))


def test_entity_ids_are_used_when_both_sides_have_them():
    gold = [Subset("a", ["same", "same", "other"], ["x", "y", "y"], entity_ids=[1, 2, 3])]
    pred = [Subset("a", ["other", "same", "same"], entity_ids=["3", "2", "1"], cluster_ids=[7, 8, 9])]
    assert match_predictions(gold, pred)[0] == [[9, 8, 7]]  # ids as text match integer ids (a CSV holds text)
    pred = [Subset("a", ["other", "same", "changed"], entity_ids=[3, 2, 1], cluster_ids=[7, 8, 9])]
    with pytest.raises(SubsetFormatError, match=r"subset 'a': entity id 1 has another text in the predictions"):
        match_predictions(gold, pred)


def test_other_entities_are_an_error_naming_the_subset_and_what_differs():
    gold = [Subset("a", ["p", "q", "r"], ["x", "y", "y"])]
    with pytest.raises(SubsetFormatError, match=r"P.jsonl, subset 'a': the predictions hold other texts than the "
                                                r"labelled subset: missing 'r', extra 's'"):
        match_predictions(gold, [Subset("a", ["q", "p", "s"], cluster_ids=[0, 0, 1])], source="P.jsonl")
    with pytest.raises(SubsetFormatError, match=r"missing 'r', extra none"):
        match_predictions(gold, [Subset("a", ["q", "p"], cluster_ids=[0, 0])])
    gold = [Subset("b", ["p", "q"], ["x", "y"], entity_ids=["e1", "e2"])]
    with pytest.raises(SubsetFormatError, match=r"other entity ids .*: missing 'e2', extra 'e9'"):
        match_predictions(gold, [Subset("b", ["p", "q"], entity_ids=["e1", "e9"], cluster_ids=[0, 1])])


def test_missing_subsets_are_an_error_and_extra_ones_a_warning(caplog):
    gold = [Subset("a", ["p"], ["x"]), Subset(2, ["q"], ["y"])]
    with pytest.raises(SubsetFormatError, match=r"no prediction for 1 of 2 subsets \(missing: 2\)"):
        match_predictions(gold, [Subset("a", ["p"], cluster_ids=[0])])
    with caplog.at_level(logging.WARNING):
        got, _ = match_predictions(gold, [Subset("a", ["p"], cluster_ids=[0]), Subset("2", ["q"], cluster_ids=[0]),
                                          Subset("z", ["r"], cluster_ids=[0])], source="P")
    assert got == [[0], [0]] and "P: 1 predicted subsets are not in the labelled file and are not scored ('z')" \
        in caplog.text


def test_the_older_layout_with_integer_labels_is_read():
    gold = [Subset("a", ["p", "q"], ["x", "y"])]
    assert match_predictions(gold, [Subset("a", ["p", "q"], [0, 1])])[0] == [[0, 1]]
    assert match_predictions(gold, [Subset("a", ["p", "q"], ["0", "1"])])[0] == [["0", "1"]]  # from a CSV
    with pytest.raises(SubsetFormatError, match="subset 'a': no predicted 'cluster_ids'"):
        match_predictions(gold, gold)  # the labelled file given as the predictions
