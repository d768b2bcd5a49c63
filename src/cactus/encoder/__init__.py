"""The context-aware set encoder: backbone loading, LoRA adapters, inter-entity attention modes, pooling."""

from cactus.lazy import lazy_exports

# Each name and the module that defines it, imported on first use (`cactus.lazy`).
EXPORTS = {
    "ADAPTER_DIR": ".adapter",
    "LoraSpec": ".adapter",
    "SIA_ATTENTION": ".attention",
    "EntityLayout": ".attention",
    "attention_implementation": ".attention",
    "sia_attention": ".attention",
    "DEFAULT_BACKBONE": ".backbone",
    "load_backbone": ".backbone",
    "resolve_backbone": ".backbone",
    "ATTENTION_MODES": ".modes",
    "SetEncoder": ".set_encoder",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
