"""The context-free baseline on every benchmark family: the pretrained default encoder (mean pooling, L2-normalised)
with average-link clustering at a threshold tuned on validation subsets, and clusterings into k clusters.

Reports test metrics per family at (a) the family's own tuned threshold, (b) one threshold tuned on the validation
subsets of all families together (the shipped default), (c) k-means and (d) spectral clustering told the true k, and
the unsupervised baselines (e) k-means and (f) spectral clustering with k chosen per subset by silhouette on cosine
distance, trying k = 2 .. min(n - 1, k_max). k_max is 15 unless `--k-max` says otherwise: subsets have 10 to 50
entities and 3 to 10 true clusters, except `product_same`, whose singleton offers give 5 to 41 (more than 15 in
about half of its test subsets, where the cap rules out the true k).
Writes JSON, Markdown tables and a plot of the validation curves; `--write-context-free` also stores (b) as the
shipped context-free model's threshold.

    cactus data build --out data/benchmark
    python benchmarks/baseline.py --bench data/benchmark --write-context-free
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import date
from pathlib import Path

import numpy as np
from provenance import machine_info, write_record

import cactus.config
from cactus import Cactus
from cactus.cluster import (
    ThresholdCurve,
    agglomerative_cluster,
    kmeans_cluster,
    silhouette_cluster,
    spectral_cluster,
    tune_threshold,
)
from cactus.config import ThresholdProvenance
from cactus.data import read_subsets
from cactus.data.benchmarks import FAMILIES
from cactus.evaluate import evaluate_predictions

CONTEXT_FREE = cactus.config.packaged_model("context-free")  # the shipped model whose threshold this tunes
K_MAX = 15  # largest k the silhouette baselines try, by default
# Test-set columns: record key -> table heading. The first two cut the average-link tree at a threshold.
COLUMNS = {
    "test_at_own_threshold": "own t",
    "test_at_one_threshold": "one t",
    "test_kmeans_true_k": "k-means, true k",
    "test_spectral_true_k": "spectral, true k",
    "test_kmeans_silhouette_k": "k-means, silhouette k",
    "test_spectral_silhouette_k": "spectral, silhouette k",
}
CACHE_HITS: list[str] = []


def embed_cached(model: Cactus, path: Path, cache: Path) -> tuple[list, list[np.ndarray]]:
    """Subsets of `path` and their embeddings, cached as .npz (keyed by file size and mtime)."""
    subsets = read_subsets(path)
    stat = path.stat()
    key = cache / f"{path.parent.name}_{path.stem}_{stat.st_size}_{int(stat.st_mtime)}.npz"
    if key.exists():
        CACHE_HITS.append(key.name)
        data = np.load(key)
        return subsets, [data[str(i)] for i in range(len(subsets))]
    emb = model.embed(subsets, progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(key, **{str(i): e for i, e in enumerate(emb)})
    return subsets, emb


def summary_means(report: dict) -> dict:
    return {m: s["mean"] for m, s in report["summary"].items()} | {
        f"{m}_ci": [s["ci_low"], s["ci_high"]] for m, s in report["summary"].items() if m in ("ami", "ari")
    } | {"mean_predicted_clusters": float(np.mean([r["predicted_clusters"] for r in report["per_subset"]]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="data/benchmark", help="output folder of 'cactus data build'")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES))
    ap.add_argument("--out", default="docs/results/baseline", help="prefix of the .json / .md / .png outputs")
    ap.add_argument("--cache", default="runs/cache", help="embedding cache folder")
    ap.add_argument("--k-max", type=int, default=K_MAX,
                    help="largest k the silhouette baselines try (0: no cap, up to n - 1)")
    ap.add_argument("--write-context-free", action="store_true",
                    help="store the all-families threshold as the default model's threshold")
    args = ap.parse_args()

    start = time.perf_counter()
    model = Cactus()  # the pretrained default encoder, no threshold yet
    data = {}
    for fam in args.families:
        val, val_emb = embed_cached(model, Path(args.bench) / fam / "val.jsonl", Path(args.cache))
        test, test_emb = embed_cached(model, Path(args.bench) / fam / "test.jsonl", Path(args.cache))
        data[fam] = (val, [e @ e.T for e in val_emb], test, test_emb)
    embed_seconds = time.perf_counter() - start

    tune_start = time.perf_counter()
    curves = {fam: tune_threshold(d[1], [s.labels for s in d[0]]) for fam, d in data.items()}
    pooled = tune_threshold([m for d in data.values() for m in d[1]],
                            [s.labels for d in data.values() for s in d[0]])
    tune_seconds = time.perf_counter() - tune_start

    k_max = args.k_max or None
    results = {}
    cluster_seconds = dict.fromkeys(COLUMNS, 0.0)
    for fam, (val, _, test, test_emb) in data.items():
        sims = [e @ e.T for e in test_emb]
        true_k = [len(set(s.labels)) for s in test]
        t_own, t_all = curves[fam].best_threshold, pooled.best_threshold
        methods = {
            "test_at_own_threshold": lambda e, s, k: agglomerative_cluster(s, t_own),
            "test_at_one_threshold": lambda e, s, k: agglomerative_cluster(s, t_all),
            "test_kmeans_true_k": lambda e, s, k: kmeans_cluster(e, k),
            "test_spectral_true_k": lambda e, s, k: spectral_cluster(s, k),
            "test_kmeans_silhouette_k": lambda e, s, k: silhouette_cluster(e, "kmeans", k_max=k_max),
            "test_spectral_silhouette_k": lambda e, s, k: silhouette_cluster(e, "spectral", k_max=k_max),
        }
        results[fam] = {"own_threshold": t_own, "val_objective_at_own": curves[fam].best_score}
        for key, method in methods.items():
            column_start = time.perf_counter()
            predictions = [method(e, s, k) for e, s, k in zip(test_emb, sims, true_k)]
            cluster_seconds[key] += time.perf_counter() - column_start
            results[fam][key] = summary_means(evaluate_predictions(test, predictions))
        results[fam] |= {"mean_true_clusters": float(np.mean(true_k)), "test_subsets": len(test),
                         "val_subsets": len(val)}
        print(f"{fam:16s} t_own={t_own:.2f} AMI " + " ".join(
            f"{COLUMNS[key]}={results[fam][key]['ami']:.3f}" for key in COLUMNS))

    record = {
        "command": "python benchmarks/baseline.py " + " ".join(
            [f"--bench {args.bench}", f"--families {' '.join(args.families)}", f"--out {args.out}",
             f"--k-max {args.k_max}"]
            + (["--write-context-free"] if args.write_context_free else [])),
        "model": {"backbone": model.config.backbone, "attention": model.config.attention,
                  "max_tokens": model.config.max_tokens, "pooling": "mean, L2-normalised"},
        "objective": pooled.objective,
        "one_threshold": pooled.best_threshold,
        "families": results,
        "curves": {fam: c.to_dict() for fam, c in curves.items()} | {"all": pooled.to_dict()},
        "k_max": k_max,
        "wall_seconds": {"embedding": embed_seconds, "tuning": tune_seconds, "clustering": cluster_seconds,
                         "total": time.perf_counter() - start},
        "embeddings_from_cache": len(CACHE_HITS),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "date": date.today().isoformat(),
        "machine": machine_info(),
    }
    write_record(args.out, record, markdown_table(record), plot_curves)
    print(markdown_table(record))
    if args.write_context_free:
        write_context_free(model, pooled, record)


def markdown_table(record: dict) -> str:
    fams = record["families"]
    heading = "| family | tuned t | " + " | ".join(COLUMNS.values()) + " |"
    rule = "|---" * (len(COLUMNS) + 2) + "|"
    k_range = "n - 1" if record["k_max"] is None else f"min(n - 1, {record['k_max']})"
    lines = [
        f"Test AMI and ARI (mean over subsets) of the pretrained baseline ({record['model']['backbone']}, mean "
        f"pooling). 'own t': average link at the threshold tuned on the family's validation subsets (its value in "
        f"the column 'tuned t'); 'one t': average link at the single threshold {record['one_threshold']:.2f} tuned "
        f"on all families' validation subsets together; 'true k': told each subset's true number of clusters (a "
        f"reference, not a deployable method); 'silhouette k': k chosen per subset by the best silhouette on cosine "
        f"distance among k = 2 .. {k_range} (unsupervised: no threshold, no labels). Spectral "
        f"clustering uses the affinity (cosine + 1) / 2.",
        "", "AMI:", "", heading, rule,
    ]
    for fam, r in fams.items():
        o = r["test_at_own_threshold"]
        cells = [f"{o['ami']:.3f} ± {(o['ami_ci'][1] - o['ami_ci'][0]) / 2:.3f}"]
        cells += [f"{r[key]['ami']:.3f}" for key in list(COLUMNS)[1:]]
        lines.append(f"| {fam} | {r['own_threshold']:.2f} | " + " | ".join(cells) + " |")
    lines.append("| mean | | " + " | ".join(f"{np.mean([r[key]['ami'] for r in fams.values()]):.3f}"
                                          for key in COLUMNS) + " |")
    lines += ["", "ARI:", "", heading, rule]
    for fam, r in fams.items():
        lines.append(f"| {fam} | {r['own_threshold']:.2f} | " + " | ".join(f"{r[key]['ari']:.3f}" for key in COLUMNS)
                     + " |")
    lines.append("| mean | | " + " | ".join(f"{np.mean([r[key]['ari'] for r in fams.values()]):.3f}"
                                          for key in COLUMNS) + " |")
    lines += ["", "Mean number of clusters per test subset, true and predicted:", "",
              "| family | true | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for fam, r in fams.items():
        lines.append(f"| {fam} | {r['mean_true_clusters']:.2f} | "
                     + " | ".join(f"{r[key]['mean_predicted_clusters']:.2f}" for key in COLUMNS) + " |")
    seconds = record["wall_seconds"]
    lines += ["", f"± is the half-width of the 95% confidence interval over test subsets. Command: "
                  f"`{record['command']}` ({record['date']}, {seconds['total']:.0f} s on "
                  f"{record['machine']['torch_threads']} CPU threads, of which {seconds['tuning']:.1f} s "
                  f"tuning all thresholds and " + ", ".join(f"{seconds['clustering'][key]:.0f} s {COLUMNS[key]}"
                                                          for key in COLUMNS)
              + f" clustering the test subsets; {record['embeddings_from_cache']} of {2 * len(fams)} embedding "
                f"files from the cache).", ""]
    return "\n".join(lines)


def plot_curves(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for fam, c in record["curves"].items():
        style = {"color": "black", "linewidth": 2.5} if fam == "all" else {}
        ax.plot(c["thresholds"], np.array(c["scores"]["ami"]), label=f"{fam} (best {c['best_threshold']:.2f})",
                **style)
    ax.set_xlabel("threshold t (clusters merge while average similarity >= t)")
    ax.set_ylabel("validation AMI (mean over subsets)")
    ax.set_xlim(-0.2, 1.0)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Pretrained baseline: validation AMI against threshold")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_context_free(model: Cactus, pooled: ThresholdCurve, record: dict) -> None:
    """Give the shipped context-free model the threshold tuned on all families together, through the one writer of
    thresholds, and store it in that model's folder (its cut and the cut's record, from benchmarks/adaptive_cut.py,
    stay as they are)."""
    fams = record["families"]
    model.adopt_threshold(pooled, ThresholdProvenance(
        subsets=sum(r["val_subsets"] for r in fams.values()),
        tuned_on=f"validation subsets of {', '.join(fams)} together", command=record["command"], date=record["date"]))
    shipped = Cactus.from_pretrained(CONTEXT_FREE)
    shipped.adopt_threshold(model.threshold_, ThresholdProvenance(**model.config.threshold_provenance))
    shipped.save_pretrained(CONTEXT_FREE)
    print(f"wrote the context-free model's threshold {model.threshold_:.2f} to {CONTEXT_FREE}")

if __name__ == "__main__":
    main()
