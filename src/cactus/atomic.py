"""Atomic writes: every file and folder cactus writes (predictions, reports, curves, models, checkpoints) appears
whole or not at all, and a write killed at any moment leaves the previous version whole.

A write goes to a temporary name beside its target, unique to the writing process (`.NAME.<pid>-<random>.tmp`, so
two runs writing one target never share it), is synced to disk (the file, or every file of a folder), and is then
renamed over the target, and the folder holding it is synced so that the rename survives a power cut too. A write
killed before the rename leaves only its temporary, which the next write to the same target (or to another in the
same folder) removes once the process that made it is gone; loading a folder (`recover_dir`) removes them too.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

_TEMP = re.compile(r"\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp")
# What earlier versions left: `.NAME.tmp` (a file) and `.NAME.XXXXXXXX` (a model folder from tempfile.mkdtemp).
_LEGACY_DIR = re.compile(r"[a-z0-9_]{8}")
_MODEL_FOLDER_ENTRIES = {"backbone", "cactus_config.json", "README.md"}


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Write the file `path` by calling `write(tmp)` on a temporary path beside it, then sync and rename it into
    place. An OSError names `path`; on any failure (Ctrl-C included) the temporary is removed and `path` is as it
    was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_temporaries(path)
    tmp = _temporary(path)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}", str(path)) from e
    except BaseException:
        _remove(tmp)
        raise
    _fsync(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write` of a UTF-8 text file."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh empty folder beside `path` to write into; when the block ends without error it replaces `path`
    (`replace_dir`), else it is removed and `path` is as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = _temporary(path)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful replace


def _old_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def replace_dir(new: Path, path: Path) -> None:
    """Move the complete folder `new` to `path`. Its files are synced first. The old folder at `path` is set aside
    (renamed) and removed only after the new one is in place; a crash between the two renames leaves it whole for
    `recover_dir`."""
    new, path = Path(new), Path(path)
    _fsync_tree(new)
    if path.exists():
        shutil.rmtree(_old_dir(path), ignore_errors=True)
        os.replace(path, _old_dir(path))
    os.replace(new, path)
    _fsync(path.parent)
    shutil.rmtree(_old_dir(path), ignore_errors=True)


def recover_dir(path: Path) -> None:
    """Put back a folder set aside by a `replace_dir` that was killed before the new one was in place (or remove it,
    when the new one is in place), and remove the temporaries of writes whose process is gone."""
    path = Path(path)
    if _old_dir(path).is_dir():
        if path.exists():
            shutil.rmtree(_old_dir(path), ignore_errors=True)
        else:
            os.replace(_old_dir(path), path)
            _fsync(path.parent)
    clean_temporaries(path)


def clean_temporaries(path: Path) -> None:
    """Remove what killed writes left beside `path`: the temporaries of processes no longer running (of any target
    in its folder: a run folder's checkpoint and best model are cleaned together), and the fixed-name leftovers of
    earlier versions for `path`."""
    path = Path(path)
    try:
        entries = [e for e in path.parent.iterdir() if e.name.startswith(".")]
    except OSError:  # no folder yet, or not readable: nothing to clean
        return
    legacy = f".{path.name}."
    for entry in entries:
        match = _TEMP.fullmatch(entry.name)
        if match:
            if not _running(int(match["pid"])):
                _remove(entry)
        elif entry.name == f"{legacy}tmp" and entry.is_file() and not entry.is_symlink():
            _remove(entry)
        elif entry.name.startswith(legacy) and _LEGACY_DIR.fullmatch(entry.name[len(legacy):]) \
                and _is_partial_model(entry):
            _remove(entry)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _running(pid: int) -> bool:
    if os.name != "posix":  # no harmless way to ask; keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _is_partial_model(entry: Path) -> bool:
    if not entry.is_dir() or entry.is_symlink():
        return False
    names = {e.name for e in entry.iterdir()}
    return bool(names) and names <= _MODEL_FOLDER_ENTRIES


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    """Sync a folder's entries to disk, where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync_file(Path(root) / name)
        _fsync(Path(root))
