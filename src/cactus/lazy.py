"""Package exports imported on first use, so that `import cactus.<package>` for one light name (a constant the
command line declares its options with) does not load torch, transformers or scikit-learn with the rest."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module-level `__getattr__` (PEP 562) for `package`: `exports` maps each exported name to the submodule,
    relative to the package (".cut"), that defines it; the first access imports it and keeps the value."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
