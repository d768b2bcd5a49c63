"""The shipped default model, retrained and measured by one command.

1. Builds the benchmark from the raw data if `--bench` is missing (`cactus data build`).
2. Runs the experiment `default_model` (benchmarks/configs/default_model.json; the runner resumes a run cut short):
   SIA trained on the training subsets of all benchmark families together, once with a LoRA adapter and once on
   every weight, for the same steps, each also interpolated halfway, and the pretrained encoder beside them.
3. Makes the LoRA run's best model the default: interpolated towards the pretrained encoder by the weight of the
   experiment's interpolated run (`Cactus.interpolate`, the adapter's update scaled; the config's description says
   why that weight), its cut (the stored threshold or an adaptive rule) chosen by
   `Cactus.tune_cut` on the validation subsets of all families together, and written, as its adapter alone in
   float16, to src/cactus/models/default (with `--write`; else to runs/experiments/default).
4. Measures the default as shipped against the context-free model as shipped, on the same test subsets of every
   family (each at its one stored threshold, and each with its own cut), with paired bootstrap intervals; the LoRA
   and full fine-tuning runs side by side from their records; and both shipped models' prediction speed, side by side
   in this process. Writes docs/results/default_model.{json,md}.

    python benchmarks/default_model.py --data-dir ../shared/data --write
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from experiments import Experiment
from experiments.spec import REPO
from experiments.store import default_dirs, record_path, training_folder
from provenance import machine_info, trained_on, write_record

from cactus import Cactus
from cactus.config import ThresholdProvenance, packaged_model
from cactus.data import read_subsets
from cactus.encoder import ADAPTER_DIR
from cactus.evaluate import evaluate_predictions

EXPERIMENT = "default_model"
LORA_RUN, FULL_RUN, PRETRAINED_RUN = ("SIA + LoRA r48, all linear layers", "SIA, every weight",
                                      "pretrained encoder (context-free)")
DEFAULT_RUN = "SIA + LoRA r48, all linear layers, w 0.5"  # the LoRA run interpolated: what ships
# The rank-48 adapter is 8.1 MB in float32, over the 5 MB the repository gives the default; float16 halves it and moves
# the embeddings by a cosine of 3e-7 on 20 clinc_intent test subsets (docs/training.md).
ADAPTER_DTYPE = "float16"
FULL_HALF_RUN = "SIA, every weight, w 0.5"  # the full fine-tuning interpolated by the same weight: like for like
# Where each family's texts come from, and their license (docs/data.md), for the model card.
SOURCES = {
    "clinc": "CLINC150 (CC BY 3.0)",
    "banking77": "BANKING77 (CC BY 4.0)",
    "hwu64": "HWU64 (CC BY 4.0)",
    "amazon_category": "Walmart-Amazon, Amazon table (research use)",
    "product_same": "Abt-Buy, Amazon-Google, Walmart-Amazon matches (research use)",
    "product_mixed": "Walmart-Amazon categories and Abt-Buy, Amazon-Google, Walmart-Amazon matches (research use)",
}
COMMAND = "python benchmarks/default_model.py --data-dir ../shared/data --write"


def source_of(family: str) -> str:
    return next(v for k, v in SOURCES.items() if family.startswith(k))


def paired_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], relative: bool,
                      resamples: int = 10_000) -> dict:
    """Mean over families of a's mean per-subset score minus b's (or a's / b's - 1), with a 95% paired bootstrap
    interval: the same test subsets resampled for both, within each family."""
    rng = np.random.default_rng(0)
    picks = {f: rng.integers(0, len(a[f]), (resamples, len(a[f]))) for f in a}
    ma = np.mean([a[f][picks[f]].mean(axis=1) for f in a], axis=0)
    mb = np.mean([b[f][picks[f]].mean(axis=1) for f in a], axis=0)
    point_a, point_b = np.mean([a[f].mean() for f in a]), np.mean([b[f].mean() for f in a])
    diff = ma / mb - 1 if relative else ma - mb
    point = point_a / point_b - 1 if relative else point_a - point_b
    return {"point": float(point), "ci": [float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))]}


def evaluate_shipped(model: Cactus, tests: dict[str, list]) -> dict:
    """Per family: AMI per test subset at the model's stored threshold and with its own cut; and the seconds that
    `predict` (embedding and its cut) took over all families."""
    out, seconds = {}, 0.0
    for family, subsets in tests.items():
        start = time.perf_counter()
        sims = model.similarities(subsets)
        by_cut = model.cluster_similarities(sims)
        seconds += time.perf_counter() - start
        stored = model.cluster_similarities(sims, threshold=model.threshold_)
        out[family] = {name: [row["ami"] for row in evaluate_predictions(subsets, preds)["per_subset"]]
                       for name, preds in (("stored", stored), ("cut", by_cut))}
    return {"families": out, "predict_seconds": seconds}


def speed(models: dict[str, Cactus], subsets: list, rounds: int) -> dict:
    """Entities per second of `predict` for each model, the models taking turns; the median of `rounds`."""
    n = sum(len(s) for s in subsets)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.predict(subsets[:4])  # warm-up: weights loaded, first-call costs paid
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict(subsets)
            times[name].append(time.perf_counter() - start)
    return {name: {"entities_per_second": n / float(np.median(t)), "seconds": t} for name, t in times.items()}


def make_default(best: Path, weight: float, val: list, families: list[str], record: Path, steps: int) -> Cactus:
    """The LoRA run's best model interpolated by `weight`, with its cut tuned on `val`, its token limit that of the
    shipped models, its threshold's provenance and its training record filled in for the card."""
    model = Cactus.from_pretrained(best, device="cpu")
    if weight != 1.0:
        model.interpolate(weight)
    model.config.max_tokens = Cactus.from_pretrained("context-free").config.max_tokens
    choice = model.tune_cut(val)
    model.adopt_threshold(choice.curve, ThresholdProvenance(
        subsets=len(val), step=model.config.training.get("step"), command=COMMAND, date=date.today().isoformat(),
        tuned_on=f"validation subsets of {', '.join(families)} together ({len(val) // len(families)} each)"))
    model.config.cut_provenance |= {"chosen_by": "Cactus.tune_cut on the same validation subsets", "command": COMMAND}
    model.config.training["data"]["families"] = {f: source_of(f) for f in families}
    model.config.training["data"]["steps"] = steps
    model.config.training["run_record"] = str(record.relative_to(REPO))
    return model


