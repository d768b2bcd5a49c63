"""Training cost of the precision and memory options: bf16 autocast, gradient accumulation and a LoRA adapter against
fp32 with every weight trained.

Each variant is one `cactus train` in its own process, run one after another on the same data and seed: the
context-free default encoder (all-MiniLM-L6-v2) with SIA attention, fine-tuned for --steps steps on clinc_intent's
benchmark training subsets (from `cactus data build`), validated once at the end on the first --val subsets of its
validation split. Recorded per variant: the median seconds per optimizer step (from train_log.jsonl, the first
3 steps left out as warm-up), the child's peak resident memory, and the validation AMI at the tuned threshold.
The adapter variants use the shipped default's recipe (rank 16 on every linear layer, learning rate 5e-4).
bf16 pays only where the CPU has bfloat16 instructions (AVX512-BF16 or AMX); the record lists the CPU's flags.

    python benchmarks/train_precision.py     # writes docs/benchmarks/train_precision.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import command_line, machine_info, write_record

# (name, mixed precision, subsets per step, parts per step, LoRA rank: 0 = every weight)
VARIANTS = [
    ("fp32", "no", 4, 1, 0),
    ("bf16", "bf16", 4, 1, 0),
    ("LoRA r16", "no", 4, 1, 16),
    ("fp32, batch 16", "no", 16, 1, 0),
    ("fp32, batch 16 in 4 parts", "no", 16, 4, 0),
    ("bf16, batch 16 in 4 parts", "bf16", 16, 4, 0),
    ("LoRA r16, batch 16", "no", 16, 1, 16),
]
LORA = ["--lora-targets", "query,key,value,dense", "--lr", "5e-4"]


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def train(variant: tuple, data: Path, val: Path, out: Path, steps: int) -> dict:
    name, precision, batch, parts, rank = variant
    cactus = shutil.which("cactus")
    command = [*([cactus] if cactus else [sys.executable, "-m", "cactus.cli"]), "train",
               "--train", str(data / "train.jsonl"), "--val", str(val), "--out", str(out),
               "--model", "context-free", "--attention", "sia", "--max-steps", str(steps), "--eval-every", str(steps),
               "--log-every", "1", "--batch-size", str(batch), "--grad-accumulation", str(parts),
               "--mixed-precision", precision, "--lora-rank", str(rank), *(LORA if rank else []), "--seed", "0", "-q"]
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{name}: cactus train failed with status {status}")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    times = np.array([r["elapsed_s"] for r in log if r["type"] == "loss"])
    (last_eval,) = [r for r in log if r["type"] == "eval"]
    return {"variant": name, "mixed_precision": precision, "batch_size": batch, "grad_accumulation": parts,
            "lora_rank": rank,
            "median_step_s": round(float(np.median(np.diff(times)[3:])), 3),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "val_ami": round(last_eval["ami"], 4),
            "wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/benchmark/clinc_intent")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--out", default="docs/benchmarks/train_precision")
    args = parser.parse_args()

    data, rows = Path(args.data), []
    with tempfile.TemporaryDirectory(prefix="cactus-precision-") as tmp:
        val = Path(tmp) / "val.jsonl"
        val.write_text("".join((data / "val.jsonl").read_text().splitlines(keepends=True)[: args.val]))
        for k, variant in enumerate(VARIANTS):
            rows.append(train(variant, data, val, Path(tmp) / f"run{k}", args.steps))
            print(rows[-1], flush=True)
    base = {r["batch_size"]: r for r in rows
            if r["mixed_precision"] == "no" and r["grad_accumulation"] == 1 and not r["lora_rank"]}
    for r in rows:
        r["time_ratio"] = round(r["median_step_s"] / base[r["batch_size"]]["median_step_s"], 3)
        r["rss_ratio"] = round(r["peak_rss_mib"] / base[r["batch_size"]]["peak_rss_mib"], 3)
    record = {"data": args.data, "steps": args.steps, "val_subsets": args.val, "rows": rows,
              "cpu_bf16_flags": cpu_flags(),
              "command": command_line(), "machine": machine_info()}
    lines = [
        "# Training cost of bf16 autocast, gradient accumulation and a LoRA adapter", "",
        f"`cactus train --model context-free --attention sia` on {args.data}, {args.steps} steps each, seed 0, each "
        f"variant in its own process, one after another; validation on its first {args.val} validation subsets once "
        f"at the end. CPU bfloat16 flags: {', '.join(record['cpu_bf16_flags']) or 'none'}. "
        f"Command: `{record['command']}`.", "",
        "| variant | median s / step | vs fp32, same batch | peak RSS (MiB) | vs fp32, same batch | val AMI |",
        "|---|---|---|---|---|---|",
        *[f"| {r['variant']} | {r['median_step_s']} | {r['time_ratio']}x | {r['peak_rss_mib']} | {r['rss_ratio']}x | "
          f"{r['val_ami']} |" for r in rows], "",
    ]
    write_record(args.out, record, "\n".join(lines))


if __name__ == "__main__":
    main()
