"""Long tables of subsets (.csv, .parquet): one entity per row.

Columns `subset_id` and `text`, optionally `label`, `entity_id` and `cluster_id` (the predicted cluster); any other
column is carried through. Rows of a subset keep their table order, subsets keep the order of their first row, and
a table written from subsets read from a table has the input's rows in the input's order. An empty cell (CSV) or a
null (Parquet) is a missing value: a subset whose cells of an optional column are all missing has no such field.

CSV is text: every cell reads as a string, and is written as its text. Parquet keeps types: a column of one type is
written as that type; a column whose values differ in type (integer labels in one subset, strings in another) is
written as text, with a warning.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Sequence

from cactus.data.subsets import TABLE_COLUMNS, Subset, SubsetFormatError, check_unique_ids, is_label

logger = logging.getLogger(__name__)

OPTIONAL_COLUMNS = {"label": "labels", "entity_id": "entity_ids", "cluster_id": "cluster_ids"}
_FIELD_LIMIT = 2**31 - 1  # the csv module refuses fields over 128 KiB unless told


def read_csv(text: str, src: str) -> list[Subset]:
    """Subsets of a CSV table's text (decoded already); line numbers are the file's."""
    header, rows = _csv_rows(text, src)
    return _subsets_from_rows(header, rows, src, missing="")


def _csv_rows(text: str, src: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(first line of the record, column -> cell)]); blank lines skipped."""
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, dict]] = []
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise SubsetFormatError(f"malformed CSV: {e}", source=src, line=start) from None
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if header is None:
            header = _check_header(record, src, start)
        elif len(record) != len(header):
            raise SubsetFormatError(f"{len(record)} fields, but the header has {len(header)}", source=src, line=start)
        else:
            rows.append((start, dict(zip(header, record))))
    return header or [], rows


def read_parquet(data: bytes, src: str) -> list[Subset]:
    """Subsets of a Parquet file's bytes; line numbers are 1-based rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
        header = _check_header(table.column_names, src, None)
        records = table.to_pylist()
    except SubsetFormatError:
        raise
    except Exception as e:  # a damaged file raises whatever pyarrow meets first
        raise SubsetFormatError(f"not a readable Parquet file ({one_line(e)})", source=src) from None
    return _subsets_from_rows(header, [(i + 1, r) for i, r in enumerate(records)], src, missing=None)


def _check_header(names: list[str], src: str, line: int | None) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SubsetFormatError(f"column {name!r} appears twice", source=src, line=line)
        seen.add(name)
    return list(names)


def _subsets_from_rows(header: list[str], rows: list[tuple[int, dict]], src: str, missing) -> list[Subset]:
    if not header:
        return []  # an empty file: the reader says so
    for col in ("subset_id", "text"):
        if col not in header:
            raise SubsetFormatError(f"missing column {col!r} (columns: {header})", source=src)
    groups: dict = {}
    for index, (line, record) in enumerate(rows):
        sid = record["subset_id"]
        if not is_label(sid) or sid == "":
            raise SubsetFormatError(f"'subset_id' must be a non-empty string or an integer, got {sid!r}",
                                    source=src, line=line)
        group = groups.setdefault(sid, {"lines": [], "rows": [], "cells": {name: [] for name in header}})
        group["lines"].append(line)
        group["rows"].append(index)
        for name in header:
            group["cells"][name].append(record[name])
    subsets = [_subset_of_group(sid, g, header, missing, src) for sid, g in groups.items()]
    check_unique_ids(subsets, source=src)
    return subsets


def _subset_of_group(sid, group: dict, header: list[str], missing, src: str) -> Subset:
    cells, lines = group["cells"], group["lines"]
    try:
        optional = {field: _optional(cells[col], col, missing)
                    for col, field in OPTIONAL_COLUMNS.items() if col in header}
        columns = {name: cells[name] for name in header if name not in TABLE_COLUMNS}
        return Subset(sid, cells["text"], extra={}, columns=columns, rows=group["rows"], **optional)
    except SubsetFormatError as e:  # point at the entity's own row when there is one
        raise SubsetFormatError(e.reason, source=src, line=lines[e.entity_index or 0], subset_id=sid,
                                entity_index=e.entity_index) from None


def _optional(values: list, column: str, missing) -> list | None:
    """A subset's cells of an optional column: None when all are missing; an error naming the first missing one
    when only some are."""
    absent = [i for i, v in enumerate(values) if v is None or v == missing]
    if len(absent) == len(values):
        return None
    if absent:
        raise SubsetFormatError(f"{column} is missing (other rows of this subset have one)", entity_index=absent[0])
    return values


def write_table(tmp: Path, subsets: Sequence[Subset], layout: str, source: str) -> None:
    """Write `subsets` as a long table ("csv" or "parquet") to the file `tmp`."""
    names, rows = _table(subsets)
    if layout == "csv":
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)  # CRLF rows (RFC 4180): a text holding a lone \r is then quoted too
            writer.writerow(names)
            writer.writerows([to_text(v) for v in row] for row in rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {name: _arrow_column([row[j] for row in rows], name, source) for j, name in enumerate(names)}
        pq.write_table(pa.table(columns), tmp)


def _table(subsets: Sequence[Subset]) -> tuple[list[str], list[list]]:
    """Column names and rows: the known columns, the carried ones (a JSONL field repeated on each of its subset's
    rows), then cluster_id; rows in input-table order when every subset came from a table, else subset by subset."""
    optional = [col for col, field in OPTIONAL_COLUMNS.items() if any(getattr(s, field) is not None for s in subsets)]
    carried = list(dict.fromkeys(name for s in subsets for name in [*s.columns, *s.extra]))
    names = ["subset_id", "text", *[c for c in optional if c != "cluster_id"], *carried,
             *[c for c in optional if c == "cluster_id"]]
    in_table_order = all(s.rows is not None for s in subsets)
    keyed = []
    for k, s in enumerate(subsets):
        for i, text in enumerate(s.texts):
            values = {"subset_id": s.id, "text": text}
            for col in optional:
                field = getattr(s, OPTIONAL_COLUMNS[col])
                values[col] = None if field is None else field[i]
            for name in carried:
                values[name] = s.columns[name][i] if name in s.columns else s.extra.get(name)
            keyed.append(((s.rows[i], k, i) if in_table_order else (k, i), [values[n] for n in names]))
    keyed.sort(key=lambda item: item[0])
    return names, [row for _, row in keyed]


def _arrow_column(values: list, name: str, source: str):
    """A Parquet column keeping the values' type; as text, with a warning, when no one Arrow type holds them all
    exactly as they are."""
    import pyarrow as pa

    kinds = {type(v).__name__ for v in values if v is not None}
    if len(kinds) <= 1:
        try:
            array = pa.array(values)
            if all(_same(a, b) for a, b in zip(array.to_pylist(), values)):
                return array
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            pass
    logger.warning("%s: column %r holds values of types %s that no one Parquet type keeps; written as text",
                   source, name, sorted(kinds))
    return pa.array([None if v is None else to_text(v) for v in values], type=pa.string())


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def to_text(value) -> str:
    """A cell's text: strings as they are, lists and objects as JSON, dates in ISO form, None as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=to_text)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def one_line(error: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__
