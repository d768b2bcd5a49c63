"""The cut compared: one stored threshold against per-subset adaptive cuts, on families a model never saw and on the
families it was trained on.

For every model, every test family gets the same embeddings cut by each rule:
- `stored t`: the model's one threshold (for the pretrained encoder left out of a family: tuned on the other
  families' validation subsets together, as a model trained without that family would store it);
- `adaptive <criterion>`: per subset, the best cut by silhouette, Calinski-Harabasz or the widest gap, among the cuts
  at thresholds in the default band (0.05 to 0.7): no label, no threshold;
- `adaptive silhouette, centred`: the same silhouette on the embeddings less a share c of their subset's mean
  (`Cut.centre`), c from `CENTRE_GRID` chosen by the objective on the validation subsets the model may see;
- `learned scorer`: a small regressor, trained on the labelled validation subsets the model may see, rates every cut
  of a subset from features of the cut and its dendrogram (`cut_features`); the subset takes the best-rated cut;
- `tuned cut`: the rule that `Cactus.tune_cut` chooses on the validation subsets the model may see (the threshold,
  or an adaptive criterion and band);
- `own t`: the threshold tuned on the test family's own validation subsets (a reference that needs its labels).

Models: `--pretrained` (the shipped default encoder, each family left out in turn; with `--by-dataset` also each
family's whole dataset, so that nothing fitted on the validation subsets saw the family's texts), `--loo
FAMILY=FOLDER` (a model trained on the other four of the five families, as in the leave_one_out experiment), and
`--trained FOLDER` (a model trained on the five families, tested on each of them: the in-distribution cost),
`--loo-datasets` (the leave_one_dataset_out experiment's adapter models, each trained without one dataset, as trained
and interpolated halfway with the threshold tuned again on its training families, as the shipped default's recipe
does; run that experiment first). Speed:
the clustering time of each rule against the time of `predict` (embedding included) on the same test subsets.

With `--write-context-free` (and --pretrained), the shipped context-free model's cut becomes the adaptive silhouette
with the centre chosen as above on every family's validation subsets together, at its stored threshold; its config
records how, with the leave-one-family-out result.

    python benchmarks/adaptive_cut.py --pretrained --by-dataset --families F1 F2 ... [--write-context-free]
    python benchmarks/adaptive_cut.py --loo clinc_intent=runs/.../best ... --trained runs/.../best
    python benchmarks/adaptive_cut.py --loo-datasets --val-subsets 25 --test-subsets 80 --out OUT
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import numpy as np
from experiments import FIVE, SIX, Experiment
from experiments.store import default_dirs, training_folder
from leave_one_out import METHODS, SHIPPED
from provenance import command_line, machine_info

from cactus import Cactus
from cactus.cluster import CRITERIA, Cut, Dendrogram, cut_cluster, tune_cut, tune_threshold
from cactus.cluster.cut import DEFAULT_BAND, calinski_harabasz, candidates, gaps, silhouettes
from cactus.cluster.cut_tuning import rule_scores
from cactus.cluster.threshold import merge_prefix_scores, parse_objective
from cactus.config import packaged_model
from cactus.data import read_subsets
from cactus.metrics import partition_metrics

ADAPTIVE = {f"adaptive {c}": Cut("adaptive", c) for c in CRITERIA}
CENTRED = "adaptive silhouette, centred"
CENTRE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
LOO = "trained without the family (leave_one_out models)"


class Embedded:
    """One model's similarity matrices per (family, split), embedded once."""

    def __init__(self, model: Cactus, bench: Path, n_val: int, n_test: int):
        self.model, self.bench, self.n = model, bench, {"val": n_val, "test": n_test}
        self.cache: dict[tuple[str, str], tuple[list, list[np.ndarray]]] = {}
        self.embed_seconds = 0.0

    def get(self, family: str, split: str) -> tuple[list, list[np.ndarray]]:
        if (family, split) not in self.cache:
            subsets = read_subsets(self.bench / family / f"{split}.jsonl")[: self.n[split]]
            start = time.perf_counter()
            sims = self.model.similarities(subsets)
            if split == "test":
                self.embed_seconds += time.perf_counter() - start
            self.cache[(family, split)] = (subsets, sims)
        return self.cache[(family, split)]

    def pooled_val(self, families) -> tuple[list[np.ndarray], list]:
        pairs = [self.get(f, "val") for f in families]
        return [s for _, sims in pairs for s in sims], [x.labels for subsets, _ in pairs for x in subsets]


