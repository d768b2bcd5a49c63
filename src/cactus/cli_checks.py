"""The command line's checks before any work: of outputs (files, model folders, training folders: writable, not an
input, of a known layout) and of inputs (a table's column names), and `CommandError`, the one-line error with its exit
code that every check raises. `cactus.cli` runs them before it loads any weights."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cactus.cli_args import COLUMN_FLAGS, EXIT_USAGE
from cactus.config import CONFIG_NAME
from cactus.data import SubsetFormatError, read_subsets
from cactus.data.io import layout_of
from cactus.data.tables import table_columns

# What a training --out holds once a run has started there (the trainer's files).
RUN_FILES = ("train_log.jsonl", "checkpoint", ".checkpoint.old", ".checkpoint.tmp", "best", "training_config.json",
             "summary.json", "training_curve.png", "trackers")


class CommandError(Exception):
    """An error the command line reports in one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ---- outputs, checked before any work ----------------------------------------------------------------------------
def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_writable(path: Path, option: str) -> None:
    """The nearest existing folder above `path` must be a folder that this process can create files in."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CommandError(f"{option} {path}: {parent} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cactus-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CommandError(f"{option} {path}: cannot write in {parent} ({e.strerror})") from None


def check_output_file(path: str | None, option: str, inputs=(), subsets: bool = False) -> None:
    """Refuse an output file that is a folder, would overwrite an input, has no known suffix (`subsets`: a file of
    subsets), or cannot be written where it is."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise CommandError(f"{option} {p}: is a folder; name a file")
    for given in inputs:
        if given is not None and _same_file(p, Path(given)):
            raise CommandError(f"{option} {p} is the input {given}: writing there would destroy it; choose another "
                               "file")
    if subsets:
        try:
            layout_of(p)
        except SubsetFormatError as e:
            raise CommandError(f"{option} {p}: {e.reason}") from None
    check_writable(p, option)


def check_output_folder(path: str | None, option: str) -> None:
    """Refuse a model folder output that is a file, or a folder with other things in it (saving replaces it
    whole)."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CommandError(f"{option} {p}: is a file; name a folder")
    if p.is_dir() and any(p.iterdir()) and not (p / CONFIG_NAME).is_file():
        raise CommandError(f"{option} {p}: holds files but is no cactus model folder, and saving replaces it whole; "
                           "name a new or empty folder")
    check_writable(p, option)


def check_run_folder(args) -> None:
    """A training --out: not a file; a run already there needs --resume (continue) or --overwrite (replace)."""
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise CommandError("--resume and --overwrite: choose one")
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out}: is a file; name a folder")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not (args.resume or args.overwrite):
        raise CommandError(f"--out {out} holds a run ({', '.join(held)}); continue it with --resume, or replace it "
                           "with --overwrite")
    check_writable(out / RUN_FILES[0], "--out")


def clear_run(out: Path) -> None:
    """--overwrite: remove the previous run's files (and nothing else of the folder)."""
    for name in RUN_FILES:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


# ---- inputs ------------------------------------------------------------------------------------------------------
def column_options(args, *inputs, layout=layout_of) -> dict[str, str] | None:
    """The --*-column options as the readers' `columns` (None when none is given), checked: two roles may not share
    a column, and at least one of the command's `inputs` (files of subsets; `layout` tells their layout) must be a
    table, since JSONL fields have fixed names."""
    columns = {role: getattr(args, f"{role}_column") for role in COLUMN_FLAGS
               if getattr(args, f"{role}_column") is not None}
    if not columns:
        return None
    flags = ", ".join(f"{COLUMN_FLAGS[role]} {name}" for role, name in columns.items())
    try:
        table_columns(columns)
    except ValueError as e:
        raise CommandError(f"{flags}: {str(e).removeprefix('columns: ')}") from None
    given = [str(path) for path in inputs if path is not None]
    if not any(is_table(path, layout) for path in given):
        raise CommandError(f"{flags}: column names are for a CSV or Parquet table, and {', '.join(given)} "
                           f"{'is not one' if len(given) == 1 else 'are not tables'} (JSONL fields have fixed "
                           "names)")
    return columns


def is_table(path, layout=layout_of) -> bool:
    """Whether `path` names a table by its `layout` (a path of no known layout is none: its reader refuses it)."""
    try:
        return layout(path) != "jsonl"
    except (SubsetFormatError, ValueError):
        return False


def read_input(path, columns: dict[str, str] | None):
    """The subsets of the file `path`; `columns` name a table's columns (a JSONL input is read by its fields)."""
    return read_subsets(path, columns if is_table(path) else None)
