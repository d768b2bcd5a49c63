"""Batch prediction from file to file (`cactus predict`): streamed in chunks, resumable after a crash, atomic.

The input is read three times, one subset at a time (JSONL; a table is read whole each time, see
`cactus.data.io`), so memory holds one chunk whatever the file's length:
1. a check: every subset is read and validated, and the fields the output adds are checked against its own, so that
   bad input fails before any encoding, naming the subset;
2. prediction, `chunk_subsets` subsets at a time (`Cactus.predict_iter`): the answers of each chunk (cluster ids,
   and with `describe` the clusters' descriptions and each entity's cohesion) go to one chunk file in a folder beside
   the output, `.NAME.partial/`, each written atomically, so the folder holds only whole chunks;
3. assembly: the input once more, each subset joined with its answer, written to the output atomically; then the
   partial folder is removed.

A run killed at any moment leaves the previous output as it was, and the partial folder. `resume=True` checks that
the input, model and options are the interrupted run's (the folder's `run.json`), keeps the chunks already answered,
and continues: its output is byte for byte an uninterrupted run's (with nothing to resume, it starts afresh).
Without `resume`, a partial folder left by an interrupted run is replaced.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from tqdm.auto import tqdm

from cactus.atomic import atomic_write, write_text
from cactus.cluster import Cut
from cactus.data.io import check_layout, iter_subsets, layout_of, write_subsets
from cactus.data.subsets import Subset, SubsetFormatError
from cactus.data.tables import table_columns
from cactus.version import __version__

if TYPE_CHECKING:
    from cactus.model import Cactus

logger = logging.getLogger(__name__)

# What `describe` adds: per subset in JSONL, per row in a table (docs/io.md).
DESCRIPTION_FIELDS = {False: ("clusters", "cohesion"), True: ("cluster_name", "cohesion")}
RUN_RECORD = "run.json"


class ResumeError(ValueError):
    """`resume=True` where the interrupted run had another input, model or options, or its record is unreadable."""


@dataclass
class BatchResult:
    """What `predict_file` did: subsets and entities of the input, chunks answered before it started (resumed),
    and the seconds it spent predicting (encoding and clustering, not the reading and writing)."""

    subsets: int
    entities: int
    resumed_chunks: int
    seconds: float


def partial_folder(output: str | os.PathLike) -> Path:
    """Where an interrupted `predict_file` to `output` keeps its answered chunks."""
    output = Path(output)
    return output.with_name(f".{output.name}.partial")


def predict_file(model: "Cactus", input: str | os.PathLike, output: str | os.PathLike, *,
                 threshold: float | None = None, cut: Cut | None = None, describe: bool = False,
                 chunk_subsets: int = 1000, resume: bool = False, progress: bool = False,
                 columns: Mapping[str, str] | None = None) -> BatchResult:
    """Cluster every subset of the file `input` into the file `output` (layouts by suffix, every input field kept;
    `threshold` and `cut` as in `Cactus.predict`), as the module docstring says. `columns`: the input table's
    names for the columns cactus reads (`cactus.data.io.read_subsets`); a table output keeps them."""
    if chunk_subsets < 1:
        raise ValueError(f"chunk_subsets must be at least 1, got {chunk_subsets}")
    input, output = Path(input), Path(output)
    per_row = layout_of(output) != "jsonl"
    # the names that differ from cactus's, or None: a bad mapping is refused before anything is read
    columns = {role: name for role, name in table_columns(columns).items() if role != name} or None
    written = columns if per_row else None  # JSONL names its fields itself
    cut, threshold = model.resolve_cut(threshold, cut)
    n_subsets, n_entities = _check_input(input, output, describe, per_row, columns, written)

    folder = partial_folder(output)
    record = _run_record(model, input, cut, threshold, describe, chunk_subsets, columns)
    done = _resume(folder, record) if resume else _start(folder, record)
    start = time.perf_counter()
    try:
        _predict_chunks(model, input, folder, done, n_subsets, threshold, cut, describe, chunk_subsets, progress,
                        columns)
        seconds = time.perf_counter() - start
        write_subsets(output, _joined(input, folder, describe, per_row, columns), written)
    except BaseException:  # Ctrl-C included: keep what was answered for --resume, or nothing when that is nothing
        answered = _answered(folder)
        if answered:
            logger.warning("%d answered chunks of %d subsets are kept in %s: run again with --resume to continue",
                           answered, chunk_subsets, folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return BatchResult(n_subsets, n_entities, done, seconds)


def _predict_chunks(model: "Cactus", input: Path, folder: Path, done: int, n_subsets: int, threshold: float | None,
                    cut: Cut, describe: bool, chunk_subsets: int, progress: bool, columns: dict | None) -> None:
    """Answer the input's chunks from chunk `done` on, each into its own file of `folder`."""
    with tqdm(total=n_subsets, initial=min(done * chunk_subsets, n_subsets), unit="subset", desc="predicting",
              disable=not progress) as bar:
        subsets = itertools.islice(iter_subsets(input, columns), done * chunk_subsets, None)
        answers = model.predict_iter(subsets, threshold=threshold, cut=cut, describe=describe,
                                     chunk_subsets=chunk_subsets)
        for k in itertools.count(done):
            chunk = [answer_record(a, describe) for a in itertools.islice(answers, chunk_subsets)]
            if not chunk:
                return
            atomic_write(folder / _chunk_name(k), lambda tmp: tmp.write_text(
                "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in chunk), encoding="utf-8"))
            bar.update(len(chunk))


def _check_input(input: Path, output: Path, describe: bool, per_row: bool, columns: dict | None,
                 written: dict | None) -> tuple[int, int]:
    """Read the whole input once: (subsets, entities); the first bad subset raises before any encoding."""
    own = set(table_columns(written).values()) if per_row else set()  # the output table's own columns
    n_subsets = n_entities = 0
    for s in iter_subsets(input, columns):
        check_layout([s], output, written)
        if describe:
            for name in DESCRIPTION_FIELDS[per_row]:
                if name in s.extra or name in s.columns or name in own:
                    raise SubsetFormatError(f"it already has a field {name!r}, which --describe would overwrite; "
                                            "rename it first", source=str(input), subset_id=s.id)
        n_subsets += 1
        n_entities += len(s)
    return n_subsets, n_entities


def _run_record(model: "Cactus", input: Path, cut: Cut, threshold: float | None, describe: bool,
                chunk_subsets: int, columns: dict | None) -> dict:
    """What a resumed run must share with the interrupted one for their chunks to make one output (the column
    names too: another subset id column makes other subsets)."""
    stat = input.stat()
    config = json.dumps(asdict(model.config), sort_keys=True, default=str)
    return {"input": str(input.resolve()), "input_bytes": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
            "model": hashlib.sha256(config.encode()).hexdigest(), "cut": cut.to_dict(), "threshold": threshold,
            "describe": describe, "chunk_subsets": chunk_subsets, "columns": columns, "cactus": __version__}


def _start(folder: Path, record: dict) -> int:
    if folder.exists():
        logger.warning("%s holds the answered chunks of an interrupted run; starting over (--resume continues it)",
                       folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_text(folder / RUN_RECORD, json.dumps(record, indent=1))
    return 0


def _resume(folder: Path, record: dict) -> int:
    """The number of chunks the interrupted run answered; with no interrupted run, a fresh start (0)."""
    if not folder.exists():
        return _start(folder, record)
    try:
        before = json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ResumeError(f"cannot resume: {folder} holds no readable {RUN_RECORD} (remove the folder, or run "
                          "without --resume to start over)") from None
    changed = [key for key in record if before.get(key) != record[key]]
    if changed:
        what = {"input_bytes": "the input file", "input_mtime_ns": "the input file", "model": "the model",
                "input": "the input file"}
        names = list(dict.fromkeys(what.get(key, key) for key in changed))
        raise ResumeError(f"cannot resume: {', '.join(names)} changed since the interrupted run (run without "
                          "--resume to start over)")
    return _answered(folder)


def _answered(folder: Path) -> int:
    """How many chunks, from the first on, are answered in `folder`."""
    return next(k for k in itertools.count() if not (folder / _chunk_name(k)).is_file())


def _chunk_name(k: int) -> str:
    return f"{k:06d}.jsonl"


def answer_record(answer, describe: bool) -> dict:
    """A subset's answer (`Cactus.predict_iter`'s) as a JSON record: as written in a chunk file."""
    if not describe:
        return {"cluster_ids": [int(c) for c in answer]}
    return {"cluster_ids": [int(c) for c in answer.cluster_ids], "clusters": [c.to_dict() for c in answer.clusters],
            "cohesion": [round(float(x), 4) for x in answer.cohesion]}


def row_descriptions(answer: dict) -> dict[str, list]:
    """A described answer (`answer_record`) as a table's columns (DESCRIPTION_FIELDS[True]), one value per entity:
    its cluster's name and its cohesion."""
    name = {c["id"]: c["name"] for c in answer["clusters"]}
    return {"cluster_name": [name[c] for c in answer["cluster_ids"]], "cohesion": answer["cohesion"]}


def _answers(folder: Path) -> Iterator[dict]:
    for k in itertools.count():
        path = folder / _chunk_name(k)
        if not path.is_file():
            return
        with open(path, encoding="utf-8") as f:
            yield from (json.loads(line) for line in f)


def _joined(input: Path, folder: Path, describe: bool, per_row: bool, columns: dict | None) -> Iterator[Subset]:
    """The input's subsets with their answers in the output fields (never over an input field)."""
    for subset, answer in itertools.zip_longest(iter_subsets(input, columns), _answers(folder)):
        if subset is None or answer is None or len(answer["cluster_ids"]) != len(subset):
            raise ResumeError(f"the answers in {folder} do not match {input}: it changed during the run; run again "
                              "without --resume")
        yield with_answer(subset, answer, describe, per_row)


def with_answer(subset: Subset, answer: dict, describe: bool, per_row: bool) -> Subset:
    """The subset with its predicted clusters (and, with `describe`, their description: DESCRIPTION_FIELDS)."""
    out = subset.with_clusters(answer["cluster_ids"])
    if not describe:
        return out
    if per_row:
        return replace(out, columns={**out.columns, **row_descriptions(answer)})
    return replace(out, extra={**out.extra, "clusters": answer["clusters"], "cohesion": answer["cohesion"]})
