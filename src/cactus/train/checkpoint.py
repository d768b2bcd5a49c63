"""The trainer's resumable state.

A checkpoint folder holds what `accelerate.Accelerator.save_state` writes (model, optimizer, scheduler, one RNG file
per process) plus `trainer_state.json` (a `TrainerState`). It is written under a temporary name and renamed into
place (`cactus.atomic.replace_dir`), so a run killed while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_NAME = "trainer_state.json"


@dataclass
class TrainerState:
    """Where training stands; everything besides tensors that a resumed run needs to continue identically.

    Attributes:
        step: optimizer steps done (the same on every process).
        epoch: current epoch, 0-based.
        batch_in_epoch: this process's batches of `epoch` already trained on.
        best_score: best validation objective so far (None before the first evaluation).
        best_step: step of `best_score`.
        evals_since_best: evaluations since the best one (early stopping's counter).
        last_eval_step: step of the latest evaluation (-1 before any), so no step is evaluated twice.
        stopped_early: early stopping fired; a resumed run has nothing left to do.
        log_offset: bytes of the training log written up to this state; a resumed run cuts the log back to it.
        elapsed_s: training time so far, summed over runs.
        loss_sum, loss_count, skipped: training loss (sum, subset batches) and skipped subsets since the last
            evaluation, over all processes; so the first evaluation after a resume reports the same mean.
        log_loss_sum, log_loss_count: the same since the last periodic loss line.
        world_size: number of processes; the data shards depend on it, so a resume must use the same.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    last_eval_step: int = -1
    stopped_early: bool = False
    log_offset: int = 0
    elapsed_s: float = 0.0
    loss_sum: float = 0.0
    loss_count: int = 0
    skipped: int = 0
    log_loss_sum: float = 0.0
    log_loss_count: int = 0
    world_size: int = 1

    def save(self, folder: Path) -> None:
        (folder / STATE_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "TrainerState":
        return cls(**json.loads((folder / STATE_NAME).read_text()))
