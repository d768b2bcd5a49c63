"""Batch prediction on a Ray cluster with Ray Data (`cactus predict --engine ray`; `pip install -e ".[ray]"`).

`predict_dataset` reads one of two inputs:
- a JSONL file of subsets (`.jsonl.gz` too), as lines; each line is parsed and validated with the same code as
  `cactus predict` (`cactus.data.io.subset_of_line`) by the actor that clusters it;
- a long table in Parquet, one entity per row: a `.parquet` file, or a folder of them (read in the order of their
  names), whose columns may have other names (`columns`, as `cactus.data.io.read_subsets` takes them). Ray tasks
  read it by row groups, each row numbered by its place in the input; the rows are grouped by subset id
  (`groupby(...).map_groups`), wherever they lie, and each subset is assembled from its rows and validated by the
  local table reader's code (`cactus.data.tables.subset_of_rows`; an error names the file, row, subset and entity
  as locally); the subsets are then ordered by their first row, the order in which the local reader gives them.

Batches of subsets are clustered with `map_batches` on a pool of actors that each hold one model (loaded once per
actor, with `num_gpus` each where there are GPUs), in input order, into a folder of Parquet files, one entity per
row: `subset_id`, `entity_index`, `text`, `label` (null for a subset without labels) and `cluster_id`, the first,
third and fourth under the input table's names when `columns` gives others; with `describe`, also `cluster_name` and
`cohesion`, as `cactus predict --describe` writes a table. Ids and labels are written as text, so that every block
has one schema.

A worker or node that dies mid-job is Ray's to recover: its tasks run again and a dead actor is restarted. There is
no `--resume` of the whole job: the output folder is written anew by each run.

With no `address`, Ray starts a local cluster on this machine; `address="ray://head:10001"` (or "auto" on a node of
a running cluster) submits the same job to a cluster, where the model's folder and the input must be reachable at
the same paths from every node (a shared file system, or object storage with a URI Ray reads).
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from cactus.batch import DESCRIPTION_FIELDS, answer_record, row_descriptions
from cactus.cluster import Cut
from cactus.data.io import layout_of, subset_of_line, subset_to_record
from cactus.data.subsets import SubsetFormatError
from cactus.data.tables import (
    check_columns,
    check_header,
    check_subset_id,
    one_line,
    subset_of_rows,
    table_columns,
)

if TYPE_CHECKING:
    import pyarrow

    from cactus.model import Cactus

OUTPUT_COLUMNS = ("subset_id", "entity_index", "text", "label", "cluster_id")
ROW = "__cactus_row"  # each table row's place in the input (0-based, over the files in order), added on reading


class SubsetPredictor:
    """A Ray Data actor: one model, loaded when the actor starts; `__call__` answers one batch of subsets, JSONL
    lines in the column "text", into rows under the names `columns` gives `OUTPUT_COLUMNS` (and, with `describe`,
    the description columns)."""

    def __init__(self, model: "Cactus", threshold: float | None, cut: dict, source: str, columns: dict[str, str],
                 describe: bool = False):
        model.encoder  # load the weights once per actor, before the first batch
        self.model, self.threshold, self.cut, self.source = model, threshold, Cut.from_dict(cut), source
        self.columns, self.describe = columns, describe

    def __call__(self, batch: dict) -> dict:
        lines = [line for line in batch["text"] if line.strip()]
        subsets = [subset_of_line(line, self.source, None) for line in lines]
        answers = (self.model.describe if self.describe else self.model.predict)(subsets, threshold=self.threshold,
                                                                                cut=self.cut)
        names = OUTPUT_COLUMNS + (DESCRIPTION_FIELDS[True] if self.describe else ())
        out: dict[str, list] = {name: [] for name in names}
        for s, answer in zip(subsets, answers):
            record = answer_record(answer, self.describe)
            for i, (text, cluster) in enumerate(zip(s.texts, record["cluster_ids"])):
                out["subset_id"].append(str(s.id))
                out["entity_index"].append(i)
                out["text"].append(text)
                out["label"].append(None if s.labels is None else str(s.labels[i]))
                out["cluster_id"].append(cluster)
            if self.describe:
                for name, values in row_descriptions(record).items():
                    out[name].extend(values)
        return {self.columns.get(name, name): values for name, values in out.items()}


def input_layout(source: str | os.PathLike) -> str:
    """"parquet" for a .parquet file or a folder (a local one, or a URI ending in "/"), "jsonl" for a JSONL file;
    ValueError for anything else."""
    text = str(source)
    if text.endswith("/") or Path(text).is_dir() or Path(text).suffix.lower() == ".parquet":
        return "parquet"
    try:
        if layout_of(text) == "jsonl":
            return "jsonl"
    except SubsetFormatError:
        pass
    raise ValueError(f"cannot read {text} on Ray: it reads JSONL (.jsonl, .jsonl.gz) or Parquet (a .parquet file, "
                     "or a folder of them)")


def predict_dataset(model: "Cactus", input: str | os.PathLike, output: str | os.PathLike, *,
                    threshold: float | None = None, cut: Cut | None = None, actors: int = 1,
                    num_gpus: float = 0, batch_subsets: int = 256, address: str | None = None,
                    columns: Mapping[str, str] | None = None, describe: bool = False) -> int:
    """Cluster every subset of `input` (JSONL, or Parquet: `input_layout`) on Ray into the Parquet folder `output`
    (replaced if there); return the number of entity rows written. `actors` models run at once (each with
    `num_gpus`); each call of one answers `batch_subsets` subsets. `threshold` and `cut` as in `Cactus.predict`;
    `columns`, a Parquet input's names for the columns cactus reads, as `cactus.data.io.read_subsets` takes them
    (refused for JSONL), also name the output's. `describe` adds every entity's cluster name and cohesion
    (`Cactus.describe`) as the columns `cluster_name` and `cohesion`."""
    import ray

    names = table_columns(columns)
    source = str(input)
    layout = input_layout(source)
    if layout == "jsonl" and any(role != name for role, name in names.items()):
        raise ValueError(f"{source}: column names are for a table (Parquet); a JSONL file's fields have fixed names")
    made = {"entity_index", ROW} | (set(DESCRIPTION_FIELDS[True]) if describe else set())
    clash = sorted(made & set(names.values()))
    if clash:
        raise ValueError(f"columns: {clash[0]!r} is a column that --engine ray makes itself; name another")
    cut, threshold = model.resolve_cut(threshold, cut)
    if layout == "jsonl" and not Path(source).exists() and "://" not in source:
        raise FileNotFoundError(f"{source}: no such file")
    plan = _plan(source, names) if layout == "parquet" else None  # a bad table fails here, before Ray starts
    if not ray.is_initialized():
        # A local cluster counts one logical CPU per actor and one more for the reading and writing tasks, which
        # wait on I/O: with only the machine's cores, actors holding them all would leave the reader unscheduled.
        local = {"num_cpus": actors + 1} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 **local)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.raise_original_map_exception = True  # else a task's SubsetFormatError reaches here as a bare wrapper
    io = {"num_cpus": 0.1}  # reading, grouping and writing: a small share of the CPU left to them
    subsets = ray.data.read_text(source, ray_remote_args=io) if plan is None else _table_subsets(plan, names, io)
    answered = subsets.map_batches(SubsetPredictor, batch_size=batch_subsets, num_cpus=1, num_gpus=num_gpus,
                                   compute=ray.data.ActorPoolStrategy(size=actors),
                                   fn_constructor_kwargs={"model": model, "threshold": threshold,
                                                          "cut": cut.to_dict(), "source": source, "columns": names,
                                                          "describe": describe})
    try:
        answered.write_parquet(str(output), mode="overwrite", ray_remote_args=io)
    except Exception as e:  # Ray wraps a worker's error; its message names the subset
        cause = _user_error(e)
        if cause is not None:
            raise cause from None
        raise
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in Path(output).glob("*.parquet"))


def _plan(source: str, names: dict[str, str]) -> dict:
    """What the reading tasks need, from the Parquet files' footers alone: the files (path on the file system, and
    the name errors give it), the role columns to read and their Arrow types, the first row of each file in the
    input's numbering, and the row groups to read. A file that is unreadable, repeats a column, lacks one of
    `names`' or types a role column otherwise than another file is refused, naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, files = _parquet_files(source)
    present: set[str] = set()
    types: dict[str, pyarrow.DataType] = {}
    offsets, parts, rows = [], [], 0
    for index, (path, shown) in enumerate(files):
        try:
            with filesystem.open_input_file(path) as f:
                reader = pq.ParquetFile(f)
                schema, metadata = reader.schema_arrow, reader.metadata
        except Exception as e:  # a damaged file raises whatever pyarrow meets first
            raise SubsetFormatError(f"not a readable Parquet file ({one_line(e)})", source=shown) from None
        check_header(schema.names, shown, None)
        check_columns(schema.names, names, shown)
        for name in names.values():
            if name not in schema.names or pa.types.is_null(schema.field(name).type):
                continue
            kind = types.setdefault(name, schema.field(name).type)
            if kind != schema.field(name).type:
                raise SubsetFormatError(f"column {name!r} holds {schema.field(name).type}, and {kind} in an earlier "
                                        "file; every file must give it one type", source=shown)
        present.update(name for name in names.values() if name in schema.names)
        offsets.append(rows)
        for group in range(metadata.num_row_groups):
            count = metadata.row_group(group).num_rows
            if count:
                parts.append({"file": index, "group": group, "first": rows})
            rows += count
    if not parts:
        raise SubsetFormatError("no subsets: it holds no rows", source=source)
    return {"filesystem": filesystem, "files": files, "header": [name for name in names.values() if name in present],
            "types": types, "offsets": offsets, "parts": parts}


