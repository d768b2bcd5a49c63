"""The readers and writers: the input/output contract of docs/io.md (field by field, error by error)."""

import json
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cactus.data import Subset, SubsetFormatError, read_subsets, write_subsets
from conftest import EXAMPLES


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_example_file_reads(tmp_path):
    subsets = read_subsets(EXAMPLES)
    assert len(subsets) >= 3
    assert all(s.labels is not None and len(s.labels) == len(s.texts) for s in subsets)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_round_trip_every_layout(tmp_path, suffix):
    subsets = [
        Subset("a", ["x one", "y two", "NA"], ["k", "k", "m"], entity_ids=["e1", "e2", "e3"]),
        Subset("b", ["z"], [7]),
    ]
    if suffix != ".jsonl":  # a table has one label column: give both subsets labels of one type
        subsets[1] = Subset("b", ["z"], ["7"], entity_ids=["e9"])
    path = tmp_path / f"s{suffix}"
    write_subsets(path, subsets)
    back = read_subsets(path)
    assert [(s.id, s.texts, s.labels, s.entity_ids) for s in back] == [
        (s.id, s.texts, s.labels, s.entity_ids) for s in subsets
    ]


def test_extra_fields_are_kept(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "texts": ["p", "q"], "query": "usb"})])
    (s,) = read_subsets(path)
    assert s.labels is None and s.extra == {"query": "usb"}
    write_subsets(tmp_path / "out.jsonl", [s.with_labels([0, 1])])
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {
        "id": "a", "texts": ["p", "q"], "labels": [0, 1], "query": "usb"
    }


@pytest.mark.parametrize(
    "record, where, reason",
    [
        ({"id": "s1", "texts": ["a", "b"], "labels": [1]}, "subset 's1'", "'labels' has 1 items but 'texts' has 2"),
        ({"id": "s2", "texts": ["a", "  "]}, "subset 's2', entity 1", "text is empty"),
        ({"id": "s3", "texts": ["a", 5]}, "subset 's3', entity 1", "text must be a string"),
        ({"id": "s4", "labels": [1]}, "subset 's4'", "missing field 'texts'"),
        ({"texts": ["a"]}, "in.jsonl:2", "missing field 'id'"),
        ({"id": "s5", "texts": []}, "subset 's5'", "'texts' is empty"),
        ({"id": "s6", "texts": ["a", "b"], "labels": [1, 2.5]}, "subset 's6', entity 1", "label must be"),
        ({"id": "s7", "texts": ["a", "b"], "entity_ids": ["x", "x"]}, "subset 's7', entity 1", "repeats entity 0"),
        ({"id": 2.5, "texts": ["a"]}, "in.jsonl:2", "'id' must be a non-empty string or an integer"),
        ({"id": "s9", "texts": ["a", "b"], "entity_ids": [1, "1"]}, "subset 's9', entity 1", "repeats entity 0"),
        ({"id": "s10", "texts": ["a"], "cluster_ids": [0.5]}, "subset 's10', entity 0", "cluster_id must be"),
        ({"id": "s8", "texts": "a b"}, "subset 's8'", "'texts' must be a list"),
    ],
)
def test_bad_records_name_subset_and_entity(tmp_path, record, where, reason):
    good = json.dumps({"id": "ok", "texts": ["fine"]})
    path = write_lines(tmp_path / "in.jsonl", [good, json.dumps(record)])
    with pytest.raises(SubsetFormatError) as e:
        read_subsets(path)
    msg = str(e.value)
    assert "in.jsonl:2" in msg and where in msg and reason in msg


