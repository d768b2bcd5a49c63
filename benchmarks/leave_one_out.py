"""Leave one dataset out with the shipped default's recipe: does a model trained without a dataset beat the
pretrained encoder on it?

Reads the records of `benchmarks/configs/leave_one_dataset_out.json` (run them first:
`python benchmarks/experiments.py run leave_one_dataset_out --jobs 1 --threads 2`) and the per-subset scores of
docs/results/default_model.json (the context-free model at its one stored threshold, and the pretrained encoder at a
threshold tuned on each family's own validation subsets), on the same test subsets of each family (the first 80),
and writes docs/results/leave_one_out.{json,md}: per left-out family, the model trained without its dataset at its
one stored threshold, with its own adaptive cut, and at the family's own tuned threshold, against both references,
with 95% paired bootstrap intervals of the mean differences.

    python benchmarks/leave_one_out.py
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from default_model import paired_difference
from experiments import Experiment
from experiments.spec import REPO
from experiments.store import default_dirs, record_path
from provenance import write_record

EXPERIMENT = "leave_one_dataset_out"
REFERENCES = {"context-free, stored t": "context-free, stored t", "pretrained, own t": "pretrained, own t"}
OWN_KEYS = {"without it, stored t": "stored", "without it, adaptive cut": "adaptive", "without it, own t": "own"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--default-record", default=str(REPO / "docs/results/default_model.json"))
    ap.add_argument("--out", default=str(REPO / "docs/results/leave_one_out"))
    args = ap.parse_args()
    reference = json.loads(Path(args.default_record).read_text())
    results, _ = default_dirs(False)
    exp = Experiment.load(EXPERIMENT)
    columns: dict[str, dict[str, np.ndarray]] = {c: {} for c in [*OWN_KEYS, *REFERENCES]}
    runs = {}
    for label, (spec, _) in exp.runs.items():
        path = record_path(results, spec, 0)
        if not path.is_file():
            print(f"no record yet for {label!r}: left out")
            continue
        record = json.loads(path.read_text())
        runs[label] = {"left_out": list(spec.test_families), "threshold": record["threshold"],
                       "train_minutes": record["wall_seconds"]["train"] / 60, "steps": spec.steps}
        for family in spec.test_families:
            scores = record["families"][family]
            for column, key in OWN_KEYS.items():
                columns[column][family] = np.asarray(scores[f"{key}_ami_per_subset"])
            for column, key in REFERENCES.items():
                columns[column][family] = np.asarray(reference["per_subset"][key][family])
                assert len(columns[column][family]) == len(columns["without it, stored t"][family])
    families = list(columns["without it, stored t"])
    comparisons = {
        f"{a} - {b}": paired_difference(columns[a], columns[b], relative=False)
        for a, b in [("without it, stored t", "context-free, stored t"),
                     ("without it, adaptive cut", "context-free, stored t"),
                     ("without it, stored t", "pretrained, own t"),
                     ("without it, adaptive cut", "pretrained, own t")]
    }
    wins = {f"{a} >= {b}": int(sum(columns[a][f].mean() >= columns[b][f].mean() for f in families))
            for a, b in [("without it, stored t", "context-free, stored t"),
                         ("without it, adaptive cut", "context-free, stored t"),
                         ("without it, stored t", "pretrained, own t")]}
    record = {
        "command": "python benchmarks/leave_one_out.py", "date": date.today().isoformat(),
        "experiment": f"benchmarks/configs/{EXPERIMENT}.json", "runs": runs, "columns": list(columns),
        "families": {f: {c: float(v[f].mean()) for c, v in columns.items()} for f in families},
        "mean": {c: float(np.mean([v[f].mean() for f in families])) for c, v in columns.items()},
        "comparisons": comparisons, "families_at_least": wins, "n_families": len(families),
    }
    write_record(args.out, record, markdown(record))


def markdown(rec: dict) -> str:
    cols = rec["columns"]
    lines = [
        "# Leave one dataset out, with the default's recipe", "",
        f"`{rec['command']}` ({rec['date']}; one seed), from the runs of `{rec['experiment']}`: SIA with a LoRA "
        "adapter (rank 16 on every linear layer), 500 steps, trained on the families of the other datasets; its "
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
        "| run | left out | stored threshold | training minutes |", "|---|---|---|---|",
        *[f"| {label} | {', '.join(r['left_out'])} | {r['threshold']:.2f} | {r['train_minutes']:.0f} |"
          for label, r in rec["runs"].items()], "",
        "Training minutes are wall time on the 2-core machine while other work shared it: upper bounds.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
