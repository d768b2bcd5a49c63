"""Training the set encoder: `Trainer` (accelerate: devices, DDP, resumable checkpoints) and its `TrainingConfig`."""

from cactus.train.checkpoint import TrainerState
from cactus.train.trainer import LOSSES, Trainer, TrainingConfig, label_ids, make_loss

__all__ = ["LOSSES", "Trainer", "TrainerState", "TrainingConfig", "label_ids", "make_loss"]
