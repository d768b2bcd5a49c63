"""The plots of an experiment's report: test AMI per run, s0 over training, and test AMI against the steps and
against the interpolation weight for runs that differ only in those."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .spec import Experiment, RunSpec


def headline(a: dict) -> tuple[float, float]:
    """A run's test AMI at the stored threshold: the mean of five (or six), else the one family it tests."""
    over = a["over_families"].get("mean_five", a["over_families"].get("mean_six", {}))
    return over.get("stored_ami") or next(iter(a["families"].values()))["stored_ami"]


def series(agg: dict) -> tuple[dict, dict]:
    """(chains, lines), each kept where it has two points or more: chains join the runs that differ only in steps,
    per seed, as (steps, AMI of five, label); lines the runs that differ only in interpolate, as (weight, AMI,
    label)."""
    chains: dict[tuple, list[tuple[int, float, str]]] = {}
    lines: dict[str, list[tuple[float, float, str]]] = {}
    for label, a in agg.items():
        spec = RunSpec.from_dict(a["spec"])
        for seed, ami in a["five_stored_ami_by_seed"].items():
            chains.setdefault((spec.training_key(), spec.interpolate, seed), []).append((spec.steps, ami, label))
        lines.setdefault(replace(spec, interpolate=1.0).key(), []).append((spec.interpolate, headline(a)[0], label))
    return ({key: sorted(points) for key, points in chains.items() if len(points) > 1},
            {key: sorted(points) for key, points in lines.items() if len(points) > 1})


def draw_bars(ax, agg: dict) -> None:
    means = [headline(a) for a in agg.values()]
    ax.barh(list(agg), [m for m, _ in means], xerr=[0 if np.isnan(h) else h for _, h in means], color="tab:blue")
    ax.set_xlabel("test AMI at the stored threshold (mean of five, or the family tested)")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, 1)


def draw_s0(ax, with_s0: dict) -> None:
    for label, a in with_s0.items():
        for seed, points in a["s0"].items():
            if points:
                steps, s0 = zip(*([(0, 0.0)] + points))
                ax.plot(steps, s0, label=f"{label} seed {seed}", alpha=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("s0 (neutral similarity)")
    ax.grid(alpha=0.3)
    if sum(len(a["s0"]) for a in with_s0.values()) <= 12:  # beyond that a legend hides the curves
        ax.legend(fontsize=7)


def draw_interpolation(ax, lines: dict) -> None:
    for points in lines.values():
        w, ami, names = zip(*points)
        ax.plot(w, ami, marker="o", label=names[-1])  # the label of the trained model (w = 1)
    ax.set_xlabel("interpolate: weight of the trained weights against the pretrained ones")
    ax.set_ylabel("test AMI at the stored threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def draw_steps(ax, chains: dict) -> None:
    for (_, _, seed), points in chains.items():
        steps, ami, names = zip(*points)
        ax.plot(steps, ami, marker="o", label=f"{min(names, key=len)} seed {seed}")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("test AMI at the stored threshold (mean of five)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot(exp: Experiment, agg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # an interpolated run's s0 is its trained model's, already drawn with that run
    with_s0 = {label: a for label, a in agg.items() if any(a["s0"].values()) and a["spec"]["interpolate"] == 1}
    chains, lines = series(agg)
    panels = [name for name, shown in (("bars", True), ("s0", with_s0), ("steps", chains), ("interpolate", lines))
              if shown]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), max(4.5, 0.22 * len(agg))),
                             squeeze=False)
    axes = dict(zip(panels, axes[0]))
    draw_bars(axes["bars"], agg)
    if with_s0:
        draw_s0(axes["s0"], with_s0)
    if lines:
        draw_interpolation(axes["interpolate"], lines)
    if chains:
        draw_steps(axes["steps"], chains)
    fig.suptitle(f"experiment {exp.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
