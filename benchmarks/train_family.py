"""Train the default encoder on one benchmark family and compare it with the pretrained baseline on that family.

Trains with `cactus.train.Trainer` (validation-tuned threshold, best checkpoint), then scores the test subsets at the
model's own stored threshold, beside the pretrained baseline at its validation-tuned threshold (from
docs/results/baseline.json, same test subsets). Writes a JSON record, a Markdown summary and a plot of the
validation objective and s0 over training.

    python benchmarks/train_family.py --family clinc_mixed --attention sia --epochs 2
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import date
from pathlib import Path

from provenance import machine_info

from cactus import Cactus
from cactus.data import read_subsets
from cactus.encoder import ATTENTION_MODES
from cactus.evaluate import evaluate_predictions
from cactus.train import TrainingConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="data/benchmark")
    ap.add_argument("--family", default="clinc_mixed")
    ap.add_argument("--attention", default="sia", choices=tuple(ATTENTION_MODES))
    ap.add_argument("--loss", default="augmented_triplet")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--train-subsets", type=int, default=None, help="use the first N training subsets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="runs/train", help="where checkpoints and logs go")
    ap.add_argument("--out", default=None,
                    help="prefix of the result files (default docs/results/train_<family>_<attention>)")
    args = ap.parse_args()

    name = f"{args.family}_{args.attention}_{args.loss}"
    out = Path(args.out or f"docs/results/train_{name}")
    bench = Path(args.bench) / args.family
    train = read_subsets(bench / "train.jsonl")[: args.train_subsets]
    val, test = read_subsets(bench / "val.jsonl"), read_subsets(bench / "test.jsonl")

    start = time.perf_counter()
    model = Cactus(attention=args.attention, device="cpu")
    config = TrainingConfig(loss=args.loss, epochs=args.epochs, max_steps=args.max_steps, eval_every=args.eval_every,
                            seed=args.seed)
    model.fit(train, val, config=config, output_dir=Path(args.runs) / name)
    summary = model.training_summary_
    train_seconds = time.perf_counter() - start

    report = evaluate_predictions(test, model.predict(test, progress=True))
    baseline = json.loads(Path("docs/results/baseline.json").read_text())["families"].get(args.family)
    record = {
        "command": "python " + " ".join(sys.argv),
        "family": args.family, "attention": args.attention, "loss": args.loss,
        "training_config": config.to_dict(), "train_subsets": len(train),
        "training_summary": summary,
        "threshold": model.threshold_, "neutral": model.config.neutral,
        "test": {m: s["mean"] for m, s in report["summary"].items()},
        "test_ci": {m: [s["ci_low"], s["ci_high"]] for m, s in report["summary"].items()},
        "baseline_test_at_own_threshold": baseline and baseline["test_at_own_threshold"],
        "baseline_own_threshold": baseline and baseline["own_threshold"],
        "train_seconds": train_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "date": date.today().isoformat(),
        "machine": machine_info(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    log = [json.loads(line) for line in (Path(args.runs) / name / "train_log.jsonl").read_text().splitlines()]
    plot(log, out.with_suffix(".png"), name)
    b = record["baseline_test_at_own_threshold"] or {}
    text = (f"`{record['command']}` ({record['date']}, {train_seconds / 60:.0f} min training on "
            f"{record['machine']['torch_threads']} CPU threads)\n\n"
            f"| model | threshold | test AMI | test ARI |\n|---|---|---|---|\n"
            f"| pretrained baseline (NIA), own tuned threshold | {record['baseline_own_threshold']} | "
            f"{b.get('ami', float('nan')):.3f} | {b.get('ari', float('nan')):.3f} |\n"
            f"| trained {args.attention.upper()} + {args.loss}, stored threshold | {model.threshold_:.2f} | "
            f"{record['test']['ami']:.3f} | {record['test']['ari']:.3f} |\n")
    out.with_suffix(".md").write_text(text)
    print(text)


def plot(log: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in log if r.get("type") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in evals]
    ax.plot(steps, [r["ami"] for r in evals], marker="o", label="validation AMI")
    ax.plot(steps, [r["threshold"] for r in evals], marker="s", label="tuned threshold")
    losses = [r for r in log if r.get("type") == "loss" and r.get("neutral") is not None]
    if losses:  # s0 starts at 0 (its initial value) and is logged with every loss line
        ax.plot([0] + [r["step"] for r in losses], [0.0] + [r["neutral"] for r in losses], marker="^", markersize=3,
                label="s0 (neutral similarity)")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
