"""Atomic replacement of a folder (a saved model, a checkpoint): readers see the old one or the new one, whole."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _old_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def replace_dir(new: Path, path: Path) -> None:
    """Move the complete folder `new` to `path`. The old folder at `path` is set aside (renamed) first and removed
    only after the new one is in place; a crash between the two renames leaves it whole for `recover_dir`."""
    if path.exists():
        shutil.rmtree(_old_dir(path), ignore_errors=True)
        os.replace(path, _old_dir(path))
    os.replace(new, path)
    shutil.rmtree(_old_dir(path), ignore_errors=True)


def recover_dir(path: Path) -> None:
    """Put back a folder set aside by a `replace_dir` that was killed before the new one was in place."""
    if not path.exists() and _old_dir(path).is_dir():
        os.replace(_old_dir(path), path)
