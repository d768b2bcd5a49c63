"""`cactus predict --engine ray` on a local Ray cluster (started by the command, on this machine): the cluster ids
equal the single-process command's on the same file, in input order."""

import pyarrow.parquet as pq
import pytest

from cactus.data import read_subsets, write_subsets
from test_batch import synthetic
from test_cli import run


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, tiny_backbone):
    from cactus import Cactus

    folder = tmp_path_factory.mktemp("ray") / "tiny"
    Cactus(backbone=tiny_backbone, attention="sia", threshold=0.95, device="cpu").save_pretrained(folder)
    return folder


def test_ray_labels_equal_the_local_command(model_folder, tmp_path):
    subsets = synthetic(40)
    subsets[3] = subsets[3].with_labels(["x"] * len(subsets[3]))  # labels are carried where a subset has them
    source = tmp_path / "in.jsonl.gz"
    write_subsets(source, subsets)
    local = tmp_path / "local.jsonl"
    run("predict", source, "-o", local, "--model", model_folder, "-q")
    out = tmp_path / "ray_out"
    proc = run("predict", source, "-o", out, "--model", model_folder, "--engine", "ray", "--actors", "2")
    assert f"clustered {sum(map(len, subsets))} entities on Ray" in proc.stderr
    table = pq.read_table(out).to_pydict()
    expected = [(str(s.id), i, text, c) for s in read_subsets(local)
                for i, (text, c) in enumerate(zip(s.texts, s.cluster_ids))]
    assert list(zip(table["subset_id"], table["entity_index"], table["text"], table["cluster_id"])) == expected
    assert {lab for lab, sid in zip(table["label"], table["subset_id"]) if sid == str(subsets[3].id)} == {"x"}
    assert {lab for lab, sid in zip(table["label"], table["subset_id"]) if sid != str(subsets[3].id)} == {None}


def test_ray_refuses_what_it_cannot_do(model_folder, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("subset_id,text\n1,a\n")
    for args, message in [
        ([source, "-o", tmp_path / "o"], "--engine ray reads JSONL"),
        ([tmp_path / "x.jsonl", "-o", tmp_path / "o", "--resume"], "--resume is for --engine local"),
    ]:
        proc = run("predict", *args, "--model", model_folder, "--engine", "ray", ok=False)
        assert proc.returncode == 2 and message in proc.stderr
