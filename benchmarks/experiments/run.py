"""One (run, seed) in its own process: build the model a run starts from, train it, test it and write its record;
and `rescore`, which rebuilds a recorded run's model to add the per-subset scores older records lack."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
from provenance import machine_info

from .spec import REPO, Experiment, RunSpec
from .store import (
    checkpoint_step,
    mark,
    record_path,
    run_markers,
    training_folder,
    write_record,
)


def first(bench: Path, family: str, split: str, n: int | None) -> list:
    from cactus.data import read_subsets

    return read_subsets(bench / family / f"{split}.jsonl")[:n]


def validation_subsets(spec: RunSpec, bench: Path) -> dict:
    """Every family of the run (trained on or tested) -> its first `val_subsets` validation subsets."""
    families = dict.fromkeys(spec.train_families + spec.test_families)
    return {f: first(bench, f, "val", spec.val_subsets) for f in families}


def start_model(spec: RunSpec, backbone: str, device: str = "cpu"):
    """The model a run starts from, on `device`: the saved model `init`, or the pretrained `backbone`."""
    from cactus import Cactus

    if not spec.init:
        return Cactus(backbone=backbone, attention=spec.attention, max_tokens=spec.max_tokens, device=device)
    model = Cactus.from_pretrained(REPO / spec.init, device=device)
    if model.config.attention != spec.attention:
        raise ValueError(f"{spec.init} uses attention {model.config.attention!r}, the run says {spec.attention!r}")
    model.config.max_tokens = spec.max_tokens
    return model


def finish_model(model, spec: RunSpec, backbone: str, val: dict) -> None:
    """Turn a run's model, trained or as it starts, into the model tested, in place: a trained one interpolated
    towards its starting weights when `interpolate` < 1, its threshold tuned again on the training families'
    validation subsets; the pretrained encoder given its threshold on the test families' validation subsets (a saved
    `init` keeps its own). `val` maps every family of the run to its validation subsets."""
    if spec.train_families:
        if spec.interpolate != 1.0:
            # an adapter's update is scaled towards the weights under it (a saved `init`'s adapter, trained on, whole)
            model.interpolate(spec.interpolate,
                              None if model.config.adapter else start_model(spec, backbone, str(model.device)))
            model.tune_threshold([s for f in spec.train_families for s in val[f]])
    elif spec.init is None:
        model.tune_threshold([s for f in spec.test_families for s in val[f]])


def score(model, spec: RunSpec, bench: Path, val: dict) -> dict:
    """Per test family: test AMI/ARI at the model's stored threshold, at the family's own threshold (tuned on its
    validation subsets `val[family]`) and with the adaptive cut (no threshold), with the per-subset AMIs for paired
    comparisons between runs."""
    from cactus.cluster import Cut, agglomerative_cluster, cut_cluster, tune_threshold
    from cactus.evaluate import evaluate_predictions

    results = {}
    for fam in spec.test_families:
        test = first(bench, fam, "test", spec.test_subsets)
        sims = model.similarities(test)
        own = tune_threshold(model.similarities(val[fam]), [s.labels for s in val[fam]],
                             objective=model.config.objective)
        stored = evaluate_predictions(test, [agglomerative_cluster(s, model.threshold_) for s in sims])
        at_own = evaluate_predictions(test, [agglomerative_cluster(s, own.best_threshold) for s in sims])
        adaptive = evaluate_predictions(test, [cut_cluster(s, Cut("adaptive"), None) for s in sims])
        results[fam] = {
            "own_threshold": own.best_threshold, "test_subsets": len(test),
            "entities_encoded": sum(len(x) for x in test + val[fam]),
            "stored": {m: stored["summary"][m]["mean"] for m in ("ami", "ari")},
            "stored_ci": {m: [stored["summary"][m]["ci_low"], stored["summary"][m]["ci_high"]] for m in ("ami", "ari")},
            "own": {m: at_own["summary"][m]["mean"] for m in ("ami", "ari")},
            "adaptive": {m: adaptive["summary"][m]["mean"] for m in ("ami", "ari")},
            "adaptive_ami_per_subset": [row["ami"] for row in adaptive["per_subset"]],
            "stored_ami_per_subset": [row["ami"] for row in stored["per_subset"]],
            "own_ami_per_subset": [row["ami"] for row in at_own["per_subset"]],
        }
    return results


def train_model(model, spec: RunSpec, seed: int, bench: Path, backbone: str, workdir: Path, val: dict,
                start: float) -> tuple[dict | None, dict | None, dict[str, float]]:
    """Pretrain and fine-tune `model` in place as `spec` says, then `finish_model` it: (training summary, pretraining
    summary, wall seconds per phase). Pretraining counts from `start`, so the model's loading and the data's with it."""
    from cactus.selfsup import unique_texts
    from cactus.train import Trainer, TrainingConfig

    train = [s for f in spec.train_families for s in first(bench, f, "train", spec.train_subsets)]
    seconds: dict[str, float] = {}
    pretrain_summary = None
    common = {"batch_size": spec.batch_size, "seed": seed, "log_every": max(1, min(25, spec.steps // 10)),
              "progress": False}
    if spec.pretrain_steps:
        pool_families = spec.pretrain_families if spec.pretrain_families is not None else spec.train_families
        pool = unique_texts([s for f in pool_families for s in first(bench, f, "train", None)])
        config = TrainingConfig(lr=spec.pretrain_lr, epochs=1, max_steps=spec.pretrain_steps, **common)
        pretrain_summary = Trainer(model, config, workdir / "pretrain").pretrain(
            pool, n_subsets_per_epoch=spec.pretrain_steps * spec.batch_size, n_val=4 * spec.val_subsets,
            augmentation=spec.pretrain_augmentation)
        seconds["pretrain"] = time.perf_counter() - start
    train_start = time.perf_counter()
    summary = None
    if spec.train_families:
        config = TrainingConfig(loss=spec.loss, lr=spec.lr, anchor=spec.anchor, epochs=10**6, max_steps=spec.steps,
                                lora_rank=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_targets=spec.lora_targets,
                                init_neutral=model.config.neutral or 0.0, **common)
        model.fit(train, [s for f in spec.train_families for s in val[f]], config=config, output_dir=workdir / "train",
                  resume=True)
        summary = model.training_summary_
    finish_model(model, spec, backbone, val)
    seconds["train"] = time.perf_counter() - train_start
    return summary, pretrain_summary, seconds


def run_one(spec: RunSpec, seed: int, bench: Path, backbone: str, record: Path, workdir: Path,
            device: str = "cpu") -> None:
    import torch

    resumed_from = checkpoint_step(workdir)
    if resumed_from > spec.steps:
        raise ValueError(f"{workdir} holds a checkpoint at step {resumed_from}, past this run's {spec.steps} steps: "
                         "move it away to train this run afresh")
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = start_model(spec, backbone, device)
    val = validation_subsets(spec, bench)
    summary, pretrain_summary, seconds = train_model(model, spec, seed, bench, backbone, workdir, val, start)

    eval_start = time.perf_counter()
    results = score(model, spec, bench, val)
    n_entities = sum(r["entities_encoded"] for r in results.values())
    seconds["evaluate"] = time.perf_counter() - eval_start

    log = []
    if summary:
        log = [json.loads(line) for line in Path(summary["log"]).read_text().splitlines()]
    write_record(record, {
        "spec": asdict(spec), "seed": seed, "key": spec.key(),
        "command": f"python benchmarks/experiments.py _one --spec '{json.dumps(asdict(spec))}' --seed {seed}",
        "threshold": model.threshold_, "neutral": model.config.neutral,
        # the interpolated model's validation score at its threshold (the trained model's is in `validation`)
        "interpolated_validation": (model.config.threshold_provenance["best_score"] if spec.interpolate != 1.0
                                    else None),
        "families": results,
        "training_summary": summary, "pretrain_summary": pretrain_summary,
        "s0": [[r["step"], r["neutral"]] for r in log if r["type"] == "loss" and r.get("neutral") is not None],
        "validation": [{k: r[k] for k in ("step", "ami", "ari", "threshold")} for r in log if r["type"] == "eval"],
        "resumed_from_step": resumed_from,  # wall times and throughput count only the steps after it
        "wall_seconds": seconds | {"total": time.perf_counter() - start},
        "train_subsets_per_second": ((spec.steps - resumed_from) * spec.batch_size / seconds["train"]
                                     if spec.train_families else None),
        "eval_entities_per_second": n_entities / seconds["evaluate"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "date": date.today().isoformat(),
        "machine": machine_info(backbone=backbone, device=device_name(model.device)),
    })


def device_name(device) -> str:
    """What the runs trained and tested on, for the record: "cpu", or the accelerator's name."""
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def run_marked(args) -> None:
    """The `_one` command: `run_one` for (args.spec, args.seed), its markers held while it runs."""
    import torch

    torch.set_num_threads(args.threads)
    spec = RunSpec.from_dict(json.loads(args.spec))
    markers = run_markers(args.results, args.work, spec, args.seed)
    mark(markers, os.getpid())  # `run` wrote them already; this covers `_one` started by hand
    try:
        run_one(spec, args.seed, Path(args.bench), args.backbone, record_path(args.results, spec, args.seed),
                training_folder(args.work, spec, args.seed), args.device)
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)


