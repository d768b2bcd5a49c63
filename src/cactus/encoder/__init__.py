"""The context-aware set encoder: backbone loading, LoRA adapters, inter-entity attention modes, pooling."""

from cactus.encoder.adapter import ADAPTER_DIR, LoraSpec
from cactus.encoder.attention import SIA_ATTENTION, EntityLayout, attention_implementation, sia_attention
from cactus.encoder.backbone import DEFAULT_BACKBONE, load_backbone, resolve_backbone
from cactus.encoder.set_encoder import ATTENTION_MODES, SetEncoder

__all__ = [
    "ADAPTER_DIR",
    "ATTENTION_MODES",
    "DEFAULT_BACKBONE",
    "SIA_ATTENTION",
    "EntityLayout",
    "LoraSpec",
    "SetEncoder",
    "attention_implementation",
    "load_backbone",
    "resolve_backbone",
    "sia_attention",
]
