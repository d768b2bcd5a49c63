"""Reading and writing subsets: the input/output contract of docs/io.md.

Two layouts:
- JSONL, one subset per line: {"id": str|int, "texts": [str, ...], "labels": [str|int, ...], "entity_ids": [...],
  "cluster_ids": [...]} ("labels", "entity_ids" and "cluster_ids", the predicted clusters, optional; any other field
  is kept and written back). A `.json` file is read the same way; either may be gzip-compressed (`.jsonl.gz`).
- A long table (.csv or .parquet), one entity per row (`cactus.data.tables`), whose columns may have other names
  than cactus's (`columns={"subset_id": "query", "text": "title"}` where a reader or writer takes `columns`).

Reading refuses anything it cannot take whole with a `SubsetFormatError` naming the file, line, subset and entity;
writing is atomic (`cactus.atomic`) and keeps every field, the types of ids and labels, and the row order. JSONL is
read and written one subset at a time (`iter_subsets`, `write_subsets` of an iterable), in memory that does not
grow with the file; a table is read whole, because the rows of one subset may lie anywhere in it.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import logging
import os
import zlib
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Mapping, Sequence

from cactus.atomic import atomic_write
from cactus.data.subsets import (
    RECORD_FIELDS,
    Subset,
    SubsetFormatError,
    check_unique_ids,
    is_label,
    printed_alike,
)
from cactus.data.tables import one_line, read_csv, read_parquet, table_columns, to_text, write_table

logger = logging.getLogger(__name__)

LAYOUTS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def layout_of(path: str | os.PathLike) -> str:
    """"jsonl", "csv" or "parquet", from the file suffix (JSONL also gzip-compressed, `.jsonl.gz`);
    SubsetFormatError for another suffix."""
    suffix = Path(path).suffix.lower()
    if _gzipped(path):
        inner = Path(Path(path).stem).suffix.lower()
        if LAYOUTS.get(inner) == "jsonl":
            return "jsonl"
        raise SubsetFormatError(f"unknown file type {inner + suffix!r}: only JSONL may be gzip-compressed "
                                "(.jsonl.gz)", source=str(path))
    if suffix not in LAYOUTS:
        raise SubsetFormatError(f"unknown file type {suffix!r}: expected .jsonl, .jsonl.gz, .csv or .parquet",
                                source=str(path))
    return LAYOUTS[suffix]


def _gzipped(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".gz"


def read_subsets(path: str | os.PathLike, columns: Mapping[str, str] | None = None) -> list[Subset]:
    """Read and validate subsets from a .jsonl (.jsonl.gz), .csv or .parquet file (at least one subset). `columns`:
    a table's names for the columns cactus reads, by role ({"subset_id": "query", "text": "title", "label":
    "category", "entity_id": "sku"}; `cactus.data.tables.table_columns`); a JSONL file with them is refused
    (ValueError), since its fields have fixed names."""
    return list(iter_subsets(path, columns))


def iter_subsets(path: str | os.PathLike, columns: Mapping[str, str] | None = None) -> Iterator[Subset]:
    """The validated subsets of a file, one at a time: JSONL is parsed line by line as it is consumed (memory holds
    one line, and the ids seen), a table is read whole first. Errors are those of `read_subsets`, raised when the
    bad line is reached; a file with no subset is an error too."""
    names = table_columns(columns)
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    layout = layout_of(path)
    if path.is_dir():
        raise SubsetFormatError("is a folder, not a file of subsets", source=src)
    if layout == "jsonl":
        _refuse_columns(columns, src)
        subsets = _iter_jsonl(path, src)
    else:
        data = _read_bytes(path, src)
        subsets = iter(read_parquet(data, src, names) if layout == "parquet"
                       else read_csv(decode_utf8(data, src), src, names))
    empty = True
    for subset in subsets:
        empty = False
        yield subset
    if empty:
        raise SubsetFormatError("no subsets: the file holds no data", source=src)


def _refuse_columns(columns: Mapping[str, str] | None, src: str) -> None:
    """ValueError when `columns` names a column otherwise than its role: JSONL has no columns to name."""
    renamed = {role: name for role, name in (columns or {}).items() if role != name}
    if renamed:
        raise ValueError(f"{src}: column names ({', '.join(f'{k}={v!r}' for k, v in renamed.items())}) are for a "
                         "table (.csv, .parquet); a JSONL file's fields have fixed names")


def _read_bytes(path: Path, src: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise SubsetFormatError(f"cannot read it ({e.strerror})", source=src) from None


def decode_utf8(data: bytes, src: str, line: int | None = None) -> str:
    """The text of UTF-8 bytes (a leading byte-order mark dropped), or SubsetFormatError at the first bad byte.
    `line`: the bytes are that one line of the file, else the whole file."""
    if line in (None, 1):
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise SubsetFormatError("UTF-16 text: save it as UTF-8", source=src)
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = data.count(b"\n", 0, e.start) + (line or 1)
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SubsetFormatError(f"not UTF-8 text: byte 0x{data[e.start]:02x} at byte {column} of the line",
                                source=src, line=at) from None


def _open_binary(path: Path, src: str) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if _gzipped(path) else open(path, "rb")
    except OSError as e:
        raise SubsetFormatError(f"cannot read it ({e.strerror})", source=src) from None


def _iter_jsonl(path: Path, src: str) -> Iterator[Subset]:
    seen: set[str] = set()  # ids only, not their lines: memory per subset stays small; an error finds the line
    with _open_binary(path, src) as f:
        lineno = 0
        while True:
            try:
                raw_bytes = f.readline()
            except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
                raise SubsetFormatError(f"cannot read it after line {lineno} ({one_line(e)})", source=src) from None
            if not raw_bytes:
                return
            lineno += 1
            raw = decode_utf8(raw_bytes, src, lineno)
            if not raw.strip():
                continue
            subset = subset_of_line(raw, src, lineno, lambda: decode_utf8(_whole(path, src), src))
            key = str(subset.id)  # 1 and "1" name one subset in a table, so they may not both be used
            if key in seen:
                raise SubsetFormatError(f"duplicate subset id (first on line {_line_of(path, src, key)})",
                                        source=src, line=lineno, subset_id=subset.id)
            seen.add(key)
            _warn_mixed_labels(subset, f"{src}:{lineno}")
            yield subset


def subset_of_line(raw: str, src: str, lineno: int | None, whole: Callable[[], str] = str) -> Subset:
    """The validated subset of one JSONL line (errors name `src` and `lineno`; `whole()`, the file's text, is read
    only to explain a first line that is no JSON object)."""
    return _subset_from_record(_parse_line(raw, src, lineno, whole), src, lineno)


def _line_of(path: Path, src: str, key: str) -> int:
    """The first line whose subset id prints as `key` (read again, only to explain a duplicate)."""
    with _open_binary(path, src) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                if str(json.loads(raw).get("id")) == key:
                    return lineno
            except (ValueError, AttributeError):
                continue
    raise AssertionError(f"subset id {key!r} was seen but is not in {src}")


def _whole(path: Path, src: str) -> bytes:
    """The file's bytes, decompressed (only to explain a first line that is no JSON object)."""
    with _open_binary(path, src) as f:
        return f.read()


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return record


