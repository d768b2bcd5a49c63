"""The paper's experiments on the benchmark families: one runner, one config per experiment in benchmarks/configs/.

A config lists runs; a run is a `RunSpec` (what to train on, how, and what to test on) and a list of seeds. Each
(run, seed) trains in its own process (so its peak memory is its own) and writes one JSON record: the command, seed,
versions, wall times, peak memory, throughput, the training log's s0 trajectory, and per test family the test AMI and
ARI at the model's one stored threshold and at the family's own validation-tuned threshold. Records are keyed by the
run's settings, so a run shared by several experiments (say, SIA with the augmented triplet loss on all five
families) is trained once, and an interrupted `run` continues where it stopped. Runs that differ only in their
steps share a training folder: the longer continues the checkpoint of the shorter (`RunSpec.training_key`).
`report` turns the records of an experiment into a Markdown table, a JSON summary and plots; `rescore` adds the
per-subset scores that paired comparisons need to records made before records kept them.

    cactus data build --out data/benchmark
    python benchmarks/experiments.py run main --jobs 2        # trains what main.json lists and has no record yet
    python benchmarks/experiments.py report main              # docs/results/experiments/main.{md,json,png}
    python benchmarks/experiments.py run main --quick         # every run cut to a few steps and subsets (minutes)

Records and reports go to docs/results/experiments/ (quick ones to runs/experiments-quick/results/, never mixed);
checkpoints and logs to runs/experiments[-quick]/. `--seeds K` runs only each run's first K seeds (a first pass).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "benchmarks" / "configs"
FIVE = ("clinc_intent", "clinc_domain", "banking77", "amazon_category", "product_same")
SIX = FIVE + ("clinc_mixed",)
QUICK = {"steps": 4, "pretrain_steps": 2, "train_subsets": 8, "val_subsets": 3, "test_subsets": 3}


@dataclass(frozen=True)
class RunSpec:
    """One training-and-test setup. Sizes are per family; `train_families` empty = the pretrained encoder as it is
    (its one threshold tuned on the validation subsets of `test_families`)."""

    attention: str = "sia"
    loss: str = "augmented_triplet"
    train_families: tuple[str, ...] = FIVE
    test_families: tuple[str, ...] = SIX
    train_subsets: int | None = None  # first N training subsets of each family (None = all)
    val_subsets: int = 25  # first N validation subsets of each family: threshold, model choice, own thresholds
    test_subsets: int = 80  # first N test subsets of each family
    steps: int = 250
    batch_size: int = 4
    # 32 covers the 90th percentile of every family's entity length (medians 10-19 tokens); 64, the model's default,
    # costs about 1.7x per training step here, because a batch pads to its longest title
    max_tokens: int = 32
    lr: float = 5e-5
    anchor: float = 0.0
    pretrain_steps: int = 0  # self-supervised pretraining steps before fine-tuning (0 = none)
    pretrain_families: tuple[str, ...] | None = None  # whose (unlabelled) training texts; None = train_families
    pretrain_augmentation: str = "word_drop"
    pretrain_lr: float = 1e-4
    init: str | None = None  # a saved model folder (relative to the repo) to start from instead of the default
    # encoder; its attention must be `attention`, and without training it keeps its own stored threshold
    # WiSE-FT: the trained weights become interpolate x trained + (1 - interpolate) x starting weights, and the
    # threshold is tuned again on the training families' validation subsets (1 = the trained model as it is)
    interpolate: float = 1.0

    def __post_init__(self):
        if not 0 <= self.interpolate <= 1:
            raise ValueError(f"interpolate must lie in [0, 1], not {self.interpolate}")
        if self.interpolate != 1 and not self.train_families:
            raise ValueError("interpolate needs training: it mixes the trained weights with the starting ones")

    @classmethod
    def from_dict(cls, record: dict) -> "RunSpec":
        known = {f.name for f in fields(cls)}
        if set(record) - known:
            raise ValueError(f"unknown run setting(s): {sorted(set(record) - known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})

    def key(self) -> str:
        """A file name: readable settings plus a hash of those that differ from the defaults (so a new setting,
        added with a default, leaves earlier records' keys alone)."""
        changed = {k: v for k, v in asdict(self).items() if v != getattr(RunSpec, k)}
        digest = hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
        trained_on = ("none" if not self.train_families else "five" if set(self.train_families) == set(FIVE)
                      else "+".join(self.train_families) if len(self.train_families) < 3
                      else "not-" + "+".join(sorted(set(FIVE) - set(self.train_families))))
        start = "saved" if self.init else "pretrained"
        return f"{self.attention}_{self.loss if self.train_families else start}_{trained_on}_{digest}"

    def training_key(self) -> str:
        """The key without `steps` and `interpolate`: runs that differ only in those share one training folder, and
        a longer run continues the checkpoint of a shorter one. Training reaches exactly the weights of an uninterrupted run,
        because the learning rate is constant (no warmup or decay here) and the trainer checkpoints its RNG states;
        as in every run, the model kept is the best on validation among its evaluations, which here include one at
        the end of each shorter run."""
        return replace(self, steps=RunSpec.steps, interpolate=RunSpec.interpolate).key()

    def quick(self) -> "RunSpec":
        cut = {k: v if getattr(self, k) is None else min(v, getattr(self, k)) for k, v in QUICK.items()}
        return replace(self, **cut)


@dataclass
class Experiment:
    name: str
    description: str
    runs: dict[str, tuple[RunSpec, tuple[int, ...]]]  # label -> (spec, seeds)
    tables: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, name: str) -> "Experiment":
        """A config by name (benchmarks/configs/<name>.json) or by path."""
        path = Path(name) if name.endswith(".json") else CONFIGS / f"{name}.json"
        config = json.loads(path.read_text())
        name = path.stem
        defaults = config.get("defaults", {})
        runs = {}
        for label, run in config["runs"].items():
            run = {**defaults, **run}
            seeds = tuple(run.pop("seeds", (0,)))
            runs[label] = (RunSpec.from_dict(run), seeds)
        return cls(name, config["description"], runs)


