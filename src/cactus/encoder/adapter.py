"""LoRA adapters on the backbone (Hu et al. 2021, through peft): training a small low-rank update instead of every
weight, saved apart from the backbone it loads onto.

A linear layer W of the backbone becomes W + (alpha / rank) B A with A (rank, in) and B (out, rank); B starts at
zero, so a fresh adapter leaves the encoder exactly as it was. The inter-entity attention modes add no weights of
their own, so an adapter with the loss's s0 and the threshold is all that a trained model adds to its backbone.

peft is imported only here, and only when an adapter is made or loaded: prediction with a plain model never pays
for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_NAME = "default"  # peft's name of the one adapter a layer holds
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA adapter's shape; saved in the model's config (`CactusConfig.adapter`).

    Attributes:
        rank: rank r of the update B A.
        alpha: scale numerator: the update is multiplied by alpha / rank.
        targets: names of the backbone's linear layers that get an update (the last part of a module's name, e.g.
            "query", "value" for BERT, "q", "v" for T5); empty = peft's choice for the backbone's architecture.
    """

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"adapter rank must be a positive integer, got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"adapter alpha must be a positive number, got {self.alpha!r}")
        if not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(f"adapter targets must be module names, got {list(self.targets)!r}")
        object.__setattr__(self, "targets", tuple(self.targets))

    def to_dict(self) -> dict:
        return {"type": "lora", **asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, record: dict) -> "LoraSpec":
        record = dict(record)
        kind = record.pop("type", "lora")
        if kind != "lora":
            raise ValueError(f"unknown adapter type {kind!r} (known: lora)")
        return cls(**{**record, "targets": tuple(record.get("targets", ()))})


def default_targets(backbone: nn.Module) -> tuple[str, ...]:
    """peft's usual LoRA targets for the backbone's architecture (query and value projections)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

    model_type = backbone.config.model_type
    if model_type not in TARGETS:
        raise ValueError(f"no default LoRA targets for a {model_type!r} backbone: name its linear layers "
                         "(e.g. lora_targets='query,value')")
    return tuple(TARGETS[model_type])


def linear_layers(backbone: nn.Module) -> set[str]:
    """The last names of the backbone's linear layers ("query", "dense", ...): what adapter targets name."""
    return {name.rsplit(".", 1)[-1] for name, m in backbone.named_modules() if isinstance(m, nn.Linear)}


def add_lora(backbone: nn.Module, spec: LoraSpec) -> LoraSpec:
    """Put a fresh adapter of `spec`'s shape into `backbone` in place (its own weights frozen, the adapter's
    trainable); the spec with its targets resolved."""
    from peft import LoraConfig, inject_adapter_in_model

    if has_lora(backbone):
        raise ValueError("the backbone already has an adapter")
    targets = spec.targets or default_targets(backbone)
    linear = linear_layers(backbone)
    unknown = sorted(set(targets) - linear)
    if unknown:
        raise ValueError(f"adapter targets {unknown} are not linear layers of the backbone "
                         f"(its linear layers: {', '.join(sorted(linear))})")
    spec = LoraSpec(spec.rank, float(spec.alpha), tuple(targets))
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, target_modules=list(targets), lora_dropout=0.0)
    inject_adapter_in_model(config, backbone, adapter_name=ADAPTER_NAME)
    return spec


def has_lora(backbone: nn.Module) -> bool:
    return any(_is_lora(m) for m in backbone.modules())


def lora_weights(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors by name (A and B of every adapted layer)."""
    return {name: p.detach() for name, p in backbone.named_parameters() if ".lora_" in name}


def base_weights(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's own weights under their names without the adapter (what `from_pretrained` of the architecture
    reads)."""
    unfold(backbone)
    return {name.replace(".base_layer", ""): t for name, t in backbone.state_dict().items() if ".lora_" not in name}


def save_lora(backbone: nn.Module, folder: Path, dtype: str = "float32") -> None:
    """The adapter's weights as `folder/adapter_model.safetensors`, stored as `dtype` (one of `STORAGE_DTYPES`;
    float16 halves the file, and loading casts back to the backbone's dtype)."""
    from safetensors.torch import save_file

    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"adapter dtype {dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(STORAGE_DTYPES[dtype]).contiguous().cpu() for k, v in lora_weights(backbone).items()},
              str(folder / ADAPTER_WEIGHTS))


def load_lora(backbone: nn.Module, spec: LoraSpec, folder: Path) -> None:
    """Add the adapter saved in `folder` to `backbone` in place; ValueError naming the file when it does not fit."""
    from safetensors.torch import load_file

    add_lora(backbone, spec)
    file = folder / ADAPTER_WEIGHTS
    saved = load_file(str(file))
    expected = lora_weights(backbone)
    if saved.keys() != expected.keys():
        missing, extra = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
        raise ValueError(f"{file}: the adapter does not fit the backbone (missing {missing[:3]}, "
                         f"unexpected {extra[:3]})")
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if name in saved:
                if saved[name].shape != p.shape:
                    raise ValueError(f"{file}: {name} has shape {tuple(saved[name].shape)}, the adapter "
                                     f"{tuple(p.shape)}")
                p.copy_(saved[name])


