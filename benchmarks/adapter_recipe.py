"""What closes the gap between the default's adapter and fine-tuning every weight, in distribution.

Reads the records of `benchmarks/configs/adapter_recipe.json` (run them first:
`python benchmarks/experiments.py run adapter_recipe --jobs 1 --threads 2`): SIA trained 1,000 steps on the training
subsets of all ten families, with the default's LoRA adapter at learning rates 5e-4 (the default's) and 1e-3, at a
higher rank, and fine-tuning every weight; each also interpolated towards the pretrained encoder. Writes
docs/results/adapter_recipe.{json,md}: mean test AMI over the ten families (the first 80 test subsets of each) at each
model's one stored threshold and with the adaptive cut, and every run against fine-tuning every weight at the same
interpolation weight, with 95% paired bootstrap intervals.

    python benchmarks/adapter_recipe.py
"""

from __future__ import annotations

import argparse
import json
from datetime import date

import numpy as np
from default_model import paired_difference
from experiments import Experiment
from experiments.spec import REPO
from experiments.store import default_dirs, record_path
from provenance import trained_on, write_record

EXPERIMENT = "adapter_recipe"
KEYS = {"stored t": "stored", "adaptive cut": "adaptive"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs/results/adapter_recipe"))
    args = ap.parse_args()
    results, _ = default_dirs(False)
    runs = {}
    for label, (spec, _) in Experiment.load(EXPERIMENT).runs.items():
        path = record_path(results, spec, 0)
        if not path.is_file():
            print(f"no record yet for {label!r}: left out")
            continue
        record = json.loads(path.read_text())
        runs[label] = {"spec": spec, "threshold": record["threshold"], "trained_on": trained_on(record["machine"]),
                       "scores": {column: {f: np.asarray(v[f"{key}_ami_per_subset"])
                                           for f, v in record["families"].items()} for column, key in KEYS.items()}}
    full = {r["spec"].interpolate: r for r in runs.values() if not r["spec"].lora_rank}
    rows = {}
    for label, r in runs.items():
        reference = full.get(r["spec"].interpolate)
        rows[label] = {
            "lr": r["spec"].lr, "rank": r["spec"].lora_rank, "interpolate": r["spec"].interpolate,
            "threshold": r["threshold"], "trained_on": r["trained_on"],
            **{column: float(np.mean([s.mean() for s in r["scores"][column].values()])) for column in KEYS},
            **({f"{column} - every weight": paired_difference(r["scores"][column], reference["scores"][column],
                                                               relative=False) for column in KEYS}
               if reference is not None and r["spec"].lora_rank else {}),
        }
    record = {"command": "python benchmarks/adapter_recipe.py", "date": date.today().isoformat(),
              "experiment": f"benchmarks/configs/{EXPERIMENT}.json",
              "families": sorted(next(iter(runs.values()))["scores"]["stored t"]), "runs": rows}
    write_record(args.out, record, markdown(record))


def markdown(rec: dict) -> str:
    def diff(row: dict, column: str) -> str:
        c = row.get(f"{column} - every weight")
        return f"{c['point']:+.3f} ({c['ci'][0]:+.3f} to {c['ci'][1]:+.3f})" if c else "-"

    return "\n".join([
        "# What closes the gap between the adapter and fine-tuning every weight", "",
        f"`{rec['command']}` ({rec['date']}; one seed), from the runs of `{rec['experiment']}`: SIA, augmented "
        "triplet, 1,000 steps of 4 subsets on the training subsets of all ten families; LoRA on every linear layer "
        "(alpha = rank, so the update's scale is the same at every rank) or every weight (lr 5e-5); *w* = the "
        "weight of the interpolation towards the pretrained encoder (the update scaled by w, the threshold tuned "
        f"again). Mean test AMI over the first 80 test subsets of each of the {len(rec['families'])} families, at "
        "the model's one stored threshold and with the adaptive cut (per subset, the best silhouette, band 0.05 to "
        "0.7); against fine-tuning every weight at the same w: the mean difference with its 95% paired bootstrap "
        "interval. *trained on*: the machine of the run's record (the same seed trains a little differently on "
        "other hardware).", "",
        "| run | lr | rank | w | stored threshold | stored t | adaptive cut | stored t - every weight | "
        "adaptive cut - every weight | trained on |", "|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {label} | {r['lr']:g} | {r['rank'] or 'every weight'} | {r['interpolate']} | {r['threshold']:.2f} | "
          f"{r['stored t']:.3f} | {r['adaptive cut']:.3f} | {diff(r, 'stored t')} | {diff(r, 'adaptive cut')} | "
          f"{r['trained_on']} |" for label, r in rec["runs"].items()], "",
    ])


if __name__ == "__main__":
    main()
