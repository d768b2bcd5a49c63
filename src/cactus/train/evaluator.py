"""Validation with threshold tuning, as an evaluator object the trainer calls (sentence-transformers' pattern).

An evaluation embeds labelled subsets with the model as it stands (eval mode), tunes the clustering threshold on
them, and returns the whole curve: its best score decides the best model and early stopping, and its best threshold
goes with the weights it was tuned for.
"""

from __future__ import annotations

from collections.abc import Sequence

from accelerate.utils import gather_object

from cactus.cluster import ThresholdCurve, tune_threshold
from cactus.data.subsets import Subset, require_labels


class ThresholdEvaluator:
    """Tunes a model's threshold on labelled validation `subsets` by its own objective; see the module docstring.

    Under DDP (an `accelerate.Accelerator` with several processes) each process embeds a shard of the subsets, and
    every process then tunes on all of them, so all agree on the best model and on stopping.
    """

    def __init__(self, subsets: Sequence[Subset]):
        require_labels(subsets, "validation")
        self.subsets = subsets

    def __len__(self) -> int:
        return len(self.subsets)

    def __call__(self, model, accelerator=None) -> ThresholdCurve:
        """The threshold curve of `model` (a `cactus.Cactus`) on the subsets; the model is left in the training mode
        it had."""
        rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
        shard = list(range(rank, len(self.subsets), world))
        encoder = model.encoder
        was_training = encoder.training
        encoder.eval()
        try:
            sims = list(zip(shard, model.similarities([self.subsets[i] for i in shard])))
        finally:
            encoder.train(was_training)
        if world > 1:
            sims = sorted(gather_object(sims), key=lambda pair: pair[0])
        return tune_threshold([s for _, s in sims], [self.subsets[i].labels for i, _ in sims],
                              objective=model.config.objective)
