"""The command line: run, report, rescore, and _one (one run in this process, as `run` starts it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import __doc__ as DESCRIPTION  # the package's docstring is the command's help
from .report import report
from .run import rescore, run_marked
from .schedule import run
from .spec import CONFIGS, REPO, Experiment
from .store import default_dirs


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    for p in (sub.choices["run"], one):
        p.add_argument("--device", default="cpu", help="torch device the runs train and test on, e.g. cuda")
    for p in sub.choices.values():
        p.add_argument("--results", type=Path, default=None, help="records and reports (default: see above)")
        p.add_argument("--work", type=Path, default=None, help="checkpoints and logs (default: see above)")
        if p is not sub.choices["report"]:
            p.add_argument("--bench", default="data/benchmark")
            p.add_argument("--backbone", default="all-MiniLM-L6-v2")
    return ap


def main() -> None:
    args = parser().parse_args()
    results, work = default_dirs(getattr(args, "quick", False))
    args.results, args.work = args.results or results, args.work or work

    if args.cmd == "_one":
        run_marked(args)
        return
    experiments = [Experiment.load(name) for name in args.experiments]
    if args.cmd == "run":
        run(experiments, args)
    elif args.cmd == "rescore":
        rescore(experiments, args)
    else:
        for exp in experiments:
            report(exp, args.quick, args.results)
