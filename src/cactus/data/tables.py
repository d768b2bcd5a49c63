"""Long tables of subsets (.csv, .parquet): one entity per row.

Columns `subset_id` and `text`, optionally `label`, `entity_id` and `cluster_id` (the predicted cluster); any other
column is carried through. A table may give the first four other names (`table_columns`: {"subset_id": "query",
"text": "title"}); read and written with the same names, it keeps them. Rows of a subset keep their table order,
subsets keep the order of their first row, and a table written from subsets read from a table has the input's rows
in the input's order. An empty cell (CSV) or a null (Parquet) is a missing value: a subset whose cells of an
optional column are all missing has no such field.

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
from typing import Mapping, Sequence

from cactus.data.subsets import TABLE_COLUMNS, Subset, SubsetFormatError, check_unique_ids, is_label

logger = logging.getLogger(__name__)

OPTIONAL_COLUMNS = {"label": "labels", "entity_id": "entity_ids", "cluster_id": "cluster_ids"}
# The column roles a table may give other names; `cluster_id` keeps its own, since it is where predictions go.
ROLES = ("subset_id", "text", "label", "entity_id")
_FIELD_LIMIT = 2**31 - 1  # the csv module refuses fields over 128 KiB unless told


def table_columns(columns: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each column role (`TABLE_COLUMNS`) -> its name in the table: the role's own name unless `columns` gives
    another ({"subset_id": "query", "text": "title", "label": "category", "entity_id": "sku"}). ValueError for a
    role that is not in `ROLES`, a name that is not a non-empty string, and two roles sharing one column."""
    names = {role: role for role in TABLE_COLUMNS}
    for role, name in (columns or {}).items():
        if role not in ROLES:
            raise ValueError(f"columns: {role!r} is not a column role a table may name otherwise; those are "
                             f"{list(ROLES)} (predictions always go to 'cluster_id')")
        if not isinstance(name, str) or not name:
            raise ValueError(f"columns: the {role} column's name must be a non-empty string, got {name!r}")
        names[role] = name
    roles: dict[str, str] = {}
    for role, name in names.items():
        if name in roles:
            raise ValueError(f"columns: the {roles[name]} and the {role} column would both be {name!r}; each needs "
                             "a column of its own")
        roles[name] = role
    return names


def read_csv(text: str, src: str, names: dict[str, str] | None = None) -> list[Subset]:
    """Subsets of a CSV table's text (decoded already); line numbers are the file's. `names`: `table_columns`'s."""
    header, rows = _csv_rows(text, src)
    return _subsets_from_rows(header, rows, src, "", names or table_columns())


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
            header = check_header(record, src, start)
        elif len(record) != len(header):
            raise SubsetFormatError(f"{len(record)} fields, but the header has {len(header)}", source=src, line=start)
        else:
            rows.append((start, dict(zip(header, record))))
    return header or [], rows


def read_parquet(data: bytes, src: str, names: dict[str, str] | None = None) -> list[Subset]:
    """Subsets of a Parquet file's bytes; line numbers are 1-based rows. `names`: `table_columns`'s."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
        header = check_header(table.column_names, src, None)
        records = table.to_pylist()
    except SubsetFormatError:
        raise
    except Exception as e:  # a damaged file raises whatever pyarrow meets first
        raise SubsetFormatError(f"not a readable Parquet file ({one_line(e)})", source=src) from None
    return _subsets_from_rows(header, [(i + 1, r) for i, r in enumerate(records)], src, None,
                              names or table_columns())


def check_header(names: Sequence[str], src: str, line: int | None) -> list[str]:
    """The column names of a table, or SubsetFormatError for one that appears twice."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SubsetFormatError(f"column {name!r} appears twice", source=src, line=line)
        seen.add(name)
    return list(names)


def check_columns(header: Sequence[str], names: dict[str, str], src: str) -> None:
    """SubsetFormatError naming the file and the column, unless `header` holds the subset id and text columns and
    every column that `names` gives another name than its role's."""
    for role, name in names.items():
        if name in header or (role not in ("subset_id", "text") and name == role):
            continue
        named = "" if name == role else f", named as the {role} column"
        raise SubsetFormatError(f"missing column {name!r}{named} (columns: {list(header)})", source=src)