def default_dirs(quick: bool) -> tuple[Path, Path]:
    """(results, work): where records and reports go, and where checkpoints and logs go."""
    if quick:
        return REPO / "runs" / "experiments-quick" / "results", REPO / "runs" / "experiments-quick"
    return REPO / "docs" / "results" / "experiments", REPO / "runs" / "experiments"


def record_path(results: Path, spec: RunSpec, seed: int) -> Path:
    return results / "runs" / f"{spec.key()}_s{seed}.json"


def alive(marker: Path) -> bool:
    """Whether the process named in a `.running` marker still runs."""
    try:
        os.kill(int(marker.read_text()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return True


def training_folder(work: Path, spec: RunSpec, seed: int) -> Path:
    """Where a run keeps its checkpoints, shared by the runs that differ only in steps (see `training_key`)."""
    return work / f"{spec.training_key()}_s{seed}"


def training_marker(work: Path, spec: RunSpec, seed: int) -> Path:
    """Marks the training folder a live run uses: a run sharing it waits."""
    return training_folder(work, spec, seed).with_suffix(".running")


def checkpoint_step(folder: Path) -> int:
    """The step of the training checkpoint in a run's folder (0 = none)."""
    state = folder / "train" / "checkpoint" / "trainer_state.json"
    return json.loads(state.read_text())["step"] if state.is_file() else 0


def live_runs(results: Path) -> int:
    """How many runs live processes are making for `results`, whichever `run` invocation started them."""
    return sum(alive(marker) for marker in (results / "runs").glob("*.running"))


def taken(results: Path, spec: RunSpec, seed: int) -> bool:
    """Whether (spec, seed) has a record, or a live process (of any `run` invocation) is making it."""
    record = record_path(results, spec, seed)
    return record.exists() or alive(record.with_suffix(".running"))


# ---- one run (in its own process) ------------------------------------------------------------------------------
def first(bench: Path, family: str, split: str, n: int | None) -> list:
    from cactus.data import read_subsets

    return read_subsets(bench / family / f"{split}.jsonl")[:n]


def start_model(spec: RunSpec, backbone: str):
    """The model a run starts from: the saved model `init`, or the pretrained `backbone`."""
    from cactus import Cactus

    if not spec.init:
        return Cactus(backbone=backbone, attention=spec.attention, max_tokens=spec.max_tokens, device="cpu")
    model = Cactus.from_pretrained(REPO / spec.init, device="cpu")
    if model.config.attention != spec.attention:
        raise ValueError(f"{spec.init} uses attention {model.config.attention!r}, the run says {spec.attention!r}")
    model.config.max_tokens = spec.max_tokens
    return model


def interpolate_weights(model, start, weight: float) -> None:
    """Set `model`'s encoder weights to weight x its own + (1 - weight) x `start`'s, in place (WiSE-FT, Wortsman et
    al. 2022: interpolating a fine-tuned model towards its zero-shot start keeps more of the start's robustness to
    data unlike the fine-tuning data than either end). The attention modes add no weights, so the names match."""
    import torch

    towards = start.encoder.state_dict()
    with torch.no_grad():
        for name, tensor in model.encoder.state_dict().items():
            if tensor.is_floating_point():
                tensor.mul_(weight).add_(towards[name], alpha=1 - weight)


def finish_model(model, spec: RunSpec, backbone: str, val: dict) -> None:
    """Turn a run's model, trained or as it starts, into the model tested, in place: a trained one interpolated
    towards its starting weights when `interpolate` < 1, its threshold tuned again on the training families'
    validation subsets; the pretrained encoder given its threshold on the test families' validation subsets (a saved
    `init` keeps its own). `val` maps every family of the run to its validation subsets."""
    if spec.train_families:
        if spec.interpolate != 1.0:
            interpolate_weights(model, start_model(spec, backbone), spec.interpolate)
            model.tune_threshold([s for f in spec.train_families for s in val[f]])
    elif spec.init is None:
        model.tune_threshold([s for f in spec.test_families for s in val[f]])


def score(model, spec: RunSpec, bench: Path, val: dict) -> dict:
    """Per test family: test AMI/ARI at the model's stored threshold and at the family's own threshold (tuned on
    its validation subsets `val[family]`), with the per-subset AMIs for paired comparisons between runs."""
    from cactus.cluster import agglomerative_cluster, tune_threshold
    from cactus.evaluate import evaluate_predictions

    results = {}
    for fam in spec.test_families:
        test = first(bench, fam, "test", spec.test_subsets)
        sims = model.similarities(test)
        own = tune_threshold(model.similarities(val[fam]), [s.labels for s in val[fam]],
                             objective=model.config.objective)
        stored = evaluate_predictions(test, [agglomerative_cluster(s, model.threshold_) for s in sims])
        at_own = evaluate_predictions(test, [agglomerative_cluster(s, own.best_threshold) for s in sims])
        results[fam] = {
            "own_threshold": own.best_threshold, "test_subsets": len(test),
            "entities_encoded": sum(len(x) for x in test + val[fam]),
            "stored": {m: stored["summary"][m]["mean"] for m in ("ami", "ari")},
            "stored_ci": {m: [stored["summary"][m]["ci_low"], stored["summary"][m]["ci_high"]] for m in ("ami", "ari")},
            "own": {m: at_own["summary"][m]["mean"] for m in ("ami", "ari")},
            "stored_ami_per_subset": [row["ami"] for row in stored["per_subset"]],
            "own_ami_per_subset": [row["ami"] for row in at_own["per_subset"]],
        }
    return results


def run_one(spec: RunSpec, seed: int, bench: Path, backbone: str, record: Path, workdir: Path) -> None:
    import torch
    import transformers

    import cactus
    from cactus.selfsup import unique_texts
    from cactus.train import Trainer, TrainingConfig

    resumed_from = checkpoint_step(workdir)
    if resumed_from > spec.steps:
        raise ValueError(f"{workdir} holds a checkpoint at step {resumed_from}, past this run's {spec.steps} steps: "
                         "move it away to train this run afresh")
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = start_model(spec, backbone)
    families = dict.fromkeys(spec.train_families + spec.test_families)
    val = {f: first(bench, f, "val", spec.val_subsets) for f in families}
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
                                init_neutral=model.config.neutral or 0.0, **common)
        model.fit(train, [s for f in spec.train_families for s in val[f]], config=config, output_dir=workdir / "train",
                  resume=True)
        summary = model.training_summary_
    finish_model(model, spec, backbone, val)
    seconds["train"] = time.perf_counter() - train_start

    eval_start = time.perf_counter()
    results = score(model, spec, bench, val)
    n_entities = sum(r["entities_encoded"] for r in results.values())
    seconds["evaluate"] = time.perf_counter() - eval_start

    log = []
    if summary:
        log = [json.loads(line) for line in Path(summary["log"]).read_text().splitlines()]
    out = {
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
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "cactus": cactus.__version__, "backbone": backbone},
    }
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(record)


