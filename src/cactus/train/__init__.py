"""Training the set encoder: `Trainer` (accelerate: devices, DDP, resumable checkpoints), its `TrainingConfig`, the
validation evaluator."""

from cactus.lazy import lazy_exports

# Each name and the module that defines it, imported on first use (`cactus.lazy`).
EXPORTS = {
    "LOSSES": "cactus.losses",
    "make_loss": "cactus.losses",
    "TrainerState": ".checkpoint",
    "TrainingConfig": ".config",
    "ThresholdEvaluator": ".evaluator",
    "Trainer": ".trainer",
    "label_ids": ".trainer",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
