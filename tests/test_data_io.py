import json

import pandas as pd
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
        ({"id": 3, "texts": ["a"]}, "in.jsonl:2", "'id' must be a non-empty string"),
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