def rescore(experiments: list[Experiment], args) -> None:
    """Add the per-subset AMIs to records made before records kept them: each record's model is rebuilt (the
    trained model from its training folder's best/, else the starting model; then `finish_model`, as in `run_one`)
    and tested again, and its scores
    must equal the recorded ones, so a folder that has moved on (say, continued by a longer run) is refused; the
    refusals are listed at the end, after the records that could be rescored."""
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
        val = {f: first(Path(args.bench), f, "val", spec.val_subsets)
               for f in dict.fromkeys(spec.train_families + spec.test_families)}
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
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=2) + "\n")
        tmp.replace(path)
        print(f"rescored {path.name}", flush=True)
    if refused:
        sys.exit(f"{len(refused)} record(s) refused:\n" + "\n".join(refused))


# ---- scheduling ------------------------------------------------------------------------------------------------
def pending(experiments: list[Experiment], args) -> list[tuple[RunSpec, int]]:
    """(spec, seed) pairs not `taken`, in config order (seed-major, so seed 0 of every run comes first); only the
    runs labelled `args.runs`, if given."""
    todo: dict[tuple[RunSpec, int], None] = {}
    for exp in experiments:
        max_seeds = max(len(seeds) for _, seeds in exp.runs.values())
        for i in range(min(max_seeds, args.seeds or max_seeds)):
            for label, (spec, seeds) in exp.runs.items():
                spec = spec.quick() if args.quick else spec
                if args.runs and label not in args.runs:
                    continue
                if i < len(seeds) and not taken(args.results, spec, seeds[i]):
                    todo[(spec, seeds[i])] = None
    return list(todo)