def test_malformed_line_and_duplicate_ids(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", ['{"id": "a", "texts": ["x"]}', '{"id": "b", "texts": [x]}'])
    with pytest.raises(SubsetFormatError, match=r"in.jsonl:2: malformed JSON"):
        read_subsets(path)
    path = write_lines(tmp_path / "dup.jsonl", ['{"id": "a", "texts": ["x"]}', "", '{"id": "a", "texts": ["y"]}'])
    with pytest.raises(SubsetFormatError, match=r"dup.jsonl:3, subset 'a': duplicate subset id \(first on line 1\)"):
        read_subsets(path)
    path = write_lines(tmp_path / "list.jsonl", ['["a", "b"]'])
    with pytest.raises(SubsetFormatError, match="must be a JSON object"):
        read_subsets(path)


def test_table_errors(tmp_path):
    pd.DataFrame({"subset_id": ["a", "a", "b"], "text": ["x", "", "z"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SubsetFormatError, match=r"t.csv:3, subset 'a', entity 1: text is empty"):
        read_subsets(tmp_path / "t.csv")
    pd.DataFrame({"id": ["a"], "text": ["x"]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(SubsetFormatError, match="missing column 'subset_id'"):
        read_subsets(tmp_path / "c.csv")
    pd.DataFrame({"subset_id": ["a", "a"], "text": ["x", None], "label": [1, 2]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(SubsetFormatError, match=r"subset 'a', entity 1: text must be a string"):
        read_subsets(tmp_path / "p.parquet")


def test_table_groups_interleaved_rows_in_order(tmp_path):
    df = pd.DataFrame({"subset_id": ["b", "a", "b", "a"], "text": ["b0", "a0", "b1", "a1"], "label": [1, 2, 3, 4]})
    df.to_parquet(tmp_path / "t.parquet")
    subsets = read_subsets(tmp_path / "t.parquet")
    assert [(s.id, s.texts, s.labels) for s in subsets] == [("b", ["b0", "b1"], [1, 3]), ("a", ["a0", "a1"], [2, 4])]


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_subsets(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(SubsetFormatError, match="unknown file type"):
        read_subsets(tmp_path / "x.txt")


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "out.jsonl"
    write_subsets(path, [Subset("a", ["x"])])
    before = path.read_text()
    with pytest.raises(SubsetFormatError, match="duplicate subset id"):
        write_subsets(path, [Subset("b", ["y"]), Subset("b", ["z"])])
    assert path.read_text() == before


def test_predictions_keep_labels_every_field_and_id_types_in_jsonl(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [
        json.dumps({"id": 7, "texts": ["p", "q"], "labels": ["x", "y"], "entity_ids": [10, 11], "query": {"k": [1]}}),
        json.dumps({"id": "b", "texts": ["r"], "labels": [3], "score": 0.5}),
    ])
    subsets = read_subsets(path)
    assert [s.id for s in subsets] == [7, "b"]
    write_subsets(tmp_path / "out.jsonl", [s.with_clusters([0] * len(s)) for s in subsets])
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines == [
        {"id": 7, "texts": ["p", "q"], "labels": ["x", "y"], "entity_ids": [10, 11], "cluster_ids": [0, 0],
         "query": {"k": [1]}},
        {"id": "b", "texts": ["r"], "labels": [3], "cluster_ids": [0], "score": 0.5},
    ]


def interleaved_table() -> pd.DataFrame:
    return pd.DataFrame({"subset_id": [20, 10, 20, 10, 30], "text": ["b0", "a0", "b1", "a1", "c0"],
                         "label": ["x", "y", "x", "z", "w"], "price": [1.5, 2.0, None, 4.25, 5.0],
                         "in_stock": [True, False, True, True, False]})


def test_parquet_predictions_keep_row_order_columns_and_types(tmp_path):
    interleaved_table().to_parquet(tmp_path / "in.parquet", index=False)
    subsets = read_subsets(tmp_path / "in.parquet")
    assert [s.id for s in subsets] == [20, 10, 30]  # integers stay integers
    write_subsets(tmp_path / "out.parquet", [s.with_clusters(list(range(len(s)))) for s in subsets])
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column_names == ["subset_id", "text", "label", "price", "in_stock", "cluster_id"]
    assert out.schema.field("subset_id").type == pa.int64() and out.schema.field("in_stock").type == pa.bool_()
    rows = out.to_pylist()
    assert [r["text"] for r in rows] == ["b0", "a0", "b1", "a1", "c0"]  # the input's row order
    assert [r["price"] for r in rows] == [1.5, 2.0, None, 4.25, 5.0]
    assert [r["label"] for r in rows] == ["x", "y", "x", "z", "w"]  # the truth is never overwritten
    assert [r["cluster_id"] for r in rows] == [0, 0, 1, 1, 0]


def test_csv_predictions_keep_row_order_and_every_cell(tmp_path):
    interleaved_table().to_csv(tmp_path / "in.csv", index=False)
    subsets = read_subsets(tmp_path / "in.csv")
    write_subsets(tmp_path / "out.csv", [s.with_clusters([5] * len(s)) for s in subsets])
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "subset_id,text,label,price,in_stock,cluster_id"
    assert [line.rsplit(",", 1)[0] for line in lines] == (tmp_path / "in.csv").read_text().splitlines()
    write_subsets(tmp_path / "out.jsonl", subsets)  # a table's other columns become list fields
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert first == {"id": "20", "texts": ["b0", "b1"], "labels": ["x", "x"], "price": ["1.5", ""],
                     "in_stock": ["True", "True"]}


def test_mixed_label_types_warn_and_stay_apart(tmp_path, caplog):
    path = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "m", "texts": ["a", "b"], "labels": [1, "1"]})])
    with caplog.at_level(logging.WARNING):
        (s,) = read_subsets(path)
    assert s.labels == [1, "1"]
    assert "in.jsonl:1, subset 'm': labels 1 and '1' print the same but differ in type" in caplog.text


def test_a_parquet_column_of_mixed_types_is_written_as_text_with_a_warning(tmp_path, caplog):
    subsets = [Subset("a", ["x"], [1]), Subset("b", ["y"], ["k"])]
    with caplog.at_level(logging.WARNING):
        write_subsets(tmp_path / "o.parquet", subsets)
    assert "column 'label' holds values of types ['int', 'str']" in caplog.text
    assert [s.labels for s in read_subsets(tmp_path / "o.parquet")] == [["1"], ["k"]]


def test_a_subset_without_labels_in_a_labelled_table_reads_back_without_labels(tmp_path):
    subsets = [Subset("a", ["x", "y"], ["k", "m"]), Subset("b", ["z"])]
    for suffix in (".csv", ".parquet"):
        write_subsets(tmp_path / f"o{suffix}", subsets)
        assert [s.labels for s in read_subsets(tmp_path / f"o{suffix}")] == [["k", "m"], None]
    pd.DataFrame({"subset_id": ["a", "a"], "text": ["x", "y"], "label": ["k", ""]}).to_csv(tmp_path / "p.csv",
                                                                                          index=False)
    with pytest.raises(SubsetFormatError, match=r"p.csv:3, subset 'a', entity 1: label is missing"):
        read_subsets(tmp_path / "p.csv")


def test_a_field_that_would_take_a_known_name_is_refused_before_writing(tmp_path):
    pd.DataFrame({"subset_id": ["a"], "text": ["x"], "texts": ["clash"]}).to_csv(tmp_path / "t.csv", index=False)
    subsets = read_subsets(tmp_path / "t.csv")
    with pytest.raises(SubsetFormatError, match="field 'texts' has the name of one that a jsonl file"):
        write_subsets(tmp_path / "o.jsonl", subsets)
    assert not (tmp_path / "o.jsonl").exists()
    write_subsets(tmp_path / "o.csv", subsets)  # fine in its own layout


@pytest.mark.parametrize("name, data, message", [
    ("bad.jsonl", b'{"id": "a", "texts": ["x"]}\n{"id": "b", "texts": ["caf\xe9"]}\n',
     r"bad.jsonl:2: not UTF-8 text: byte 0xe9 at byte 27 of the line"),
    ("bad.csv", b"subset_id,text\na,ok\nb,caf\xe9\n", r"bad.csv:3: not UTF-8 text: byte 0xe9"),
    ("u16.jsonl", '{"id": "a", "texts": ["x"]}'.encode("utf-16"), "u16.jsonl: UTF-16 text: save it as UTF-8"),
    ("empty.jsonl", b"", "empty.jsonl: no subsets: the file holds no data"),
    ("blank.jsonl", b"\n  \n", "blank.jsonl: no subsets"),
    ("header.csv", b"subset_id,text,label\n", "header.csv: no subsets"),
    ("empty.csv", b"", "empty.csv: no subsets"),
    ("empty.parquet", b"", "empty.parquet: not a readable Parquet file"),
    ("junk.parquet", b"PAR1 this is not parquet PAR1", "junk.parquet: not a readable Parquet file"),
    ("quote.csv", b'subset_id,text\na,"fine"\nb,"open quote\n', r"quote.csv:3: malformed CSV"),
    ("quote2.csv", b'subset_id,text\na,"x"y\n', r"quote2.csv:2: malformed CSV"),
    ("fields.csv", b"subset_id,text\na,x\nb,y,z\n", r"fields.csv:3: 3 fields, but the header has 2"),
    ("dupcol.csv", b"subset_id,text,text\na,x,y\n", r"dupcol.csv:1: column 'text' appears twice"),
    ("dupkey.jsonl", b'{"id": "a", "texts": ["x"], "texts": ["y"]}\n', r"dupkey.jsonl:1: field 'texts' appears twice"),
    ("deep.jsonl", b"[" * 100000 + b"]" * 100000 + b"\n", r"deep.jsonl:1: JSON nested too deeply"),
    ("surrogate.jsonl", b'{"id": "a", "texts": ["\\ud800"]}\n', r"surrogate.jsonl:1: a string holds an escaped lone"),
    ("pretty.json", json.dumps([{"id": "a", "texts": ["x"]}], indent=2).encode(),
     r"pretty.json: one JSON document .* JSON Lines, one subset object per line: convert it with  jq -c"),
    ("list.jsonl", json.dumps([{"id": "a", "texts": ["x"]}]).encode(), r"list.jsonl: one JSON document"),
    ("intid.csv", b"subset_id,text\n,x\n", r"intid.csv:2: 'subset_id' must be a non-empty string"),
])
def test_every_bad_file_is_one_clean_error(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(SubsetFormatError, match=message) as e:
        read_subsets(tmp_path / name)
    assert "\n" not in str(e.value)


def test_a_byte_order_mark_is_dropped(tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "a", "texts": ["x"]}).encode() + b"\n")
    assert read_subsets(tmp_path / "bom.jsonl")[0].texts == ["x"]
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfsubset_id,text\r\na,x\r\n")
    assert read_subsets(tmp_path / "bom.csv")[0].texts == ["x"]


def test_a_folder_is_no_input(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(SubsetFormatError, match="d.jsonl: is a folder"):
        read_subsets(tmp_path / "d.jsonl")


COLUMNS = {"subset_id": "query", "text": "title", "label": "category", "entity_id": "sku"}


def own_names_table() -> pd.DataFrame:
    """Interleaved subsets under a table's own column names, with a carried column and one named 'text' (free here,
    since the texts are in 'title')."""
    return pd.DataFrame({"query": [20, 10, 20, 10, 30], "title": ["b0", "a0", "b1", "a1", "c0"],
                         "category": ["x", "y", "x", "z", "w"], "sku": ["s1", "s2", "s3", "s4", "s5"],
                         "price": [1.5, 2.0, None, 4.25, 5.0], "text": ["raw b0", "raw a0", "raw b1", "raw a1", "c"]})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_with_its_own_column_names_reads_and_round_trips(tmp_path, suffix):
    table = own_names_table()
    path = tmp_path / f"in{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path, index=False)
    subsets = read_subsets(path, columns=COLUMNS)
    ids = [20, 10, 30] if suffix == ".parquet" else ["20", "10", "30"]  # CSV is text
    assert [(s.id, s.texts, s.labels, s.entity_ids) for s in subsets] == [
        (ids[0], ["b0", "b1"], ["x", "x"], ["s1", "s3"]), (ids[1], ["a0", "a1"], ["y", "z"], ["s2", "s4"]),
        (ids[2], ["c0"], ["w"], ["s5"])]
    assert subsets[0].columns["text"] == ["raw b0", "raw b1"]  # carried, as any other column

    out = tmp_path / f"out{suffix}"
    write_subsets(out, [s.with_clusters(list(range(len(s)))) for s in subsets], columns=COLUMNS)
    if suffix == ".csv":
        lines = out.read_text().splitlines()
        assert lines[0] == "query,title,category,sku,price,text,cluster_id"
        assert [line.rsplit(",", 1)[0] for line in lines] == path.read_text().splitlines()  # every row and cell
    else:
        back = pd.read_parquet(out)
        assert list(back.columns) == ["query", "title", "category", "sku", "price", "text", "cluster_id"]
        assert back.drop(columns="cluster_id").equals(table)  # rows, values and dtypes as they came in
    assert [[int(c) for c in s.cluster_ids] for s in read_subsets(out, columns=COLUMNS)] == [[0, 1], [0, 1], [0]]

    write_subsets(tmp_path / "out.jsonl", subsets)  # JSONL has its own field names; the table's others are carried
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert (first["id"], first["texts"], first["labels"], first["text"]) == (ids[0], ["b0", "b1"], ["x", "x"],
                                                                             ["raw b0", "raw b1"])
    with pytest.raises(SubsetFormatError, match=r"o.csv, subset .*field 'text' has the name of one that a csv file"):
        write_subsets(tmp_path / "o.csv", subsets)  # with cactus's names, 'text' would be there twice
    assert not (tmp_path / "o.csv").exists()


def test_column_names_that_cannot_be_right_are_refused_naming_the_column_and_file(tmp_path):
    own_names_table().to_csv(tmp_path / "t.csv", index=False)
    for columns, message in [
        ({"subset_id": "query", "text": "query"}, "the subset_id and the text column would both be 'query'"),
        ({"text": "title", "label": "title"}, "the text and the label column would both be 'title'"),
        ({"label": "cluster_id"}, "the label and the cluster_id column would both be 'cluster_id'"),
        ({"cluster_id": "c"}, "'cluster_id' is not a column role a table may name otherwise"),
        ({"text": ""}, "the text column's name must be a non-empty string"),
    ]:
        with pytest.raises(ValueError, match=message):
            read_subsets(tmp_path / "missing.csv", columns=columns)  # refused before the file is looked at
    for columns, message in [
        ({"subset_id": "query", "text": "titel"}, r"t.csv: missing column 'titel', named as the text column"),
        ({"subset_id": "query", "text": "title", "label": "cat"}, r"t.csv: missing column 'cat', named as the label"),
        ({"text": "title"}, r"t.csv: missing column 'subset_id' \(columns: \['query', 'title'"),
    ]:
        with pytest.raises(SubsetFormatError, match=message):
            read_subsets(tmp_path / "t.csv", columns=columns)
    write_lines(tmp_path / "s.jsonl", [json.dumps({"id": "a", "texts": ["x"]})])
    with pytest.raises(ValueError, match=r"s.jsonl: column names \(text='title'\) are for a table"):
        read_subsets(tmp_path / "s.jsonl", columns={"text": "title"})
    with pytest.raises(ValueError, match=r"o.jsonl: column names .* are for a table"):
        write_subsets(tmp_path / "o.jsonl", read_subsets(tmp_path / "s.jsonl"), columns={"text": "title"})
    assert read_subsets(tmp_path / "s.jsonl", columns={"text": "text"})[0].texts == ["x"]  # names nothing otherwise


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_errors_in_a_table_with_its_own_names_name_its_row_and_column(tmp_path, suffix):
    def refused(frame, message):
        path = tmp_path / f"t{suffix}"
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
        with pytest.raises(SubsetFormatError, match=message):
            read_subsets(path, columns=COLUMNS)

    good = own_names_table()
    refused(good.assign(title=["b0", "a0", " ", "a1", "c0"]), rf"t{suffix}:{4 if suffix == '.csv' else 3}, subset "
            r"'?20'?, entity 1: text is empty")
    refused(good.assign(category=["x", "y", None, "z", "w"]), r", subset '?20'?, entity 1: category is missing")
    refused(good.assign(sku=["s1", "s2", "s1", "s4", "s5"]), r", subset '?20'?, entity 1: entity id 's1' repeats")
    refused(good.assign(query=["20", "10", "", "10", "30"]), r"'query' must be a non-empty string or an integer")
