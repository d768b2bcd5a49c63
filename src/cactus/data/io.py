"""Reading and writing subsets.

Two layouts:
- JSONL, one subset per line: {"id": str, "texts": [str, ...], "labels": [str|int, ...], "entity_ids": [...]}
  ("labels" and "entity_ids" optional; other fields are kept and written back).
- A long table (.csv or .parquet), one entity per row, columns `subset_id`, `text` and optionally `label`,
  `entity_id`. Rows of a subset keep their table order; subsets keep the order of their first row.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from cactus.data.subsets import Subset, SubsetFormatError, check_unique_ids

TABLE_SUFFIXES = (".csv", ".parquet")


def read_subsets(path: str | os.PathLike) -> list[Subset]:
    """Read and validate subsets from a .jsonl, .csv or .parquet file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if suffix in TABLE_SUFFIXES:
        return _read_table(path)
    raise SubsetFormatError(f"unknown file type {suffix!r}: expected .jsonl, .csv or .parquet", source=str(path))


def _read_jsonl(path: Path) -> list[Subset]:
    subsets: list[Subset] = []
    first_line: dict[str, int] = {}
    src = str(path)
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as e:
                raise SubsetFormatError(f"malformed JSON: {e.msg} at column {e.colno}", source=src, line=lineno) from None
            if not isinstance(record, dict):
                raise SubsetFormatError(
                    f"each line must be a JSON object, got {type(record).__name__}", source=src, line=lineno
                )
            sid = record.get("id")
            for key in ("id", "texts"):
                if key not in record:
                    raise SubsetFormatError(
                        f"missing field {key!r}", source=src, line=lineno,
                        subset_id=sid if isinstance(sid, str) else None,
                    )
            subset = _subset_from_record(record, src, lineno)
            if subset.id in first_line:
                raise SubsetFormatError(
                    f"duplicate subset id (first on line {first_line[subset.id]})",
                    source=src, line=lineno, subset_id=subset.id,
                )
            first_line[subset.id] = lineno
            subsets.append(subset)
    return subsets


def _subset_from_record(record: dict, src: str, lineno: int) -> Subset:
    extra = {k: v for k, v in record.items() if k not in ("id", "texts", "labels", "entity_ids")}
    try:
        return Subset(record["id"], record["texts"], record.get("labels"), record.get("entity_ids"), extra)
    except SubsetFormatError as e:
        raise e.located(src, lineno) from None


def _read_table(path: Path) -> list[Subset]:
    src = str(path)
    if path.suffix.lower() == ".csv":
        # Everything as strings: a label column of digits must not turn into floats, and "NA" is a text.
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        df = pd.read_parquet(path)
    for col in ("subset_id", "text"):
        if col not in df.columns:
            raise SubsetFormatError(f"missing column {col!r} (columns: {list(df.columns)})", source=src)
    has_labels, has_ids = "label" in df.columns, "entity_id" in df.columns
    groups: dict[str, dict[str, list]] = {}
    for row, rec in enumerate(df.to_dict("records")):
        line = row + 2 if path.suffix.lower() == ".csv" else row + 1  # CSV: the header is line 1
        sid = rec["subset_id"]
        if isinstance(sid, int) and not isinstance(sid, bool):
            sid = str(sid)
        if not isinstance(sid, str) or not sid:
            raise SubsetFormatError(f"'subset_id' must be a non-empty string, got {sid!r}", source=src, line=line)
        g = groups.setdefault(sid, {"texts": [], "labels": [], "entity_ids": [], "lines": []})
        g["lines"].append(line)
        g["texts"].append(_cell(rec["text"]))
        if has_labels:
            g["labels"].append(_cell(rec["label"]))
        if has_ids:
            g["entity_ids"].append(_cell(rec["entity_id"]))
    subsets = []
    for sid, g in groups.items():
        try:
            subsets.append(
                Subset(sid, g["texts"], g["labels"] if has_labels else None, g["entity_ids"] if has_ids else None)
            )
        except SubsetFormatError as e:  # point at the entity's own row when there is one
            raise e.located(src, g["lines"][e.entity_index or 0]) from None
    return subsets


def _cell(v):
    """Plain Python values from a table cell; missing cells become None so validation names them."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item"):  # numpy scalar
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def write_subsets(path: str | os.PathLike, subsets: Sequence[Subset]) -> None:
    """Write subsets (for example predictions) in the layout named by the file suffix, atomically."""
    path = Path(path)
    check_unique_ids(subsets, source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with open(tmp, "w", encoding="utf-8") as f:
            for s in subsets:
                f.write(json.dumps(subset_to_record(s), ensure_ascii=False) + "\n")
    elif suffix in TABLE_SUFFIXES:
        df = pd.DataFrame(_table_rows(subsets))
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    else:
        raise SubsetFormatError(f"unknown file type {suffix!r}: expected .jsonl, .csv or .parquet", source=str(path))
    os.replace(tmp, path)


def subset_to_record(s: Subset) -> dict:
    rec: dict = {"id": s.id, "texts": s.texts}
    if s.labels is not None:
        rec["labels"] = s.labels
    if s.entity_ids is not None:
        rec["entity_ids"] = s.entity_ids
    rec.update(s.extra)
    return rec


def _table_rows(subsets: Iterable[Subset]) -> Iterable[dict]:
    for s in subsets:
        for i, text in enumerate(s.texts):
            row = {"subset_id": s.id, "text": text}
            if s.labels is not None:
                row["label"] = s.labels[i]
            if s.entity_ids is not None:
                row["entity_id"] = s.entity_ids[i]
            yield row
