"""cactus: context-aware supervised clustering of entity subsets."""

from cactus.version import __version__

__all__ = ["Cactus", "CactusConfig", "__version__"]


def __getattr__(name: str):
    # The estimator pulls in torch and transformers; load them only when it is asked for.
    if name == "Cactus":
        from cactus.model import Cactus

        return Cactus
    if name == "CactusConfig":
        from cactus.config import CactusConfig

        return CactusConfig
    raise AttributeError(f"module 'cactus' has no attribute {name!r}")