class LearnedScorer:
    """The learned cut scorer: a gradient-boosted regressor predicts the AMI of every cut of a subset from features
    of the cut and its dendrogram; a subset takes the cut with the highest prediction. Trained on labelled subsets
    of the families a model may see, so on a left-out family it is judged as the other rules are."""

    def __init__(self, sims: list[np.ndarray], labels: list):
        from sklearn.ensemble import HistGradientBoostingRegressor

        x, y = [], []
        for s, truth in zip(sims, labels):
            dendrogram = Dendrogram(s)
            keep = candidates(dendrogram, (-1.0, 1.0))
            x.append(cut_features(dendrogram)[keep])
            y.append(merge_prefix_scores(dendrogram, truth)["ami"][keep])
        self.model = HistGradientBoostingRegressor(max_iter=200, random_state=0).fit(np.vstack(x), np.concatenate(y))

    def cluster(self, s: np.ndarray) -> np.ndarray:
        dendrogram = Dendrogram(s)
        keep = np.flatnonzero(candidates(dendrogram, (-1.0, 1.0)))
        predicted = self.model.predict(cut_features(dendrogram)[keep])
        return dendrogram.cut(int(keep[np.argmax(predicted)]))  # ties: the first, the fewest merges


def cut_features(dendrogram: Dendrogram) -> np.ndarray:
    """(n, 9) per cut: its threshold range (upper and lower end, clipped to [-1, 1]), clusters / n, singletons / n,
    log n, silhouette, log Calinski-Harabasz (0 where undefined, with a flag), and the gap in the default band."""
    n = dendrogram.n_entities
    h = np.clip(np.concatenate([[1.0], dendrogram.similarities, [-1.0]]), -1.0, 1.0)
    sizes = np.array([np.bincount(dendrogram.cut(k)) for k in range(n)], dtype=object)
    singletons = np.array([(c == 1).sum() / n for c in sizes])
    sil, ch = silhouettes(dendrogram), calinski_harabasz(dendrogram)
    defined = ~np.isnan(sil)
    log_ch = np.log1p(np.nan_to_num(ch, nan=0.0, posinf=1e6))
    return np.column_stack([h[:-1], h[1:], (n - np.arange(n)) / n, singletons, np.full(n, np.log(n)),
                            np.nan_to_num(sil), log_ch, defined, gaps(dendrogram, DEFAULT_BAND)])


def score_rules(emb: Embedded, family: str, rules: dict[str, tuple[Cut, float | None]]) -> dict:
    """Test AMI per subset of every rule on one family, and each rule's clustering seconds."""
    subsets, sims = emb.get(family, "test")
    out = {}
    for name, (cut, threshold) in rules.items():
        start = time.perf_counter()
        if isinstance(cut, LearnedScorer):
            preds, described = [cut.cluster(s) for s in sims], {"rule": "learned scorer"}
        else:
            preds, described = [cut_cluster(s, cut, threshold) for s in sims], cut.to_dict()
        seconds = time.perf_counter() - start
        out[name] = {"ami": [partition_metrics(x.labels, p)["ami"] for x, p in zip(subsets, preds)],
                     "seconds": seconds, "cut": described, "threshold": threshold}
    return out


