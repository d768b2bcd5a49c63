"""cactus: context-aware supervised clustering of entity subsets."""

__version__ = "0.1.0"
