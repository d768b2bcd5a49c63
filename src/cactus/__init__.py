"""cactus: context-aware supervised clustering of entity subsets."""

__version__ = "0.1.0"
__all__ = ["Cactus", "CactusConfig", "__version__"]


def __getattr__(name: str):
    # The estimator pulls in torch and transformers; load them only when it is asked for.
    if name in ("Cactus", "CactusConfig"):
        from cactus import model

        return getattr(model, name)
    raise AttributeError(f"module 'cactus' has no attribute {name!r}")