def markdown(rec: dict) -> str:
    fams = list(rec["families"])
    head = ["", "| family | " + " | ".join(rec["columns"]) + " |", "|---|" + "---|" * len(rec["columns"])]
    rows = [f"| {f} | " + " | ".join(f"{rec['families'][f][c]:.3f}" for c in rec["columns"]) + " |" for f in fams]
    rows.append("| **mean** | " + " | ".join(f"**{rec['mean'][c]:.3f}**" for c in rec["columns"]) + " |")
    cmp = rec["comparisons"]

    def interval(c: dict, pct: bool) -> str:
        f = (lambda x: f"{100 * x:+.1f}%") if pct else (lambda x: f"{x:+.3f}")
        return f"{f(c['point'])} (95% interval {f(c['ci'][0])} to {f(c['ci'][1])})"

    speed = rec["speed"]
    lines = [
        "# The shipped default model", "",
        f"`{rec['command']}` ({rec['date']}; one seed). {rec['about']}", "",
        "Test AMI, mean over the first test subsets of every family "
        f"({rec['test_subsets_per_family']} each); *stored t* = the model's one stored threshold, *cut* = the "
        "model's own cut (what `predict` does), *own t* = a threshold tuned on the family's own validation subsets "
        "(needs its labels; from the run records, at the training token limit).", *head, *rows, "",
        f"- Default against the context-free model, each at its one stored threshold: "
        f"{interval(cmp['default_vs_context_free_stored'], True)}.",
        f"- Default against the context-free model, each with its own cut: "
        f"{interval(cmp['default_vs_context_free_cut'], True)}.",
        "- LoRA against fine-tuning every weight, same steps, each at its stored threshold (run records): "
        + (f"{interval(cmp['lora_minus_full_stored'], False)} AMI; the default against fine-tuning every weight: "
           f"{interval(cmp['default_minus_full_stored'], False)} AMI." if "lora_minus_full_stored" in cmp
           else "not measured yet (that run has no record)."),
        "- Like for like, both interpolated halfway: the default against fine-tuning every weight, each at its "
        "stored threshold: " + (f"{interval(cmp['default_minus_full_half_stored'], False)} AMI."
                                if "default_minus_full_half_stored" in cmp else "not measured yet (no record)."),
        "",
        f"Training cost (run records, {rec['steps']} steps, batches of 4 subsets; a 2-core CPU was shared with "
        "other work part of the time, and a GPU by eight runs at once, so wall times are upper bounds):", "",
        "| run | trainable parameters | adapter on disk | trained on | training wall s | peak RSS MiB |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {r['trainable']} | {r['saved_mb']} | {r['trained_on']} | {r['train_s']:.0f} | "
          f"{r['rss_mib']:.0f} |" for name, r in rec["training"].items()],
        "",
        f"Prediction speed, side by side in one process ({speed['entities']} entities, median of "
        f"{speed['rounds']} rounds): default {speed['models']['default']['entities_per_second']:.0f} entities/s, "
        f"context-free {speed['models']['context-free']['entities_per_second']:.0f} "
        f"({speed['ratio']:.2f}x), each at its default batch size (`cactus.model.BATCH_TOKENS`); by batch size "
        "(real tokens per pass), in the same rounds: "
        + "; ".join(f"{name} {v['entities_per_second']:.0f}" for name, v in speed["models"].items() if "tokens" in name)
        + ".", "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="data/benchmark")
    ap.add_argument("--data-dir", default="../shared/data", help="raw data, to build --bench when it is missing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write the default to src/cactus/models/default")
    ap.add_argument("--speed-rounds", type=int, default=5)
    ap.add_argument("--batch-tokens", type=int, nargs="*", default=[2048, 4096, 8192],
                    help="batch sizes (real tokens per pass) both shipped models are also timed at, in the same rounds")
    ap.add_argument("--speed-subsets", type=int, default=20, help="test subsets per family the speed is timed on")
    ap.add_argument("--out", default="docs/results/default_model")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    bench = Path(args.bench)
    if not bench.is_dir():
        subprocess.run(["cactus", "data", "build", "--data-dir", args.data_dir, "--out", str(bench)], check=True)
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "experiments.py"), "run", EXPERIMENT, "--jobs", "1",
                    "--threads", str(args.threads), "--bench", str(bench)], check=True, cwd=REPO)

    exp = Experiment.load(EXPERIMENT)
    results, work = default_dirs(False)
    specs = {label: spec for label, (spec, _) in exp.runs.items()}
    records = {label: json.loads(record_path(results, spec, 0).read_text()) for label, spec in specs.items()
               if record_path(results, spec, 0).is_file()}  # a run still going has none yet: left out below
    lora_spec, default_spec = specs[LORA_RUN], specs[DEFAULT_RUN]
    families = list(lora_spec.train_families)
    val = [s for f in families for s in read_subsets(bench / f / "val.jsonl")[: lora_spec.val_subsets]]
    tests = {f: read_subsets(bench / f / "test.jsonl")[: lora_spec.test_subsets] for f in families}
    best = training_folder(work, default_spec, 0) / "train" / "best"  # the LoRA run's folder: they train as one
    default = make_default(best, default_spec.interpolate, val, families, record_path(results, default_spec, 0),
                           default_spec.steps)
    shipped_dir = packaged_model("default") if args.write else work / "default"
    default.save_pretrained(shipped_dir, adapter_dtype=ADAPTER_DTYPE)
    default = Cactus.from_pretrained(shipped_dir, device="cpu")  # measured as it loads: its adapter in float16
    context_free = Cactus.from_pretrained("context-free", device="cpu")
    shipped = {"default": evaluate_shipped(default, tests), "context-free": evaluate_shipped(context_free, tests)}

    def per_subset(name: str, key: str) -> dict[str, np.ndarray]:
        return {f: np.asarray(v[key]) for f, v in shipped[name]["families"].items()}

    def from_record(label: str, key: str) -> dict[str, np.ndarray]:
        return {f: np.asarray(records[label]["families"][f][f"{key}_ami_per_subset"]) for f in families}

    columns = {
        "context-free, stored t": per_subset("context-free", "stored"),
        "context-free, cut": per_subset("context-free", "cut"),
        "pretrained, own t": from_record(PRETRAINED_RUN, "own"),
        **({"full fine-tuning, stored t": from_record(FULL_RUN, "stored")} if FULL_RUN in records else {}),
        **({"full fine-tuning w 0.5, stored t": from_record(FULL_HALF_RUN, "stored")}
           if FULL_HALF_RUN in records else {}),
        "LoRA, stored t": from_record(LORA_RUN, "stored"),
        "default, stored t": per_subset("default", "stored"),
        "default, cut": per_subset("default", "cut"),
    }
    flat = [s for f in families for s in tests[f][: args.speed_subsets]]
    # the default as written above (the package's only with --write), the context-free model as shipped
    sweep = {f"{name}, {k} tokens": Cactus.from_pretrained(folder, device="cpu", batch_tokens=k)
             for name, folder in (("default", shipped_dir), ("context-free", "context-free"))
             for k in args.batch_tokens}
    speeds = speed({"default": default, "context-free": context_free} | sweep, flat, args.speed_rounds)
    saved = sum(p.stat().st_size for p in (shipped_dir / ADAPTER_DIR).rglob("*") if p.is_file())
    weights = dict(default.encoder.named_parameters())  # the adapter's and the backbone's: both runs' counts
    trainable = {LORA_RUN: sum(p.numel() for n, p in weights.items() if ".lora_" in n),
                 FULL_RUN: sum(p.numel() for n, p in weights.items() if ".lora_" not in n)}
    training = {label: {"trainable": trainable[label],
                        "saved_mb": f"{saved / 1e6:.1f} MB ({ADAPTER_DTYPE})" if label == LORA_RUN
                        else "(every weight)", "trained_on": trained_on(records[label]["machine"]),
                        "train_s": records[label]["wall_seconds"]["train"], "rss_mib": records[label]["peak_rss_mib"]}
                for label in (LORA_RUN, FULL_RUN) if label in records}
    record = {
        "command": COMMAND, "date": date.today().isoformat(), "steps": lora_spec.steps,
        "about": (f"Trained on {', '.join(families)} together; the default is the LoRA run's best model, its "
                  f"adapter's update scaled by {default_spec.interpolate} (interpolated towards the "
                  "pretrained encoder; benchmarks/configs/default_model.json says why this weight), stored in "
                  f"{ADAPTER_DTYPE}, with the cut "
                  f"that `Cactus.tune_cut` chose on {len(val)} validation subsets: "
                  f"{default.cut_.describe()}, threshold {default.threshold_:.2f}."),
        "test_subsets_per_family": lora_spec.test_subsets,
        "columns": list(columns),
        "families": {f: {c: float(v[f].mean()) for c, v in columns.items()} for f in families},
        "mean": {c: float(np.mean([v[f].mean() for f in families])) for c, v in columns.items()},
        "comparisons": {
            "default_vs_context_free_stored": paired_difference(columns["default, stored t"],
                                                                columns["context-free, stored t"], relative=True),
            "default_vs_context_free_cut": paired_difference(columns["default, cut"], columns["context-free, cut"],
                                                             relative=True),
        } | ({"lora_minus_full_stored": paired_difference(columns["LoRA, stored t"],
                                                          columns["full fine-tuning, stored t"], relative=False),
               "default_minus_full_stored": paired_difference(columns["default, stored t"],
                                                             columns["full fine-tuning, stored t"], relative=False)}
             if FULL_RUN in records else {})
        | ({"default_minus_full_half_stored": paired_difference(
            columns["default, stored t"], columns["full fine-tuning w 0.5, stored t"], relative=False)}
           if FULL_HALF_RUN in records else {}),
        "per_subset": {c: {f: v[f].tolist() for f in families} for c, v in columns.items()},
        "training": training,
        "speed": {"entities": sum(len(s) for s in flat), "rounds": args.speed_rounds, "models": speeds,
                  "ratio": speeds["default"]["entities_per_second"] / speeds["context-free"]["entities_per_second"]},
        "cut": default.config.cut, "threshold": default.threshold_,
        "machine": machine_info(threads=args.threads),
    }
    write_record(REPO / args.out, record, markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
