"""Streaming batch prediction: `Cactus.predict_iter`, `cactus.batch.predict_file` and `cactus predict --resume`, on
real files with a tiny random encoder; the kill test runs the installed command in a subprocess and SIGKILLs it."""

import gzip
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cactus.batch
from cactus import Cactus
from cactus.batch import ResumeError, partial_folder, predict_file
from cactus.data import Subset, SubsetFormatError, read_subsets, write_subsets
from cactus.data.io import iter_subsets
from test_cli import CACTUS, cli, one_error

WORDS = ["red", "cable", "usb", "charger", "phone", "case", "blue", "fast", "hub", "adapter", "steel", "pan"]


def synthetic(n: int, seed: int = 0) -> list[Subset]:
    rng = np.random.default_rng(seed)
    return [Subset(f"s{k}", [" ".join(rng.choice(WORDS, size=3)) for _ in range(int(rng.integers(1, 7)))],
                   extra={"note": k}) for k in range(n)]


# A table's own names for the columns cactus reads, as the readers take them and as `cactus` flags.
OWN_NAMES = {"subset_id": "query", "text": "title", "label": "category", "entity_id": "sku"}
NAME_FLAGS = ["--subset-id-column", "query", "--text-column", "title", "--label-column", "category",
              "--entity-id-column", "sku"]


def own_names_table(n: int, seed: int = 0) -> pd.DataFrame:
    """The subsets of `synthetic(n)`, labelled, as a long table under its own column names (integer ids, a carried
    'price'), their rows interleaved: every subset's first entity, then every second one, and so on."""
    subsets = synthetic(n, seed)
    rows = sorted(((i, k) for k, s in enumerate(subsets) for i in range(len(s))))
    return pd.DataFrame({"query": [100 + k for _, k in rows], "title": [subsets[k].texts[i] for i, k in rows],
                         "category": [f"c{(k * i) % 3}" for i, k in rows], "sku": [f"sku-{k}-{i}" for i, k in rows],
                         "price": [0.5 * j for j in range(len(rows))]})


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def model(tiny_backbone) -> Cactus:
    return Cactus(backbone=tiny_backbone, attention="sia", threshold=0.95, device="cpu")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, model) -> Path:
    folder = tmp_path_factory.mktemp("batch") / "tiny"
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_predict_iter_answers_as_predict(model, chunk):
    subsets = synthetic(23)
    expected = model.predict(subsets)
    got = list(model.predict_iter(iter(subsets), chunk_subsets=chunk))
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert len({len(set(c)) for c in expected}) > 1  # the cut makes clusters of several sizes: a real comparison
    described = list(model.predict_iter(subsets, describe=True, chunk_subsets=chunk))
    assert [d.cluster_ids.tolist() for d in described] == [c.tolist() for c in expected]


def test_predict_iter_reads_lazily(model):
    read = []

    def source():
        for s in synthetic(10):
            read.append(s.id)
            yield s

    answers = model.predict_iter(source(), chunk_subsets=4)
    next(answers)
    assert len(read) == 4  # one chunk read, not the whole input


def test_gzip_jsonl_reads_and_writes_as_plain(tmp_path):
    subsets = synthetic(30)
    plain, packed = tmp_path / "s.jsonl", tmp_path / "s.jsonl.gz"
    write_subsets(plain, subsets)
    write_subsets(packed, iter(subsets))
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    first = packed.read_bytes()
    write_subsets(packed, subsets)
    assert packed.read_bytes() == first  # no time or name in the header: the same subsets, the same bytes
    assert [(s.id, s.texts, s.extra) for s in read_subsets(packed)] == [(s.id, s.texts, s.extra) for s in subsets]
    (tmp_path / "s.csv.gz").write_bytes(gzip.compress(b"subset_id,text\n1,a\n"))
    with pytest.raises(SubsetFormatError, match=r"only JSONL may be gzip-compressed"):
        read_subsets(tmp_path / "s.csv.gz")


