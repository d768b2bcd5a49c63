"""Variants of the adaptive silhouette cut, each family left out in turn: do any beat the plain one?

The pretrained encoder (the shipped context-free model) embeds the first --subsets validation and test subsets of each
family once. For each left-out family, its stored threshold is tuned (`tune_threshold`, the model's objective) on the
other families' validation subsets, as `benchmarks/adaptive_cut.py --pretrained` does; every variant then cuts the
family's test subsets, and its mean test AMI is reported beside the stored threshold and the family's own tuned
threshold (which needs its labels):

- plain: the library's adaptive cut (`cactus.cluster.Cut("adaptive")`): the best mean silhouette among the cuts at
  thresholds in the band, a singleton's silhouette counting 0;
- singleton c: a singleton's silhouette counts as c instead of 0 (rewarding cuts that leave entities alone);
- prior lambda: the mean silhouette minus lambda x the distance from the cut's threshold range to the stored one;
- within eps, fewest / most merges: among the cuts within eps of the best silhouette, the one with the fewest or the
  most merges (a one-standard-error rule);
- per cluster: the mean over clusters of their members' mean silhouette, instead of the mean over entities;
- other bands;
- band chosen on validation: the band of BAND_GRID with the best objective (AMI + ARI, the models') over the other
  families' validation subsets together, as the stored threshold is chosen (no look at the left-out family);
- centre c: the library's silhouette on the embeddings less c times their subset's mean (`Cut(centre=c)`);
- centre chosen on validation: the c of CENTRE_GRID chosen as the band is.

    python benchmarks/cut_variants.py     # a few minutes on 2 cores; docs/results/cut_variants.{json,md}
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np
from adaptive_cut import CENTRE_GRID
from provenance import command_line, machine_info, write_record

from cactus import Cactus
from cactus.cluster import Cut, Dendrogram, tune_threshold
from cactus.cluster.cut import DEFAULT_BAND, _bounds, choose_cut, entity_silhouettes
from cactus.cluster.threshold import merge_prefix_scores
from cactus.data import read_subsets

FAMILIES = ("amazon_category", "banking77", "clinc_domain", "clinc_intent", "clinc_mixed", "hwu64_intent",
            "hwu64_mixed", "hwu64_scenario", "product_mixed", "product_same")


class Tree:
    """One subset's dendrogram, the AMI of each of its cuts, and each entity's silhouette at each cut."""

    def __init__(self, similarity: np.ndarray, labels: list):
        self.dendrogram = dg = Dendrogram(similarity)
        scores = merge_prefix_scores(dg, labels)
        self.ami, self.objective = scores["ami"], scores["ami"] + scores["ari"]  # the models' objective, ami+ari
        self.upper, self.lower = _bounds(dg)  # cut k holds for lower[k] < t <= upper[k]
        n = dg.n_entities
        self.silhouette = np.full((n, n), np.nan)  # [cut, entity]; nan for a singleton and where undefined
        self.silhouette[1: n - 1] = entity_silhouettes(dg, np.arange(1, n - 1))
        self.mean_silhouette = np.full(n, np.nan)  # [cut]: the plain criterion, a singleton counting 0
        self.mean_silhouette[1: n - 1] = np.nan_to_num(self.silhouette[1: n - 1]).mean(1)
        self.memo: dict[tuple[float, float], int] = {}

    def at(self, t: float) -> int:
        return int(self.dendrogram.merges_at(t))

    def centred(self, t0: float, centre: float) -> int:
        """The library's adaptive silhouette cut with `centre` (memoised: only the rare fallback reads t0)."""
        key = (t0, centre)
        if key not in self.memo:
            self.memo[key] = choose_cut(self.dendrogram, Cut("adaptive", centre=centre), t0)
        return self.memo[key]

    def adaptive(self, t0: float, band=DEFAULT_BAND, singleton=0.0, prior=0.0, eps=0.0, most=False,
                 per_cluster=False) -> int:
        n = self.dendrogram.n_entities
        low, high = band
        candidate = (self.lower < self.upper) & (self.lower < high) & (self.upper >= low)
        score = self.mean_silhouette.copy()  # the plain criterion; the variants below score each cut again
        if singleton or per_cluster:
            for k in range(1, n - 1):
                s = np.where(np.isnan(self.silhouette[k]), singleton, self.silhouette[k])
                if per_cluster:
                    ids = self.dendrogram.cut(k)
                    score[k] = np.mean([s[ids == c].mean() for c in np.unique(ids)])
                else:
                    score[k] = s.mean()
        if prior:
            score -= prior * np.where(t0 > self.upper, t0 - self.upper, np.where(t0 <= self.lower, self.lower - t0, 0))
        ok = candidate & ~np.isnan(score)
        if not ok.any():
            return self.at(t0)
        near = np.flatnonzero(ok & (score >= score[ok].max() - eps - 1e-9))
        return int(near[-1] if most else near[0])


PLAIN = "plain (band 0.05 to 0.7)"
VARIANTS = {f"singleton {c}": {"singleton": c} for c in (0.1, 0.2, 0.3, 0.5)}
VARIANTS |= {f"prior {p}": {"prior": p} for p in (0.5, 1.0, 2.0)}
VARIANTS |= {f"within {e}, {'most' if m else 'fewest'} merges": {"eps": e, "most": m}
             for e in (0.01, 0.02, 0.05) for m in (False, True)}
VARIANTS |= {"per cluster": {"per_cluster": True}}
VARIANTS |= {f"band {lo} to {hi}": {"band": (lo, hi)} for lo, hi in ((0.1, 0.7), (0.15, 0.7), (0.05, 0.6),
                                                                       (0.05, 0.8), (0.2, 0.6))}