def rescore(experiments: list[Experiment], args) -> None:
    """Add the per-subset AMIs to records made before records kept them: each record's model is rebuilt (the
    trained model from its training folder's best/, else the starting model; then `finish_model`, as in `run_one`)
    and tested again, and its scores must equal the recorded ones, so a folder that has moved on (say, continued by a
    longer run) is refused; the refusals are listed at the end, after the records that could be rescored."""
    import torch
    from cactus import Cactus

    torch.set_num_threads(args.threads)
    refused = []
    for spec, seed in {(s.quick() if args.quick else s, seed): None for exp in experiments
                       for label, (s, seeds) in exp.runs.items() if not args.runs or label in args.runs
                       for seed in seeds}:
        path = record_path(args.results, spec, seed)
        if not path.exists():
            continue
        rec = json.loads(path.read_text())
        if all("stored_ami_per_subset" in r for r in rec["families"].values()):
            continue
        torch.manual_seed(seed)
        val = validation_subsets(spec, Path(args.bench))
        model = (Cactus.from_pretrained(training_folder(args.work, spec, seed) / "train" / "best", device="cpu")
                 if spec.train_families else start_model(spec, args.backbone))
        finish_model(model, spec, args.backbone, val)
        if model.threshold_ != rec["threshold"]:
            refused.append(f"{path.name}: the model rebuilt for it has threshold {model.threshold_}, the record "
                           f"{rec['threshold']}")
            continue
        results = score(model, spec, Path(args.bench), val)
        recorded = [rec["families"][f][where]["ami"] for f in spec.test_families for where in ("stored", "own")]
        again = [results[f][where]["ami"] for f in spec.test_families for where in ("stored", "own")]
        if not np.allclose(again, recorded, rtol=0, atol=1e-9):
            refused.append(f"{path.name}: the model rebuilt for it scores {np.round(again, 4).tolist()}, the record "
                           f"{np.round(recorded, 4).tolist()}")
            continue
        for f in spec.test_families:
            rec["families"][f] |= {k: results[f][k] for k in ("stored_ami_per_subset", "own_ami_per_subset")}
        write_record(path, rec)
        print(f"rescored {path.name}", flush=True)
    if refused:
        sys.exit(f"{len(refused)} record(s) refused:\n" + "\n".join(refused))
