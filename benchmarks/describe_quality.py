"""Are the cluster descriptions of `predict --describe` right, and what do they cost?

A model (--model, the shipped default unless named) on the first --per-family test subsets of every benchmark family
(data/benchmark, built by `cactus data build`), its own cut. Per family, and pooled over all families' entities:

- representative: over predicted clusters of two or more entities, how often the representative (medoid) carries the
  cluster's majority gold label (ties: any of the most frequent labels counts);
- cohesion: an entity is wrong when its B-cubed F1 is below 0.5 (precision: the share of its predicted cluster with its
  gold label; recall: the share of its gold cluster inside its predicted cluster). Error rate of the entities in the
  lowest cohesion decile (over all entities of the family's subsets, ties broken by entity order) against the rest.
- cost: `Cactus.describe` against `Cactus.predict` on the same subsets of --time-family, alternated, --repeats rounds;
  reported: the ratio of medians.

    python benchmarks/describe_quality.py     # writes docs/benchmarks/describe_quality.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from provenance import machine_info, write_record

from cactus import Cactus
from cactus.data import read_subsets


def bcubed_f1(gold: list, pred: np.ndarray) -> np.ndarray:
    """(n,) every entity's B-cubed F1."""
    gold = np.asarray([str(g) for g in gold])
    same_pred = pred[:, None] == pred[None, :]
    same_gold = gold[:, None] == gold[None, :]
    both = (same_pred & same_gold).sum(1)
    precision, recall = both / same_pred.sum(1), both / same_gold.sum(1)
    return 2 * precision * recall / (precision + recall)


def described(model: Cactus, subsets) -> list[tuple]:
    """(subset, its description) pairs."""
    return list(zip(subsets, model.describe(subsets)))


def scores(pairs: list[tuple]) -> dict:
    right_rep, multi = 0, 0
    cohesion, wrong = [], []
    for s, d in pairs:
        for c in d.clusters:
            if c.size < 2:
                continue
            counts = Counter(str(s.labels[i]) for i in c.members)
            top = max(counts.values())
            right_rep += counts[str(s.labels[c.representative])] == top
            multi += 1
        cohesion.extend(d.cohesion.tolist())
        wrong.extend((bcubed_f1(s.labels, d.cluster_ids) < 0.5).tolist())
    order = np.argsort(np.asarray(cohesion), kind="stable")
    low = np.zeros(len(order), dtype=bool)
    low[order[: len(order) // 10]] = True
    wrong = np.asarray(wrong)
    low_rate, rest_rate = float(wrong[low].mean()), float(wrong[~low].mean())
    return {
        "subsets": len(pairs), "entities": len(order), "clusters_of_2_or_more": multi,
        "representative_has_majority_label": right_rep / multi,
        "error_rate_lowest_cohesion_decile": low_rate, "error_rate_rest": rest_rate,
        "error_ratio": low_rate / rest_rate if rest_rate else None,
    }


def cost(model: Cactus, subsets, repeats: int) -> dict:
    model.describe(subsets[:5])
    t_pred, t_desc = [], []
    for r in range(repeats):
        calls = [("predict", model.predict, t_pred), ("describe", model.describe, t_desc)]
        for _, call, times in (calls if r % 2 == 0 else calls[::-1]):
            start = time.perf_counter()
            call(subsets)
            times.append(time.perf_counter() - start)
    return {"predict_seconds": t_pred, "describe_seconds": t_desc,
            "describe_over_predict": statistics.median(t_desc) / statistics.median(t_pred)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="data/benchmark")
    ap.add_argument("--model", default="default")
    ap.add_argument("--per-family", type=int, default=200)
    ap.add_argument("--time-family", default="clinc_intent")
    ap.add_argument("--time-subsets", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/benchmarks/describe_quality")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = Cactus.from_pretrained(args.model, device="cpu")
    names = sorted(p.parent.name for p in Path(args.bench).glob("*/test.jsonl"))
    pairs = {f: described(model, read_subsets(Path(args.bench) / f / "test.jsonl")[: args.per_family]) for f in names}
    families = {f: scores(p) for f, p in pairs.items()}
    families["all (pooled)"] = scores([pair for p in pairs.values() for pair in p])
    for f, r in families.items():
        print(f, json.dumps(r))
    timing = cost(model, read_subsets(Path(args.bench) / args.time_family / "test.jsonl")[: args.time_subsets],
                  args.repeats)
    record = {"command": "python benchmarks/describe_quality.py", "args": vars(args),
              "cut": model.resolve_cut(None, None)[0].describe(), "families": families,
              "cost": timing, "machine": machine_info()}
    lines = [
        "# Cluster descriptions: representatives, cohesion, cost", "",
        f"`{record['command']}`; the model `{args.model}` and its cut ({record['cut']}), the first {args.per_family} "
        "test subsets per family.",
        "", "| family | clusters (size >= 2) | representative has the majority label | error rate, lowest cohesion "
        "decile | error rate, rest | ratio |", "|---|---|---|---|---|---|",
    ]
    for f, r in families.items():
        lines.append(f"| {f} | {r['clusters_of_2_or_more']} | {r['representative_has_majority_label']:.3f} | "
                     f"{r['error_rate_lowest_cohesion_decile']:.3f} | {r['error_rate_rest']:.3f} | "
                     f"{r['error_ratio']:.2f} |")
    lines += ["", f"`describe` / `predict` time on {args.time_subsets} {args.time_family} test subsets (median of "
              f"{args.repeats}, alternated): {timing['describe_over_predict']:.3f}.", ""]
    write_record(args.out, record, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
