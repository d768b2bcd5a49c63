"""Forward time and peak memory of the three attention modes (NIA, SIA, FIA) on one subset of n entities.

The default model on the CPU, eval mode, torch.no_grad, a batch of one subset of n entities of exactly 32 tokens
([CLS], 30 random word-piece ids, [SEP]). FIA runs twice: with the backbone's stock attention (sdpa: on the CPU a
flash-attention kernel that never holds the (nL)^2 scores) and with the "eager" attention, which materialises them as
the textbook implementation does (and as a T5 backbone always must: its relative position bias is a dense
(heads, nL, nL) tensor added to the scores).
- Time: median of --repeats forwards after one warm-up, the modes interleaved in this one process, so that load from
  other work on the machine hits them alike.
- Peak memory: every (mode, n) in a fresh subprocess: load the model, build the batch, one warm-up forward on a
  2-entity subset, release freed heap pages (malloc_trim) and reset the kernel's peak-RSS mark
  (/proc/self/clear_refs), then one forward: peak = VmHWM after - VmRSS before. glibc's mmap threshold is pinned at
  64 KiB so that large tensors come and go with the RSS. This is the forward's own resident memory: activations,
  attention scores, kernel workspaces.
- Threads: one by default. The reference machine has 2 cores shared with other work; with 2 torch threads the OpenMP
  workers waited on each other behind the other processes and times scattered tenfold, with one they were stable.

    python benchmarks/attention_speed.py            # writes docs/benchmarks/attention_speed.{json,md,png}
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from provenance import command_line, machine_info

from cactus.encoder import ATTENTION_MODES, SetEncoder, attention_implementation, load_backbone
from cactus.text.tokenize import SubsetBatch

TOKENS = 32
MODES = (*ATTENTION_MODES, "fia_eager")
LABELS = {**{mode: mode.upper() for mode in ATTENTION_MODES}, "fia_eager": "FIA eager"}


def subset_batch(tokenizer, n: int, seed: int = 0) -> SubsetBatch:
    """One subset of n entities of exactly TOKENS tokens: [CLS] + random word pieces + [SEP]."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, tokenizer.vocab_size, (n, TOKENS), generator=g)
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    return SubsetBatch.from_token_ids(ids.tolist(), [n])


def runner(model, mode: str):
    """A callable batch -> embeddings for `mode`; "fia_eager" is FIA with the backbone's eager attention."""
    if mode != "fia_eager":
        return SetEncoder(model, mode)
    encoder = SetEncoder(model, "fia")

    def run(batch):
        with attention_implementation(model, "eager"):
            return encoder(batch)

    return run


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure_memory(backbone: str, mode: str, n: int, threads: int) -> float:
    """Runs in a fresh process: the forward's peak resident memory in MiB (see the module docstring)."""
    torch.set_num_threads(threads)
    model, tokenizer = load_backbone(backbone)
    run = runner(model.eval(), mode)
    batch = subset_batch(tokenizer, n)
    with torch.no_grad():
        run(subset_batch(tokenizer, 2))
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _status_kb("VmRSS")
        run(batch)
        return (_status_kb("VmHWM") - before) / 1024


def memory_in_subprocess(backbone: str, mode: str, n: int, threads: int) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", TOKENIZERS_PARALLELISM="false")
    here = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {here!r}); import attention_speed as b; "
            f"print(b.measure_memory({backbone!r}, {mode!r}, {n}, {threads}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def time_modes(runners: dict, batch: SubsetBatch, repeats: int) -> dict[str, list[float]]:
    times = {mode: [] for mode in runners}
    with torch.no_grad():
        for run in runners.values():
            run(batch)  # warm-up
        for _ in range(repeats):
            for mode, run in runners.items():
                start = time.perf_counter()
                run(batch)
                times[mode].append(time.perf_counter() - start)
    return times


def matmul_macs(config, n: int) -> dict[str, float]:
    """Multiply-accumulates of the encoder layers' matrix products for one subset (projections + attention)."""
    T, D, layers = n * TOKENS, config.hidden_size, config.num_hidden_layers
    projections = layers * T * (4 * D * D + 2 * D * config.intermediate_size)
    keys_per_query = {"nia": TOKENS, "sia": TOKENS + n, "fia": T, "fia_eager": T}
    return {mode: projections + layers * 2 * T * k * D for mode, k in keys_per_query.items()}