def lora_from_update(backbone: nn.Module, start: dict[str, torch.Tensor], rank: int,
                     targets: tuple[str, ...] = ()) -> tuple[LoraSpec, float]:
    """Turn a fine-tuned `backbone` into `start` (its weights before fine-tuning, by state-dict name) plus a LoRA
    adapter of `rank` on the `targets` layers (empty: every linear layer), in place. Each target layer's update
    W - W_start is truncated to its `rank` largest singular values, the closest rank-r matrix in Frobenius norm
    (Eckart-Young), and stored as B A with alpha = rank (scale 1). Every other weight (embeddings, layer norms,
    biases, other layers) goes back to `start`'s: an adapter holds none of them. Returns the spec and the share of
    the whole update's squared norm (every weight) that the adapter keeps."""
    state = backbone.state_dict()  # views of the tuned weights, which the adapter's layers keep as their base
    if state.keys() != start.keys() or any(state[k].shape != start[k].shape for k in state):
        raise ValueError("the start weights do not fit the backbone: compression needs the backbone it was tuned from")
    targets = targets or tuple(sorted(linear_layers(backbone)))
    spec = add_lora(backbone, LoraSpec(rank, float(rank), targets))  # checks rank and targets; B = 0 changes nothing
    kept = 0.0
    with torch.no_grad():
        total = sum(float(((v - start[k].to(v.device)).double() ** 2).sum())
                    for k, v in state.items() if v.is_floating_point())
        layers = [m for m in backbone.modules() if _is_lora(m)]
        tuned = [m.get_base_layer().weight.detach().clone() for m in layers]
        for k, v in state.items():
            v.copy_(start[k])
        for module, weight in zip(layers, tuned):
            u, sigma, vh = torch.linalg.svd((weight - module.get_base_layer().weight).double(), full_matrices=False)
            root = sigma[:rank].sqrt()
            module.lora_A[ADAPTER_NAME].weight.copy_(root[:, None] * vh[:rank])
            module.lora_B[ADAPTER_NAME].weight.copy_(u[:, :rank] * root)
            kept += float((sigma[:rank] ** 2).sum())
    return spec, kept / total if total else 1.0


def scale_lora(backbone: nn.Module, weight: float) -> None:
    """Multiply every adapted layer's update by `weight` in place (B is scaled: exact, and saved as such)."""
    unfold(backbone)
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if ".lora_B." in name:
                p.mul_(weight)


def merge_lora(backbone: nn.Module) -> None:
    """Fold the adapter into the backbone's own weights and remove it, in place; every weight becomes trainable."""
    unfold(backbone)
    for name, module in list(backbone.named_modules()):
        if _is_lora(module):
            module.merge(adapter_names=[ADAPTER_NAME])
            parent = backbone.get_submodule(name.rsplit(".", 1)[0]) if "." in name else backbone
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
    if hasattr(backbone, "peft_config"):  # peft's record of the adapter it injected
        del backbone.peft_config
    for p in backbone.parameters():
        p.requires_grad_(True)


def fold(backbone: nn.Module) -> None:
    """Add every adapted layer's update into its weight (peft's merge), so that inference runs the plain layers:
    the adapter then costs nothing (unfolded, it slowed SIA inference by about 18% at rank 16 on every linear
    layer). The weights as they were are kept aside, and `unfold` puts them back bit for bit. A layer already folded
    is folded again only if its adapter weights changed since (torch counts in-place changes in `_version`)."""
    for module in backbone.modules():
        if not _is_lora(module):
            continue
        versions = _adapter_versions(module)
        if module.merged and module._folded_versions == versions:
            continue
        _unfold_layer(module)
        module._weight_unfolded = module.get_base_layer().weight.detach().clone()
        module._folded_versions = versions
        module.merge(adapter_names=[ADAPTER_NAME])


def unfold(backbone: nn.Module) -> None:
    """Undo `fold` exactly (training and saving need the backbone's own weights); a no-op when not folded."""
    for module in backbone.modules():
        if _is_lora(module):
            _unfold_layer(module)


def _unfold_layer(module: nn.Module) -> None:
    if module.merged:
        module.unmerge()
        with torch.no_grad():
            module.get_base_layer().weight.copy_(module._weight_unfolded)
        del module._weight_unfolded, module._folded_versions


def _adapter_versions(module: nn.Module) -> tuple[int, int]:
    return module.lora_A[ADAPTER_NAME].weight._version, module.lora_B[ADAPTER_NAME].weight._version


def _is_lora(module: nn.Module) -> bool:
    return hasattr(module, "lora_A") and hasattr(module, "get_base_layer")
