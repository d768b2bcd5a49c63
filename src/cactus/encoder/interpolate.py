"""Weight interpolation (WiSE-FT, Wortsman et al. 2022): a trained encoder moved part of the way back to the weights
it started from, in place. `Cactus.interpolate` applies one weight; `Cactus.tune_interpolation` tries several."""

from __future__ import annotations

import torch

from cactus.encoder import adapter as lora
from cactus.encoder.set_encoder import SetEncoder


def check_weight(weight) -> None:
    """ValueError unless `weight` is a number in [0, 1]."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"an interpolation weight must lie in [0, 1], not {weight!r}")


def moved_tensors(encoder: SetEncoder, adapter: bool) -> dict[str, torch.Tensor]:
    """The tensors `interpolate_weights` changes, by name: an adapter's B matrices (unfolded first, so that they are
    the adapter's own and not a folded copy), or else every floating-point weight of the encoder."""
    if adapter:
        lora.unfold(encoder.backbone)
        return {n: p for n, p in encoder.backbone.named_parameters() if ".lora_B." in n}
    return {n: t for n, t in encoder.state_dict().items() if t.is_floating_point()}


def interpolate_weights(encoder: SetEncoder, weight: float, towards: dict[str, torch.Tensor] | None) -> None:
    """weight x the encoder's own weights + (1 - weight) x `towards` (a state dict of the same architecture), in
    place; with `towards` None, the encoder's adapter's update is scaled by `weight` instead (exact, and saved as
    such: the start is the backbone under it)."""
    if towards is None:
        lora.scale_lora(encoder.backbone, weight)
        return
    own = encoder.state_dict()
    if own.keys() != towards.keys() or any(own[k].shape != towards[k].shape for k in own):
        raise ValueError("the two encoders have different weights: interpolation needs one architecture")
    with torch.no_grad():
        for name, tensor in own.items():
            if tensor.is_floating_point():
                tensor.mul_(weight).add_(towards[name].to(tensor.device), alpha=1 - weight)