def write_markdown(result: dict, path: Path) -> None:
    m = result["machine"]
    rows = result["rows"]
    lines = [
        "# Attention modes: forward time and peak memory (CPU)",
        "",
        f"`{result['command']}`",
        "",
        f"{m['cpu']} ({m['cpu_count']} CPUs), torch threads: {m['torch_threads']}; torch {m['torch']}, "
        f"transformers {m['transformers']}, Python {m['python']}.",
        f"Backbone {result['backbone']} ({m['layers']} layers, {m['hidden']} wide), one subset of n entities x "
        f"{TOKENS} tokens, eval, no_grad. Time: median of {result['repeats']} forwards after a warm-up, modes "
        "interleaved in one process. Memory: peak RSS growth during one forward, each in a fresh process. FIA: stock "
        "sdpa attention; FIA eager: the stock eager attention, which holds the (nL)^2 scores (see the script).",
        "",
        "| n | " + " | ".join(f"{LABELS[k]} ms" for k in MODES)
        + " | SIA / NIA time | FIA / SIA time | FIA eager / SIA time | "
        + " | ".join(f"{LABELS[k]} MiB" for k in MODES) + " | FIA / SIA memory | FIA eager / SIA memory |",
        "|" + "---:|" * (1 + 2 * len(MODES) + 5),
    ]
    for row in rows:
        t, mem = row["time_ms"], row["peak_mib"]
        lines.append(
            f"| {row['n']} | " + " | ".join(f"{t[k]:.1f}" for k in MODES)
            + f" | {t['sia'] / t['nia']:.2f} | {t['fia'] / t['sia']:.2f} | {t['fia_eager'] / t['sia']:.2f} | "
            + " | ".join(f"{mem[k]:.1f}" for k in MODES)
            + f" | {mem['fia'] / mem['sia']:.2f} | {mem['fia_eager'] / mem['sia']:.2f} |"
        )
    lines += [
        "",
        "Matrix-product work per forward (multiply-accumulates, G; projections + attention), which bounds the time "
        "ratios:",
        "",
        "| n | NIA | SIA | FIA | FIA / SIA |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        g = {k: v / 1e9 for k, v in row["matmul_macs"].items()}
        lines.append(f"| {row['n']} | {g['nia']:.1f} | {g['sia']:.1f} | {g['fia']:.1f} | {g['fia'] / g['sia']:.2f} |")
    path.write_text("\n".join(lines) + "\n")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [row["n"] for row in result["rows"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in [(axes[0], "time_ms", "forward time (ms)"), (axes[1], "peak_mib", "peak memory (MiB)")]:
        for mode in MODES:
            ax.plot(ns, [row[key][mode] for row in result["rows"]], marker="o", label=LABELS[mode])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"entities per subset (x {TOKENS} tokens)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    threads = result["machine"]["torch_threads"]
    fig.suptitle(f"{result['backbone']} on CPU (torch threads: {threads}), one subset per batch")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--out", default="docs/benchmarks/attention_speed")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    model, tokenizer = load_backbone(args.backbone)
    runners = {mode: runner(model.eval(), mode) for mode in MODES}  # one shared backbone
    rows = []
    for n in args.sizes:
        times = time_modes(runners, subset_batch(tokenizer, n), args.repeats)
        memory = {mode: memory_in_subprocess(args.backbone, mode, n, args.threads) for mode in MODES}
        rows.append({
            "n": n,
            "time_ms": {m: 1000 * statistics.median(t) for m, t in times.items()},
            "time_ms_all": {m: [round(1000 * x, 2) for x in t] for m, t in times.items()},
            "peak_mib": memory,
            "matmul_macs": matmul_macs(model.config, n),
        })
        print(json.dumps({k: rows[-1][k] for k in ("n", "time_ms", "peak_mib")}), flush=True)

    result = {
        "command": command_line(),
        "backbone": args.backbone,
        "machine": machine_info(layers=model.config.num_hidden_layers, hidden=model.config.hidden_size),
        "tokens_per_entity": TOKENS,
        "repeats": args.repeats,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out.with_suffix(".md"))
    plot(result, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