def rules_for(emb: Embedded, family: str, stored: float, seen: tuple[str, ...]) -> dict:
    """The rules compared on `family`: stored t, the adaptive criteria, the cut tuned on `seen` families'
    validation subsets, and the family's own tuned threshold."""
    sims, labels = emb.pooled_val(seen)
    choice = tune_cut(sims, labels, objective=emb.model.config.objective)
    val_subsets, val_sims = emb.get(family, "val")
    own = tune_threshold(val_sims, [x.labels for x in val_subsets], objective=emb.model.config.objective)
    return ({"stored t": (Cut(), stored)} | {name: (cut, stored) for name, cut in ADAPTIVE.items()}
            | {CENTRED: (chosen_centre(sims, labels, stored, emb.model.config.objective), stored)}
            | {"learned scorer": (LearnedScorer(sims, labels), None),
               "tuned cut": (choice.cut, choice.curve.best_threshold), "own t": (Cut(), own.best_threshold)})


def chosen_centre(sims: list[np.ndarray], labels: list, stored: float, objective: str) -> Cut:
    """The adaptive silhouette cut with the centre of CENTRE_GRID whose objective on these validation subsets is
    best (the smaller centre on ties)."""
    dendrograms = [Dendrogram(s) for s in sims]
    prefix = [merge_prefix_scores(d, y) for d, y in zip(dendrograms, labels)]
    names = parse_objective(objective)
    cuts = [Cut("adaptive", centre=c) for c in CENTRE_GRID]
    values = [sum(rule_scores(dendrograms, prefix, cut, stored)[n] for n in names) for cut in cuts]
    return cuts[int(np.argmax(values))]


def evaluate_model(emb: Embedded, tests: dict[str, tuple[float, tuple[str, ...]]]) -> dict:
    """family -> rule -> scores, for test family -> (stored threshold, families whose validation subsets the
    model may see)."""
    return {fam: score_rules(emb, fam, rules_for(emb, fam, stored, seen)) for fam, (stored, seen) in tests.items()}


def datasets() -> dict[str, str]:
    """family -> the dataset its texts come from (the runs of the leave_one_dataset_out experiment): families of one
    dataset share their texts."""
    return {family: run for run, (spec, _) in Experiment.load("leave_one_dataset_out").runs.items()
            for family in spec.test_families}


def pretrained_tests(emb: Embedded, families: tuple[str, ...], by_dataset: bool = False) -> dict:
    """Leave each family out (`by_dataset`: its whole dataset): the stored threshold, the tuned cut and the learned
    scorer come from the other families' validation subsets."""
    source = datasets() if by_dataset else {f: f for f in families}  # what is left out with each family
    tests = {}
    for fam in families:
        others = tuple(f for f in families if source.get(f, f) != source.get(fam, fam))
        sims, labels = emb.pooled_val(others)
        tests[fam] = (tune_threshold(sims, labels, objective=emb.model.config.objective).best_threshold, others)
    return tests


def summary(per_family: dict) -> dict:
    """Mean test AMI with a 95% bootstrap interval per family and rule, and over families with paired gains."""
    rng = np.random.default_rng(0)
    out = {"families": {}, "mean": {}}
    rules = next(iter(per_family.values())).keys()
    picks = {f: rng.integers(0, len(r["stored t"]["ami"]), (2000, len(r["stored t"]["ami"])))
             for f, r in per_family.items()}
    for fam, rows in per_family.items():
        out["families"][fam] = {name: _mean_ci(np.asarray(row["ami"]), picks[fam]) for name, row in rows.items()}
    for name in rules:
        boot = np.mean([np.asarray(per_family[f][name]["ami"])[picks[f]].mean(1) for f in per_family], axis=0)
        diff = np.mean([(np.asarray(per_family[f][name]["ami"]) - np.asarray(per_family[f]["stored t"]["ami"]))
                        [picks[f]].mean(1) for f in per_family], axis=0)
        point = float(np.mean([np.mean(per_family[f][name]["ami"]) for f in per_family]))
        out["mean"][name] = {"ami": point, "ci": np.quantile(boot, [0.025, 0.975]).tolist(),
                             "minus_stored_ci": np.quantile(diff, [0.025, 0.975]).tolist()}
    return out