def _parse_line(raw: str, src: str, lineno: int, whole: Callable[[], str]) -> dict:
    """One line's JSON object, or SubsetFormatError (with a hint for a whole JSON document over several lines;
    `whole()` gives the file's text, read only then)."""
    try:
        record = json.loads(raw, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        _refuse_document(whole, src, lineno, raw)
        raise SubsetFormatError(f"malformed JSON: {e.msg} at column {e.colno}", source=src, line=lineno) from None
    except _RepeatedKey as e:
        raise SubsetFormatError(f"field {e.args[0]!r} appears twice in one object", source=src, line=lineno) from None
    except RecursionError:
        raise SubsetFormatError("JSON nested too deeply", source=src, line=lineno) from None
    if not isinstance(record, dict):
        _refuse_document(whole, src, lineno, raw)
        raise SubsetFormatError(f"each line must be a JSON object, got {type(record).__name__}", source=src,
                                line=lineno)
    if "\\u" in raw:  # an escaped lone surrogate is no character: it could not be written back as UTF-8
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise SubsetFormatError("a string holds an escaped lone surrogate (\\ud800 to \\udfff), which is no "
                                    "character", source=src, line=lineno) from None
    return record


def _refuse_document(whole: Callable[[], str], src: str, lineno: int, raw: str) -> None:
    """When the first line is no object but the whole file is one JSON object or list of objects (pretty-printed,
    or a list), say so."""
    if raw.lstrip()[:1] not in ("[", "{"):
        return
    text = whole()
    if lineno != text[: len(text) - len(text.lstrip())].count("\n") + 1:
        return
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return
    if not (isinstance(document, dict) or (isinstance(document, list) and document
                                           and all(isinstance(item, dict) for item in document))):
        return
    raise SubsetFormatError("one JSON document (a list, or an object over several lines); cactus reads JSON Lines, "
                            f"one subset object per line: convert it with  jq -c '.[]' {src}", source=src)


def _subset_from_record(record: dict, src: str, lineno: int) -> Subset:
    sid = record.get("id")
    for key in ("id", "texts"):
        if key not in record:
            raise SubsetFormatError(f"missing field {key!r}", source=src, line=lineno,
                                    subset_id=sid if is_label(sid) else None)
    extra = {k: v for k, v in record.items() if k not in RECORD_FIELDS}
    try:
        return Subset(record["id"], record["texts"], record.get("labels"), record.get("entity_ids"), extra,
                      cluster_ids=record.get("cluster_ids"))
    except SubsetFormatError as e:
        raise e.located(src, lineno) from None


def _warn_mixed_labels(subset: Subset, where: str) -> None:
    pair = printed_alike(subset.labels) if subset.labels is not None else None
    if pair:
        logger.warning("%s, subset %r: labels %r and %r print the same but differ in type; they are compared as "
                       "given, as different clusters", where, subset.id, *pair)


def check_layout(subsets: Sequence[Subset], path: str | os.PathLike, columns: Mapping[str, str] | None = None) -> None:
    """SubsetFormatError if a carried field of `subsets` has the name of one that the layout of `path` writes itself
    (a table column 'texts' in JSONL; a JSONL field 'text' in a table, or a column 'query' in a table whose subset
    ids go to 'query': `columns`, as `write_subsets` takes them). Cheap: callers check before working."""
    layout = layout_of(path)
    if layout == "jsonl":
        _refuse_columns(columns, str(path))
    taken = RECORD_FIELDS if layout == "jsonl" else table_columns(columns).values()
    for s in subsets:
        clash = [name for name in (s.columns if layout == "jsonl" else [*s.columns, *s.extra]) if name in taken]
        if clash:
            raise SubsetFormatError(f"field {clash[0]!r} has the name of one that a {layout} file of subsets holds "
                                    "itself; rename it, or write another format", source=str(path), subset_id=s.id)


def write_subsets(path: str | os.PathLike, subsets: Iterable[Subset],
                  columns: Mapping[str, str] | None = None) -> None:
    """Write subsets (for example predictions) in the layout named by the file suffix, atomically, keeping every
    field and, for a table read from a table, the input's row order. JSONL is written as `subsets` yields them
    (any iterable); a table is built whole, its columns named by `columns` as `read_subsets` takes them (so that a
    table read with them is written back with its own names; refused for JSONL)."""
    path = Path(path)
    if layout_of(path) == "jsonl":
        _refuse_columns(columns, str(path))
        atomic_write(path, lambda tmp: _write_jsonl(tmp, subsets, str(path)))
    else:
        names = table_columns(columns)
        subsets = list(subsets)
        check_unique_ids(subsets, source=str(path))
        check_layout(subsets, path, columns)
        atomic_write(path, lambda tmp: write_table(tmp, subsets, layout_of(path), source=str(path), names=names))


def _write_jsonl(tmp: Path, subsets: Iterable[Subset], src: str) -> None:
    seen: set[str] = set()
    # mtime 0 and no name in the gzip header: the same subsets give the same bytes
    with open(tmp, "wb") as raw:
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if _gzipped(src) else raw
        with io.TextIOWrapper(stream, encoding="utf-8", newline="\n") as f:
            for s in subsets:
                if str(s.id) in seen:
                    raise SubsetFormatError("duplicate subset id", source=src, subset_id=s.id)
                seen.add(str(s.id))
                check_layout([s], src)
                f.write(_json_line(subset_to_record(s)) + "\n")


def _json_line(record: dict) -> str:
    line = json.dumps(record, ensure_ascii=False, default=to_text)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped, it reads back as it was
        line = json.dumps(record, default=to_text)
    return line


def subset_to_record(s: Subset) -> dict:
    """The JSONL record of a subset: its fields, then the carried ones (a table's columns as lists)."""
    rec: dict = {"id": s.id, "texts": s.texts}
    for name in ("labels", "entity_ids", "cluster_ids"):
        if getattr(s, name) is not None:
            rec[name] = getattr(s, name)
    rec.update(s.extra)
    rec.update(s.columns)
    return rec
