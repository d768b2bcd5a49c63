"""Adapting to a new family: from a model that never saw its dataset, train the adapter on 20 or 50 of its labelled
subsets, choose the cut on 20 more, and score it; the README's "Adapt to your data" recipe, measured.

The starting models are the best models of `benchmarks/configs/leave_one_dataset_out.json` (the default's recipe,
trained without the family's dataset: what the shipped default is to a family it never saw). For each left-out
family (--families, default: every one) and each --sizes n: the first n training subsets of the family, the first
--val-subsets validation subsets, 200 steps of LoRA training on the model's own adapter (lr 5e-4, batches of 4,
validated every 50 steps), then `tune_cut` on the same validation subsets, then the first 80 test subsets scored
with the model's cut. Wall time covers the training and the cut choice. References, on the same test subsets, from
docs/results/default_model.json: the context-free model at its stored threshold, and the pretrained encoder at a
threshold tuned on the family's own validation subsets.

    python benchmarks/adaptation.py     # writes docs/results/adaptation.{json,md}, row by row; a rerun keeps the
                                        # rows there and measures the rest
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
from experiments import Experiment
from experiments.spec import REPO
from experiments.store import default_dirs, training_folder
from provenance import machine_info, write_record

from cactus import Cactus
from cactus.data import read_subsets
from cactus.evaluate import evaluate_predictions
from cactus.train import TrainingConfig

EXPERIMENT = "leave_one_dataset_out"
RECIPE = {"lora_rank": 16, "lr": 5e-4, "max_steps": 200, "eval_every": 50, "batch_size": 4}


def ami_per_subset(model: Cactus, subsets: list) -> list[float]:
    return [row["ami"] for row in evaluate_predictions(subsets, model.predict(subsets))["per_subset"]]


def adapt(start: Path, train: list, val: list, test: list, seed: int) -> dict:
    model = Cactus.from_pretrained(start, device="cpu")
    before = ami_per_subset(model, test)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cactus-adapt-") as out:
        model.fit(train, val, config=TrainingConfig(**RECIPE, seed=seed, progress=False, log_every=0),
                  output_dir=out)
    model.tune_cut(val)
    seconds = time.perf_counter() - began
    return {"before": before, "after": ami_per_subset(model, test), "seconds": seconds,
            "cut": model.cut_.describe(), "threshold": model.threshold_}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=str(REPO / "data/benchmark"))
    ap.add_argument("--families", nargs="+", default=None, help="left-out families to adapt to (default: all)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--val-subsets", type=int, default=20)
    ap.add_argument("--test-subsets", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--default-record", default=str(REPO / "docs/results/default_model.json"))
    ap.add_argument("--out", default=str(REPO / "docs/results/adaptation"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    bench = Path(args.bench)
    reference = json.loads(Path(args.default_record).read_text())["per_subset"]
    _, work = default_dirs(False)
    done = Path(args.out).with_suffix(".json")
    rows = json.loads(done.read_text())["rows"] if done.is_file() else []  # rows measured before are kept
    for label, (spec, _) in Experiment.load(EXPERIMENT).runs.items():
        start = training_folder(work, spec, 0) / "train" / "best"
        for family in spec.test_families:
            if args.families and family not in args.families:
                continue
            if not start.is_dir():
                print(f"{label}: no best model yet; {family} left out")
                continue
            train_pool = read_subsets(bench / family / "train.jsonl")
            val = read_subsets(bench / family / "val.jsonl")[: args.val_subsets]
            test = read_subsets(bench / family / "test.jsonl")[: args.test_subsets]
            for n in args.sizes:
                if any(r["family"] == family and r["train_subsets"] == n for r in rows):
                    continue
                result = adapt(start, train_pool[:n], val, test, seed=0)
                row = {"family": family, "start": label, "train_subsets": n, "val_subsets": len(val),
                       "minutes": result["seconds"] / 60, "cut": result["cut"], "threshold": result["threshold"],
                       "before": float(np.mean(result["before"])), "after": float(np.mean(result["after"])),
                       "context_free": float(np.mean(reference["context-free, stored t"][family])),
                       "pretrained_own_t": float(np.mean(reference["pretrained, own t"][family])),
                       "load_at_end": round(os.getloadavg()[0], 1), "after_per_subset": result["after"]}
                rows.append(row)
                print({k: v for k, v in row.items() if k != "after_per_subset"}, flush=True)
                write_record(args.out, record_of(rows, args.threads), markdown(record_of(rows, args.threads)))


def record_of(rows: list[dict], threads: int) -> dict:
    return {"command": "python benchmarks/adaptation.py", "date": date.today().isoformat(), "recipe": RECIPE,
            "rows": rows, "machine": machine_info(threads=threads)}


def markdown(rec: dict) -> str:
    rows = rec["rows"]
    lines = [
        "# Adapting to a family the model never saw", "",
        f"`{rec['command']}` ({rec['date']}; one seed). Start: the model trained without the family's dataset "
        "(leave_one_dataset_out). Recipe: "
        + ", ".join(f"{k} {v}" for k, v in rec["recipe"].items())
        + "; then `tune_cut` on the validation subsets. Test AMI on the first 80 test subsets with the model's cut; "
        "minutes = training and cut choice, wall time on the 2-core CPU; *load* = the 1-minute load average when the "
        "row ended (above 2, other work shared the cores and the minutes are upper bounds).", "",
        "| family | train subsets | before | after | context-free, stored t | pretrained, own t | minutes | load "
        "| cut |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {r['family']} | {r['train_subsets']} | {r['before']:.3f} | {r['after']:.3f} | {r['context_free']:.3f} | "
          f"{r['pretrained_own_t']:.3f} | {r['minutes']:.1f} | {r.get('load_at_end', 'not recorded')} | "
          f"{r['cut']}, t {r['threshold']:.2f} |" for r in rows],
        "",
    ]
    for n in sorted({r["train_subsets"] for r in rows}):
        sel = [r for r in rows if r["train_subsets"] == n]
        beat = sum(r["after"] >= r["pretrained_own_t"] for r in sel)
        lines.append(f"- {n} subsets: mean after {np.mean([r['after'] for r in sel]):.3f} against the pretrained "
                     f"encoder at its own threshold {np.mean([r['pretrained_own_t'] for r in sel]):.3f}; at least it "
                     f"on {beat} of {len(sel)} families; longest {max(r['minutes'] for r in sel):.1f} minutes.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