def _mean_ci(values: np.ndarray, picks: np.ndarray) -> dict:
    return {"ami": float(values.mean()), "ci": np.quantile(values[picks].mean(1), [0.025, 0.975]).tolist()}


def markdown(record: dict) -> str:
    lines = ["# The cut: one stored threshold against per-subset adaptive cuts", "",
             "Commands: " + "; ".join(f"`{c}`" for c in record["commands"]) + f" ({record['date']}; "
             f"{record['test_subsets']} test subsets per family, {record['val_subsets']} validation subsets per "
             "family for thresholds and the tuned cut).", "",
             "Test AMI, mean over subsets with a 95% bootstrap interval. *stored t*: the model's one threshold (for "
             "the pretrained encoder left out of a family, tuned on the other families' validation subsets); "
             "*adaptive*: per subset, the best cut by the criterion among those at thresholds 0.05 to 0.7 (no "
             "label, no threshold); *centred*: the silhouette of the embeddings less a share of their subset's "
             "mean, the share (0 to 1 in steps of 0.25) chosen on the validation subsets the model may see; "
             "*learned scorer*: a gradient-boosted regressor of each cut's AMI from features "
             "of the cut and the dendrogram, trained on the validation subsets the model may see, takes the cut it "
             "rates best; *tuned cut*: the rule chosen on the validation subsets the model may see; "
             "*own t*: each family's own tuned threshold (needs its labels; a reference).", ""]
    for model, result in record["models"].items():
        rules = list(result["summary"]["mean"])
        lines += [f"## {model}", "", result["about"], "", "| family | " + " | ".join(rules) + " |",
                  "|---" * (len(rules) + 1) + "|"]
        for fam, row in result["summary"]["families"].items():
            lines.append(f"| {fam} | " + " | ".join(f"{row[r]['ami']:.3f} [{row[r]['ci'][0]:.3f}, "
                                                    f"{row[r]['ci'][1]:.3f}]" for r in rules) + " |")
        mean = result["summary"]["mean"]
        lines.append("| **mean** | " + " | ".join(f"**{mean[r]['ami']:.3f}** [{mean[r]['ci'][0]:.3f}, "
                                                 f"{mean[r]['ci'][1]:.3f}]" for r in rules) + " |")
        lines.append("| minus stored t, 95% CI | " + " | ".join(
            f"{mean[r]['ami'] - mean['stored t']['ami']:+.3f} [{mean[r]['minus_stored_ci'][0]:+.3f}, "
            f"{mean[r]['minus_stored_ci'][1]:+.3f}]" for r in rules) + " |")
        tuned = {fam: rows["tuned cut"]["cut"] for fam, rows in result["per_family"].items()}
        lines += ["", "Tuned cut per test family: " + "; ".join(f"{f}: {json.dumps(c)}" for f, c in tuned.items()),
                  ""]
        if CENTRED in rules:
            lines += ["Centre chosen per test family: " + "; ".join(
                f"{f}: {rows[CENTRED]['cut'].get('centre', 0.0)}" for f, rows in result["per_family"].items()), ""]
        if result["cluster_seconds"]:
            lines += ["Speed on these test subsets: clustering seconds per rule, against `predict` (embedding the "
                  f"subsets, {result['embed_seconds']:.1f} s, plus clustering at the stored threshold): " + ", ".join(
                      f"{r} {s:.2f} s ({s / result['predict_seconds']:+.1%} of predict)"
                      for r, s in result["cluster_seconds"].items()), ""]
    return "\n".join(lines)