def _parquet_files(source: str) -> tuple["pyarrow.fs.FileSystem", list[tuple[str, str]]]:
    """The file system of `source` and its Parquet files as (path there, name in messages): the file itself, or a
    folder's `.parquet` files in the order of their names, leaving out hidden ones ('.x', '_x': Spark's markers)."""
    import pyarrow.fs as pafs

    if "://" in source:
        filesystem, base = pafs.FileSystem.from_uri(source)
    else:
        filesystem, base = pafs.LocalFileSystem(), str(Path(source).absolute())
    info = filesystem.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{source}: no such file or folder")
    if info.type == pafs.FileType.File:
        return filesystem, [(base, source)]
    base = base.rstrip("/")
    files = []
    for found in filesystem.get_file_info(pafs.FileSelector(base, recursive=True)):
        inside = found.path[len(base):].lstrip("/")
        if (found.type == pafs.FileType.File and inside.lower().endswith(".parquet")
                and not any(part.startswith((".", "_")) for part in inside.split("/"))):
            files.append((found.path, f"{source.rstrip('/')}/{inside}"))
    if not files:
        raise SubsetFormatError("no Parquet files (.parquet) in this folder", source=source)
    return filesystem, sorted(files)


def _table_subsets(plan: dict, names: dict[str, str], io: dict):
    """The Parquet input as a dataset of subsets, one JSONL record per row (column "text"), in the order of their
    first rows."""
    import ray

    places = {"files": [shown for _, shown in plan["files"]], "offsets": plan["offsets"]}
    rows = ray.data.from_items(plan["parts"], override_num_blocks=len(plan["parts"])).map_batches(
        _read_part, batch_size=1, batch_format="pyarrow", num_cpus=io["num_cpus"],
        fn_kwargs={"plan": {k: plan[k] for k in ("filesystem", "files", "header", "types", "offsets")},
                   "names": names})
    # rows of one subset may lie in any part: group them wherever they are, in a partition per part read (no more
    # than Ray's default number: a small input is not spread over hundreds of tasks)
    partitions = min(len(plan["parts"]), ray.data.DataContext.get_current().default_hash_shuffle_parallelism)
    subsets = rows.groupby(names["subset_id"], num_partitions=partitions).map_groups(
        _assemble, batch_format="pyarrow", num_cpus=io["num_cpus"],
        fn_kwargs={"header": plan["header"], "names": names, "places": places})
    return subsets.sort("order")


