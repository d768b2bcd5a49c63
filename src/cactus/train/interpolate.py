"""Weight-space interpolation between two encoders of one architecture (WiSE-FT, Wortsman et al. 2022).

Interpolating a fine-tuned encoder towards its pretrained start keeps more of the start's robustness to data unlike
the fine-tuning data than either end does. The threshold tuned for the fine-tuned weights no longer fits the mixture:
tune it again afterwards (`Cactus.tune_threshold`).
"""

from __future__ import annotations

import torch


def interpolate_weights(model, start, weight: float) -> None:
    """Set `model`'s encoder weights to weight x its own + (1 - weight) x `start`'s, in place.

    `model` and `start` are `cactus.Cactus` models of the same backbone architecture; the attention modes add no
    weights, so their names match whatever the modes. weight = 1 keeps `model`, 0 gives `start`'s weights.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the interpolation weight must lie in [0, 1], not {weight}")
    towards = start.encoder.state_dict()
    own = model.encoder.state_dict()
    if own.keys() != towards.keys():
        raise ValueError("the two encoders have different weights: interpolation needs one architecture")
    with torch.no_grad():
        for name, tensor in own.items():
            if tensor.is_floating_point():
                tensor.mul_(weight).add_(towards[name], alpha=1 - weight)
