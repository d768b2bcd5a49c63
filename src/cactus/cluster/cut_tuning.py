"""Choosing the cut on labelled subsets: one threshold, or the adaptive rule with its criterion and band.

Every subset's dendrogram and its metrics after every prefix of merges (`merge_prefix_scores`) are computed once; a
rule then picks one cut per subset (`choose_cut`, as prediction does) and reads that cut's metrics, so no rule
clusters or scores a subset again. The threshold is tuned first, as `tune_threshold` does (same grid, same tie
rule); the adaptive candidates are the default band and bands centred on the tuned threshold, and for silhouette each
share of the subset's mean removed (`CENTRES`). The rule with the best objective wins; the threshold rule wins ties
(it is the simpler one), then the earlier candidate.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from cactus.cluster.agglomerative import Dendrogram
from cactus.cluster.cut import CRITERIA, DEFAULT_BAND, Cut, choose_cut
from cactus.cluster.threshold import ThresholdCurve, merge_prefix_scores, parse_objective, tune_threshold
from cactus.metrics import METRICS

BAND_WIDTHS = (0.05, 0.1, 0.15, 0.2, 0.3)  # half-widths of the bands centred on the tuned threshold
# Shares of the subset's mean removed before the silhouette (`Cut.centre`): leaving one family out in turn, 0.5 was
# chosen for 8 of 10 families and 0.25 for 2 from 0 to 1 in steps of 0.25 (docs/results/cut_variants.md)
CENTRES = (0.0, 0.25, 0.5)
_TIE = 1e-12


@dataclass
class CutChoice:
    """The result of `tune_cut`.

    Attributes:
        cut: the chosen rule.
        curve: the threshold curve (its best threshold is the threshold rule's, and the adaptive rule's fallback).
        rules: one row per rule tried: {"cut": Cut.to_dict(), "scores": metric -> mean over subsets}.
        objective: '+'-joined metrics maximised; best_score its value for `cut`.
    """

    cut: Cut
    curve: ThresholdCurve
    rules: list[dict]
    objective: str
    best_score: float

    def to_dict(self) -> dict:
        """JSON-friendly, without the curve (a model folder saves that on its own)."""
        return {"cut": self.cut.to_dict(), "objective": self.objective, "best_score": self.best_score,
                "rules": self.rules}

    @classmethod
    def from_dict(cls, record: dict, curve: ThresholdCurve) -> "CutChoice":
        return cls(cut=Cut.from_dict(record["cut"]), curve=curve, rules=record["rules"],
                   objective=record["objective"], best_score=record["best_score"])


def candidate_cuts(threshold: float, criteria: Sequence[str] = tuple(CRITERIA)) -> list[Cut]:
    """The threshold rule, then the adaptive rule per criterion in the default band and in bands centred on
    `threshold` (clipped to [-1, 1]), silhouette with each of `CENTRES`."""
    bands = [DEFAULT_BAND] + [(max(-1.0, round(threshold - w, 6)), min(1.0, round(threshold + w, 6)))
                              for w in BAND_WIDTHS]
    return [Cut()] + [Cut("adaptive", c, band, centre) for c in criteria for band in dict.fromkeys(bands)
                      for centre in (CENTRES if c == "silhouette" else (0.0,))]


def rule_scores(dendrograms: Sequence[Dendrogram], prefix_scores: Sequence[dict[str, np.ndarray]], cut: Cut,
                threshold: float) -> dict[str, float]:
    """Every metric's mean over subsets under `cut` (per-subset metrics of every cut precomputed)."""
    totals = dict.fromkeys(METRICS, 0.0)
    for dendrogram, scores in zip(dendrograms, prefix_scores):
        k = choose_cut(dendrogram, cut, threshold)
        for name in METRICS:
            totals[name] += scores[name][k]
    return {name: total / len(dendrograms) for name, total in totals.items()}


def tune_cut(
    similarities: Sequence[np.ndarray],
    labels: Sequence[Sequence[Hashable] | np.ndarray],
    grid: Sequence[float] | np.ndarray | None = None,
    objective: str = "ami+ari",
    criteria: Sequence[str] = tuple(CRITERIA),
) -> CutChoice:
    """Tune the threshold, then choose between it and the adaptive rules (`candidate_cuts`) by `objective`.

    Args:
        similarities: one (n_i, n_i) similarity matrix per subset (cosine of unit-norm embeddings).
        labels: one (n_i,) array of true cluster labels per subset.
        grid: the threshold grid (default `DEFAULT_GRID`).
        objective: '+'-joined metric names, summed after averaging over subsets.
        criteria: the adaptive criteria to try.
    """
    names = parse_objective(objective)
    curve = tune_threshold(similarities, labels, grid=grid, objective=objective)
    dendrograms = [Dendrogram(s) for s in similarities]
    prefix_scores = [merge_prefix_scores(d, y) for d, y in zip(dendrograms, labels)]
    rules, best = [], None
    for cut in candidate_cuts(curve.best_threshold, criteria):
        scores = rule_scores(dendrograms, prefix_scores, cut, curve.best_threshold)
        value = sum(scores[name] for name in names)
        rules.append({"cut": cut.to_dict(), "scores": scores, "objective": value})
        if best is None or value > best[1] + _TIE:
            best = (cut, value)
    return CutChoice(cut=best[0], curve=curve, rules=rules, objective="+".join(names), best_score=float(best[1]))
