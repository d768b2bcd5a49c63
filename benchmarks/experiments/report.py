"""The report of an experiment: a Markdown table over its records, a JSON summary and the plots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .plots import plot
from .spec import FIVE, SIX, Experiment, RunSpec
from .stats import aggregate, paired_gain, reference
from .store import record_path


def fmt(pair: tuple[float, float] | None) -> str:
    if pair is None:
        return ""
    m, h = pair
    return f"{m:.3f}" if np.isnan(h) else f"{m:.3f} ± {h:.3f}"


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def head(cells: list[str]) -> list[str]:
    return [row(cells), "|" + "---|" * len(cells)]


def ami_table(agg: dict, fams: list[str], ref: dict | None) -> list[str]:
    """Test AMI at the stored threshold per run, and the reference's at each family's own threshold."""
    lines = head(["run", "seeds", "stored t"] + fams + ["five", "six", "five (own t)"])
    for label, a in agg.items():
        over = a["over_families"]
        cells = [label, str(len(a["seeds"])), f"{a['threshold'][0]:.2f}"]
        cells += [fmt(a["families"][f]["stored_ami"]) if f in a["families"] else "" for f in fams]
        cells += [fmt(over.get("mean_five", {}).get("stored_ami")), fmt(over.get("mean_six", {}).get("stored_ami")),
                  fmt(over.get("mean_five", {}).get("own_ami"))]
        lines.append(row(cells))
    if ref is not None:
        own = {f: ref["families"][f]["own"]["ami"] for f in ref["families"]}
        cells = ["*reference: pretrained encoder, each family's own t*", "", ""]
        cells += [f"{own[f]:.3f}" if f in own else "" for f in fams]
        cells += [f"{np.mean([own[f] for f in members]):.3f}" for members in (FIVE, SIX)] + [""]
        lines.append(row(cells))
    return lines


def gain_table(agg: dict, ref: dict | None, results: Path) -> list[str]:
    """Per trained run and seed, the paired gain over the reference (none without a reference)."""
    gains = []
    for label, a in agg.items():
        tested = tuple(f for f in FIVE if f in a["families"])
        for seed in a["seeds"] if ref is not None and tested and a["spec"]["train_families"] else []:
            record = json.loads(record_path(results, RunSpec.from_dict(a["spec"]), seed).read_text())
            gain = paired_gain(record, ref, tested)
            if gain is not None:
                over = "five" if tested == FIVE else ", ".join(tested)
                gains.append(f"| {label} | {seed} | {over} | {gain[0]:+.1%} | {gain[1]:+.1%} to {gain[2]:+.1%} |")
    if not gains:
        return []
    return ["", "Relative gain of the mean test AMI over the families tested (of the five), at the stored "
                "threshold, over the reference (the pretrained encoder at each family's own threshold), with a "
                "95% paired bootstrap interval over test subsets (runs whose records keep per-subset scores):",
            "", "| run | seed | families | gain | 95% interval |", "|---|---|---|---|---|", *gains]


def ari_table(agg: dict, fams: list[str]) -> list[str]:
    lines = ["", "Test ARI at the stored threshold; each family's own validation-tuned threshold (mean over seeds) and "
                 "their spread (max - min over the five families):", ""]
    lines += head(["run"] + [f"ARI {f}" for f in fams] + [f"own t {f}" for f in fams] + ["spread"])
    for label, a in agg.items():
        cells = [label] + [fmt(a["families"][f]["stored_ari"]) if f in a["families"] else "" for f in fams]
        cells += [f"{a['families'][f]['own_threshold'][0]:.2f}" if f in a["families"] else "" for f in fams]
        own = [a["families"][f]["own_threshold"][0] for f in FIVE if f in a["families"]]
        cells += [f"{max(own) - min(own):.2f}" if len(own) == len(FIVE) else ""]
        lines.append(row(cells))
    return lines


def cost_table(agg: dict) -> list[str]:
    lines = ["", "Validation score of the model tested (AMI + ARI on the training families' validation subsets at its "
                 "stored threshold; mean over seeds) and cost per run (median over seeds; runs shared the 2 CPU cores, "
                 "one thread each). A run that continued a shorter run's checkpoint counts only the steps after it:",
             "",
             "| run | validation AMI+ARI | s0 | continued from step | minutes | training subsets/s | "
             "evaluation entities/s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for label, a in agg.items():
        tps = a["train_subsets_per_second"]
        lines.append(f"| {label} | {fmt(a['validation'])} | {fmt(a['neutral'])} | {a['resumed_from_step'] or ''} | "
                     f"{a['minutes']:.1f} | "
                     f"{'' if tps is None else f'{tps:.2f}'} | {a['eval_entities_per_second']:.0f} | "
                     f"{a['peak_rss_mib']:.0f} |")
    return lines


def settings_list(exp: Experiment, agg: dict) -> list[str]:
    """Each run's settings that differ from the defaults, the runs without a record, and the defaults."""
    lines = ["", "Run settings (records in [runs/](runs/), one JSON per run and seed):", ""]
    for label, a in agg.items():
        changed = {k: v for k, v in a["spec"].items() if v != getattr(RunSpec(), k) and k != "test_families"}
        lines.append(f"- **{label}** `{a['key']}`: {json.dumps(changed) if changed else 'the defaults'}")
    missing = [label for label in exp.runs if label not in agg]
    if missing:
        lines += ["", "Not run yet (no record): " + "; ".join(missing) + "."]
    return lines + ["", f"Defaults: `{json.dumps(asdict(RunSpec()))}`", ""]


def markdown(exp: Experiment, agg: dict, quick: bool, results: Path) -> str:
    fams = [f for f in SIX if any(f in a["families"] for a in agg.values())]
    ref = reference(quick, results)
    lines = [f"# Experiment `{exp.name}`{' (quick mode: not results)' if quick else ''}", "", exp.description, "",
             f"`python benchmarks/experiments.py run {exp.name}` then `... report {exp.name}`"
             f"{' with --quick' if quick else ''}.", "",
             "Test AMI at the model's one stored threshold (mean ± 95% CI over seeds; with one seed, over test "
             "subsets). *five* = mean over the five families other than clinc_mixed; *own t* columns: the same "
             "model at each family's own validation-tuned threshold.", ""]
    lines += ami_table(agg, fams, ref)
    lines += gain_table(agg, ref, results)
    lines += ari_table(agg, fams)
    lines += cost_table(agg)
    lines += settings_list(exp, agg)
    return "\n".join(lines)


def report(exp: Experiment, quick: bool, results: Path) -> None:
    agg = aggregate(exp, quick, results)
    out = results / exp.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"experiment": exp.name, "runs": agg}, indent=2) + "\n")
    text = markdown(exp, agg, quick, results)
    out.with_suffix(".md").write_text(text)
    if agg:
        plot(exp, agg, out.with_suffix(".png"))
    print(text)