def loo_result(per_family: dict, embed_seconds: float) -> dict:
    return {"about": "Each family is tested with the model trained on the other four of the five (SIA, augmented "
                     "triplet, 250 steps: the leave_one_out experiment's models).",
            "per_family": per_family, "summary": summary(per_family), "embed_seconds": embed_seconds,
            "predict_seconds": None, "cluster_seconds": {}}


def dataset_models(sizes: tuple, weight: float) -> dict:
    """The leave_one_dataset_out experiment's adapter models (trained without one dataset each), interpolated by
    `weight` (the threshold then tuned again on the training families' validation subsets), on their left-out
    families."""
    _, work = default_dirs(False)
    per_family, seconds = {}, 0.0
    for label, (spec, _) in Experiment.load("leave_one_dataset_out").runs.items():
        if not label.startswith(METHODS[SHIPPED][0]) or spec.interpolate != 1.0:
            continue
        emb = Embedded(Cactus.from_pretrained(training_folder(work, spec, 0) / "train" / "best", device="cpu"), *sizes)
        seen, stored = tuple(spec.train_families), emb.model.threshold_
        if weight != 1.0:
            emb.model.interpolate(weight)
            stored = tune_threshold(*emb.pooled_val(seen), objective=emb.model.config.objective).best_threshold
        per_family |= run_model(emb, {f: (stored, seen) for f in spec.test_families}, "")["per_family"]
        seconds += emb.embed_seconds
    about = ("Each family is tested with the leave_one_dataset_out experiment's model trained without its dataset "
             f"({METHODS[SHIPPED][1]}, 500 steps)"
             + (f", interpolated by {weight} and its threshold tuned again on its training families" if weight != 1.0
                else "") + ".")
    return loo_result(per_family, seconds) | {"about": about}


