"""Training and prediction throughput of the three attention modes (NIA, FIA, SIA) with the default model on the CPU.

The default model (`Cactus(attention=mode, device="cpu")`, the offline all-MiniLM-L6-v2 backbone, 64 tokens per
entity) on subsets of one benchmark family (data/benchmark/<family>, built by `cactus data build`).

- Training: one `cactus.train.Trainer` per mode (augmented triplet loss, batches of --batch-size subsets, the trainer's
  defaults otherwise), its module in train mode (dropout on) as `Trainer.train` puts it. The unit timed is
  `Trainer.step`, the one optimizer step that `Trainer.train` runs per batch: tokenise the batch, forward, loss,
  backward, gradient clipping, AdamW step, scheduler step, the loss reduced over processes. It is called directly
  because `train` adds validation, checkpoints and logging around it, and those are not training throughput.
  Batches are the trainer's own epoch-0 batches (seed 0): --warmup of them per mode, then --repeats rounds of --steps
  further batches; in each round every mode takes the same batches, one after the other, in an order rotated from
  round to round. Subsets/s of a round = subsets / summed step time; reported: the median over rounds.
- Prediction: `Cactus.predict` (threshold 0.35, the shipped default's) on the first --subsets test subsets, one
  warm-up call on 2 subsets per mode, then --repeats rounds, modes interleaved and rotated as above. Entities/s of a
  round = entities / time of the call; reported: the median over rounds.
- Ratios to NIA: the ratio of the medians.
- Token positions: per phase, how many token positions the backbone runs in each mode over the timed batches (for
  prediction, `predict`'s own batches, `cactus.text.token_batches`), beside the real tokens.
- Peak memory: every (phase, mode) in a fresh subprocess, after the same warm-up (so AdamW's state exists): release
  freed heap pages (malloc_trim), reset the kernel's peak-RSS mark (/proc/self/clear_refs), record VmRSS, run the
  first round's batches (training) or one predict call (prediction); "work" = VmHWM after - VmRSS before, the
  memory the steps or the call themselves add (activations, gradients, attention buffers); "process" = VmHWM, the
  whole process's peak resident memory (Python, torch, the model, and for training gradients and AdamW state).
  glibc's mmap threshold is pinned at 64 KiB so that large tensors come and go with the RSS.
- Threads: 1 by default (--threads), in this process and the subprocesses: on the 2 shared cores of the reference
  machine more threads made times scatter (see benchmarks/attention_speed.py).

    nice -n 5 python benchmarks/speed.py            # writes docs/results/speed.{json,md}
    nice -n 5 python benchmarks/speed.py --quick    # about a minute, no memory; writes runs/speed_quick.{json,md}
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import accelerate
import torch
from provenance import command_line, machine_info

from cactus import Cactus
from cactus.data import read_subsets
from cactus.encoder import ATTENTION_MODES
from cactus.text import token_batches, token_ids, tokenize_subsets
from cactus.train import Trainer, TrainingConfig

MODES = tuple(ATTENTION_MODES)
LABELS = {mode: mode.upper() for mode in MODES}
LOSS = "augmented_triplet"


# ---- data and setup ---------------------------------------------------------------------------------------------
def load_data(bench: str, family: str, n_test: int):
    folder = Path(bench) / family
    for name in ("train.jsonl", "test.jsonl"):
        if not (folder / name).is_file():
            sys.exit(f"{folder / name} is missing: build the benchmark with `cactus data build --out {bench}`")
    return read_subsets(folder / "train.jsonl"), read_subsets(folder / "test.jsonl")[:n_test]


def make_trainer(mode: str, batch_size: int, output_dir: Path) -> Trainer:
    config = TrainingConfig(loss=LOSS, batch_size=batch_size, progress=False, seed=0)
    trainer = Trainer(Cactus(attention=mode, device="cpu"), config, output_dir)
    trainer.module.train()  # what Trainer.train does before its steps: dropout on
    return trainer


def training_rounds(trainer: Trainer, train, warmup: int, steps: int, repeats: int):
    """(warm-up batches, one list of batches per round): lists of subsets, the trainer's epoch-0 order."""
    batches = trainer.epoch_batches(len(train), 0)
    need = warmup + steps * repeats
    if len(batches) < need:
        raise SystemExit(f"{len(train)} training subsets make {len(batches)} batches, fewer than the {need} needed")
    batches = [[train[i] for i in b] for b in batches[:need]]
    return batches[:warmup], [batches[warmup + r * steps: warmup + (r + 1) * steps] for r in range(repeats)]


