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
    python benchmarks/experiments.py run main --jobs 8 --threads 2 --device cuda   # on a GPU, runs sharing it

Records and reports go to docs/results/experiments/ (quick ones to runs/experiments-quick/results/, never mixed);
checkpoints and logs to runs/experiments[-quick]/. `--seeds K` runs only each run's first K seeds (a first pass).
"""
# One module per job: spec (what runs), store (records and markers), run (one run in its process, rescore),
# schedule (`run`), stats, report and plots (`report`), cli (the command line of benchmarks/experiments.py).

from .cli import main
from .report import fmt, markdown, report
from .run import finish_model, first, rescore, run_one, score, start_model
from .schedule import pending, run, startable
from .spec import CONFIGS, FIVE, QUICK, REPO, SIX, Experiment, RunSpec
from .stats import aggregate, mean_ci, paired_gain, reference
from .store import (
    alive,
    checkpoint_step,
    default_dirs,
    live_runs,
    record_path,
    taken,
    training_folder,
    training_marker,
)

__all__ = [
    "CONFIGS", "FIVE", "QUICK", "REPO", "SIX", "Experiment", "RunSpec", "aggregate", "alive", "checkpoint_step",
    "default_dirs", "finish_model", "first", "fmt", "live_runs", "main", "markdown", "mean_ci", "paired_gain",
    "pending", "record_path", "reference", "report", "rescore", "run", "run_one", "score", "start_model",
    "startable", "taken", "training_folder", "training_marker",
]
