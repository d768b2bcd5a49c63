"""Property tests of the readers and writers (hypothesis).

Any bytes given to a reader end in a clean `SubsetFormatError` or in valid subsets, never another exception; a
write-then-read round trip keeps every field, the type of every id and label, and the row order.

CI runs a bounded number of examples per test (deterministic); CACTUS_FUZZ_EXAMPLES=N runs N per test with fresh
random examples, e.g. the longer run recorded in docs/io.md:

    CACTUS_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz_io.py
"""

import io
import json
import os
import string

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cactus.data import Subset, SubsetFormatError, read_subsets, write_subsets
from cactus.data.subsets import RECORD_FIELDS, TABLE_COLUMNS

LONG_RUN = "CACTUS_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(max_examples=int(os.environ.get("CACTUS_FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                derandomize=not LONG_RUN, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def read_or_refuse(path) -> None:
    """The reader's contract on any file: valid subsets or a SubsetFormatError, nothing else."""
    try:
        subsets = read_subsets(path)
    except SubsetFormatError as e:
        assert "\n" not in str(e)
        return
    assert subsets and all(isinstance(s, Subset) for s in subsets)
    for s in subsets:
        s.__post_init__()  # still valid


# ---- arbitrary input -----------------------------------------------------------------------------------------------
SUBSET_LIKE = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=4), st.integers(), st.booleans(), st.none(), st.floats()),
     "texts": st.one_of(st.lists(st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=4), st.text())},
    optional={"labels": st.lists(st.one_of(st.text(max_size=3), st.integers(-2, 2), st.floats()), max_size=4),
              "entity_ids": st.lists(st.one_of(st.text(max_size=2), st.integers(0, 3)), max_size=4),
              "cluster_ids": st.lists(st.integers(0, 3), max_size=4),
              "extra": st.recursive(st.none() | st.integers() | st.text(max_size=4),
                                    lambda inner: st.lists(inner, max_size=3), max_leaves=5)})


def jsonl_bytes():
    """Bytes near JSONL: lines of subset-like objects, JSON of any kind, and raw junk, joined and maybe cut."""
    line = st.one_of(SUBSET_LIKE.map(json.dumps), st.text(max_size=20), st.binary(max_size=20).map(repr))
    text = st.lists(line, max_size=5).map("\n".join).map(lambda t: t.encode("utf-8", "surrogatepass"))
    return st.one_of(st.binary(max_size=200), text, st.tuples(text, st.integers(0, 300)).map(lambda x: x[0][: x[1]]))


def csv_bytes():
    cell = st.one_of(st.text(alphabet=string.printable, max_size=6), st.sampled_from(['"', '""', "\r", "\n", ","]))
    header = st.lists(st.sampled_from(["subset_id", "text", "label", "entity_id", "cluster_id", "x"]), min_size=0,
                      max_size=5)
    rows = st.lists(st.lists(cell, max_size=5).map(",".join), max_size=6)
    text = st.tuples(header.map(",".join), rows).map(lambda hr: "\n".join([hr[0], *hr[1]]).encode())
    return st.one_of(st.binary(max_size=200), text)


def _valid_parquet() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"subset_id": ["a", "a", "b"], "text": ["x", "y", "z"], "label": [1, 2, 1]}), sink)
    return sink.getvalue()


VALID_PARQUET = _valid_parquet()


def parquet_bytes():
    """Random bytes, and a valid file with bytes changed or cut off."""
    flips = st.lists(st.tuples(st.integers(0, len(VALID_PARQUET) - 1), st.integers(0, 255)), min_size=1, max_size=8)
    damaged = flips.map(lambda fs: bytes(_flip(VALID_PARQUET, fs)))
    cut = st.integers(0, len(VALID_PARQUET)).map(lambda n: VALID_PARQUET[:n])
    return st.one_of(st.binary(max_size=300), damaged, cut)


def _flip(data: bytes, flips) -> bytearray:
    out = bytearray(data)
    for i, b in flips:
        out[i] = b
    return out


COLUMN_VALUES = st.one_of(
    st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.integers(-3, 3)), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.floats()), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.booleans()), min_size=3, max_size=3),
    st.lists(st.lists(st.integers(0, 2), max_size=2), min_size=3, max_size=3),
)


@st.composite
def parquet_tables(draw) -> bytes:
    """Well-formed Parquet files with columns of any type under the names the reader looks for."""
    names = draw(st.lists(st.sampled_from(["subset_id", "text", "label", "entity_id", "cluster_id", "x"]),
                          unique=True, max_size=5))
    sink = io.BytesIO()
    pq.write_table(pa.table({name: draw(COLUMN_VALUES) for name in names}), sink)
    return sink.getvalue()


@FUZZ
@given(data=jsonl_bytes())
def test_jsonl_reader_on_any_bytes(folder, data):
    (folder / "f.jsonl").write_bytes(data)
    read_or_refuse(folder / "f.jsonl")


