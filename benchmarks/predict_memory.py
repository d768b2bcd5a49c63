"""Peak memory of `cactus predict` against the input's length: streaming means it should not grow with the file.

For each size in --sizes, a synthetic gzip JSONL file of that many subsets (2 to 8 entities each, 3 to 12 words from
a fixed vocabulary, seeded) is clustered by the installed `cactus predict` in a subprocess, into a gzip JSONL output;
its peak resident memory (the child's ru_maxrss) and wall time are recorded. The growth that matters comes from the
reading, chunking and writing, not from the encoder's size, so by default the model is a tiny random BERT (hidden 32,
2 layers, the default model's tokenizer) saved as a cactus model folder, which makes 10^5 subsets take minutes on
two cores; `--model default` measures the shipped model (slower: about 300 entities/s).

    python benchmarks/predict_memory.py     # writes docs/benchmarks/predict_memory.{json,md}
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import command_line, machine_info, write_record

from cactus.data import Subset, write_subsets

VOCABULARY = ("usb cable charger phone case blue red fast hub adapter steel pan pot lid knife fork spoon cup mug "
              "glass lamp desk chair table sofa bed pillow sheet towel soap brush comb mirror shelf box bag "
              "book pen pencil paper card wallet watch ring shoe boot sock shirt coat hat glove scarf").split()


def synthetic_file(path: Path, n: int, seed: int = 0) -> int:
    """Write n subsets to `path` as they are made (never all in memory); return the number of entities."""
    rng = np.random.default_rng(seed)
    entities = 0

    def subsets():
        nonlocal entities
        for k in range(n):
            size = int(rng.integers(2, 9))
            entities += size
            yield Subset(f"q{k}", [" ".join(rng.choice(VOCABULARY, size=int(rng.integers(3, 13))))
                                   for _ in range(size)])

    write_subsets(path, subsets())
    return entities


def tiny_model(folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from cactus import Cactus
    from cactus.encoder.backbone import resolve_backbone

    backbone = folder / "tiny_bert"
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("all-MiniLM-L6-v2"), local_files_only=True)
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         vocab_size=tokenizer.vocab_size)).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    model = folder / "tiny"
    Cactus(backbone=str(backbone), attention="sia", threshold=0.9, device="cpu").save_pretrained(model)
    return model


def run_predict(model: str, source: Path, out: Path, chunk: int) -> dict:
    cactus = shutil.which("cactus")
    command = [cactus] if cactus else [sys.executable, "-m", "cactus.cli"]
    start = time.perf_counter()
    proc = subprocess.Popen([*command, "predict", str(source), "-o", str(out), "--model", model,
                             "--chunk-subsets", str(chunk), "-q"])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"cactus predict failed with status {status}")
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--model", default="tiny", help="'tiny' (a tiny random BERT) or any --model of cactus")
    parser.add_argument("--chunk-subsets", type=int, default=1000)
    parser.add_argument("--out", default="docs/benchmarks/predict_memory")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="cactus-memory-") as tmp:
        tmp = Path(tmp)
        model = str(tiny_model(tmp)) if args.model == "tiny" else args.model
        for n in args.sizes:
            source = tmp / f"in_{n}.jsonl.gz"
            entities = synthetic_file(source, n)
            result = run_predict(model, source, tmp / f"out_{n}.jsonl.gz", args.chunk_subsets)
            rows.append({"subsets": n, "entities": entities, "input_bytes": source.stat().st_size, **result})
            print(rows[-1], flush=True)
    base = rows[0]
    for row in rows:
        row["rss_ratio"] = round(row["peak_rss_mib"] / base["peak_rss_mib"], 3)
    record = {"model": args.model, "chunk_subsets": args.chunk_subsets, "rows": rows,
              "command": command_line(),
              "machine": machine_info()}
    tiny = " (a tiny random BERT: what grows with the file is the I/O path, not the encoder)"
    lines = [
        "# Peak memory of `cactus predict` against the input's length", "",
        f"Model: {args.model}{tiny if args.model == 'tiny' else ''}; --chunk-subsets {args.chunk_subsets}; gzip JSONL "
        f"in and out. Command: `{record['command']}`.", "",
        "| subsets | entities | input (MB) | wall (s) | peak RSS (MiB) | ratio to the first |",
        "|---|---|---|---|---|---|",
        *[f"| {r['subsets']:,} | {r['entities']:,} | {r['input_bytes'] / 1e6:.1f} | {r['seconds']} | "
          f"{r['peak_rss_mib']} | {r['rss_ratio']} |" for r in rows], "",
    ]
    write_record(args.out, record, "\n".join(lines))


if __name__ == "__main__":
    main()
