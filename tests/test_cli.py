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


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="benchmark raw data not found")
def test_pretrain_then_train_with_a_yaml_config(tmp_path, tiny_backbone):
    run("data", "build", "--data-dir", SHARED_DATA, "--out", tmp_path / "bench", "--families", "clinc_intent",
        "--n-train", "8", "--n-val", "4", "--n-test", "4", "-q")
    bench = tmp_path / "bench" / "clinc_intent"
    (tmp_path / "train.yaml").write_text("lr: 0.001\nepochs: 1\nbatch_size: 2\nlog_every: 1\n")
    proc = run("pretrain", "--train", bench / "train.jsonl", "--out", tmp_path / "pre", "--model", tiny_backbone,
               "--attention", "sia", "--subsets-per-epoch", "4", "--config", tmp_path / "train.yaml", "-q")
    assert "pretrained on synthetic subsets" in proc.stdout
    pre = json.loads((tmp_path / "pre" / "best" / "cactus_config.json").read_text())["config"]
    assert pre["attention"] == "sia" and pre["loss"] == "augmented_triplet" and pre["neutral"] != 0.0

    proc = run("train", "--train", bench / "train.jsonl", "--val", bench / "val.jsonl", "--out", tmp_path / "ft",
               "--pretrained-from", tmp_path / "pre" / "best", "--config", tmp_path / "train.yaml",
               "--max-steps", "3", "-q")
    assert "best ami+ari" in proc.stdout
    log = [json.loads(line) for line in (tmp_path / "ft" / "train_log.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "loss" for r in log) == 3
    used = json.loads((tmp_path / "ft" / "training_config.json").read_text())
    assert used["init_neutral"] == pre["neutral"]  # fine-tuning starts from the s0 that pretraining reached
    assert used["lr"] == 0.001 and used["max_steps"] == 3  # the file, then the flags
    proc = run("evaluate", bench / "test.jsonl", "--model", tmp_path / "ft" / "best", "-q")
    assert "ami" in proc.stdout


def test_attention_switch_of_a_trained_model_needs_the_flag(tmp_path, tiny_backbone):
    from cactus import Cactus
    from cactus.data import read_subsets as read
    from cactus.train import TrainingConfig

    examples = read(EXAMPLES)
    model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model.fit(examples, examples, config=TrainingConfig(max_steps=1, batch_size=2, progress=False),
              output_dir=tmp_path / "run")
    model.save_pretrained(tmp_path / "m")
    proc = run("predict", EXAMPLES, "-o", tmp_path / "o.jsonl", "--model", tmp_path / "m", "--attention", "nia",
               ok=False)
    assert proc.returncode == 2 and "refusing to run it with 'nia'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.jsonl").exists()
    proc = run("predict", EXAMPLES, "-o", tmp_path / "o.jsonl", "--model", tmp_path / "m", "--attention", "nia",
               "--allow-attention-change")
    assert "now run with 'nia'" in proc.stderr and (tmp_path / "o.jsonl").exists()


def test_option_values_are_checked_in_one_line(tmp_path):
    proc = run("predict", EXAMPLES, "-o", tmp_path / "o.jsonl", "--threshold", "nan", ok=False)
    assert proc.returncode == 2 and "--threshold must be a number in [-1, 1], got 'nan'" in proc.stderr
    proc = run("tune-threshold", EXAMPLES, "--grid", "0", "1", "0", ok=False)
    assert proc.returncode != 0 and "needs START <= STOP and STEP > 0" in proc.stderr
    proc = run("tune-threshold", EXAMPLES, "--objective", "bogus", ok=False)
    assert proc.returncode == 2 and "unknown metric(s) ['bogus']" in proc.stderr
    for proc in (proc,):
        assert "Traceback" not in proc.stderr


def test_training_flags_are_the_training_config_fields():
    from dataclasses import fields

    from cactus.train import TrainingConfig

    text = run("train", "--help").stdout
    for f in fields(TrainingConfig):
        flag = "--" + f.name.replace("_", "-")
        assert (flag in text) == f.metadata["cli"], flag
    assert "--no-restore-best" in text and TrainingConfig.help("anchor")[:40] in " ".join(text.split())
