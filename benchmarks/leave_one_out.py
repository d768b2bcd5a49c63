"""Leave one dataset out with the shipped default's recipe and its alternatives: does a model trained without a
dataset beat the pretrained encoder on it?

Reads the records of `benchmarks/configs/leave_one_dataset_out.json` (run them first:
`python benchmarks/experiments.py run leave_one_dataset_out --jobs 1 --threads 2`) and the per-subset scores of
docs/results/default_model.json (the context-free model at its one stored threshold, and the pretrained encoder at a
threshold tuned on each family's own validation subsets), on the same test subsets of each family (the first 80),
and writes docs/results/leave_one_out.{json,md}: per left-out family, the model trained without its dataset at its
one stored threshold, with its own adaptive cut, and at the family's own tuned threshold, against both references,
with 95% paired bootstrap intervals of the mean differences.

The config's runs with a weight w < 1 interpolate the same models towards the pretrained encoder. For each left-out
dataset the weight is chosen by the mean stored-threshold AMI on the other datasets' left-out families (nested: the
choice never sees the dataset scored), ties to the larger weight; the columns *interpolated* score that choice.
`--weight W` scores W on every left-out dataset instead: a weight fixed beforehand, as the shipped default's.

`--method` picks the runs scored: `lora` a LoRA adapter of rank 16 at learning rate 5e-4 (the default before; the
config's "SIA + LoRA, ..." runs; docs/results/leave_one_out.{json,md}); `lora-1e-3` the same at 1e-3 ("SIA + LoRA
lr 1e-3, ..."); `lora-r48` the same at rank 48, the shipped default's recipe ("SIA + LoRA r48, ..."); `full`
fine-tuning every weight ("SIA, every weight, ..."). Each other method's record is
docs/results/leave_one_out_<method>[_w<W without its point>].{json,md} and compares it with the `lora` runs, column
by column.

    python benchmarks/leave_one_out.py --method lora-r48 --weight 0.5   # the shipped default's recipe and weight
    python benchmarks/leave_one_out.py --method lora-r48                # the same, the weight chosen nested
    python benchmarks/leave_one_out.py                                  # the rank-16 adapter
    python benchmarks/leave_one_out.py --method full                    # every weight fine-tuned, against rank 16
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from default_model import DEFAULT_RUN, paired_difference
from experiments import Experiment
from experiments.spec import REPO
from experiments.store import default_dirs, record_path
from provenance import trained_on, write_record

EXPERIMENT = "leave_one_dataset_out"
REFERENCES = {"context-free, stored t": "context-free, stored t", "pretrained, own t": "pretrained, own t"}
OWN_KEYS = {"without it, stored t": "stored", "without it, adaptive cut": "adaptive", "without it, own t": "own"}
INTERPOLATED_KEYS = {"interpolated, stored t": "stored", "interpolated, adaptive cut": "adaptive",
                     "interpolated, own t": "own"}
# the runs of each training method, by their labels' start, and how the record describes them
METHODS = {"lora": ("SIA + LoRA,", "SIA with a LoRA adapter (rank 16 on every linear layer, learning rate 5e-4)"),
           "lora-1e-3": ("SIA + LoRA lr 1e-3,", "SIA with a LoRA adapter (rank 16 on every linear layer, learning "
                         "rate 1e-3)"),
           "lora-r48": ("SIA + LoRA r48,", "SIA with a LoRA adapter (rank 48, alpha 48, on every linear layer, "
                        "learning rate 5e-4)"),
           "full": ("SIA, every weight,", "SIA fine-tuning every weight (learning rate 5e-5)")}
SHIPPED = "lora-r48"  # the method of the shipped default (benchmarks/configs/default_model.json)


def shipped_weight() -> float:
    """The interpolation weight of the shipped default: its run in the default_model experiment."""
    return Experiment.load("default_model").runs[DEFAULT_RUN][0].interpolate


def method_columns(method: str, reference: dict, weight: float | None = None) -> dict:
    """The per-subset columns of one training method's runs (those with a record), the weight chosen for each
    left-out dataset (or `weight` for every one), and the mean by weight."""
    results, _ = default_dirs(False)
    records = {}  # (left-out families, weight) -> (label, record)
    for label, (spec, _) in Experiment.load(EXPERIMENT).runs.items():
        if not label.startswith(METHODS[method][0]):
            continue
        path = record_path(results, spec, 0)
        if path.is_file():
            records[(tuple(spec.test_families), spec.interpolate)] = (label, json.loads(path.read_text()))
        else:
            print(f"no record yet for {label!r}: left out")
    folds = [fold for fold, w in records if w == 1.0]
    weights = sorted({w for fold, w in records if all((f, w) in records for f in folds)}, reverse=True)

    def per_subset(fold: tuple, w: float, key: str) -> dict[str, np.ndarray]:
        return {f: np.asarray(records[(fold, w)][1]["families"][f][f"{key}_ami_per_subset"]) for f in fold}

    def mean_over_families(scores: list[dict[str, np.ndarray]]) -> float:
        return float(np.mean([v.mean() for d in scores for v in d.values()]))

    def best_weight(score: dict[float, float]) -> float:
        """The weight with the best score; ties to the larger weight (closer to the trained model)."""
        return max(weights, key=lambda w: (score[w], w))

    # the weight for each left-out dataset, chosen on the other datasets' left-out families
    chosen = {fold: weight if weight is not None else
              best_weight({w: mean_over_families([per_subset(o, w, "stored") for o in folds if o != fold])
                           for w in weights}) for fold in folds}
    columns: dict[str, dict[str, np.ndarray]] = {c: {} for c in [*OWN_KEYS, *INTERPOLATED_KEYS, *REFERENCES]}
    runs = {}
    for fold in folds:
        label, record = records[(fold, 1.0)]
        runs[label] = {"left_out": list(fold), "threshold": record["threshold"],
                       "train_minutes": record["wall_seconds"]["train"] / 60, "weight_chosen": chosen[fold],
                       "trained_on": trained_on(record["machine"]),
                       "thresholds_by_weight": {str(w): records[(fold, w)][1]["threshold"] for w in weights}}
        for column, key in OWN_KEYS.items():
            columns[column].update(per_subset(fold, 1.0, key))
        for column, key in INTERPOLATED_KEYS.items():
            columns[column].update(per_subset(fold, chosen[fold], key))
        for family in fold:
            for column, key in REFERENCES.items():
                columns[column][family] = np.asarray(reference["per_subset"][key][family])
                assert len(columns[column][family]) == len(columns["without it, stored t"][family])
    by_weight = {str(w): {key: mean_over_families([per_subset(fold, w, key) for fold in folds])
                          for key in ("stored", "adaptive", "own")} for w in weights}
    # the same choice made on every left-out family: the weight the shipped default uses
    on_all = best_weight({w: by_weight[str(w)]["stored"] for w in weights}) if weights else None
    return {"columns": columns, "runs": runs, "by_weight": by_weight, "weight_on_all": on_all}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=list(METHODS), default="lora")
    ap.add_argument("--weight", type=float, default=None,
                    help="score the interpolated columns at this weight on every left-out dataset (a weight fixed "
                         "beforehand, as the shipped default's) instead of the weight chosen on the other datasets")
    ap.add_argument("--default-record", default=str(REPO / "docs/results/default_model.json"))
    ap.add_argument("--out", default=None,
                    help="record prefix (default docs/results/leave_one_out, or leave_one_out_<method>)")
    args = ap.parse_args()
    reference = json.loads(Path(args.default_record).read_text())
    scored = method_columns(args.method, reference, args.weight)
    columns = scored["columns"]
    families = list(columns["without it, stored t"])
    pairs = [(a, b) for a in ("without it, stored t", "without it, adaptive cut", "interpolated, stored t",
                              "interpolated, adaptive cut") for b in REFERENCES]
    pairs += [("interpolated, adaptive cut", "interpolated, stored t"), ("interpolated, adaptive cut",
                                                                          "interpolated, own t")]
    if args.method != "lora":  # against the adapter runs on the same subsets, column by column
        adapter = method_columns("lora", reference)["columns"]
        for column in [*OWN_KEYS, *INTERPOLATED_KEYS]:
            columns[f"LoRA {column}"] = {f: adapter[column][f] for f in families}
            pairs.append((column, f"LoRA {column}"))
    comparisons = {f"{a} - {b}": paired_difference(columns[a], columns[b], relative=False) for a, b in pairs}
    wins = {f"{a} >= {b}": int(sum(columns[a][f].mean() >= columns[b][f].mean() for f in families))
            for a, b in pairs}
    record = {
        "command": "python benchmarks/leave_one_out.py" + (f" --method {args.method}" if args.method != "lora" else "")
        + (f" --weight {args.weight}" if args.weight is not None else ""), "weight": args.weight,
        "date": date.today().isoformat(), "method": METHODS[args.method][1],
        "experiment": f"benchmarks/configs/{EXPERIMENT}.json", "runs": scored["runs"], "columns": list(columns),
        "families": {f: {c: float(v[f].mean()) for c, v in columns.items()} for f in families},
        "mean": {c: float(np.mean([v[f].mean() for f in families])) for c, v in columns.items()},
        "comparisons": comparisons, "families_at_least": wins, "n_families": len(families),
        "by_weight": scored["by_weight"], "weight_on_all": scored["weight_on_all"],
    }
    out = args.out or str(REPO / ("docs/results/leave_one_out" + ("" if args.method == "lora" else f"_{args.method}")
                                  + ("" if args.weight is None else f"_w{args.weight:g}".replace(".", ""))))  # _w05
    write_record(out, record, markdown(record))


def markdown(rec: dict) -> str:
    cols = rec["columns"]
    lines = [
        "# Leave one dataset out" + (", with the shipped default's recipe" if rec.get("method") == METHODS[SHIPPED][1]
                                     else ""), "",
        f"`{rec['command']}` ({rec['date']}; one seed), from the runs of `{rec['experiment']}`: "
        f"{rec.get('method', METHODS['lora'][1])}, 500 steps, trained on the families of the other datasets; its "
        "threshold tuned on their validation subsets. Scored on the first 80 test subsets of each left-out family. "
        "*without it* = the model trained without the family's dataset; *stored t* = its one stored threshold; "
        "*adaptive cut* = per subset, the best silhouette among its dendrogram's cuts (band 0.05 to 0.7), no "
        "threshold; *own t* = a threshold tuned on the family's own validation subsets (needs its labels). "
        "References from [default_model.json](default_model.json): the context-free model at its one stored "
        "threshold, and the pretrained encoder at each family's own tuned threshold.", "",
        "| left out | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols),
        *[f"| {f} | " + " | ".join(f"{v[c]:.3f}" for c in cols) + " |" for f, v in rec["families"].items()],
        "| **mean** | " + " | ".join(f"**{rec['mean'][c]:.3f}**" for c in cols) + " |", "",
        "Mean differences over the left-out families (95% paired bootstrap interval, test subsets resampled within "
        "each family):", "",
        *[f"- {name}: {c['point']:+.3f} ({c['ci'][0]:+.3f} to {c['ci'][1]:+.3f})"
          for name, c in rec["comparisons"].items()], "",
        "Families (of " + str(rec["n_families"]) + ") where the first is at least the second: "
        + "; ".join(f"{k}: {v}" for k, v in rec["families_at_least"].items()) + ".", "",
        "| run | left out | stored threshold | training minutes | trained on | "
        + ("weight chosen on the others |" if rec.get("weight") is None else "weight |"),
        "|---|---|---|---|---|---|",
        *[f"| {label} | {', '.join(r['left_out'])} | {r['threshold']:.2f} | {r['train_minutes']:.0f} | "
          f"{r['trained_on']} | {r['weight_chosen']} |" for label, r in rec["runs"].items()], "",
        "*interpolated*: the trained model's update (its adapter's, or every weight's) scaled by a weight w "
        "(w x trained + (1 - w) x pretrained), its "
        "threshold tuned again on its training families' validation subsets; "
        + ("w chosen for each left-out dataset by the mean stored-threshold AMI on the other datasets' left-out "
           "families." if rec.get("weight") is None else f"w = {rec['weight']} on every left-out dataset, fixed "
           "beforehand.")
        + " Mean over all left-out families by weight (every weight seen at once, so not a fair score of any one "
        "choice):", "",
        "| w | stored t | adaptive cut | own t | stored thresholds |", "|---|---|---|---|---|",
        *[f"| {w} | {v['stored']:.3f} | {v['adaptive']:.3f} | {v['own']:.3f} | "
          + ", ".join(f"{r['thresholds_by_weight'][w]:.2f}" for r in rec["runs"].values()) + " |"
          for w, v in rec["by_weight"].items()], "",
        f"The same choice made on all ten left-out families gives w = {rec['weight_on_all']}"
        + (f"; the shipped default takes w = {shipped_weight()} (benchmarks/configs/default_model.json)."
           if rec.get("method") == METHODS[SHIPPED][1] else "."), "",
        "Training minutes are wall time: on a 2-core CPU while other work shared it (upper bounds), or on a GPU "
        "shared by eight runs at once.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
