"""Adapting to a new family: from a model that never saw its dataset, train the adapter on 20 or 50 of its labelled
subsets, choose on 20 more how much of the training to keep and the cut, and score it; the README's "Adapt to your
data" recipe, measured.

The starting models are the best models of `benchmarks/configs/leave_one_dataset_out.json` (the default's recipe,
trained without the family's dataset: what the shipped default is to a family it never saw), given the shipped
default's token limit per entity (the experiment trains at 32 tokens; the default, and so a user's adaptation, runs
at 64: product titles are cut at 32). For each left-out family (--families, default: every one) and each --sizes n:
the first n training subsets of the family, the first --val-subsets validation subsets, 200 steps of LoRA training
(seed --seed, 0 by default) on the model's own adapter (lr 5e-4, batches of 4, validated before the first step and
every 50 steps, the best validated model kept: the start too), then `tune_interpolation` on the same validation
subsets (the adapter's update scaled by each of `cactus.train.config.INTERPOLATION_WEIGHTS`, the cut chosen at each,
the best kept), then the first 80 test subsets scored with the model's cut. Wall time covers the training and these
choices. References, on the same test subsets: the context-free model as shipped at its stored threshold (from
docs/results/default_model.json), and the pretrained encoder at the same token limit at a threshold tuned on the
family's own first 25 validation subsets (as the experiments tune it), measured here; per size, the mean difference
from each over the families, with a 95% paired bootstrap interval (test subsets resampled within each family).

    python benchmarks/adaptation.py     # writes docs/results/adaptation.{json,md}, row by row; a rerun with the
                                        # same recipe, token limit and seed keeps the rows there, measures the rest
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from default_model import paired_difference
from experiments import Experiment
from experiments.spec import REPO
from experiments.store import default_dirs, record_path, training_folder
from leave_one_out import METHODS, SHIPPED
from provenance import machine_info, write_record

from cactus import Cactus
from cactus.cluster import tune_threshold
from cactus.data import read_subsets
from cactus.evaluate import evaluate_predictions
from cactus.train import TrainingConfig
from cactus.train.config import INTERPOLATION_WEIGHTS

EXPERIMENT = "leave_one_dataset_out"
REFERENCE_VAL_SUBSETS = 25  # the experiments' validation subsets per family, on which they tune own thresholds
RECIPE = {"lora_rank": 48, "lr": 5e-4, "max_steps": 200, "eval_every": 50, "eval_on_start": True, "batch_size": 4}


def ami_per_subset(model: Cactus, subsets: list, threshold: float | None = None) -> list[float]:
    predictions = model.predict(subsets, threshold=threshold)
    return [row["ami"] for row in evaluate_predictions(subsets, predictions)["per_subset"]]


def pretrained_own_t(tokens: int, val: list, test: list) -> list[float]:
    """AMI per test subset of the pretrained encoder at `tokens` tokens per entity, at its best threshold on `val`."""
    model = Cactus.from_pretrained("context-free", device="cpu", max_tokens=tokens)
    own = tune_threshold(model.similarities(val), [s.labels for s in val], objective=model.config.objective)
    return ami_per_subset(model, test, threshold=own.best_threshold)


def adapt(start: Path, weight: float, threshold: float, tokens: int, train: list, val: list, test: list,
          seed: int) -> dict:
    """Adapt the model at `start` at `tokens` tokens per entity, interpolated by `weight` (with the `threshold` tuned
    for that weight)."""
    model = Cactus.from_pretrained(start, device="cpu", max_tokens=tokens)
    if weight != 1.0:
        model.interpolate(weight)
        model.adopt_threshold(threshold)
    before = ami_per_subset(model, test)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cactus-adapt-") as out:
        model.fit(train, val, config=TrainingConfig(**RECIPE, seed=seed, progress=False, log_every=0),
                  output_dir=out)
    scores = model.tune_interpolation(val)
    seconds = time.perf_counter() - began
    return {"before": before, "after": ami_per_subset(model, test), "seconds": seconds,
            "cut": model.cut_.describe(), "threshold": model.threshold_,
            "weight": model.interpolation_weight_, "weight_scores": {str(w): v for w, v in scores.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=str(REPO / "data/benchmark"))
    ap.add_argument("--families", nargs="+", default=None, help="left-out families to adapt to (default: all)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--val-subsets", type=int, default=20)
    ap.add_argument("--test-subsets", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0, help="training seed (the record's: 0)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--default-record", default=str(REPO / "docs/results/default_model.json"))
    ap.add_argument("--interpolate", type=float, default=1.0,
                    help="start from the experiment's run with this interpolation weight (the shipped default's: 0.5)")
    ap.add_argument("--out", default=str(REPO / "docs/results/adaptation"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    bench = Path(args.bench)
    tokens = Cactus.from_pretrained("default").config.max_tokens  # the limit a user adapts the default at
    context_free = json.loads(Path(args.default_record).read_text())["per_subset"]["context-free, stored t"]
    results, work = default_dirs(False)
    done = Path(args.out).with_suffix(".json")
    before = json.loads(done.read_text()) if done.is_file() else {"rows": [], "date": date.today().isoformat()}
    # rows measured before with the same recipe from the same recipe's starts are kept; others are measured again
    same = (before.get("recipe") == RECIPE and before.get("interpolation_weights") == list(INTERPOLATION_WEIGHTS)
            and before.get("max_tokens") == tokens and before.get("seed", 0) == args.seed)
    rows = [r for r in before["rows"] if same and r["start"].startswith(METHODS[SHIPPED][0])]
    pretrained = before.get("pretrained_own_t", {}) if same else {}
    measured = before["date"]  # the record's date: the day its last row was measured

    def write() -> None:
        reference = {"context-free, stored t": context_free, "pretrained, own t": pretrained}
        record = record_of(rows, args.threads, reference, measured, args.interpolate, tokens, args.seed)
        write_record(args.out, record, markdown(record))

    for label, (spec, _) in Experiment.load(EXPERIMENT).runs.items():
        if spec.interpolate != args.interpolate or not label.startswith(METHODS[SHIPPED][0]):
            continue
        start = training_folder(work, spec, 0) / "train" / "best"  # shared by the runs that differ in `interpolate`
        for family in spec.test_families:
            sizes = [n for n in args.sizes if not any(r["family"] == family and r["train_subsets"] == n for r in rows)]
            if not sizes or (args.families and family not in args.families):
                continue
            if not start.is_dir():
                print(f"{label}: no best model yet; {family} left out")
                continue
            threshold = json.loads(record_path(results, spec, 0).read_text())["threshold"]  # tuned for its weight
            train_pool = read_subsets(bench / family / "train.jsonl")
            val_pool = read_subsets(bench / family / "val.jsonl")
            val = val_pool[: args.val_subsets]
            test = read_subsets(bench / family / "test.jsonl")[: args.test_subsets]
            if family not in pretrained:
                pretrained[family] = pretrained_own_t(tokens, val_pool[:REFERENCE_VAL_SUBSETS], test)
            for n in sizes:
                result = adapt(start, spec.interpolate, threshold, tokens, train_pool[:n], val, test, args.seed)
                row = {"family": family, "start": label, "train_subsets": n, "val_subsets": len(val),
                       "minutes": result["seconds"] / 60, "cut": result["cut"], "threshold": result["threshold"],
                       "weight": result["weight"], "weight_scores": result["weight_scores"],
                       "before": float(np.mean(result["before"])), "after": float(np.mean(result["after"])),
                       "context_free": float(np.mean(context_free[family])),
                       "pretrained_own_t": float(np.mean(pretrained[family])),
                       "load_at_end": round(os.getloadavg()[0], 1), "after_per_subset": result["after"]}
                rows.append(row)
                print({k: v for k, v in row.items() if k != "after_per_subset"}, flush=True)
                measured = date.today().isoformat()
                write()
    write()


def record_of(rows: list[dict], threads: int, reference: dict, measured: str, interpolate: float,
              tokens: int, seed: int) -> dict:
    summary = {}
    for n in sorted({r["train_subsets"] for r in rows}):
        after = {r["family"]: np.asarray(r["after_per_subset"]) for r in rows if r["train_subsets"] == n}
        summary[str(n)] = {
            "families": len(after), "mean_after": float(np.mean([v.mean() for v in after.values()])),
            "longest_minutes": max(r["minutes"] for r in rows if r["train_subsets"] == n),
            **{f"after - {key}": paired_difference(after, {f: np.asarray(reference[key][f]) for f in after},
                                                   relative=False)
               for key in ("pretrained, own t", "context-free, stored t")},
            "at_least_pretrained_own_t": int(sum(v.mean() >= np.mean(reference["pretrained, own t"][f])
                                                 for f, v in after.items()))}
    command = ("python benchmarks/adaptation.py" + (f" --interpolate {interpolate}" if interpolate != 1.0 else "")
               + (f" --seed {seed}" if seed else ""))
    return {"command": command, "date": measured, "interpolate": interpolate, "start": METHODS[SHIPPED][1],
            "recipe": RECIPE, "interpolation_weights": list(INTERPOLATION_WEIGHTS), "max_tokens": tokens, "seed": seed,
            "pretrained_own_t": reference["pretrained, own t"], "rows": rows,
            "summary": summary, "machine": machine_info(threads=threads)}


def markdown(rec: dict) -> str:
    rows = rec["rows"]
    lines = [
        "# Adapting to a family the model never saw", "",
        f"`{rec['command']}` ({rec['date']}; one training seed, {rec['seed']}). Start: the model trained without the "
        f"family's dataset (leave_one_dataset_out: {rec['start']})"
        + (f", its adapter's update scaled by {rec['interpolate']} and its threshold tuned again as in that run"
           if rec.get("interpolate", 1.0) != 1.0 else "") + ". Recipe: "
        + ", ".join(f"{k} {v}" for k, v in rec["recipe"].items())
        + "; then `tune_interpolation` on the validation subsets: the adapter's update scaled by each of "
        + ", ".join(f"{w:g}" for w in rec["interpolation_weights"])
        + f", the cut chosen at each, the best kept (*weight*). Every model at {rec['max_tokens']} tokens per entity, "
        "the shipped default's. Test AMI on the first 80 test subsets with the model's cut; *pretrained, own t* = the "
        f"pretrained encoder at the same limit, at a threshold tuned on the family's first {REFERENCE_VAL_SUBSETS} "
        "validation subsets; *context-free, stored t* = the shipped context-free model; minutes = training and these "
        "choices, wall time on the 2-core CPU; *load* = the 1-minute load average when the row ended "
        "(above 2, other work shared the cores and the minutes are upper bounds).", "",
        "| family | train subsets | before | after | context-free, stored t | pretrained, own t | minutes | load "
        "| weight | cut |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {r['family']} | {r['train_subsets']} | {r['before']:.3f} | {r['after']:.3f} | {r['context_free']:.3f} | "
          f"{r['pretrained_own_t']:.3f} | {r['minutes']:.1f} | {r.get('load_at_end', 'not recorded')} | "
          f"{r['weight']:g} | {r['cut']}, t {r['threshold']:.2f} |" for r in rows],
        "",
    ]
    for n, s in rec["summary"].items():
        own, free = s["after - pretrained, own t"], s["after - context-free, stored t"]
        lines.append(f"- {n} subsets: mean after {s['mean_after']:.3f}; minus the pretrained encoder at its own "
                     f"threshold {own['point']:+.3f} ({own['ci'][0]:+.3f} to {own['ci'][1]:+.3f}), at least it on "
                     f"{s['at_least_pretrained_own_t']} of {s['families']} families; minus the context-free model at "
                     f"its stored threshold {free['point']:+.3f} ({free['ci'][0]:+.3f} to {free['ci'][1]:+.3f}); "
                     f"longest {s['longest_minutes']:.1f} minutes.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