CHOSEN = "band chosen on validation"
BAND_GRID = [(lo, hi) for lo in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3) for hi in (0.5, 0.6, 0.7, 0.8)]
CENTRED = "centre chosen on validation"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=Path("data/benchmark"))
    ap.add_argument("--families", nargs="+", default=list(FAMILIES))
    ap.add_argument("--subsets", type=int, default=200)
    ap.add_argument("--out", default="docs/results/cut_variants")
    args = ap.parse_args()
    model = Cactus.from_pretrained("context-free", device="cpu")
    trees, val = {}, {}
    for family in args.families:
        for split in ("val", "test"):
            subsets = read_subsets(args.bench / family / f"{split}.jsonl")[: args.subsets]
            sims = model.similarities(subsets)
            trees[family, split] = [Tree(s, x.labels) for s, x in zip(sims, subsets)]
            if split == "val":
                val[family] = (sims, [x.labels for x in subsets])

    def tuned(families: list[str]) -> float:
        """The threshold `tune_threshold` chooses on these families' validation subsets together."""
        sims = [s for f in families for s in val[f][0]]
        return tune_threshold(sims, [y for f in families for y in val[f][1]],
                              objective=model.config.objective).best_threshold

    def chosen_band(families: list[str], t0: float) -> tuple[float, float]:
        """The band of BAND_GRID whose adaptive cut has the best mean objective on these families' validation
        subsets together; the earlier band of the grid wins ties."""
        val_trees = [t for f in families for t in trees[f, "val"]]
        means = [np.mean([t.objective[t.adaptive(t0, band=b)] for t in val_trees]) for b in BAND_GRID]
        return BAND_GRID[int(np.argmax(means))]

    def chosen_centre(families: list[str], t0: float) -> float:
        """The centre of CENTRE_GRID chosen as `chosen_band` chooses a band; the smaller centre wins ties."""
        val_trees = [t for f in families for t in trees[f, "val"]]
        means = [np.mean([t.objective[t.centred(t0, c)] for t in val_trees]) for c in CENTRE_GRID]
        return CENTRE_GRID[int(np.argmax(means))]

    rows, bands, centres = {}, {}, {}
    for family in args.families:
        others = [f for f in args.families if f != family]
        t0, own = tuned(others), tuned([family])
        bands[family] = chosen_band(others, t0)
        centres[family] = chosen_centre(others, t0)
        test = trees[family, "test"]
        row = {"stored t": float(np.mean([t.ami[t.at(t0)] for t in test])),
               "own t": float(np.mean([t.ami[t.at(own)] for t in test])),
               PLAIN: float(np.mean([t.ami[choose_cut(t.dendrogram, Cut("adaptive"), t0)] for t in test]))}
        for name, options in VARIANTS.items():
            row[name] = float(np.mean([t.ami[t.adaptive(t0, **options)] for t in test]))
        row[CHOSEN] = float(np.mean([t.ami[t.adaptive(t0, band=bands[family])] for t in test]))
        for c in CENTRE_GRID[1:]:
            row[f"centre {c}"] = float(np.mean([t.ami[t.centred(t0, c)] for t in test]))
        row[CENTRED] = float(np.mean([t.ami[t.centred(t0, centres[family])] for t in test]))
        rows[family] = row
        print(family, {k: round(v, 3) for k, v in row.items()}, flush=True)
    mean = {name: float(np.mean([rows[f][name] for f in args.families])) for name in rows[args.families[0]]}
    t_all = tuned(args.families)
    band_all = chosen_band(args.families, t_all)
    centre_all = chosen_centre(args.families, t_all)
    record = {"command": command_line(), "chosen_bands": bands, "band_chosen_on_all": band_all,
              "chosen_centres": centres, "centre_chosen_on_all": centre_all,
              "date": date.today().isoformat(), "args": vars(args) | {"bench": str(args.bench)}, "families": rows,
              "mean": mean, "machine": machine_info()}
    plain = mean[PLAIN]
    lines = ["# Variants of the adaptive silhouette cut, each family left out", "",
             f"`{record['command']}` ({record['date']}): the context-free model, the first {args.subsets} validation "
             "and test subsets of each family; stored t tuned on the other families' validation subsets, own t on "
             "the family's own. Mean test AMI over the families:", "",
             "| cut | mean AMI | minus plain |", "|---|---:|---:|"]
    lines += [f"| {name} | {value:.4f} | {value - plain:+.4f} |" for name, value in mean.items()]
    lines += ["", "Per family:", "", "| family | " + " | ".join(mean) + " |", "|---|" + "---:|" * len(mean)]
    lines += [f"| {f} | " + " | ".join(f"{rows[f][name]:.3f}" for name in mean) + " |" for f in args.families]
    lines += ["", f"*{CHOSEN}*, per left-out family: "
              + "; ".join(f"{f}: {lo} to {hi}" for f, (lo, hi) in bands.items())
              + f". Chosen on all {len(args.families)} families' validation subsets (stored t {t_all:.2f}), as a "
              f"model tuned on them would ship it: {band_all[0]} to {band_all[1]}.", "",
              f"*{CENTRED}*, per left-out family: " + "; ".join(f"{f}: {c}" for f, c in centres.items())
              + f". Chosen on all {len(args.families)} families' validation subsets: {centre_all}.", ""]
    write_record(args.out, record, "\n".join(lines))
    print("\n".join(lines[:len(mean) + 6]))


if __name__ == "__main__":
    main()