def startable(spec: RunSpec, seed: int, todo: list[tuple[RunSpec, int]], work: Path) -> bool:
    """Whether no live run uses this run's training folder and no shorter run to do will (it goes first, and this
    run continues its checkpoint)."""
    shorter = any(other.training_key() == spec.training_key() and other.steps < spec.steps and s == seed
                  for other, s in todo)
    return not shorter and not alive(training_marker(work, spec, seed))


def run(experiments: list[Experiment], args) -> None:
    todo = pending(experiments, args)
    print(f"{len(todo)} run(s) to do")
    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    active: list[tuple[subprocess.Popen, str]] = []
    failed = []
    while todo or active:
        for proc, name in list(active):
            if proc.poll() is not None:
                active.remove((proc, name))
                print(f"{'finished' if proc.returncode == 0 else 'FAILED'} {name}", flush=True)
                if proc.returncode:
                    failed.append(name)
        todo = [(spec, seed) for spec, seed in todo if not taken(args.results, spec, seed)]  # done meanwhile
        while live_runs(args.results) < args.jobs:  # slots are shared with concurrent invocations
            ready = [(spec, seed) for spec, seed in todo if startable(spec, seed, todo, args.work)]
            if not ready:
                break
            spec, seed = ready[0]
            todo.remove((spec, seed))
            name = f"{spec.key()}_s{seed}"
            cmd = [sys.executable, __file__, "_one", "--spec", json.dumps(asdict(spec)), "--seed", str(seed),
                   "--bench", args.bench, "--backbone", args.backbone, "--threads", str(args.threads),
                   "--results", str(args.results), "--work", str(args.work)]
            log = open(logs / f"{name}.log", "w")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
            for marker in (record_path(args.results, spec, seed).with_suffix(".running"),
                           training_marker(args.work, spec, seed)):
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(proc.pid))  # at once, so a concurrent invocation skips this run
            active.append((proc, name))
            print(f"started {name}", flush=True)
        time.sleep(1)
    if failed:
        sys.exit(f"{len(failed)} run(s) failed (logs in {logs}): {', '.join(failed)}")


