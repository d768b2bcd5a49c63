"""Where an exported graph spends its time: onnxruntime's own per-operator profile of the int8 graphs of the shipped
context-free model (NIA) and default model (SIA), side by side.

Each model is exported with `Cactus.export(..., quantize="int8")` into a temporary folder and loaded with
`Cactus.from_pretrained`; its onnxruntime session is then opened again with profiling on (`OnnxEncoder(...,
profile=...)`: the same file and session settings) and `model.embed` runs on the first --subsets test subsets of
--family after a warm-up call. Kernel time is summed per operator type over every node; the SIA - NIA column is what
context costs per operator.

    python benchmarks/onnx_profile.py     # about 2 minutes on 2 cores; docs/benchmarks/onnx_profile.{json,md}
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

from provenance import command_line, machine_info, write_record

from cactus import Cactus
from cactus.data import read_subsets
from cactus.encoder.onnx import OnnxEncoder

MODELS = {"NIA": "context-free", "SIA": "default"}


def profile(name: str, subsets: list, folder: Path) -> dict:
    """Seconds of one plain `embed` pass and of the profiled one, and kernel microseconds per operator type."""
    Cactus.from_pretrained(name, device="cpu").export(folder, quantize="int8")
    model = Cactus.from_pretrained(folder)
    model.embed(subsets[:20])  # warm-up
    start = time.perf_counter()
    model.embed(subsets)
    plain = time.perf_counter() - start
    encoder = model.encoder
    # the same file and session settings, profiled
    encoder.session = OnnxEncoder(encoder.file, encoder.attention, profile=str(folder / "profile")).session
    model.embed(subsets[:20])
    start = time.perf_counter()
    model.embed(subsets)
    profiled = time.perf_counter() - start
    events = json.loads(Path(encoder.session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    return {"seconds": plain, "seconds_profiled": profiled, "kernel_us": dict(per_op)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=Path("data/benchmark"))
    ap.add_argument("--family", default="clinc_intent")
    ap.add_argument("--subsets", type=int, default=200)
    ap.add_argument("--out", default="docs/benchmarks/onnx_profile")
    args = ap.parse_args()
    subsets = read_subsets(args.bench / args.family / "test.jsonl")[: args.subsets]
    entities = sum(map(len, subsets))
    with tempfile.TemporaryDirectory(prefix="cactus-onnx-profile-") as tmp:
        results = {mode: profile(name, subsets, Path(tmp) / mode) for mode, name in MODELS.items()}
    record = {"command": command_line(), "args": vars(args) | {
        "bench": str(args.bench)}, "entities": entities, "results": results, "machine": machine_info()}
    nia, sia = (results[m]["kernel_us"] for m in MODELS)
    total = {m: sum(r["kernel_us"].values()) for m, r in results.items()}
    ops = sorted(set(nia) | set(sia), key=lambda op: -(sia.get(op, 0) + nia.get(op, 0)))
    lines = ["# Where the exported int8 graphs spend their time", "", f"`{record['command']}`: the first "
             f"{args.subsets} test subsets of {args.family} ({entities} entities), `model.embed` at the exported "
             "model's default tokens per call; onnxruntime's kernel time per operator type, summed over nodes.", "",
             "| | NIA (context-free) | SIA (default) |", "|---|---:|---:|",
             f"| entities/s, unprofiled pass | {entities / results['NIA']['seconds']:.0f} | "
             f"{entities / results['SIA']['seconds']:.0f} |",
             f"| kernel time, ms | {total['NIA'] / 1000:.0f} | {total['SIA'] / 1000:.0f} |", "",
             "| operator | NIA ms | share | SIA ms | share | SIA - NIA ms |", "|---|---:|---:|---:|---:|---:|"]
    for op in ops:
        a, b = nia.get(op, 0) / 1000, sia.get(op, 0) / 1000
        if max(a, b) < 0.005 * max(total.values()) / 1000:
            continue
        lines.append(f"| {op} | {a:.0f} | {100 * a / (total['NIA'] / 1000):.1f}% | {b:.0f} | "
                     f"{100 * b / (total['SIA'] / 1000):.1f}% | {b - a:+.0f} |")
    lines.append("")
    write_record(args.out, record, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