def test_reading_stops_at_the_bad_line_of_a_stream(tmp_path):
    path = tmp_path / "s.jsonl.gz"
    lines = [json.dumps({"id": k, "texts": ["a"]}) for k in range(5)] + ['{"id": 2, "texts": ["b"]}']
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    stream = iter_subsets(path)
    assert [s.id for s in (next(stream) for _ in range(5))] == [0, 1, 2, 3, 4]
    with pytest.raises(SubsetFormatError, match=r"s.jsonl.gz:6.*duplicate subset id \(first on line 3\)"):
        next(stream)
    path.write_bytes(gzip.compress(b'{"id": 1, "texts": ["a"]}\n')[:-6])  # cut short: no end of stream
    with pytest.raises(SubsetFormatError, match=r"cannot read it after line 1"):
        read_subsets(path)


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_predict_file_writes_predict_and_describe(model, tmp_path, suffix):
    subsets = synthetic(17)
    source = tmp_path / "in.jsonl"
    write_subsets(source, subsets)
    out = tmp_path / f"out.{suffix}"
    done = predict_file(model, source, out, chunk_subsets=5)
    assert (done.subsets, done.entities, done.resumed_chunks) == (17, sum(map(len, subsets)), 0)
    got = read_subsets(out)
    assert [[int(c) for c in s.cluster_ids] for s in got] == [c.tolist() for c in model.predict(subsets)]
    assert not partial_folder(out).exists()
    predict_file(model, source, out, describe=True, chunk_subsets=5)
    described = model.describe(subsets)
    if suffix == "jsonl":
        assert [s.extra["clusters"] for s in read_subsets(out)] == [[c.to_dict() for c in d.clusters]
                                                                    for d in described]
    else:
        names = [{c.id: c.name for c in d.clusters} for d in described]
        assert [s.columns["cluster_name"] for s in read_subsets(out)] == [
            [n[c] for c in d.cluster_ids] for n, d in zip(names, described)]


def test_bad_input_fails_before_any_encoding(model, tmp_path):
    source = tmp_path / "in.jsonl"
    write_subsets(source, synthetic(12))
    with open(source, "a") as f:
        f.write('{"id": "s3", "texts": ["again"]}\n')
    with pytest.raises(SubsetFormatError, match=r"in.jsonl:13.*duplicate subset id"):
        predict_file(model, source, tmp_path / "out.jsonl", chunk_subsets=2)
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]  # no chunk answered, nothing left


