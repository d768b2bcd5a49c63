"""The command line, run as a user runs it: the installed `cactus` script in a subprocess, on real files.

Error paths that stop before any model work run `cactus.cli.main` in this process (the same code, much faster to
start); every exit code is also checked on the installed script in a subprocess.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from cactus.cli import main
from cactus.cli_args import EXIT_CODES
from cactus.data import Subset, read_subsets, write_subsets
from cactus.metrics import METRICS
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
    assert [(s.id, s.texts, s.labels) for s in pred] == [(s.id, s.texts, s.labels) for s in gold]  # labels kept
    assert all(isinstance(c, int) for s in pred for c in s.cluster_ids)


def test_predict_table_layout_and_evaluate_predictions(tmp_path):
    out = tmp_path / "pred.csv"
    run("predict", EXAMPLES, "-o", out, "-q")
    assert out.read_text().splitlines()[0] == "subset_id,text,label,cluster_id"
    report = tmp_path / "r.json"
    proc = run("evaluate", EXAMPLES, "--predictions", out, "--report", report)
    assert "ami" in proc.stdout and "95% CI" in proc.stdout
    data = json.loads(report.read_text())
    assert set(data["summary"]) == set(METRICS)
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


def test_tune_threshold_choose_weight_saves_the_weight_kept_and_its_cut(tmp_path):
    """On the default (an adapter interpolated 0.5 when shipped): every weight is scored, the one kept is appended to
    the saved model's interpolation record, and the cut chosen with it is saved."""
    model_dir = tmp_path / "model"
    proc = run("tune-threshold", EXAMPLES, "--model", "default", "--choose-weight", "--save-to", model_dir, "-q")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("interpolation weight: "))
    assert [float(w) for w in re.findall(r"([\d.]+): ami\+ari = ", line)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    kept = float(re.search(r"\(kept ([\d.]+)\)$", line).group(1))
    config = json.loads((model_dir / "cactus_config.json").read_text())["config"]
    assert config["training"]["interpolated"] == [0.5] + ([kept] if kept != 1.0 else [])
    assert config["cut_provenance"]["subsets"] == len(read_subsets(EXAMPLES)) and "cut: " in proc.stdout
    run("predict", EXAMPLES, "-o", tmp_path / "p.jsonl", "--model", model_dir, "-q")


def test_bad_input_names_subset_and_entity(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "texts": ["fine"]}\n{"id": "b", "texts": ["ok", ""]}\n')
    proc = run("predict", bad, "-o", tmp_path / "o.jsonl", ok=False)
    assert proc.returncode == 3
    assert proc.stderr == f"error: {bad}:2, subset 'b', entity 1: text is empty\n"
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
        assert "--model" in proc.stdout and "--batch-tokens" in proc.stdout


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="benchmark raw data not found")
def test_pretrain_then_train_with_a_yaml_config(tmp_path, tiny_backbone):
    run("data", "build", "--data-dir", SHARED_DATA, "--out", tmp_path / "bench", "--families", "clinc_intent",
        "--n-train", "8", "--n-val", "4", "--n-test", "4", "-q")
    bench = tmp_path / "bench" / "clinc_intent"
    (tmp_path / "train.yaml").write_text("lr: 1e-3\nepochs: 1\nbatch_size: 2\nlog_every: 1\n")  # 1e-3: YAML text
    proc = run("pretrain", "--train", bench / "train.jsonl", "--out", tmp_path / "pre", "--model", tiny_backbone,
               "--attention", "sia", "--subsets-per-epoch", "4", "--config", tmp_path / "train.yaml", "-q")
    assert "pretrained on synthetic subsets" in proc.stdout
    pre = json.loads((tmp_path / "pre" / "best" / "cactus_config.json").read_text())["config"]
    assert pre["attention"] == "sia" and pre["loss"] == "augmented_triplet" and pre["neutral"] != 0.0

    proc = run("train", "--train", bench / "train.jsonl", "--val", bench / "val.jsonl", "--out", tmp_path / "ft",
               "--pretrained-from", tmp_path / "pre" / "best", "--config", tmp_path / "train.yaml",
               "--max-steps", "3", "--lr-schedule", "linear", "--grad-accumulation", "2", "--report-to", "tensorboard",
               "-q")
    assert "best ami+ari" in proc.stdout
    assert (tmp_path / "ft" / "training_curve.png").is_file()
    assert any((tmp_path / "ft" / "trackers" / "cactus").glob("events.out.tfevents.*"))
    log = [json.loads(line) for line in (tmp_path / "ft" / "train_log.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "loss" for r in log) == 3
    used = json.loads((tmp_path / "ft" / "training_config.json").read_text())
    # fine-tuning starts from the s0 that pretraining reached (s0 moves at most about neutral_lr a step)
    assert used["init_neutral"] is None and abs(log[0]["neutral"] - pre["neutral"]) < 0.006
    assert used["lr"] == 0.001 and used["max_steps"] == 3  # the file, then the flags
    assert [r["lr"] for r in log if r["type"] == "loss"] == pytest.approx([1e-3, 2e-3 / 3, 1e-3 / 3])
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


# ---- every error one line, before any work ---------------------------------------------------------------------
def cli(capsys, *args) -> tuple[int, str]:
    """`cactus ARGS` in this process: (exit code, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own exit
        code = e.code
    return code, capsys.readouterr().err


def one_error(err: str, *parts: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and err.rstrip("\n").endswith(lines[0]), err
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture
def gold(tmp_path) -> Path:
    path = tmp_path / "gold.jsonl"
    shutil.copy(EXAMPLES, path)
    return path


def test_output_equal_to_the_input_is_refused(capsys, gold, tmp_path):
    before = gold.read_bytes()
    code, err = cli(capsys, "predict", gold, "-o", gold)
    assert code == 2 and gold.read_bytes() == before
    one_error(err, f"-o {gold} is the input {gold}: writing there would destroy it")
    code, err = cli(capsys, "predict", gold, "-o", tmp_path / "x" / ".." / "gold.jsonl")
    assert code == 2 and gold.read_bytes() == before
    code, err = cli(capsys, "evaluate", gold, "--predictions", gold, "--report", gold)
    assert code == 2 and "--report" in err and gold.read_bytes() == before


@pytest.mark.parametrize("where, message", [
    ("folder", "is a folder; name a file"),
    ("under_a_file", "is a file, not a folder"),
    ("suffix", "unknown file type '.txt'"),
    ("unwritable", "cannot write in"),
])
def test_an_output_that_cannot_be_written_is_refused_first(capsys, gold, tmp_path, where, message):
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "file").write_text("")
    out = {"folder": tmp_path / "folder.jsonl", "under_a_file": tmp_path / "file" / "o.jsonl",
           "suffix": tmp_path / "o.txt", "unwritable": Path("/proc/cactus-test/o.jsonl")}[where]
    if where == "unwritable" and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    code, err = cli(capsys, "predict", gold, "-o", out, "--model", tmp_path / "no-such-model")
    assert code == 2  # the output is checked before the (missing) model
    one_error(err, f"-o {out}", message)


def test_report_curve_and_save_to_are_checked_first(capsys, gold, tmp_path):
    (tmp_path / "dir").mkdir()
    code, err = cli(capsys, "evaluate", gold, "--report", tmp_path / "dir", "--model", tmp_path / "nope")
    assert code == 2
    one_error(err, "--report", "is a folder")
    code, err = cli(capsys, "tune-threshold", gold, "--curve", tmp_path / "dir", "--model", tmp_path / "nope")
    assert code == 2
    one_error(err, "--curve", "is a folder")
    (tmp_path / "dir" / "notes.txt").write_text("mine")
    code, err = cli(capsys, "tune-threshold", gold, "--save-to", tmp_path / "dir", "--model", tmp_path / "nope")
    assert code == 2 and (tmp_path / "dir" / "notes.txt").exists()
    one_error(err, "--save-to", "holds files but is no cactus model folder")


@pytest.mark.parametrize("args, code, message", [
    (["--threshold", "nan"], 2, "--threshold must be a number in [-1, 1], got 'nan'"),
    (["--threshold", "2"], 2, "--threshold must be a number in [-1, 1], got '2'"),
    (["--threshold", "inf"], 2, "got 'inf'"),
    (["--threshold", "-1.5"], 2, "got '-1.5'"),
    (["--batch-tokens", "0"], 2, "argument --batch-tokens: must be a whole number >= 1, got '0'"),
    (["--max-tokens", "1"], 2, "argument --max-tokens: must be a whole number >= 2, got '1'"),
    (["--cut-band", "0.6", "0.2"], 2, "--cut-band: cut band: low 0.6 is above high 0.2"),
    (["--cut-centre", "2"], 2, "argument --cut-centre: cut centre must be a number in [0, 1], got '2'"),
    (["--cut", "threshold", "--cut-centre", "0.5"], 2,
     "--cut-centre: cut centre 0.5 applies to the adaptive silhouette cut only, not to threshold"),
    (["--model", "./no/such/model"], 4, "--model ./no/such/model: no such folder"),
    (["--device", "gpu0"], 2, "'gpu0' is not a torch device"),
])
def test_bad_options_are_one_line_before_any_model_loads(capsys, gold, tmp_path, args, code, message):
    got, err = cli(capsys, "predict", gold, "-o", tmp_path / "o.jsonl", *args)
    assert got == code and not (tmp_path / "o.jsonl").exists()
    one_error(err, message)


def test_cut_options_replace_the_models_parts(capsys, gold, tmp_path):
    """The context-free model cuts with the centred silhouette; --cut-centre replaces its centre, and another
    criterion drops it (a centre is the silhouette's alone)."""
    from cactus import Cactus
    from cactus.cluster import Cut

    model = Cactus.from_pretrained("context-free")
    own = model.cut_
    assert own.rule == "adaptive" and own.criterion == "silhouette" and own.centre > 0
    subsets = read_subsets(gold)
    for options, cut in [([], own), (["--cut-centre", "0"], Cut("adaptive", band=own.band)),
                         (["--cut-criterion", "gap"], Cut("adaptive", "gap", own.band))]:
        out = tmp_path / "o.jsonl"
        assert cli(capsys, "predict", gold, "-o", out, "--model", "context-free", "-q", *options)[0] == 0
        expected = model.predict(subsets, cut=cut)
        assert [list(s.cluster_ids) for s in read_subsets(out)] == [list(e) for e in expected], options


def test_an_unavailable_gpu_is_refused(capsys, gold, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    code, err = cli(capsys, "predict", gold, "-o", tmp_path / "o.jsonl", "--device", "cuda")
    assert code == 2
    one_error(err, "device 'cuda': no CUDA GPU is available here")


def test_threshold_extremes_are_taken_with_a_warning(capsys, caplog, gold, tmp_path):
    code, _ = cli(capsys, "predict", gold, "-o", tmp_path / "o.jsonl", "--threshold", "-1", "-q")
    assert code == 0 and "--threshold -1 puts all of each subset in one cluster" in caplog.text
    assert all(set(s.cluster_ids) == {0} for s in read_subsets(tmp_path / "o.jsonl"))


@pytest.mark.parametrize("args, message", [
    (["--grid", "0", "1", "0"], "--grid 0 1 0: needs START <= STOP and STEP > 0"),
    (["--grid", "0", "5", "1"], "--grid 0 5 1: thresholds lie in [-1, 1]"),
    (["--grid", "0", "1", "1e-9"], "over 100,000 thresholds"),
    (["--objective", "bogus"], "unknown metric(s) ['bogus']"),
])
def test_tuning_options_are_checked_first(capsys, gold, args, message):
    code, err = cli(capsys, "tune-threshold", gold, "--model", "./no-such-model", *args)
    assert code == 2
    one_error(err, message)


@pytest.mark.parametrize("name, data, message", [
    ("latin1.jsonl", b'{"id": "a", "texts": ["caf\xe9"]}\n', "latin1.jsonl:1: not UTF-8 text: byte 0xe9"),
    ("empty.jsonl", b"", "empty.jsonl: no subsets"),
    ("header.csv", b"subset_id,text,label\n", "header.csv: no subsets"),
    ("empty.parquet", b"", "empty.parquet: not a readable Parquet file"),
    ("junk.parquet", b"\x00" * 64, "junk.parquet: not a readable Parquet file"),
    ("quote.csv", b'subset_id,text\na,"unclosed\n', "quote.csv:2: malformed CSV"),
    ("pretty.json", b'[\n  {"id": "a", "texts": ["x"]}\n]\n', "pretty.json: one JSON document"),
    ("missing.jsonl", None, "missing.jsonl: no such file"),
])
def test_bad_input_files_are_one_line_data_errors(capsys, tmp_path, name, data, message):
    if data is not None:
        (tmp_path / name).write_bytes(data)
    code, err = cli(capsys, "predict", tmp_path / name, "-o", tmp_path / "o.jsonl", "-q")
    assert code == 3 and not (tmp_path / "o.jsonl").exists()
    one_error(err, message)


def test_a_byte_order_mark_is_fine(capsys, tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + EXAMPLES.read_bytes())
    code, err = cli(capsys, "predict", tmp_path / "bom.jsonl", "-o", tmp_path / "o.jsonl", "-q")
    assert code == 0, err


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_backbone) -> Path:
    from cactus import Cactus

    folder = tmp_path_factory.mktemp("models") / "tiny"
    Cactus(backbone=tiny_backbone, threshold=0.5, device="cpu").save_pretrained(folder)
    return folder


@pytest.mark.parametrize("damage, message", [
    (lambda m: (m / "backbone" / "model.safetensors").write_bytes(b"garbage"), "not a readable safetensors file"),
    (lambda m: (m / "cactus_config.json").write_text("{oops"), "cactus_config.json: not valid JSON"),
    (lambda m: (m / "cactus_config.json").write_text('{"schema_version": 1}'), "missing key 'config'"),
    (lambda m: (m / "cactus_config.json").write_text('{"config": {"colour": 1}}'), "unknown model config field"),
    (lambda m: (m / "backbone" / "config.json").write_text('{"model_type": "nope"}'), "not a loadable encoder config"),
])
def test_a_damaged_model_folder_is_a_one_line_model_error(capsys, gold, tmp_path, tiny_model, damage, message):
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    damage(model)
    code, err = cli(capsys, "predict", gold, "-o", tmp_path / "o.jsonl", "--model", model)
    assert code == 4
    one_error(err, str(model), message)


def test_a_model_folder_whose_save_was_killed_is_recovered_by_the_cli(capsys, gold, tmp_path, tiny_model):
    shutil.copytree(tiny_model, tmp_path / ".m.old")  # killed between replace_dir's two renames
    code, err = cli(capsys, "predict", gold, "-o", tmp_path / "o.jsonl", "--model", tmp_path / "m", "-q")
    assert code == 0, err
    assert (tmp_path / "m" / "cactus_config.json").is_file() and not (tmp_path / ".m.old").exists()


def test_predict_keeps_a_tables_rows_columns_and_id_types(capsys, tmp_path, tiny_model):
    gold = read_subsets(EXAMPLES)
    rows = [(k, s, i) for k, s in enumerate(gold) for i in range(len(s))]
    rows = sorted(rows, key=lambda r: (r[2], r[0]))  # interleaved: every subset's first entity, then the second...
    table = pd.DataFrame({"subset_id": [100 + k for k, _, _ in rows], "text": [s.texts[i] for _, s, i in rows],
                          "label": [s.labels[i] for _, s, i in rows], "sku": [f"sku-{n}" for n in range(len(rows))]})
    table.to_parquet(tmp_path / "in.parquet", index=False)
    code, err = cli(capsys, "predict", tmp_path / "in.parquet", "-o", tmp_path / "out.parquet", "--model", tiny_model,
                    "-q")
    assert code == 0, err
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["subset_id", "text", "label", "sku", "cluster_id"]
    assert out[["subset_id", "text", "label", "sku"]].equals(table)  # rows, values and dtypes as they came in
    assert out["subset_id"].dtype.kind == "i" and out["cluster_id"].dtype.kind == "i"


def test_evaluate_matches_predictions_by_content(capsys, gold, tmp_path):
    subsets = read_subsets(gold)
    preds = [s.with_clusters([i % 2 for i in range(len(s))]) for s in subsets]
    write_subsets(tmp_path / "in_order.jsonl", preds)
    moved = [Subset(s.id, s.texts[::-1], cluster_ids=s.cluster_ids[::-1]) for s in preds[::-1]]
    write_subsets(tmp_path / "moved.csv", moved)
    reports = []
    for name in ("in_order.jsonl", "moved.csv"):
        code, err = cli(capsys, "evaluate", gold, "--predictions", tmp_path / name, "--report", tmp_path / "r.json")
        assert code == 0, err
        reports.append(json.loads((tmp_path / "r.json").read_text())["per_subset"])
    assert reports[0] == reports[1]
    assert "matched the entities of" in err
    other = [Subset(s.id, [t + "!" for t in s.texts], cluster_ids=s.cluster_ids) for s in preds]
    write_subsets(tmp_path / "other.jsonl", other)
    code, err = cli(capsys, "evaluate", gold, "--predictions", tmp_path / "other.jsonl")
    assert code == 3
    one_error(err, f"other.jsonl, subset '{preds[0].id}': the predictions hold other texts")


def train_args(out, backbone, *extra):
    return ["train", "--train", EXAMPLES, "--val", EXAMPLES, "--out", out, "--model", backbone, "--attention", "sia",
            "--max-steps", "1", "--batch-size", "2", "-q", *extra]


@pytest.mark.parametrize("line, message", [
    ("lr: fast", "field 'lr' must be a finite number, got 'fast'"),
    ("epochs: 2.5", "field 'epochs' must be a whole number, got 2.5"),
    ("restore_best: maybe", "field 'restore_best' must be true or false, got 'maybe'"),
    ("colour: red", "unknown training config field(s): ['colour']"),
    ("lr_schedule: cosine", "lr_schedule must be one of constant, linear, got 'cosine'"),
    ("report_to: tensorboard,neptune", "report_to must name trackers among tensorboard, wandb, mlflow, got 'neptune'"),
    ("grad_accumulation: 3", "grad_accumulation (3) cannot exceed batch_size (2)"),
])
def test_a_bad_config_field_is_named_before_the_model_loads(capsys, tmp_path, line, message):
    (tmp_path / "c.yaml").write_text(line + "\n")
    code, err = cli(capsys, *train_args(tmp_path / "run", "./no-such-model", "--config", tmp_path / "c.yaml"))
    assert code == 2 and not (tmp_path / "run").exists()
    one_error(err, f"training config ({tmp_path / 'c.yaml'}): {message}")


def test_a_bad_config_fails_before_torch_loads(tmp_path):
    """The command line starts light: its options, the training config and their errors need none of the heavy
    libraries, so a bad field is reported in a fraction of a second (0.3 s here, against 3 s to import torch)."""
    (tmp_path / "c.yaml").write_text("lr_schedule: cosine\n")
    args = [str(a) for a in train_args(tmp_path / "run", "./no-such-model", "--config", tmp_path / "c.yaml")]
    script = (f"import sys\nfrom cactus.cli import main\ncode = main({args!r})\n"
              "print(code, sorted(m for m in ('torch', 'transformers', 'sklearn', 'scipy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split("\n")[0] == "2 []", proc.stdout + proc.stderr
    assert "lr_schedule must be one of constant, linear, got 'cosine'" in proc.stderr


def test_train_into_a_run_needs_resume_or_overwrite(capsys, tmp_path, tiny_backbone):
    out = tmp_path / "run"
    code, err = cli(capsys, *train_args(out, "./no-such-model", "--batch-size", "0"))
    assert code == 2 and not out.exists()  # the training settings are checked before the model
    one_error(err, "training config: batch_size must be")
    code, err = cli(capsys, *train_args(out, tiny_backbone))
    assert code == 0, err
    best = (out / "best" / "cactus_config.json").read_bytes()
    code, err = cli(capsys, *train_args(out, tiny_backbone))
    assert code == 2 and (out / "best" / "cactus_config.json").read_bytes() == best
    one_error(err, f"--out {out} holds a run (train_log.jsonl, checkpoint, best", "--resume", "--overwrite")
    code, err = cli(capsys, *train_args(out, tiny_backbone, "--resume", "--overwrite"))
    assert code == 2
    one_error(err, "--resume and --overwrite: choose one")
    (out / "notes.txt").write_text("mine")
    code, err = cli(capsys, *train_args(out, tiny_backbone, "--overwrite", "--max-steps", "2"))
    assert code == 0, err
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    assert (out / "notes.txt").exists()  # only the run's own files are replaced
    (tmp_path / "file").write_text("")
    code, err = cli(capsys, *train_args(tmp_path / "file", tiny_backbone))
    assert code == 2
    one_error(err, "is a file; name a folder")


# ---- exit codes, on the installed script -------------------------------------------------------------------------
def test_exit_codes_are_documented_in_help():
    text = run("--help").stdout
    for code in EXIT_CODES:
        assert f"  {code} " in text


def test_exit_code_per_kind_of_error(tmp_path, tiny_model):
    """0 done, 2 usage, 3 data, 4 model; each error one line."""
    shutil.copy(EXAMPLES, tmp_path / "in.jsonl")
    (tmp_path / "bad.csv").write_bytes(b"subset_id,text\na,\xff\n")
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    (model / "backbone" / "model.safetensors").write_bytes(b"not weights")
    for args, code, message in [
        (["predict", tmp_path / "in.jsonl", "-o", tmp_path / "in.jsonl"], 2, "is the input"),
        (["predict", tmp_path / "bad.csv", "-o", tmp_path / "o.jsonl"], 3, "bad.csv:2: not UTF-8 text"),
        (["predict", tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", "--model", model], 4, "safetensors"),
    ]:
        proc = run(*args, ok=False)
        assert proc.returncode == code and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr


INTERNAL_ERROR = ("import sys, pyarrow.parquet as pq; pq.write_table = lambda *a, **k: 1 / 0; "
                  "from cactus.cli import main; sys.exit(main())")


def test_an_internal_error_is_one_line_with_the_debug_hint(tmp_path):
    """A dependency failing unexpectedly (pyarrow made to divide by zero) is exit 1, one line; --debug shows where."""
    args = ["predict", str(EXAMPLES), "-o", str(tmp_path / "o.parquet"), "-q"]
    proc = subprocess.run([sys.executable, "-c", INTERNAL_ERROR, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == ("error: internal error: ZeroDivisionError: division by zero (run again with --debug to see "
                           "where, and please report it)\n")
    # no output; the answered chunk is kept for --resume
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.parquet.partial"]
    proc = subprocess.run([sys.executable, "-c", INTERNAL_ERROR, *args, "--debug"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def limit_file_size() -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))


def test_a_write_the_system_refuses_is_exit_5(tmp_path):
    out = tmp_path / "o.jsonl"
    proc = subprocess.run([*CACTUS, "predict", str(EXAMPLES), "-o", str(out), "-q"], capture_output=True, text=True,
                          timeout=600, preexec_fn=limit_file_size)
    assert proc.returncode == 5 and proc.stderr == f"error: cannot write {out}: File too large\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.jsonl.partial"]  # the answers, kept for --resume
    proc = run("predict", EXAMPLES, "-o", out, "--resume")
    assert "resumed after 1 answered chunk)" in proc.stderr and len(read_subsets(out)) == len(read_subsets(EXAMPLES))


def drain(stream, into: bytearray) -> None:
    while chunk := stream.read1(4096):
        into.extend(chunk)


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    big = tmp_path / "big.jsonl"
    write_subsets(big, [Subset(f"{s.id}-{k}", s.texts) for k in range(400) for s in read_subsets(EXAMPLES)])
    for wait_for in ("", "predicting"):  # while starting (imports), and while working (before a chunk is answered)
        proc = subprocess.Popen([*CACTUS, "predict", str(big), "-o", str(tmp_path / "o.jsonl")],
                                stderr=subprocess.PIPE)
        seen = bytearray()
        reader = threading.Thread(target=drain, args=(proc.stderr, seen), daemon=True)
        reader.start()
        deadline = time.monotonic() + 300
        while wait_for.encode() not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
        reader.join(timeout=10)
        err = seen.decode(errors="replace")
        assert "Traceback" not in err and err.rstrip().endswith("error: interrupted"), err
        assert not (tmp_path / "o.jsonl").exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".")]