def prediction_model(mode: str) -> Cactus:
    return Cactus(attention=mode, device="cpu", threshold=Cactus.from_pretrained("context-free").threshold_)


def token_slots(tokenizer, groups, max_tokens: int) -> dict:
    """Token positions the backbone runs over the batches `groups` (lists of subsets), per mode: NIA and SIA run the
    packed real tokens (SIA adds one summary key per entity in the attention, no position), FIA one sequence per
    subset padded to the batch's longest subset (B x T); "real" counts the tokens themselves."""
    slots = {"nia": 0, "fia": 0, "sia": 0, "real": 0}
    for group in groups:
        batch = tokenize_subsets(tokenizer, [s.texts for s in group], max_tokens)
        per_subset = torch.zeros(batch.entity_mask.numel(), dtype=torch.long).index_add_(
            0, batch.entity_slot, batch.lengths()).view(batch.entity_mask.shape).sum(1)
        slots["nia"] += batch.n_tokens
        slots["sia"] += batch.n_tokens
        slots["fia"] += len(group) * int(per_subset.max())
        slots["real"] += batch.n_tokens
    return slots


def rotated(round_index: int) -> list[str]:
    k = round_index % len(MODES)
    return list(MODES[k:] + MODES[:k])


# ---- memory, in a fresh process ---------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> int:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _status_kb("VmRSS")


def measure_memory(phase: str, mode: str, bench: str, family: str, n_test: int, batch_size: int, warmup: int,
                   steps: int, threads: int) -> dict:
    """Runs in a fresh process: {"work_mib", "process_mib"} of one phase and mode (see the module docstring)."""
    torch.set_num_threads(threads)
    train, test = load_data(bench, family, n_test)
    with tempfile.TemporaryDirectory(prefix="cactus-speed-") as tmp:
        if phase == "train":
            trainer = make_trainer(mode, batch_size, Path(tmp))
            warm, rounds = training_rounds(trainer, train, max(warmup, 1), steps, 1)
            for batch in warm:
                trainer.step(batch)
            before = _reset_peak()
            for batch in rounds[0]:
                trainer.step(batch)
        else:
            model = prediction_model(mode)
            model.predict(test[:2])
            before = _reset_peak()
            model.predict(test)
        peak = _status_kb("VmHWM")
    return {"work_mib": (peak - before) / 1024, "process_mib": peak / 1024}