def check_subset_id(sid, column: str, src: str, line: int | None) -> None:
    """SubsetFormatError naming the row unless `sid`, a row's cell of the subset id column, is a non-empty string
    or an integer."""
    if not is_label(sid) or sid == "":
        raise SubsetFormatError(f"{column!r} must be a non-empty string or an integer, got {sid!r}", source=src,
                                line=line)


def _subsets_from_rows(header: list[str], rows: list[tuple[int, dict]], src: str, missing,
                       names: dict[str, str]) -> list[Subset]:
    if not header:
        return []  # an empty file: the reader says so
    check_columns(header, names, src)
    groups: dict = {}
    for index, (line, record) in enumerate(rows):
        sid = record[names["subset_id"]]
        check_subset_id(sid, names["subset_id"], src, line)
        groups.setdefault(sid, []).append((index, line, record))
    subsets = [subset_of_rows(sid, [record for _, _, record in group], header, names, missing,
                              places=[(src, line) for _, line, _ in group], rows=[index for index, _, _ in group])
               for sid, group in groups.items()]
    check_unique_ids(subsets, source=src)
    return subsets


def subset_of_rows(sid, records: Sequence[dict], header: Sequence[str], names: dict[str, str], missing,
                   places: Sequence[tuple[str, int | None]], rows: list[int] | None = None) -> Subset:
    """The validated subset `sid` of its rows: `records` (column -> cell, in table order, every column of `header`),
    with the missing value of the layout (`missing`: "" in CSV, None in Parquet). `places` are each row's file and
    line, which an error names; `rows`, each row's index in its table (`Subset.rows`)."""
    cells = {name: [record[name] for record in records] for name in header}
    own = set(names.values())
    try:
        optional = {field: _optional(cells[names[role]], names[role], missing)
                    for role, field in OPTIONAL_COLUMNS.items() if names[role] in header}
        columns = {name: cells[name] for name in header if name not in own}
        return Subset(sid, cells[names["text"]], extra={}, columns=columns, rows=rows, **optional)
    except SubsetFormatError as e:  # point at the entity's own row when there is one
        src, line = places[e.entity_index or 0]
        raise SubsetFormatError(e.reason, source=src, line=line, subset_id=sid,
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


def write_table(tmp: Path, subsets: Sequence[Subset], layout: str, source: str,
                names: dict[str, str] | None = None) -> None:
    """Write `subsets` as a long table ("csv" or "parquet") to the file `tmp`, its columns named by `names`
    (`table_columns`'s)."""
    header, rows = _table(subsets, names or table_columns())
    if layout == "csv":
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)  # CRLF rows (RFC 4180): a text holding a lone \r is then quoted too
            writer.writerow(header)
            writer.writerows([to_text(v) for v in row] for row in rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {name: _arrow_column([row[j] for row in rows], name, source) for j, name in enumerate(header)}
        pq.write_table(pa.table(columns), tmp)


def _table(subsets: Sequence[Subset], names: dict[str, str]) -> tuple[list[str], list[list]]:
    """Column names and rows: the known columns (named by `names`), the carried ones (a JSONL field repeated on each
    of its subset's rows), then cluster_id; rows in input-table order when every subset came from a table, else
    subset by subset."""
    optional = [role for role, field in OPTIONAL_COLUMNS.items()
                if any(getattr(s, field) is not None for s in subsets)]
    lead = ["subset_id", "text", *[role for role in optional if role != "cluster_id"]]
    tail = [role for role in optional if role == "cluster_id"]
    carried = list(dict.fromkeys(name for s in subsets for name in [*s.columns, *s.extra]))
    in_table_order = all(s.rows is not None for s in subsets)
    keyed = []
    for k, s in enumerate(subsets):
        for i, text in enumerate(s.texts):
            own = {"subset_id": s.id, "text": text}
            for role in optional:
                field = getattr(s, OPTIONAL_COLUMNS[role])
                own[role] = None if field is None else field[i]
            row = [own[role] for role in lead]
            row += [s.columns[name][i] if name in s.columns else s.extra.get(name) for name in carried]
            row += [own[role] for role in tail]
            keyed.append(((s.rows[i], k, i) if in_table_order else (k, i), row))
    keyed.sort(key=lambda item: item[0])
    return [names[role] for role in lead] + carried + [names[role] for role in tail], [row for _, row in keyed]


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
