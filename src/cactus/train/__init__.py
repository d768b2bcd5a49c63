"""Training the set encoder: `Trainer` (accelerate: devices, DDP, resumable checkpoints), its `TrainingConfig`, the
validation evaluator, and weight interpolation between a trained encoder and its start."""

from cactus.losses import LOSSES, make_loss
from cactus.train.checkpoint import TrainerState
from cactus.train.config import TrainingConfig
from cactus.train.evaluator import ThresholdEvaluator
from cactus.train.interpolate import interpolate_weights
from cactus.train.trainer import Trainer, label_ids

__all__ = [
    "LOSSES",
    "ThresholdEvaluator",
    "Trainer",
    "TrainerState",
    "TrainingConfig",
    "interpolate_weights",
    "label_ids",
    "make_loss",
]
