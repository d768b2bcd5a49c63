"""The training curve a person looks at: validation AMI, the tuned threshold and s0 against steps, one PNG."""

from __future__ import annotations

import json
from pathlib import Path


def plot_training_log(log: str | Path, png: str | Path) -> bool:
    """Draw the "eval" records of a train_log.jsonl into `png`: three panels sharing the step axis (validation AMI
    and the objective's score, the threshold tuned at each evaluation, s0), the best evaluation marked. Returns
    whether a figure was written (False when the log holds no evaluation)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, and no GUI toolkit to import
    import matplotlib.pyplot as plt

    evals = [r for r in map(json.loads, Path(log).read_text().splitlines()) if r.get("type") == "eval"]
    if not evals:
        return False
    steps = [r["step"] for r in evals]
    best = max(evals, key=lambda r: r["score"])
    has_neutral = any(r.get("neutral") is not None for r in evals)
    n_panels = 3 if has_neutral else 2
    fig, axes = plt.subplots(n_panels, 1, sharex=True, figsize=(7, 2.2 * n_panels), constrained_layout=True)
    axes[0].plot(steps, [r["ami"] for r in evals], marker="o", ms=3, label="AMI")
    if evals[0]["objective"] != "ami":
        axes[0].plot(steps, [r["score"] for r in evals], marker="o", ms=3, label=evals[0]["objective"])
    axes[0].set_ylabel("validation")
    axes[0].legend(loc="lower right", fontsize=8)
    axes[1].plot(steps, [r["threshold"] for r in evals], marker="o", ms=3, color="tab:green")
    axes[1].set_ylabel("threshold")
    if has_neutral:
        axes[2].plot(steps, [r["neutral"] for r in evals], marker="o", ms=3, color="tab:purple")
        axes[2].set_ylabel("s0")
    for ax in axes:
        ax.axvline(best["step"], color="0.6", ls="--", lw=1)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"validation during training (best: step {best['step']}, {best['objective']} "
                      f"{best['score']:.4f})", fontsize=10)
    axes[-1].set_xlabel("optimizer step")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True