def memory_in_subprocess(phase: str, mode: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", TOKENIZERS_PARALLELISM="false")
    here = str(Path(__file__).resolve().parent)
    call = (f"b.measure_memory({phase!r}, {mode!r}, {args.bench!r}, {args.family!r}, {args.subsets}, "
            f"{args.batch_size}, {args.warmup}, {args.steps}, {args.threads})")
    code = f"import sys, json; sys.path.insert(0, {here!r}); import speed as b; print(json.dumps({call}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"memory subprocess ({phase}, {mode}) failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- timing -----------------------------------------------------------------------------------------------------
def time_training(args: argparse.Namespace, train) -> dict:
    with tempfile.TemporaryDirectory(prefix="cactus-speed-") as tmp:
        trainers = {mode: make_trainer(mode, args.batch_size, Path(tmp) / mode) for mode in MODES}
        warm, rounds = training_rounds(trainers["nia"], train, args.warmup, args.steps, args.repeats)
        slots = token_slots(trainers["nia"].model.tokenizer, [b for batches in rounds for b in batches],
                            trainers["nia"].model.config.max_tokens)
        for mode in MODES:
            for batch in warm:
                trainers[mode].step(batch)
        step_s = {mode: [] for mode in MODES}  # per round: the step times
        for r, batches in enumerate(rounds):
            for mode in rotated(r):
                times = []
                for batch in batches:
                    start = time.perf_counter()
                    trainers[mode].step(batch)
                    times.append(time.perf_counter() - start)
                step_s[mode].append(times)
            print(f"training round {r + 1}/{args.repeats}: "
                  + ", ".join(f"{m} {sum(step_s[m][-1]):.1f} s" for m in MODES), flush=True)
    subsets = [sum(len(b) for b in batches) for batches in rounds]
    entities = [sum(len(s) for b in batches for s in b) for batches in rounds]
    per_round = {m: [n / sum(t) for n, t in zip(subsets, step_s[m])] for m in MODES}
    median = {m: statistics.median(v) for m, v in per_round.items()}
    return {
        "subsets_per_round": subsets,
        "entities_per_round": entities,
        "token_slots": slots,
        "step_seconds": {m: [[round(x, 4) for x in t] for t in v] for m, v in step_s.items()},
        "subsets_per_s_rounds": per_round,
        "subsets_per_s": median,
        "entities_per_s": {m: statistics.median(n / sum(t) for n, t in zip(entities, step_s[m])) for m in MODES},
        "median_step_s": {m: statistics.median(x for t in v for x in t) for m, v in step_s.items()},
        "ratio_to_nia": {m: median[m] / median["nia"] for m in MODES},
    }


def time_prediction(args: argparse.Namespace, test) -> dict:
    models = {mode: prediction_model(mode) for mode in MODES}
    for model in models.values():
        model.predict(test[:2])
    seconds = {mode: [] for mode in MODES}
    for r in range(args.repeats):
        for mode in rotated(r):
            start = time.perf_counter()
            models[mode].predict(test)
            seconds[mode].append(time.perf_counter() - start)
        print(f"prediction round {r + 1}/{args.repeats}: "
              + ", ".join(f"{m} {seconds[m][-1]:.1f} s" for m in MODES), flush=True)
    entities = sum(len(s) for s in test)
    nia = models["nia"]
    ids, _ = token_ids(nia.tokenizer, [t for s in test for t in s.texts], nia.config.max_tokens)
    ends = list(itertools.accumulate(len(s) for s in test))
    tokens = [sum(map(len, ids[end - len(s): end])) for s, end in zip(test, ends)]
    groups = [[test[i] for i in idx] for idx in token_batches([len(s) for s in test], tokens, nia.batch_tokens)]
    per_round = {m: [entities / t for t in v] for m, v in seconds.items()}
    median = {m: statistics.median(v) for m, v in per_round.items()}
    return {
        "subsets": len(test),
        "entities": entities,
        "token_slots": token_slots(nia.tokenizer, groups, nia.config.max_tokens),
        "seconds": {m: [round(x, 4) for x in v] for m, v in seconds.items()},
        "entities_per_s_rounds": per_round,
        "entities_per_s": median,
        "ratio_to_nia": {m: median[m] / median["nia"] for m in MODES},
    }


# ---- records ----------------------------------------------------------------------------------------------------
def write_markdown(result: dict, path: Path) -> None:
    m, tr, pr, mem = result["machine"], result["training"], result["prediction"], result["memory"]
    s = result["settings"]
    lines = [
        "# Speed per attention mode (CPU)",
        "",
        f"`{result['command']}` ({result['date']}, wall time {result['wall_s']:.0f} s)",
        "",
        f"{m['cpu']} ({m['cpu_count']} CPUs, shared with other jobs), torch threads: {m['torch_threads']}, nice "
        f"{m['nice']}; Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, accelerate "
        f"{m['accelerate']}, cactus {m['cactus']}. Load average at start / end: {m['loadavg_start']} / "
        f"{m['loadavg_end']}.",
        "",
        f"Default model (all-MiniLM-L6-v2, 64 tokens per entity), family `{result['family']}`. Training: "
        f"`Trainer.step` (one AdamW step of the {LOSS} loss, train mode), batches of {s['batch_size']} "
        f"training subsets, {s['warmup']} warm-up step(s) per mode, then {s['repeats']} rounds of {s['steps']} steps "
        f"(mean {statistics.mean(tr['entities_per_round']) / statistics.mean(tr['subsets_per_round']):.1f} entities "
        f"per subset). Prediction: `Cactus.predict` on the first {pr['subsets']} test subsets ({pr['entities']} "
        f"entities), {s['repeats']} rounds. Modes interleaved in one process, order rotated per round; medians over "
        "rounds, ratios of medians. Memory: each (phase, mode) in a fresh process; *work* = peak RSS growth during "
        "one round's steps or one predict call, *process* = the process's peak RSS.",
        "",
        "| mode | train subsets / s | train / NIA | train step s (median) | predict entities / s | predict / NIA "
        "| train work MiB | train process MiB | predict work MiB | predict process MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        lines.append(
            f"| {LABELS[mode]} | {tr['subsets_per_s'][mode]:.2f} | {tr['ratio_to_nia'][mode]:.2f} "
            f"| {tr['median_step_s'][mode]:.2f} | {pr['entities_per_s'][mode]:.0f} | {pr['ratio_to_nia'][mode]:.2f} |"
            + "".join(f" {mib(mem[phase][mode][key])} |" for phase in ("train", "predict")
                      for key in ("work_mib", "process_mib"))
        )
    lines += ["", "Token positions the backbone runs (NIA and SIA: every entity padded to its batch's longest entity; "
              "FIA: one packed sequence per subset, padded to its batch's longest subset), against the real tokens:",
              "", "| phase | real tokens | NIA / SIA | FIA |", "|---|---:|---:|---:|"]
    for phase, record in (("training (all timed steps)", tr), ("prediction (one call)", pr)):
        t = record["token_slots"]
        lines.append(f"| {phase} | {t['real']} | {t['nia']} | {t['fia']} |")
    lines += ["", "Per round (subsets/s in training, entities/s in prediction):", ""]
    for mode in MODES:
        lines.append(f"- {LABELS[mode]}: training "
                     + ", ".join(f"{x:.2f}" for x in tr["subsets_per_s_rounds"][mode])
                     + "; prediction " + ", ".join(f"{x:.0f}" for x in pr["entities_per_s_rounds"][mode]))
    path.write_text("\n".join(lines) + "\n")


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="data/benchmark")
    ap.add_argument("--family", default="clinc_mixed")
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps per mode and round")
    ap.add_argument("--repeats", type=int, default=3, help="rounds, in training and in prediction")
    ap.add_argument("--subsets", type=int, default=50, help="first N test subsets for prediction")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps per mode")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--quick", action="store_true",
                    help="a check in about a minute: 2 steps, 2 rounds, 10 subsets, 1 warm-up step, no memory")
    ap.add_argument("--out", default=None, help="prefix of the records (default docs/results/speed, "
                                                "runs/speed_quick with --quick)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats, args.subsets, args.warmup, args.no_memory = 2, 2, 10, 1, True
    out = Path(args.out or ("runs/speed_quick" if args.quick else "docs/results/speed"))

    start, load_start = time.perf_counter(), loadavg()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    train, test = load_data(args.bench, args.family, args.subsets)
    training = time_training(args, train)
    gc.collect()
    prediction = time_prediction(args, test)
    memory = {"train": {}, "predict": {}}
    if not args.no_memory:
        for phase in memory:
            for mode in MODES:
                memory[phase][mode] = memory_in_subprocess(phase, mode, args)
                print(f"memory {phase} {mode}: {memory[phase][mode]}", flush=True)
    else:
        memory = {phase: {m: {"work_mib": None, "process_mib": None} for m in MODES} for phase in memory}

    result = {
        "command": command_line(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "family": args.family,
        "settings": {"steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
                     "batch_size": args.batch_size, "loss": LOSS, "test_subsets": args.subsets,
                     "threshold": Cactus.from_pretrained("context-free").threshold_, "quick": args.quick},
        "training": training,
        "prediction": prediction,
        "memory": memory,
        "wall_s": time.perf_counter() - start,
        "machine": machine_info(nice=os.nice(0), accelerate=accelerate.__version__, loadavg_start=load_start,
                                loadavg_end=loadavg()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out.with_suffix(".md"))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
