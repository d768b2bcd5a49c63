"""Where runs keep their records and checkpoints, and the `.running` markers that tell which runs live processes are
making (so concurrent `run` invocations share the work without doing a run twice)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .spec import REPO, RunSpec


def default_dirs(quick: bool) -> tuple[Path, Path]:
    """(results, work): where records and reports go, and where checkpoints and logs go."""
    if quick:
        return REPO / "runs" / "experiments-quick" / "results", REPO / "runs" / "experiments-quick"
    return REPO / "docs" / "results" / "experiments", REPO / "runs" / "experiments"


def record_path(results: Path, spec: RunSpec, seed: int) -> Path:
    return results / "runs" / f"{spec.key()}_s{seed}.json"


def write_record(path: Path, record: dict) -> None:
    """Write a JSON record through a temporary file, so that a killed write leaves no half record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


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


def run_markers(results: Path, work: Path, spec: RunSpec, seed: int) -> tuple[Path, Path]:
    """The markers of a live run: beside its record (the run is taken) and beside its training folder (in use)."""
    return record_path(results, spec, seed).with_suffix(".running"), training_marker(work, spec, seed)


def mark(markers: tuple[Path, ...], pid: int) -> None:
    for marker in markers:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(pid))


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
