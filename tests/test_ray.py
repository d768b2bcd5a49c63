"""`cactus predict --engine ray` on a local Ray cluster (started by the command, on this machine): the cluster ids
(and, with --describe, the descriptions) equal the single-process command's on the same file, in input order, from
JSONL and from a Parquet table."""

import pyarrow.parquet as pq
import pytest

from cactus.batch import row_descriptions
from cactus.data import read_subsets, write_subsets
from test_batch import NAME_FLAGS, OWN_NAMES, own_names_table, synthetic
from test_cli import run


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, tiny_backbone):
    from cactus import Cactus

    folder = tmp_path_factory.mktemp("ray") / "tiny"
    Cactus(backbone=tiny_backbone, attention="sia", threshold=0.95, device="cpu").save_pretrained(folder)
    return folder


def test_ray_labels_and_descriptions_equal_the_local_command(model_folder, tmp_path):
    subsets = synthetic(40)
    subsets[3] = subsets[3].with_labels(["x"] * len(subsets[3]))  # labels are carried where a subset has them
    source = tmp_path / "in.jsonl.gz"
    write_subsets(source, subsets)
    local = tmp_path / "local.jsonl"
    run("predict", source, "-o", local, "--model", model_folder, "--describe", "-q")
    out = tmp_path / "ray_out"
    proc = run("predict", source, "-o", out, "--model", model_folder, "--engine", "ray", "--actors", "2",
               "--describe")
    assert f"clustered {sum(map(len, subsets))} entities on Ray" in proc.stderr
    table = pq.read_table(out).to_pydict()
    assert list(table) == ["subset_id", "entity_index", "text", "label", "cluster_id", "cluster_name", "cohesion"]
    expected = []
    for s in read_subsets(local):
        described = row_descriptions({"cluster_ids": s.cluster_ids, **s.extra})
        expected += [(str(s.id), i, text, c, name, cohesion) for i, (text, c, name, cohesion) in enumerate(
            zip(s.texts, s.cluster_ids, described["cluster_name"], described["cohesion"]))]
    assert len({name for *_, name, _ in expected}) > 10  # many clusters, with names of their own
    assert list(zip(table["subset_id"], table["entity_index"], table["text"], table["cluster_id"],
                    table["cluster_name"], table["cohesion"])) == expected
    assert {lab for lab, sid in zip(table["label"], table["subset_id"]) if sid == str(subsets[3].id)} == {"x"}
    assert {lab for lab, sid in zip(table["label"], table["subset_id"]) if sid != str(subsets[3].id)} == {None}


def test_ray_reads_a_parquet_table_with_its_own_names_as_the_local_command(model_folder, tmp_path):
    table = own_names_table(30)
    source = tmp_path / "in.parquet"
    table.to_parquet(source, index=False, row_group_size=16)  # each subset's rows in several row groups, read apart
    local = tmp_path / "local.parquet"
    run("predict", source, "-o", local, "--model", model_folder, *NAME_FLAGS, "--engine", "local", "-q")
    out = tmp_path / "ray_out"
    proc = run("predict", source, "-o", out, "--model", model_folder, *NAME_FLAGS, "--engine", "ray", "--actors", "2")
    assert f"clustered {len(table)} entities on Ray" in proc.stderr
    got = pq.read_table(out).to_pydict()
    assert list(got) == ["query", "entity_index", "title", "category", "cluster_id"]
    expected = [(str(s.id), i, text, label, c) for s in read_subsets(local, columns=OWN_NAMES)
                for i, (text, label, c) in enumerate(zip(s.texts, s.labels, s.cluster_ids))]
    assert list(zip(*got.values())) == expected  # subsets in the order of their first rows, as read locally

    folder = tmp_path / "parts"  # a folder of files, a subset's rows in both, and an empty text in the second
    folder.mkdir()
    bad = table.copy()
    bad.loc[40, "title"] = " "
    bad.iloc[:25].to_parquet(folder / "part-0.parquet", index=False)
    bad.iloc[25:].to_parquet(folder / "part-1.parquet", index=False)
    entity = int((table["query"].iloc[:40] == table["query"][40]).sum())
    proc = run("predict", folder, "-o", tmp_path / "o", "--model", model_folder, *NAME_FLAGS, "--engine", "ray",
               ok=False)
    assert proc.returncode == 3
    assert (f"error: {folder}/part-1.parquet:16, subset {table['query'][40]}, entity {entity}: text is empty"
            in proc.stderr)


def test_ray_refuses_what_it_cannot_do(model_folder, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("subset_id,text\n1,a\n")
    write_subsets(tmp_path / "x.jsonl", synthetic(2))
    own_names_table(2).to_parquet(tmp_path / "x.parquet", index=False)
    for args, message in [
        ([source, "-o", tmp_path / "o"], f"cannot read {source} on Ray: it reads JSONL"),
        ([tmp_path / "x.jsonl", "-o", tmp_path / "o", "--resume"], "--resume is for --engine local"),
        ([tmp_path / "x.jsonl", "-o", tmp_path / "o", "--text-column", "title"], "column names are for a CSV or "
         "Parquet table"),
        ([tmp_path / "x.parquet", "-o", tmp_path / "o", "--text-column", "cohesion", "--describe"],
         "'cohesion' is a column that --engine ray makes itself"),
    ]:
        proc = run("predict", *args, "--model", model_folder, "--engine", "ray", ok=False)
        assert proc.returncode == 2 and message in proc.stderr
