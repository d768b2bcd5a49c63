"""Reading and writing subsets: the input/output contract of docs/io.md.

Two layouts:
- JSONL, one subset per line: {"id": str|int, "texts": [str, ...], "labels": [str|int, ...], "entity_ids": [...],
  "cluster_ids": [...]} ("labels", "entity_ids" and "cluster_ids", the predicted clusters, optional; any other field
  is kept and written back). A `.json` file is read the same way.
- A long table (.csv or .parquet), one entity per row (`cactus.data.tables`).

Reading refuses anything it cannot take whole with a `SubsetFormatError` naming the file, line, subset and entity;
writing is atomic (`cactus.atomic`) and keeps every field, the types of ids and labels, and the row order.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
from pathlib import Path
from typing import Sequence

from cactus.atomic import atomic_write
from cactus.data.subsets import (
    RECORD_FIELDS,
    TABLE_COLUMNS,
    Subset,
    SubsetFormatError,
    check_unique_ids,
    is_label,
    printed_alike,
)
from cactus.data.tables import read_csv, read_parquet, to_text, write_table

logger = logging.getLogger(__name__)

LAYOUTS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def layout_of(path: str | os.PathLike) -> str:
    """"jsonl", "csv" or "parquet", from the file suffix; SubsetFormatError for another suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in LAYOUTS:
        raise SubsetFormatError(f"unknown file type {suffix!r}: expected .jsonl, .csv or .parquet", source=str(path))
    return LAYOUTS[suffix]


def read_subsets(path: str | os.PathLike) -> list[Subset]:
    """Read and validate subsets from a .jsonl, .csv or .parquet file (at least one subset)."""
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    layout = layout_of(path)
    if path.is_dir():
        raise SubsetFormatError("is a folder, not a file of subsets", source=src)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SubsetFormatError(f"cannot read it ({e.strerror})", source=src) from None
    if layout == "parquet":
        subsets = read_parquet(data, src)
    else:
        text = decode_utf8(data, src)
        subsets = _read_jsonl(text, src) if layout == "jsonl" else read_csv(text, src)
    if not subsets:
        raise SubsetFormatError("no subsets: the file holds no data", source=src)
    return subsets


def decode_utf8(data: bytes, src: str) -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped), or SubsetFormatError at the first bad byte."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise SubsetFormatError("UTF-16 text: save it as UTF-8", source=src)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SubsetFormatError(f"not UTF-8 text: byte 0x{data[e.start]:02x} at byte {column} of the line",
                                source=src, line=line) from None


def _read_jsonl(text: str, src: str) -> list[Subset]:
    subsets: list[Subset] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        record = _parse_line(raw, src, lineno, text)
        subset = _subset_from_record(record, src, lineno)
        key = str(subset.id)  # 1 and "1" name one subset in a table, so they may not both be used
        if key in first_line:
            raise SubsetFormatError(f"duplicate subset id (first on line {first_line[key]})",
                                    source=src, line=lineno, subset_id=subset.id)
        first_line[key] = lineno
        _warn_mixed_labels(subset, f"{src}:{lineno}")
        subsets.append(subset)
    return subsets


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return record


def _parse_line(raw: str, src: str, lineno: int, text: str) -> dict:
    """One line's JSON object, or SubsetFormatError (with a hint for a whole JSON document over several lines)."""
    try:
        record = json.loads(raw, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        _refuse_document(text, src, lineno)
        raise SubsetFormatError(f"malformed JSON: {e.msg} at column {e.colno}", source=src, line=lineno) from None
    except _RepeatedKey as e:
        raise SubsetFormatError(f"field {e.args[0]!r} appears twice in one object", source=src, line=lineno) from None
    except RecursionError:
        raise SubsetFormatError("JSON nested too deeply", source=src, line=lineno) from None
    if not isinstance(record, dict):
        _refuse_document(text, src, lineno)
        raise SubsetFormatError(f"each line must be a JSON object, got {type(record).__name__}", source=src,
                                line=lineno)
    if "\\u" in raw:  # an escaped lone surrogate is no character: it could not be written back as UTF-8
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise SubsetFormatError("a string holds an escaped lone surrogate (\\ud800 to \\udfff), which is no "
                                    "character", source=src, line=lineno) from None
    return record


def _refuse_document(text: str, src: str, lineno: int) -> None:
    """When the first line is no object but the whole file is one JSON object or list of objects (pretty-printed,
    or a list), say so."""
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


def check_layout(subsets: Sequence[Subset], path: str | os.PathLike) -> None:
    """SubsetFormatError if a carried field of `subsets` has the name of one that the layout of `path` writes itself
    (a table column 'texts' in JSONL, a JSONL field 'text' in a table). Cheap: callers check before working."""
    layout = layout_of(path)
    taken = RECORD_FIELDS if layout == "jsonl" else TABLE_COLUMNS
    for s in subsets:
        clash = [name for name in (s.columns if layout == "jsonl" else s.extra) if name in taken]
        if clash:
            raise SubsetFormatError(f"field {clash[0]!r} has the name of one that a {layout} file of subsets holds "
                                    "itself; rename it, or write another format", source=str(path), subset_id=s.id)


def write_subsets(path: str | os.PathLike, subsets: Sequence[Subset]) -> None:
    """Write subsets (for example predictions) in the layout named by the file suffix, atomically, keeping every
    field and, for a table read from a table, the input's row order."""
    path = Path(path)
    layout = layout_of(path)
    check_unique_ids(subsets, source=str(path))
    check_layout(subsets, path)
    if layout == "jsonl":
        atomic_write(path, lambda tmp: _write_jsonl(tmp, subsets))
    else:
        atomic_write(path, lambda tmp: write_table(tmp, subsets, layout, source=str(path)))


def _write_jsonl(tmp: Path, subsets: Sequence[Subset]) -> None:
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for s in subsets:
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
