"""Fine-tuning every weight, then compressed into an adapter that fits the package: what does compression cost?

The default_model experiment's "SIA, every weight" run (1,000 steps on the training subsets of the ten families;
run it first with `python benchmarks/default_model.py`) is interpolated halfway, as the shipped default is
(`Cactus.interpolate(0.5)`), then compressed at each --ranks (`Cactus.compress`: each linear layer's update truncated
to its largest singular values and kept as a LoRA adapter on the published backbone; the embeddings', layer norms'
and biases' updates dropped). Each model, and the uncompressed one, gets its threshold and cut tuned on the same
validation subsets as the default's (`Cactus.tune_cut`, 25 per family), and is scored on the same test subsets (80
per family) at its stored threshold and with its cut, beside the shipped default (LoRA rank 16) as shipped. Writes
docs/results/compress_update.{json,md}: mean test AMI, paired 95% intervals against the default, adapter size on
disk, and the share of the update's squared norm each rank keeps. Rank 384, the full rank of every linear layer of
all-MiniLM-L6-v2, truncates nothing: it shows what dropping the other weights' updates costs on its own.

    python benchmarks/compress_update.py     # about 25 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
from default_model import DEFAULT_RUN, EXPERIMENT, FULL_RUN, evaluate_shipped, paired_difference
from experiments import Experiment
from experiments.store import default_dirs, training_folder
from provenance import command_line, machine_info, write_record

from cactus import Cactus
from cactus.data import read_subsets

UNCOMPRESSED = "every weight, w 0.5, uncompressed"


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=Path("data/benchmark"))
    ap.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 28, 384])
    ap.add_argument("--weight", type=float, default=0.5, help="interpolation weight before compressing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/results/compress_update")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    exp = Experiment.load(EXPERIMENT)
    specs = {label: spec for label, (spec, _) in exp.runs.items()}
    full, default_spec = specs[FULL_RUN], specs[DEFAULT_RUN]
    _, work = default_dirs(False)
    best = training_folder(work, full, 0) / "train" / "best"
    families = list(full.train_families)
    val = [s for f in families for s in read_subsets(args.bench / f / "val.jsonl")[: default_spec.val_subsets]]
    tests = {f: read_subsets(args.bench / f / "test.jsonl")[: default_spec.test_subsets] for f in families}

    scores, about = {}, {}
    default = Cactus.from_pretrained("default", device="cpu")
    scores["shipped default (LoRA r16, w 0.5)"] = evaluate_shipped(default, tests)["families"]
    about["shipped default (LoRA r16, w 0.5)"] = {"cut": default.cut_.describe(), "threshold": default.threshold_}
    for rank in [None, *args.ranks]:
        model = Cactus.from_pretrained(best, device="cpu")
        model.interpolate(args.weight)
        name, info = UNCOMPRESSED, {}
        if rank is not None:
            name = f"every weight, w {args.weight}, compressed to rank {rank}"
            info["update_norm_kept"] = model.compress(rank)
        model.config.max_tokens = default.config.max_tokens
        model.tune_cut(val)
        if rank is not None:
            with tempfile.TemporaryDirectory(prefix="cactus-compressed-") as tmp:
                model.save_pretrained(Path(tmp) / "m")
                info["saved_mb"] = folder_mb(Path(tmp) / "m")
        info |= {"cut": model.cut_.describe(), "threshold": model.threshold_}
        scores[name], about[name] = evaluate_shipped(model, tests)["families"], info
        print(name, info, {k: np.mean([np.mean(v[k]) for v in scores[name].values()]) for k in ("stored", "cut")},
              flush=True)

    def column(name: str, key: str) -> dict[str, np.ndarray]:
        return {f: np.asarray(v[key]) for f, v in scores[name].items()}

    reference = "shipped default (LoRA r16, w 0.5)"
    rows = {name: {key: float(np.mean([np.mean(v[key]) for v in scores[name].values()])) for key in ("stored", "cut")}
            | {f"minus default, {key}": paired_difference(column(name, key), column(reference, key), False)
               for key in ("stored", "cut")} | {f"minus uncompressed, {key}": paired_difference(
                   column(name, key), column(UNCOMPRESSED, key), False) for key in ("stored", "cut")}
            for name in scores}
    record = {"command": command_line(), "date": date.today().isoformat(), "args": vars(args) | {
        "bench": str(args.bench)}, "run": str(best), "models": about, "mean": rows,
        "per_family": {name: {f: {k: float(np.mean(v[k])) for k in v} for f, v in s.items()}
                       for name, s in scores.items()}, "machine": machine_info()}

    def ci(d: dict) -> str:
        return f"{d['point']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"

    lines = ["# Fine-tuning every weight, compressed into an adapter", "",
             f"`{record['command']}` ({record['date']}; one seed): the default_model experiment's every-weight run, "
             f"interpolated by {args.weight}, compressed to a LoRA adapter of each rank, its threshold and cut tuned "
             f"on {len(val)} validation subsets; mean test AMI over {default_spec.test_subsets} test subsets of each "
             "of the ten families, with paired 95% bootstrap intervals.", "",
             "| model | stored t | cut | minus default, stored t | minus default, cut | minus uncompressed, stored t "
             "| minus uncompressed, cut | update kept | on disk |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        info = about[name]
        kept = f"{info['update_norm_kept']:.1%}" if "update_norm_kept" in info else "-"
        size = f"{info['saved_mb']:.1f} MiB" if "saved_mb" in info else "-"
        lines.append(f"| {name} | {row['stored']:.3f} | {row['cut']:.3f} | {ci(row['minus default, stored'])} | "
                     f"{ci(row['minus default, cut'])} | {ci(row['minus uncompressed, stored'])} | "
                     f"{ci(row['minus uncompressed, cut'])} | {kept} | {size} |")
    lines += ["", "Each model's cut: " + "; ".join(f"{n}: {a['cut']} (threshold {a['threshold']:.2f})"
                                                   for n, a in about.items()), ""]
    write_record(args.out, record, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
