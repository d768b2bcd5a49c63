"""Speed of threshold tuning: `cactus.cluster.tune_threshold` against the naive loop, in one run.

Naive: per subset one scipy linkage, then per grid point scipy `fcluster` and scikit-learn's AMI, ARI, NMI, RI and a
contingency matrix for precision / recall / F1 (the same seven metrics the fast path computes). If the naive loop
passes --naive-budget seconds it stops after the current subset and its time is extrapolated linearly to all subsets.

    python benchmarks/threshold_tuning_speed.py            # writes docs/benchmarks/threshold_tuning_speed.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import sklearn
from provenance import machine_info
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn import metrics as skm

from cactus.cluster import best_index, tune_threshold
from cactus.metrics import METRICS

OBJECTIVE = "ami+ari"


def make_subsets(n_subsets: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cosine similarities of noisy unit vectors around 3-10 random cluster centres; n ~ U{10..50}."""
    rng = np.random.default_rng(seed)
    similarities, labels = [], []
    for _ in range(n_subsets):
        n, n_clusters = int(rng.integers(10, 51)), int(rng.integers(3, 11))
        y = rng.integers(0, n_clusters, n)
        x = rng.normal(size=(n_clusters, 32))[y] + rng.uniform(0.5, 1.0) * rng.normal(size=(n, 32))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        similarities.append(x @ x.T)
        labels.append(y)
    return similarities, labels


def naive_scores(similarity: np.ndarray, labels: np.ndarray, grid: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric at every grid point of one subset, the straightforward way; metric -> (G,)."""
    n = len(labels)
    z = linkage(1.0 - similarity[np.triu_indices(n, 1)], method="average")
    scores = {name: np.empty(len(grid)) for name in METRICS}
    for g, t in enumerate(grid):
        pred = fcluster(z, 1.0 - t, criterion="distance")
        table = skm.cluster.contingency_matrix(labels, pred)
        precision, recall = table.max(axis=0).sum() / n, table.max(axis=1).sum() / n
        scores["ami"][g] = skm.adjusted_mutual_info_score(labels, pred)
        scores["ari"][g] = skm.adjusted_rand_score(labels, pred)
        scores["nmi"][g] = skm.normalized_mutual_info_score(labels, pred)
        scores["ri"][g] = skm.rand_score(labels, pred)
        scores["precision"][g], scores["recall"][g] = precision, recall
        scores["f1"][g] = 2 * precision * recall / (precision + recall)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsets", type=int, default=500)
    parser.add_argument("--grid", type=int, default=100, help="number of thresholds, evenly spaced in [-1, 1]")
    parser.add_argument("--repeats", type=int, default=3, help="fast-path repeats (the median is reported)")
    parser.add_argument("--naive-budget", type=float, default=300.0, help="seconds before the naive loop extrapolates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/threshold_tuning_speed"))
    args = parser.parse_args()

    similarities, labels = make_subsets(args.subsets, args.seed)
    grid = np.linspace(-1.0, 1.0, args.grid)

    fast_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        curve = tune_threshold(similarities, labels, grid=grid, objective=OBJECTIVE)
        fast_times.append(time.perf_counter() - start)
    fast_s = statistics.median(fast_times)

    totals = {name: np.zeros(len(grid)) for name in METRICS}
    start = time.perf_counter()
    n_naive = 0
    while n_naive < args.subsets and time.perf_counter() - start < args.naive_budget:
        for name, values in naive_scores(similarities[n_naive], labels[n_naive], grid).items():
            totals[name] += values
        n_naive += 1
    naive_measured_s = time.perf_counter() - start
    naive_s = naive_measured_s * args.subsets / n_naive

    # Agreement, on the subsets the naive loop saw.
    fast_on_same = curve if n_naive == args.subsets else tune_threshold(
        similarities[:n_naive], labels[:n_naive], grid=grid, objective=OBJECTIVE
    )
    naive_curve = {name: total / n_naive for name, total in totals.items()}
    naive_objective = sum(naive_curve[name] for name in OBJECTIVE.split("+"))
    naive_best = float(grid[best_index(naive_objective)])
    max_abs_diff = max(float(np.abs(naive_curve[name] - fast_on_same.scores[name]).max()) for name in METRICS)

    result = {
        "command": "python " + " ".join(sys.argv),
        "subsets": args.subsets,
        "subset_sizes": "n ~ U{10..50}, 3-10 clusters, 32-d noisy unit vectors, seed %d" % args.seed,
        "grid_points": args.grid,
        "objective": OBJECTIVE,
        "fast_s": fast_s,
        "fast_repeats_s": fast_times,
        "naive_s": naive_s,
        "naive_measured_s": naive_measured_s,
        "naive_subsets_timed": n_naive,
        "naive_extrapolated": n_naive < args.subsets,
        "speedup": naive_s / fast_s,
        "best_threshold_fast": fast_on_same.best_threshold,
        "best_threshold_naive": naive_best,
        "same_best_threshold": fast_on_same.best_threshold == naive_best,
        "max_abs_curve_difference": max_abs_diff,
        "best_threshold_all_subsets": curve.best_threshold,
        "best_score_all_subsets": curve.best_score,
        "machine": machine_info(**{
            "load_average_1_5_15min_at_end": list(os.getloadavg()),  # other work on the machine slows both paths
            "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
        }),
    }
    print(json.dumps(result, indent=2))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    naive_note = (
        f"measured on the first {n_naive} subsets ({naive_measured_s:.1f} s), extrapolated linearly"
        if result["naive_extrapolated"]
        else "all subsets measured"
    )
    machine = result["machine"]
    args.out.with_suffix(".md").write_text(
        f"# Threshold tuning speed\n\n"
        f"{args.subsets} random subsets ({result['subset_sizes']}), {args.grid}-point grid in [-1, 1], "
        f"all seven metrics at every grid point, objective `{OBJECTIVE}`.\n\n"
        f"| path | wall time (s) | per subset (ms) | note |\n|---|---:|---:|---|\n"
        f"| fast: `tune_threshold` | {fast_s:.3f} | {1e3 * fast_s / args.subsets:.2f} | median of {args.repeats} |\n"
        f"| naive: `fcluster` + scikit-learn per grid point | {naive_s:.1f} | {1e3 * naive_s / args.subsets:.1f} "
        f"| {naive_note} |\n\n"
        f"Speed-up: **{result['speedup']:.0f}x**. Best threshold: fast {result['best_threshold_fast']:.4f}, "
        f"naive {naive_best:.4f} (same: {result['same_best_threshold']}); largest difference between the two curves "
        f"over all metrics and grid points: {max_abs_diff:.1e}.\n\n"
        f"Machine: {machine['platform']}, {machine['cpu']}, {machine['cpu_count']} CPUs (load average at the end "
        f"{machine['load_average_1_5_15min_at_end'][0]:.1f}); Python {machine['python']}, numpy {machine['numpy']}, "
        f"scipy {machine['scipy']}, scikit-learn {machine['scikit-learn']}.\n\n"
        f"Command: `{result['command']}`\n"
    )


if __name__ == "__main__":
    main()