def test_resume_refuses_another_input_or_cut(model, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_subsets(source, synthetic(8))
    folder = partial_folder(out)
    folder.mkdir()
    (folder / "run.json").write_text("{}")
    with pytest.raises(ResumeError, match=r"the input file, the model, cut, threshold, describe, chunk_subsets"):
        predict_file(model, source, out, resume=True)
    (folder / "run.json").write_text("{oops")
    with pytest.raises(ResumeError, match=r"holds no readable run.json"):
        predict_file(model, source, out, resume=True)
    predict_file(model, source, out)  # without --resume: starts over
    assert not folder.exists() and len(read_subsets(out)) == 8


def test_sigkill_keeps_the_old_output_and_resume_writes_the_uninterrupted_bytes(model_folder, tmp_path):
    source = tmp_path / "in.jsonl.gz"
    write_subsets(source, synthetic(1000))
    args = ["predict", source, "--model", model_folder, "--chunk-subsets", "20", "-q"]
    whole = tmp_path / "whole.jsonl"
    subprocess.run([*CACTUS, *map(str, args), "-o", whole], check=True, timeout=600)

    out = tmp_path / "out.jsonl"
    out.write_text("the previous output\n")
    folder = partial_folder(out)
    proc = subprocess.Popen([*CACTUS, *map(str, args), "-o", str(out)])
    deadline = time.monotonic() + 300
    while not (folder / "000002.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    assert out.read_text() == "the previous output\n"
    answered = len(list(folder.glob("*.jsonl")))
    assert 3 <= answered < 50

    resumed = subprocess.run([*CACTUS, *map(str, args[:-1]), "-o", str(out), "--resume"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after {answered} answered chunks" in resumed.stderr
    assert out.read_bytes() == whole.read_bytes() and not folder.exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_file_keeps_a_tables_own_column_names(model, tmp_path, suffix):
    table = own_names_table(9)
    source = write_frame(table, tmp_path / f"in{suffix}")
    out = tmp_path / f"out{suffix}"
    done = predict_file(model, source, out, chunk_subsets=4, columns=OWN_NAMES)
    assert (done.subsets, done.entities) == (9, len(table))
    subsets = read_subsets(source, columns=OWN_NAMES)
    expected = {str(s.id): c.tolist() for s, c in zip(subsets, model.predict(subsets))}
    if suffix == ".csv":
        lines = out.read_text().splitlines()
        assert lines[0] == "query,title,category,sku,price,cluster_id"
        assert [line.rsplit(",", 1)[0] for line in lines] == source.read_text().splitlines()
    else:
        back = pd.read_parquet(out)
        assert list(back.columns) == ["query", "title", "category", "sku", "price", "cluster_id"]
        assert back.drop(columns="cluster_id").equals(table)  # the input's rows, order, values and dtypes
    got = {str(s.id): [int(c) for c in s.cluster_ids] for s in read_subsets(out, columns=OWN_NAMES)}
    assert got == expected
    predict_file(model, source, tmp_path / "out.jsonl", columns=OWN_NAMES)  # JSONL: its own field names
    assert [(str(s.id), s.labels, s.extra["price"]) for s in read_subsets(tmp_path / "out.jsonl")] == [
        (str(s.id), s.labels, s.columns["price"]) for s in subsets]


def test_resume_with_a_tables_own_names_writes_the_uninterrupted_bytes(model, tmp_path, monkeypatch):
    source = write_frame(own_names_table(12), tmp_path / "in.parquet")
    whole, out = tmp_path / "whole.parquet", tmp_path / "out.parquet"
    predict_file(model, source, whole, chunk_subsets=3, columns=OWN_NAMES)
    answer, calls = cactus.batch.answer_record, []

    def dies_in_the_third_chunk(*args):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("killed")
        return answer(*args)

    monkeypatch.setattr(cactus.batch, "answer_record", dies_in_the_third_chunk)
    with pytest.raises(RuntimeError, match="killed"):
        predict_file(model, source, out, chunk_subsets=3, columns=OWN_NAMES)
    monkeypatch.setattr(cactus.batch, "answer_record", answer)
    assert not out.exists() and len(list(partial_folder(out).glob("0*.jsonl"))) == 2
    with pytest.raises(ResumeError, match=r"cannot resume: columns changed"):
        predict_file(model, source, out, chunk_subsets=3, resume=True, columns={"subset_id": "query", "text": "title"})
    done = predict_file(model, source, out, chunk_subsets=3, resume=True, columns=OWN_NAMES)
    assert done.resumed_chunks == 2 and out.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_cli_predicts_and_evaluates_a_table_with_its_own_column_names(capsys, model_folder, tmp_path, suffix):
    source = write_frame(own_names_table(10), tmp_path / f"in{suffix}")
    out = tmp_path / f"out{suffix}"
    code, err = cli(capsys, "predict", source, "-o", out, "--model", model_folder, *NAME_FLAGS, "-q")
    assert code == 0, err
    assert list(pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)) == [
        "query", "title", "category", "sku", "price", "cluster_id"]
    reports = []
    for args in (["--predictions", out], ["--model", model_folder]):
        code, err = cli(capsys, "evaluate", source, *args, *NAME_FLAGS, "--report", tmp_path / "r.json", "-q")
        assert code == 0, err
        reports.append(json.loads((tmp_path / "r.json").read_text())["per_subset"])
    assert reports[0] == reports[1] and len(reports[0]) == 10  # the model's answers, through the file or not


def test_the_cli_refuses_column_names_that_cannot_be_right_before_any_work(capsys, model_folder, tmp_path):
    table = write_frame(own_names_table(3), tmp_path / "in.csv")
    jsonl = tmp_path / "in.jsonl"
    write_subsets(jsonl, synthetic(3))
    out = tmp_path / "out.csv"
    for args, code, parts in [
        ([jsonl, "--text-column", "title"], 2,
         ["--text-column title: column names are for a CSV or Parquet table", "in.jsonl is not one"]),
        ([table, "--subset-id-column", "query", "--text-column", "query"], 2,
         ["the subset_id and the text column would both be 'query'"]),
        ([table, *NAME_FLAGS[:4], "--label-column", "categry"], 3,
         [f"{table}: missing column 'categry', named as the label column"]),
    ]:
        got, err = cli(capsys, "predict", *args, "-o", out, "--model", model_folder)
        assert got == code
        one_error(err, *parts)
        assert not out.exists() and not partial_folder(out).exists()
    got, err = cli(capsys, "evaluate", jsonl, "--predictions", jsonl, "--label-column", "category")
    assert got == 2
    one_error(err, f"{jsonl}, {jsonl} are not tables")
