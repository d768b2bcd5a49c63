"""The machine a benchmark ran on, as its record states it: one set of keys for every script in benchmarks/.

Scripts run as `python benchmarks/<script>.py` (benchmarks/ first on the path) and tests import them with
benchmarks/ on the path, so `from provenance import machine_info` works in both.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line() -> str:
    """The command that runs this script, as its record states it: `python benchmarks/<script>.py` and its
    arguments, quoted for a shell."""
    return shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def machine_info(**extra) -> dict:
    """platform, cpu, cpu_count, torch_threads (torch's at the call), and the versions of Python, torch,
    transformers and cactus; then `extra`, a script's own keys (settings that bear on speed, more versions, loads)."""
    # torch loads here, not at import: a script that times something without torch calls this after its timing
    import torch
    import transformers

    import cactus

    return {
        "platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "cactus": cactus.__version__,
    } | extra


def trained_on(machine: dict) -> str:
    """What a run record's `machine` trained on: the accelerator's name, or the CPU's (records made before the
    runner took `--device` name no device: they ran on the CPU)."""
    device = machine.get("device", "cpu")
    return machine["cpu"] if device == "cpu" else device


def write_record(stem: str | Path, record: dict, markdown: str, plot=None) -> None:
    """A benchmark's record beside its report: <stem>.json, <stem>.md, and <stem>.png when `plot(record, path)` is
    given; the folder is made if missing."""
    import json

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    if plot is not None:
        plot(record, stem.with_suffix(".png"))
