"""Training the set encoder: `Trainer` (accelerate: devices, DDP, resumable checkpoints), its `TrainingConfig`, the
validation evaluator."""

from cactus.losses import LOSSES, make_loss
from cactus.train.checkpoint import TrainerState
from cactus.train.config import TrainingConfig
from cactus.train.evaluator import ThresholdEvaluator
from cactus.train.trainer import Trainer, label_ids

__all__ = [
    "LOSSES",
    "ThresholdEvaluator",
    "Trainer",
    "TrainerState",
    "TrainingConfig",
    "label_ids",
    "make_loss",
]