# ---- reports ---------------------------------------------------------------------------------------------------
def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over seeds (nan with one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def aggregate(exp: Experiment, quick: bool, results: Path) -> dict:
    """label -> per family and over families: mean and CI over seeds of test AMI / ARI at the stored threshold and
    at the family's own threshold, the own thresholds, and the run records' costs."""
    out = {}
    for label, (spec, seeds) in exp.runs.items():
        spec = spec.quick() if quick else spec
        records = [json.loads(p.read_text()) for s in seeds if (p := record_path(results, spec, s)).exists()]
        if not records:
            continue
        fams = {}
        for fam in spec.test_families:
            fams[fam] = {f"{where}_{m}": mean_ci([r["families"][fam][where][m] for r in records])
                         for where in ("stored", "own") for m in ("ami", "ari")}
            fams[fam]["own_threshold"] = mean_ci([r["families"][fam]["own_threshold"] for r in records])
            if len(records) == 1:  # one seed: the CI over test subsets instead
                lo, hi = records[0]["families"][fam]["stored_ci"]["ami"]
                fams[fam]["stored_ami"] = (fams[fam]["stored_ami"][0], (hi - lo) / 2)
        over = {}
        for group, members in (("mean_five", FIVE), ("mean_six", SIX)):
            if all(f in spec.test_families for f in members):
                over[group] = {f"{where}_{m}": mean_ci([np.mean([r["families"][f][where][m] for f in members])
                                                        for r in records])
                               for where in ("stored", "own") for m in ("ami", "ari")}
        out[label] = {
            "key": spec.key(), "spec": asdict(spec), "seeds": [r["seed"] for r in records], "families": fams,
            "over_families": over,
            "five_stored_ami_by_seed": ({r["seed"]: float(np.mean([r["families"][f]["stored"]["ami"] for f in FIVE]))
                                         for r in records} if "mean_five" in over else {}),
            "threshold": mean_ci([r["threshold"] for r in records]),
            "neutral": mean_ci([r["neutral"] for r in records]) if records[0]["neutral"] is not None else None,
            "s0": {r["seed"]: r["s0"] for r in records},
            # the validation objective (AMI + ARI on the training families) of the model tested: the interpolated
            # one, else the best trained one; the in-distribution side of a generality trade
            "validation": (mean_ci([r["training_summary"]["best_score"] if r.get("interpolated_validation") is None
                                    else r["interpolated_validation"] for r in records])
                           if records[0]["training_summary"] else None),
            "minutes": float(np.median([r["wall_seconds"]["total"] for r in records]) / 60),
            "resumed_from_step": max(r.get("resumed_from_step", 0) for r in records),
            "train_subsets_per_second": (float(np.median([r["train_subsets_per_second"] for r in records]))
                                         if records[0]["train_subsets_per_second"] else None),
            "eval_entities_per_second": float(np.median([r["eval_entities_per_second"] for r in records])),
            "peak_rss_mib": float(max(r["peak_rss_mib"] for r in records)),
        }
    return out


def paired_gain(run: dict, ref: dict, families: tuple[str, ...] = FIVE,
                resamples: int = 10_000) -> tuple[float, float, float] | None:
    """Relative gain of a run record's mean test AMI over `families` (at its stored threshold) over the reference
    record's (at each family's own threshold), with a 95% paired bootstrap interval: the same resampled test subsets
    for both, resampled within each family. None without per-subset scores."""
    pairs = []
    for f in families:
        a, b = (r["families"].get(f, {}).get(key) for r, key in ((run, "stored_ami_per_subset"),
                                                                 (ref, "own_ami_per_subset")))
        if a is None or b is None or len(a) != len(b):
            return None
        pairs.append((np.asarray(a), np.asarray(b)))
    rng = np.random.default_rng(0)
    picks = [rng.integers(0, len(a), (resamples, len(a))) for a, _ in pairs]
    run_means = np.mean([a[i].mean(axis=1) for (a, _), i in zip(pairs, picks)], axis=0)
    ref_means = np.mean([b[i].mean(axis=1) for (_, b), i in zip(pairs, picks)], axis=0)
    gains = run_means / ref_means - 1
    point = np.mean([a.mean() for a, _ in pairs]) / np.mean([b.mean() for _, b in pairs]) - 1
    return float(point), float(np.quantile(gains, 0.025)), float(np.quantile(gains, 0.975))


def fmt(pair: tuple[float, float] | None) -> str:
    if pair is None:
        return ""
    m, h = pair
    return f"{m:.3f}" if np.isnan(h) else f"{m:.3f} ± {h:.3f}"


def reference(quick: bool, results: Path) -> dict | None:
    """The record of the pretrained encoder on the default test subsets (main.json's first run), if there is one:
    the bar every trained model is held to, at each family's own tuned threshold."""
    spec = RunSpec(attention="nia", train_families=())
    path = record_path(results, spec.quick() if quick else spec, 0)
    return json.loads(path.read_text()) if path.exists() else None


def markdown(exp: Experiment, agg: dict, quick: bool, results: Path) -> str:
    fams = [f for f in SIX if any(f in a["families"] for a in agg.values())]
    lines = [f"# Experiment `{exp.name}`{' (quick mode: not results)' if quick else ''}", "", exp.description, "",
             f"`python benchmarks/experiments.py run {exp.name}` then `... report {exp.name}`"
             f"{' with --quick' if quick else ''}.", "",
             "Test AMI at the model's one stored threshold (mean ± 95% CI over seeds; with one seed, over test "
             "subsets). *five* = mean over the five families other than clinc_mixed; *own t* columns: the same "
             "model at each family's own validation-tuned threshold.", ""]
    head = ["run", "seeds", "stored t"] + fams + ["five", "six", "five (own t)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, a in agg.items():
        over = a["over_families"]
        row = [label, str(len(a["seeds"])), f"{a['threshold'][0]:.2f}"]
        row += [fmt(a["families"][f]["stored_ami"]) if f in a["families"] else "" for f in fams]
        row += [fmt(over.get("mean_five", {}).get("stored_ami")), fmt(over.get("mean_six", {}).get("stored_ami")),
                fmt(over.get("mean_five", {}).get("own_ami"))]
        lines.append("| " + " | ".join(row) + " |")
    ref = reference(quick, results)
    if ref is not None:
        own = {f: ref["families"][f]["own"]["ami"] for f in ref["families"]}
        row = ["*reference: pretrained encoder, each family's own t*", "", ""]
        row += [f"{own[f]:.3f}" if f in own else "" for f in fams]
        row += [f"{np.mean([own[f] for f in members]):.3f}" for members in (FIVE, SIX)] + [""]
        lines.append("| " + " | ".join(row) + " |")
    gains = []
    for label, a in agg.items():
        tested = tuple(f for f in FIVE if f in a["families"])
        for seed in a["seeds"] if ref is not None and tested and a["spec"]["train_families"] else []:
            record = json.loads(record_path(results, RunSpec.from_dict(a["spec"]), seed).read_text())
            gain = paired_gain(record, ref, tested)
            if gain is not None:
                over = "five" if tested == FIVE else ", ".join(tested)
                gains.append(f"| {label} | {seed} | {over} | {gain[0]:+.1%} | {gain[1]:+.1%} to {gain[2]:+.1%} |")
    if gains:
        lines += ["", "Relative gain of the mean test AMI over the families tested (of the five), at the stored "
                      "threshold, over the reference (the pretrained encoder at each family's own threshold), with a "
                      "95% paired bootstrap interval over test subsets (runs whose records keep per-subset scores):",
                  "", "| run | seed | families | gain | 95% interval |", "|---|---|---|---|---|", *gains]
    lines += ["", "Test ARI at the stored threshold; each family's own validation-tuned threshold (mean over seeds) and "
                  "their spread (max - min over the five families):", ""]
    head = ["run"] + [f"ARI {f}" for f in fams] + [f"own t {f}" for f in fams] + ["spread"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, a in agg.items():
        row = [label] + [fmt(a["families"][f]["stored_ari"]) if f in a["families"] else "" for f in fams]
        row += [f"{a['families'][f]['own_threshold'][0]:.2f}" if f in a["families"] else "" for f in fams]
        own = [a["families"][f]["own_threshold"][0] for f in FIVE if f in a["families"]]
        row += [f"{max(own) - min(own):.2f}" if len(own) == len(FIVE) else ""]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Validation score of the model tested (AMI + ARI on the training families' validation subsets at its "
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
    lines += ["", "Run settings (records in [runs/](runs/), one JSON per run and seed):", ""]
    for label, a in agg.items():
        changed = {k: v for k, v in a["spec"].items() if v != getattr(RunSpec(), k) and k != "test_families"}
        lines.append(f"- **{label}** `{a['key']}`: {json.dumps(changed) if changed else 'the defaults'}")
    missing = [label for label in exp.runs if label not in agg]
    if missing:
        lines += ["", "Not run yet (no record): " + "; ".join(missing) + "."]
    lines += ["", f"Defaults: `{json.dumps(asdict(RunSpec()))}`", ""]
    return "\n".join(lines)


def plot(exp: Experiment, agg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # an interpolated run's s0 is its trained model's, already drawn with that run
    with_s0 = {label: a for label, a in agg.items() if any(a["s0"].values()) and a["spec"]["interpolate"] == 1}
    labels = list(agg)

    def headline(a: dict) -> tuple[float, float]:  # mean of five (or six), else the one family a run tests
        over = a["over_families"].get("mean_five", a["over_families"].get("mean_six", {}))
        return over.get("stored_ami") or next(iter(a["families"].values()))["stored_ami"]

    means = [headline(a) for a in agg.values()]
    chains: dict[tuple, list[tuple[int, float, str]]] = {}  # runs that differ only in steps, per seed
    lines: dict[str, list[tuple[float, float, str]]] = {}  # runs that differ only in interpolate
    for label, a in agg.items():
        spec = RunSpec.from_dict(a["spec"])
        for seed, ami in a["five_stored_ami_by_seed"].items():
            chains.setdefault((spec.training_key(), spec.interpolate, seed), []).append((spec.steps, ami, label))
        lines.setdefault(replace(spec, interpolate=1.0).key(), []).append((spec.interpolate, headline(a)[0], label))
    chains = {key: sorted(points) for key, points in chains.items() if len(points) > 1}
    lines = {key: sorted(points) for key, points in lines.items() if len(points) > 1}
    panels = [name for name, shown in (("bars", True), ("s0", with_s0), ("steps", chains), ("interpolate", lines))
              if shown]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), max(4.5, 0.22 * len(labels))),
                             squeeze=False)
    axes = dict(zip(panels, axes[0]))
    ax = axes["bars"]
    ax.barh(labels, [m for m, _ in means], xerr=[0 if np.isnan(h) else h for _, h in means], color="tab:blue")
    ax.set_xlabel("test AMI at the stored threshold (mean of five, or the family tested)")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, 1)
    if with_s0:
        ax = axes["s0"]
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
    if lines:
        ax = axes["interpolate"]
        for points in lines.values():
            w, ami, names = zip(*points)
            ax.plot(w, ami, marker="o", label=names[-1])  # the label of the trained model (w = 1)
        ax.set_xlabel("interpolate: weight of the trained weights against the pretrained ones")
        ax.set_ylabel("test AMI at the stored threshold")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if chains:
        ax = axes["steps"]
        for (_, _, seed), points in chains.items():
            steps, ami, names = zip(*points)
            ax.plot(steps, ami, marker="o", label=f"{min(names, key=len)} seed {seed}")
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel("test AMI at the stored threshold (mean of five)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"experiment {exp.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "report", "rescore"):
        p = sub.add_parser(name)
        p.add_argument("experiments", nargs="+", help=f"config names in {CONFIGS.relative_to(REPO)}, or .json paths")
        p.add_argument("--quick", action="store_true", help="cut every run to a few steps and subsets")
    p = sub.choices["run"]
    p.add_argument("--jobs", type=int, default=2, help="runs at once, counting those of concurrent invocations")
    p.add_argument("--seeds", type=int, default=None, help="only each run's first K seeds")
    for p in (sub.choices["run"], sub.choices["rescore"]):
        p.add_argument("--threads", type=int, default=1, help="torch threads per run")
        p.add_argument("--runs", nargs="+", default=None, help="only the runs with these labels")
    one = sub.add_parser("_one", help="one (run, seed), in this process (used by run)")
    one.add_argument("--spec", required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--threads", type=int, default=1)
    for p in sub.choices.values():
        p.add_argument("--results", type=Path, default=None, help="records and reports (default: see above)")
        p.add_argument("--work", type=Path, default=None, help="checkpoints and logs (default: see above)")
        if p is not sub.choices["report"]:
            p.add_argument("--bench", default="data/benchmark")
            p.add_argument("--backbone", default="all-MiniLM-L6-v2")
    args = ap.parse_args()
    results, work = default_dirs(getattr(args, "quick", False))
    args.results, args.work = args.results or results, args.work or work

    if args.cmd == "_one":
        import torch

        torch.set_num_threads(args.threads)
        spec = RunSpec.from_dict(json.loads(args.spec))
        record = record_path(args.results, spec, args.seed)
        markers = (record.with_suffix(".running"), training_marker(args.work, spec, args.seed))
        for marker in markers:  # `run` wrote them already; this covers `_one` started by hand
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(os.getpid()))
        try:
            run_one(spec, args.seed, Path(args.bench), args.backbone, record,
                    training_folder(args.work, spec, args.seed))
        finally:
            for marker in markers:
                marker.unlink(missing_ok=True)
        return
    experiments = [Experiment.load(name) for name in args.experiments]
    if args.cmd == "run":
        run(experiments, args)
    elif args.cmd == "rescore":
        rescore(experiments, args)
    else:
        for exp in experiments:
            report(exp, args.quick, args.results)


if __name__ == "__main__":
    main()
