"""What the report shows, computed as plain dicts and lists (JSON-friendly): the summary metrics, the threshold curve,
the per-group table, every subset by AMI, and the worst subsets opened (entities ordered by predicted cluster, their
similarities, the dendrogram and its cut, the errors in words).

Nothing is scored twice: the metrics are `cactus.evaluate.evaluate_predictions`' and `cactus.metrics.summarize`'s,
the curve is `cactus.cluster.tune_threshold`'s, the tree and its cut are the model's own (`cactus.cluster.Dendrogram`,
`cactus.cluster.cut.choose_cut`), and the cluster names are `cactus.cluster.describe`'s.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from cactus.cluster import Cut, Dendrogram, parse_objective, tune_threshold
from cactus.cluster.cut import choose_cut
from cactus.cluster.describe import describe_clusters
from cactus.data.subsets import Label, Subset, SubsetFormatError, require_labels
from cactus.evaluate import evaluate_predictions
from cactus.metrics import METRICS, encode_labels, summarize
from cactus.report.errors import partition_errors
from cactus.version import __version__

MAX_DRAWN = 60  # entities drawn per heatmap, and leaves per dendrogram: their text stays readable, the page small
GROUP_METRICS = ("ami", "ari", "nmi", "pair_f1", "bcubed_f1")
METRIC_NAMES = {"ami": "AMI", "ari": "ARI", "nmi": "NMI", "ri": "Rand index", "precision": "best-match precision",
                "recall": "best-match recall", "f1": "best-match F1", "pair_precision": "pairwise precision",
                "pair_recall": "pairwise recall", "pair_f1": "pairwise F1", "bcubed_precision": "B-cubed precision",
                "bcubed_recall": "B-cubed recall", "bcubed_f1": "B-cubed F1"}


def build_report(subsets: Sequence[Subset], predictions: Sequence[Sequence[Label]] | None = None, model=None, *,
                 threshold: float | None = None, cut: Cut | None = None, worst: int = 10,
                 group_by: str | None = None, source: str | None = None, about: dict | None = None,
                 progress: bool = False) -> dict:
    """The report's content.

    Args:
        subsets: the labelled subsets.
        predictions: one (n_i,) array of predicted cluster ids per subset, in the subset's entity order (a file's:
            `cactus.evaluate.match_predictions`); or instead
        model: a `cactus.Cactus`, which predicts them (`threshold` and `cut` override its own, as in `predict`) and
            gives the threshold curve, the similarity heatmaps and the dendrograms.
        worst: how many subsets, those of lowest AMI, are opened.
        group_by: the per-subset field the metrics are broken down by (`subset_groups`).
        source: the input file's name, for errors.
        about: names shown in the page's header (input, model, predictions).

    Returns:
        {"about", "summary": [per metric], "curve": dict or None, "groups": dict or None, "subsets": [every subset,
        worst first], "worst": [the opened subsets]}.
    """
    if (predictions is None) == (model is None):
        raise ValueError("a report needs either a model or predictions")
    require_labels(subsets, "a report")
    groups = subset_groups(subsets, group_by, source)  # a missing field fails before any encoding
    sims, curve = None, None
    if model is not None:
        cut, threshold = model.resolve_cut(threshold, cut)
        sims = model.similarities(subsets, progress=progress)
        predictions = model.cluster_similarities(sims, threshold, cut)
    evaluation = evaluate_predictions(subsets, predictions)
    rows = evaluation["per_subset"]
    if model is not None:
        curve = threshold_curve(sims, subsets, model.config.objective, threshold, cut, evaluation["summary"])
    ranked = sorted(range(len(rows)), key=lambda k: (rows[k]["ami"], rows[k]["ari"]))  # ties keep input order
    anchors = {k: f"subset-{rank}" for rank, k in enumerate(ranked[:worst])}
    return {
        "about": {"input": None, "model": None, "predictions": None, **(about or {}), "subsets": len(subsets),
                  "entities": sum(map(len, subsets)), "cut": cut.describe() if cut else None, "threshold": threshold,
                  "version": __version__},
        "summary": [{"metric": m, "name": METRIC_NAMES[m], **evaluation["summary"][m]} for m in METRICS],
        "curve": curve,
        "groups": group_table(groups, rows),
        "subsets": [{**{f: rows[k][f] for f in ("id", "n", "true_clusters", "predicted_clusters", "ami", "ari")},
                     "anchor": anchors.get(k)} for k in ranked],
        "worst": [opened_subset(subsets[k], predictions[k], None if sims is None else sims[k], cut, threshold,
                                rows[k], anchors[k]) for k in ranked[:worst]],
    }


# ---- groups ------------------------------------------------------------------------------------------------------
def subset_groups(subsets: Sequence[Subset], group_by: str | None = None, source: str | None = None) -> dict | None:
    """Each subset's group: its field `group_by` (a JSONL field, or a table column with one value per subset); without
    `group_by`, its id's prefix before the first "/" when every id has one ("clinc_intent/test/000000" ->
    "clinc_intent"); else None. A subset without the field is a SubsetFormatError naming it.

    Returns:
        {"by": what the groups are, "of": (S,) each subset's group as text}, or None.
    """
    if group_by is None:
        ids = [str(s.id) for s in subsets]
        if not all("/" in i for i in ids):
            return None
        return {"by": "the subset id's prefix before '/'", "of": [i.split("/", 1)[0] for i in ids]}
    return {"by": f"the field '{group_by}'", "of": [_field(s, group_by, source) for s in subsets]}


def _field(s: Subset, name: str, source: str | None) -> str:
    if name in s.extra:
        return _as_text(s.extra[name])
    if name in s.columns:
        values = {_as_text(v) for v in s.columns[name]}
        if len(values) > 1:
            raise SubsetFormatError(f"column '{name}' holds {len(values)} different values in this subset's rows; "
                                    "grouping needs one value per subset", source=source, subset_id=s.id)
        return values.pop()
    fields = sorted([*s.extra, *s.columns])
    raise SubsetFormatError(f"no field '{name}' to group by (its other fields: {', '.join(fields) or 'none'})",
                            source=source, subset_id=s.id)


def _as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def group_table(groups: dict | None, rows: list[dict]) -> dict | None:
    """Per group (in order of first appearance): subsets, entities, and the mean of `GROUP_METRICS` (AMI with its 95%
    interval). `rows` are `evaluate_predictions`' per-subset rows."""
    if groups is None:
        return None
    members: dict[str, list[dict]] = {}
    for group, row in zip(groups["of"], rows):
        members.setdefault(group, []).append(row)
    table = []
    for group, rs in members.items():
        summary = summarize([{m: r[m] for m in GROUP_METRICS} for r in rs])
        table.append({"group": group, "count": len(rs), "entities": sum(r["n"] for r in rs),
                      "means": [summary[m]["mean"] for m in GROUP_METRICS],
                      "ami_ci": [summary["ami"]["ci_low"], summary["ami"]["ci_high"]]})
    return {"by": groups["by"], "metrics": [METRIC_NAMES[m] for m in GROUP_METRICS], "rows": table}


# ---- the threshold curve -----------------------------------------------------------------------------------------
def threshold_curve(similarities: Sequence[np.ndarray], subsets: Sequence[Subset], objective: str,
                    threshold: float | None, cut: Cut, summary: dict) -> dict:
    """The mean scores of the threshold cut at every threshold of `cactus.cluster.DEFAULT_GRID` on these subsets:
    AMI and the objective's other metrics, the best threshold here by the objective, the model's threshold, and,
    when the model cuts adaptively, the mean AMI its cut reached (from `summary`)."""
    curve = tune_threshold(similarities, [s.labels for s in subsets], objective=objective)
    shown = ["ami"] + [m for m in parse_objective(objective) if m != "ami"]
    at_model = None
    if threshold is not None:
        hit = np.flatnonzero(np.isclose(curve.thresholds, threshold))
        at_model = {m: float(curve.scores[m][hit[0]]) for m in [*shown, curve.objective]} if len(hit) else None
    mean_ami = summary["ami"]["mean"]
    reference = None if cut.rule == "threshold" else {"label": f"the model's {cut.rule} cut: mean AMI {mean_ami:.3f}",
                                                      "value": mean_ami}
    return {"thresholds": curve.thresholds.tolist(), "objective": curve.objective,
            "lines": [{"name": f"mean {METRIC_NAMES[m]}", "values": curve.scores[m].tolist()} for m in shown],
            "best_threshold": curve.best_threshold, "at_best": curve.scores_at_best(),
            "model_threshold": threshold, "at_model": at_model, "reference": reference}


# ---- one subset, opened ------------------------------------------------------------------------------------------
def entity_order(gold_codes: np.ndarray, pred_codes: np.ndarray) -> np.ndarray:
    """(n,) entity indices grouped by predicted cluster, so that each gold cluster lies in as few runs as it can:
    clusters ordered by their commonest gold label (ties: the first), then by the mean of their gold labels' numbers
    (so that a cluster whose other members belong before it comes first), and inside a cluster by gold label (labels
    numbered by first appearance). The parts of a split gold cluster then lie side by side, and a merging cluster's
    other members border the clusters of their own gold label."""
    n, k = len(gold_codes), int(pred_codes.max()) + 1
    table = np.zeros((k, int(gold_codes.max()) + 1), dtype=np.int64)
    np.add.at(table, (pred_codes, gold_codes), 1)
    major = table.argmax(axis=1)
    mean_gold = (table @ np.arange(table.shape[1])) / table.sum(axis=1)
    rank = np.empty(k, dtype=np.int64)
    rank[np.lexsort((np.arange(k), mean_gold, major))] = np.arange(k)
    return np.lexsort((np.arange(n), gold_codes, rank[pred_codes]))


def _plain(x):
    return x.item() if isinstance(x, np.generic) else x


def opened_subset(subset: Subset, pred: Sequence[Label], similarity: np.ndarray | None, cut: Cut | None,
                  threshold: float | None, row: dict, anchor: str) -> dict:
    """One worst subset: its scores, the drawn view (at most `MAX_DRAWN` entities, evenly spaced along the order),
    its tree and cut (with a similarity matrix), and its errors in words.

    Args:
        pred: (n,) predicted cluster ids; similarity: (n, n) cosine similarities or None; row: its evaluation row.
    """
    pred = [_plain(p) for p in pred]
    gold_codes, pred_codes = encode_labels(subset.labels), encode_labels(pred)
    order = entity_order(gold_codes, pred_codes)
    drawn = order if len(order) <= MAX_DRAWN else order[np.linspace(0, len(order) - 1, MAX_DRAWN).round().astype(int)]
    tree = Dendrogram(similarity) if similarity is not None else None
    # Without similarities every member ties as its cluster's representative, so the first one names a cluster
    # that has no terms.
    described = describe_clusters(subset.texts, tree.rounded if tree else np.eye(len(subset)), pred_codes)
    names = {pred[c.members[0]]: c.name for c in described}
    view = {"texts": [subset.texts[i] for i in drawn], "entities": drawn.tolist(),
            "gold": [str(subset.labels[i]) for i in drawn], "gold_codes": gold_codes[drawn].tolist(),
            "pred": [str(pred[i]) for i in drawn], "pred_codes": pred_codes[drawn].tolist(),
            "values": None if tree is None else np.round(tree.rounded[np.ix_(drawn, drawn)], 3).tolist()}
    return {**{f: row[f] for f in ("id", "n", "true_clusters", "predicted_clusters", "ami", "ari")},
            "anchor": anchor, "view": view, "drawn": len(drawn),
            "tree": None if tree is None else tree_view(tree, subset, gold_codes, pred, cut, threshold),
            "errors": partition_errors(subset.texts, subset.labels, pred, names)}


def tree_view(tree: Dendrogram, subset: Subset, gold_codes: np.ndarray, pred: list, cut: Cut,
              threshold: float | None) -> dict | None:
    """What `cactus.report.svg.dendrogram` draws: the linkage, the entities, and the similarity the cut lies at (the
    threshold; for an adaptive cut, the middle of the range where its chosen cut holds, inside its band when it
    can be). None for a subset of one entity."""
    n = tree.n_entities
    if n < 2:
        return None
    k = choose_cut(tree, cut, threshold)
    h = tree.similarities
    upper, lower = (h[k - 1] if k > 0 else 1.0), (h[k] if k < n - 1 else h[-1] - 0.05)
    if cut.rule == "threshold":
        level, label = threshold, f"cut at threshold {threshold:.2f}"
    else:
        low, high = max(lower, cut.band[0]), min(upper, cut.band[1])
        level = (low + high) / 2 if low <= high else (lower + upper) / 2
        label = f"adaptive cut ({cut.criterion}): {n - k} clusters"
    return {"linkage": tree.linkage.tolist(), "texts": subset.texts, "gold": [str(g) for g in subset.labels],
            "gold_codes": gold_codes.tolist(), "pred": [str(p) for p in pred], "cut": float(level),
            "cut_label": label, "threshold": threshold, "max_leaves": MAX_DRAWN}