def _read_part(batch: "pyarrow.Table", plan: dict, names: dict[str, str]) -> "pyarrow.Table":
    """One row group of one file (`batch`: its one part), with every role column of the input and each row's place
    in the input (`ROW`); a row whose subset id is no id is refused here."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file, group, first = (batch[key][0].as_py() for key in ("file", "group", "first"))
    path, shown = plan["files"][file]
    try:
        with plan["filesystem"].open_input_file(path) as f:
            reader = pq.ParquetFile(f)
            table = reader.read_row_group(group, columns=[n for n in plan["header"] if n in reader.schema_arrow.names])
    except Exception as e:  # a damaged file raises whatever pyarrow meets first
        raise SubsetFormatError(f"not a readable Parquet file ({one_line(e)})", source=shown) from None
    line = first - plan["offsets"][file] + 1
    for k, sid in enumerate(table.column(names["subset_id"]).to_pylist()):
        check_subset_id(sid, names["subset_id"], shown, line + k)
    # a column this file lacks, or holds only nulls in, takes the other files' type: every block has one schema
    columns = {name: table.column(name) if name in table.column_names and not pa.types.is_null(table.field(name).type)
               else pa.nulls(table.num_rows, plan["types"].get(name, pa.null())) for name in plan["header"]}
    columns[ROW] = pa.array(range(first, first + table.num_rows), type=pa.int64())
    return pa.table(columns)


def _assemble(group: "pyarrow.Table", header: list[str], names: dict[str, str], places: dict) -> dict:
    """One subset from all of its rows (`group`), validated as the local table reader does: its JSONL record, and
    the place of its first row ("order")."""
    records = sorted(group.to_pylist(), key=lambda record: record[ROW])
    where = []
    for record in records:
        file = bisect.bisect_right(places["offsets"], record[ROW]) - 1
        where.append((places["files"][file], record[ROW] - places["offsets"][file] + 1))
    subset = subset_of_rows(records[0][names["subset_id"]], records, header, names, None, where)
    return {"order": [records[0][ROW]], "text": [json.dumps(subset_to_record(subset), ensure_ascii=False)]}


def _user_error(error: BaseException) -> SubsetFormatError | None:
    """The SubsetFormatError a worker raised, out of Ray's wrappers (one of which is itself a SubsetFormatError, its
    message the worker's whole traceback: the innermost is the worker's own)."""
    seen = error
    while seen is not None:
        inner = getattr(seen, "cause", None) or seen.__cause__
        if isinstance(seen, SubsetFormatError) and not isinstance(inner, SubsetFormatError):
            return seen
        seen = inner
    return None