def run_model(emb: Embedded, tests: dict, about: str) -> dict:
    per_family = evaluate_model(emb, tests)
    seconds = {name: sum(rows[name]["seconds"] for rows in per_family.values())
               for name in next(iter(per_family.values()))}
    return {"about": about, "tests": {f: list(t) for f, t in tests.items()}, "per_family": per_family,
            "summary": summary(per_family), "embed_seconds": emb.embed_seconds,
            "predict_seconds": emb.embed_seconds + seconds["stored t"],
            "cluster_seconds": {n: s - seconds["stored t"] for n, s in seconds.items() if n != "stored t"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=Path("data/benchmark"))
    ap.add_argument("--pretrained", action="store_true", help="the default encoder, each family left out in turn")
    ap.add_argument("--families", nargs="+", default=list(SIX), help="families of --pretrained")
    ap.add_argument("--by-dataset", action="store_true",
                    help="with --pretrained, also leave out each family's whole dataset")
    ap.add_argument("--loo", nargs="+", default=[], metavar="FAMILY=FOLDER", help="models trained without FAMILY")
    ap.add_argument("--trained", type=Path, default=None, help="a model trained on the five families")
    ap.add_argument("--loo-datasets", action="store_true",
                    help="the leave_one_dataset_out experiment's adapter models, as trained and interpolated halfway")
    ap.add_argument("--val-subsets", type=int, default=200)
    ap.add_argument("--test-subsets", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("docs/results/adaptive_cut"))
    ap.add_argument("--write-context-free", action="store_true",
                    help="with --pretrained: set the shipped context-free model's cut (src/cactus/models/context-free)")
    args = ap.parse_args()
    if args.write_context_free and not args.pretrained:
        ap.error("--write-context-free needs --pretrained")
    sizes = (args.bench, args.val_subsets, args.test_subsets)
    models = {}
    if args.pretrained:
        emb = Embedded(Cactus.from_pretrained("context-free", device="cpu"), *sizes)
        models[PRETRAINED] = run_model(
            emb, pretrained_tests(emb, tuple(args.families)),
            "The shipped default encoder; on each family its threshold comes from the other families.")
        if args.by_dataset:
            models["pretrained encoder (default model), leave one dataset out"] = run_model(
                emb, pretrained_tests(emb, tuple(args.families), by_dataset=True),
                "The same embeddings; on each family, the stored threshold, the tuned cut and the learned scorer come "
                "from the families of the other datasets only (families of one dataset share their texts).")
    loo = {}
    for item in args.loo:
        fam, folder = item.split("=", 1)
        emb = Embedded(Cactus.from_pretrained(folder, device="cpu"), *sizes)
        seen = tuple(f for f in FIVE if f != fam)  # the leave_one_out experiment's training families
        loo[fam] = run_model(emb, {fam: (emb.model.threshold_, seen)}, "")["per_family"][fam]
        loo[fam + " embed"] = emb.embed_seconds
    if loo:
        per_family = {f: v for f, v in loo.items() if not f.endswith(" embed")}
        models[LOO] = loo_result(per_family, sum(v for f, v in loo.items() if f.endswith(" embed")))
    if args.trained:
        emb = Embedded(Cactus.from_pretrained(args.trained, device="cpu"), *sizes)
        stored = emb.model.threshold_
        models["trained on the five families (in distribution)"] = run_model(
            emb, {f: (stored, FIVE) for f in FIVE}, "The same model on the test subsets of the families it trained on.")
    if args.loo_datasets:
        for weight in (1.0, 0.5):
            models[f"trained without the dataset, w {weight}"] = dataset_models(sizes, weight)
    command = command_line()
    record = {"commands": [command], "date": date.today().isoformat(), "val_subsets": args.val_subsets,
              "test_subsets": args.test_subsets, "models": {}, "machine": machine_info()}
    out = args.out.with_suffix(".json")
    if out.exists():  # models measured by an earlier command (same subset counts) stay, unless measured again
        earlier = json.loads(out.read_text())
        if (earlier["val_subsets"], earlier["test_subsets"]) == (args.val_subsets, args.test_subsets):
            record["commands"] = earlier["commands"] + record["commands"]
            record["models"] = earlier["models"]
    for name, result in models.items():
        if name == LOO and name in record["models"]:  # left-out families measured by separate commands add up
            result = loo_result(record["models"][name]["per_family"] | result["per_family"],
                                record["models"][name]["embed_seconds"] + result["embed_seconds"])
        record["models"][name] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    if args.write_context_free:
        write_context_free(emb, tuple(args.families), models[PRETRAINED]["summary"]["mean"], record["commands"][-1])


PRETRAINED = "pretrained encoder (default model), leave one family out"


def write_context_free(emb: Embedded, families: tuple[str, ...], loo_mean: dict, command: str) -> None:
    """The shipped context-free model with the centred silhouette cut chosen on all `families`' validation
    subsets at its stored threshold, and the leave-one-family-out means of `loo_mean` as its provenance."""
    model = emb.model
    sims, labels = emb.pooled_val(families)
    cut = chosen_centre(sims, labels, model.threshold_, model.config.objective)
    model.config.cut = cut.to_dict()
    model.config.cut_provenance = {
        "chosen_by": "the share of each subset's mean removed before the silhouette, "
                     f"{' / '.join(map(str, CENTRE_GRID))}, chosen by the objective {model.config.objective} on "
                     f"{len(sims)} validation subsets of {', '.join(families)} together, at the stored threshold",
        "result": "leave one benchmark family out (the centre chosen on the other families' validation subsets, 200 "
                  f"test subsets per family): mean test AMI {loo_mean[CENTRED]['ami']:.3f} with the centred "
                  f"silhouette cut, {loo_mean['adaptive silhouette']['ami']:.3f} with the plain one, "
                  f"{loo_mean['stored t']['ami']:.3f} at the stored threshold and {loo_mean['own t']['ami']:.3f} at "
                  "each family's own tuned threshold",
        "command": command,
        "date": date.today().isoformat(),
    }
    model.save_pretrained(packaged_model("context-free"))
    print(f"context-free model: cut {cut.describe()}")


if __name__ == "__main__":
    main()
