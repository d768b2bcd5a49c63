"""The scheduler behind `run`: which (run, seed) pairs are still to do, and one `_one` process per pair, as many at
once as `--jobs` allows (counting those of concurrent invocations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .spec import REPO, Experiment, RunSpec
from .store import alive, live_runs, mark, run_markers, taken, training_marker

# the command-line script, not a module of this package: each run starts it as `_one`
SCRIPT = REPO / "benchmarks" / "experiments.py"


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


def start(spec: RunSpec, seed: int, args, logs: Path, env: dict) -> subprocess.Popen:
    """Start `_one` for (spec, seed), its output in logs/<key>_s<seed>.log, and mark the run as taken."""
    cmd = [sys.executable, str(SCRIPT), "_one", "--spec", json.dumps(asdict(spec)), "--seed", str(seed),
           "--bench", args.bench, "--backbone", args.backbone, "--threads", str(args.threads),
           "--device", args.device, "--results", str(args.results), "--work", str(args.work)]
    log = open(logs / f"{spec.key()}_s{seed}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    mark(run_markers(args.results, args.work, spec, seed), proc.pid)  # at once, so a concurrent invocation skips it
    return proc


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
            active.append((start(spec, seed, args, logs, env), name))
            print(f"started {name}", flush=True)
        time.sleep(1)
    if failed:
        sys.exit(f"{len(failed)} run(s) failed (logs in {logs}): {', '.join(failed)}")
