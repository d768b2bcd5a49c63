"""Throughput of `Cactus.predict` with the default model on the CPU, beside the bare encoder on the same texts.

Both run in one process, interleaved, on the same subsets; medians over repeats. The bare encoder is the stock
Hugging Face model: tokenise all texts, run it in batches, mean-pool and normalise (what any embedding pipeline
does). `predict` adds subset batching, similarity matrices and average-link clustering on top.

    python benchmarks/predict_throughput.py --subsets data/benchmark/clinc_mixed/test.jsonl --limit 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from provenance import machine_info

from cactus import Cactus
from cactus.data import read_subsets
from cactus.encoder import load_backbone
from cactus.encoder.set_encoder import masked_mean


def bare_encode(model, tokenizer, texts: list[str], batch_size: int, max_tokens: int) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i: i + batch_size], padding=True, truncation=True, max_length=max_tokens,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            out.append(torch.nn.functional.normalize(masked_mean(hidden, enc["attention_mask"]), dim=-1))
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subsets", required=True, help="subsets file (labels ignored)")
    ap.add_argument("--limit", type=int, default=200, help="first N subsets")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-entities", type=int, default=512)
    ap.add_argument("--out", default="docs/benchmarks/predict_throughput.json")
    args = ap.parse_args()

    subsets = read_subsets(args.subsets)[: args.limit]
    texts = [t for s in subsets for t in s.texts]
    model = Cactus.from_pretrained("default", batch_entities=args.batch_entities, device="cpu")
    bare, tok = load_backbone("all-MiniLM-L6-v2")
    bare.eval()
    max_tokens = model.config.max_tokens

    model.predict(subsets[:10])  # warm-up both paths
    bare_encode(bare, tok, texts[:256], args.batch_entities, max_tokens)
    t_pred, t_bare = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        bare_encode(bare, tok, texts, args.batch_entities, max_tokens)
        t_bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.predict(subsets)
        t_pred.append(time.perf_counter() - start)

    n = len(texts)
    result = {
        "command": f"python benchmarks/predict_throughput.py --subsets {args.subsets} --limit {args.limit} "
                   f"--repeats {args.repeats} --batch-entities {args.batch_entities}",
        "subsets": len(subsets),
        "entities": n,
        "repeats": args.repeats,
        "predict_seconds": t_pred,
        "bare_encoder_seconds": t_bare,
        "predict_entities_per_s": n / statistics.median(t_pred),
        "bare_encoder_entities_per_s": n / statistics.median(t_bare),
        "predict_over_bare_time": statistics.median(t_pred) / statistics.median(t_bare),
        "machine": machine_info(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n} entities in {len(subsets)} subsets: predict {result['predict_entities_per_s']:.0f} entities/s, "
          f"bare encoder {result['bare_encoder_entities_per_s']:.0f} entities/s, "
          f"time ratio {result['predict_over_bare_time']:.2f}")


if __name__ == "__main__":
    main()