@FUZZ
@given(data=csv_bytes())
def test_csv_reader_on_any_bytes(folder, data):
    (folder / "f.csv").write_bytes(data)
    read_or_refuse(folder / "f.csv")


@FUZZ
@given(data=st.one_of(parquet_bytes(), parquet_tables()))
def test_parquet_reader_on_any_bytes(folder, data):
    (folder / "f.parquet").write_bytes(data)
    read_or_refuse(folder / "f.parquet")


# ---- round trips ---------------------------------------------------------------------------------------------------
def non_blank():
    return st.text(min_size=1, max_size=12).filter(lambda t: t.strip() != "")


@st.composite
def subsets_for(draw, layout: str) -> list[Subset]:
    """Valid subsets as `layout` can hold them: JSONL any JSON field and str or int ids and labels; a CSV strings
    (an empty cell is a missing value, so labels and ids are non-empty); Parquet one type per column. Subsets for a
    table carry rows: an interleaving of their entities, numbered so that subsets come in order of their first row
    (as a table reads back)."""
    table = layout != "jsonl"
    text_value = non_blank() if layout == "csv" else st.one_of(st.text(max_size=6), st.integers())
    id_kind = st.just("str") if layout == "csv" else st.sampled_from(["str", "int"])
    value_of = {"str": non_blank(), "int": st.integers(-10**12, 10**12)}
    kinds = {name: draw(id_kind) for name in ("id", "labels", "entity_ids", "cluster_ids")}
    n_subsets = draw(st.integers(1, 4))
    ids = draw(st.lists(value_of[kinds["id"]], min_size=n_subsets, max_size=n_subsets, unique_by=str))
    column_names = draw(st.lists(st.text(min_size=1, max_size=6).filter(lambda c: c not in TABLE_COLUMNS
                                                                         and c not in RECORD_FIELDS),
                                 unique=True, max_size=2)) if table else []
    column_kind = {c: draw(st.sampled_from(["str", "int", "float", "bool"])) if layout == "parquet" else "csv"
                   for c in column_names}
    cell = {"str": st.one_of(st.none(), st.text(max_size=6)),
            "int": st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
            "float": st.one_of(st.none(), st.floats(allow_nan=False)), "bool": st.one_of(st.none(), st.booleans()),
            "csv": st.text(max_size=6)}
    subsets = []
    for sid in ids:
        n = draw(st.integers(1, 4))
        fields = {name: (draw(st.lists(value_of[kinds[name]], min_size=n, max_size=n,
                                       unique_by=str if name == "entity_ids" else None))
                         if draw(st.booleans()) else None) for name in ("labels", "entity_ids", "cluster_ids")}
        extra = {} if table else draw(st.dictionaries(st.text(max_size=5).filter(lambda k: k not in RECORD_FIELDS),
                                                      st.recursive(st.none() | st.booleans() | text_value,
                                                                   lambda inner: st.lists(inner, max_size=3)
                                                                   | st.dictionaries(st.text(max_size=3), inner,
                                                                                     max_size=2), max_leaves=6),
                                                      max_size=3))
        columns = {c: draw(st.lists(cell[column_kind[c]], min_size=n, max_size=n)) for c in column_names}
        texts = draw(st.lists(non_blank() if layout != "jsonl" else st.text(min_size=1).filter(str.strip),
                              min_size=n, max_size=n))
        subsets.append(Subset(sid, texts, fields["labels"], fields["entity_ids"], extra,
                              cluster_ids=fields["cluster_ids"], columns=columns))
    return _interleaved(draw, subsets) if table else subsets


def _interleaved(draw, subsets: list[Subset]) -> list[Subset]:
    owners = draw(st.permutations([k for k, s in enumerate(subsets) for _ in range(len(s))]))
    order = list(dict.fromkeys(owners))  # subsets in order of their first row
    rows = {k: [i for i, owner in enumerate(owners) if owner == k] for k in order}
    return [Subset(**{**subsets[k].__dict__, "rows": rows[k]}) for k in order]


def as_fields(subsets: list[Subset]) -> list[tuple]:
    return [(type(s.id), s.id, s.texts, s.labels, s.entity_ids, s.cluster_ids, s.extra, s.columns, s.rows)
            for s in subsets]


def typed(values):
    """Values with their types, so that 1 == 1.0 == True do not hide a change of type."""
    if isinstance(values, dict):
        return {k: typed(v) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return [typed(v) for v in values]
    return (type(values).__name__, values)


@pytest.mark.parametrize("layout", ["jsonl", "csv", "parquet"])
@FUZZ
@given(data=st.data())
def test_round_trip_keeps_every_field_type_and_row(folder, layout, data):
    subsets = data.draw(subsets_for(layout), label="subsets")
    path = folder / f"round.{layout}"
    write_subsets(path, subsets)
    assert typed(as_fields(read_subsets(path))) == typed(as_fields(subsets))
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary left
