"""The command line, run as a user runs it: the installed `cactus` script in a subprocess, on real files."""

import json
import shutil
import subprocess
import sys

import pytest

from cactus.data import read_subsets
from conftest import EXAMPLES, SHARED_DATA

CACTUS = [shutil.which("cactus") or sys.executable, *([] if shutil.which("cactus") else ["-m", "cactus.cli"])]


def run(*args, ok=True):
    proc = subprocess.run([*CACTUS, *map(str, args)], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_predict_writes_input_order_with_int_ids(tmp_path):
    out = tmp_path / "pred.jsonl"
    proc = run("predict", EXAMPLES, "-o", out, "-q")
    assert proc.stderr == ""
    gold, pred = read_subsets(EXAMPLES), read_subsets(out)
    assert [(s.id, s.texts) for s in pred] == [(s.id, s.texts) for s in gold]
    assert all(isinstance(c, int) for s in pred for c in s.labels)


def test_predict_table_layout_and_evaluate_predictions(tmp_path):
    out = tmp_path / "pred.csv"
    run("predict", EXAMPLES, "-o", out, "-q")
    assert out.read_text().splitlines()[0] == "subset_id,text,label"
    report = tmp_path / "r.json"
    proc = run("evaluate", EXAMPLES, "--predictions", out, "--report", report)
    assert "ami" in proc.stdout and "95% CI" in proc.stdout
    data = json.loads(report.read_text())
    assert set(data["summary"]) == {"ami", "ari", "nmi", "ri", "precision", "recall", "f1"}
    assert len(data["per_subset"]) == len(read_subsets(EXAMPLES))


def test_tune_threshold_save_and_predict_with_saved_model(tmp_path):
    model_dir, curve = tmp_path / "model", tmp_path / "curve.json"
    proc = run("tune-threshold", EXAMPLES, "--save-to", model_dir, "--curve", curve, "--grid", "0", "1", "0.05", "-q")
    best = float(proc.stdout.split()[2])
    data = json.loads(curve.read_text())
    assert data["best_threshold"] == pytest.approx(best) and len(data["thresholds"]) == 21
    proc = run("evaluate", EXAMPLES, "--model", model_dir, "-q")
    assert "ami" in proc.stdout
    run("predict", EXAMPLES, "-o", tmp_path / "p.jsonl", "--model", model_dir, "-q")


def test_bad_input_names_subset_and_entity(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "texts": ["fine"]}\n{"id": "b", "texts": ["ok", ""]}\n')
    proc = run("predict", bad, "-o", tmp_path / "o.jsonl", ok=False)
    assert proc.returncode == 2
    assert "bad.jsonl:2, subset 'b', entity 1: text is empty" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_bare_encoder_needs_threshold(tmp_path):
    from cactus.encoder import resolve_backbone

    proc = run("predict", EXAMPLES, "-o", tmp_path / "o.jsonl", "--model", resolve_backbone("default"), ok=False)
    assert proc.returncode != 0 and "has no threshold" in proc.stderr


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="benchmark raw data not found")
def test_data_build_small(tmp_path):
    proc = run("data", "build", "--data-dir", SHARED_DATA, "--out", tmp_path, "--families", "banking77",
               "--n-train", "20", "--n-val", "5", "--n-test", "5", "-q")
    assert "banking77" in proc.stdout
    assert len(read_subsets(tmp_path / "banking77" / "test.jsonl")) == 5


def test_help_explains_options():
    for cmd in ("predict", "evaluate", "tune-threshold"):
        proc = run(cmd, "--help")
        assert "--model" in proc.stdout and "--batch-entities" in proc.stdout
