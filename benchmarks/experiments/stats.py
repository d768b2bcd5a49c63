"""Statistics over an experiment's records: means and 95% intervals over seeds, and the paired bootstrap gain of a
run over the reference (the pretrained encoder at each family's own threshold)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .spec import FIVE, SIX, Experiment, RunSpec
from .store import record_path


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over seeds (nan with one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def aggregate(exp: Experiment, quick: bool, results: Path) -> dict:
    """label -> per family and over families: mean and CI over seeds of test AMI / ARI at the stored threshold and
    at the family's own threshold, the own thresholds, and the run records' costs."""
    out = {}
    for label, (spec, seeds) in exp.runs.items():
        spec = spec.quick() if quick else spec
        records = [json.loads(p.read_text()) for s in seeds if (p := record_path(results, spec, s)).exists()]
        if not records:
            continue
        fams = {}
        for fam in spec.test_families:
            fams[fam] = {f"{where}_{m}": mean_ci([r["families"][fam][where][m] for r in records])
                         for where in ("stored", "own") for m in ("ami", "ari")}
            fams[fam]["own_threshold"] = mean_ci([r["families"][fam]["own_threshold"] for r in records])
            if len(records) == 1:  # one seed: the CI over test subsets instead
                lo, hi = records[0]["families"][fam]["stored_ci"]["ami"]
                fams[fam]["stored_ami"] = (fams[fam]["stored_ami"][0], (hi - lo) / 2)
        over = {}
        for group, members in (("mean_five", FIVE), ("mean_six", SIX)):
            if all(f in spec.test_families for f in members):
                over[group] = {f"{where}_{m}": mean_ci([np.mean([r["families"][f][where][m] for f in members])
                                                        for r in records])
                               for where in ("stored", "own") for m in ("ami", "ari")}
        out[label] = {
            "key": spec.key(), "spec": asdict(spec), "seeds": [r["seed"] for r in records], "families": fams,
            "over_families": over,
            "five_stored_ami_by_seed": ({r["seed"]: float(np.mean([r["families"][f]["stored"]["ami"] for f in FIVE]))
                                         for r in records} if "mean_five" in over else {}),
            "threshold": mean_ci([r["threshold"] for r in records]),
            "neutral": mean_ci([r["neutral"] for r in records]) if records[0]["neutral"] is not None else None,
            "s0": {r["seed"]: r["s0"] for r in records},
            # the validation objective (AMI + ARI on the training families) of the model tested: the interpolated
            # one, else the best trained one; the in-distribution side of a generality trade
            "validation": (mean_ci([r["training_summary"]["best_score"] if r.get("interpolated_validation") is None
                                    else r["interpolated_validation"] for r in records])
                           if records[0]["training_summary"] else None),
            "minutes": float(np.median([r["wall_seconds"]["total"] for r in records]) / 60),
            "resumed_from_step": max(r.get("resumed_from_step", 0) for r in records),
            "train_subsets_per_second": (float(np.median([r["train_subsets_per_second"] for r in records]))
                                         if records[0]["train_subsets_per_second"] else None),
            "eval_entities_per_second": float(np.median([r["eval_entities_per_second"] for r in records])),
            "peak_rss_mib": float(max(r["peak_rss_mib"] for r in records)),
        }
    return out


def paired_gain(run: dict, ref: dict, families: tuple[str, ...] = FIVE,
                resamples: int = 10_000) -> tuple[float, float, float] | None:
    """Relative gain of a run record's mean test AMI over `families` (at its stored threshold) over the reference
    record's (at each family's own threshold), with a 95% paired bootstrap interval: the same resampled test subsets
    for both, resampled within each family. None without per-subset scores."""
    pairs = []
    for f in families:
        a, b = (r["families"].get(f, {}).get(key) for r, key in ((run, "stored_ami_per_subset"),
                                                                 (ref, "own_ami_per_subset")))
        if a is None or b is None or len(a) != len(b):
            return None
        pairs.append((np.asarray(a), np.asarray(b)))
    rng = np.random.default_rng(0)
    picks = [rng.integers(0, len(a), (resamples, len(a))) for a, _ in pairs]
    run_means = np.mean([a[i].mean(axis=1) for (a, _), i in zip(pairs, picks)], axis=0)
    ref_means = np.mean([b[i].mean(axis=1) for (_, b), i in zip(pairs, picks)], axis=0)
    gains = run_means / ref_means - 1
    point = np.mean([a.mean() for a, _ in pairs]) / np.mean([b.mean() for _, b in pairs]) - 1
    return float(point), float(np.quantile(gains, 0.025)), float(np.quantile(gains, 0.975))


def reference(quick: bool, results: Path) -> dict | None:
    """The record of the pretrained encoder on the default test subsets (main.json's first run), if there is one:
    the bar every trained model is held to, at each family's own tuned threshold."""
    spec = RunSpec(attention="nia", train_families=())
    path = record_path(results, spec.quick() if quick else spec, 0)
    return json.loads(path.read_text()) if path.exists() else None
