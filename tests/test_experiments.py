"""The experiment runner (the package benchmarks/experiments/, run as benchmarks/experiments.py): configs, one record
per run and seed, resuming, reports.

Runs the real script in quick mode on a tiny random BERT and a small benchmark built from the shared data.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cactus.data.benchmarks import build_benchmarks

from conftest import REPO, SHARED_DATA
from experiments import CONFIGS, Experiment, RunSpec
from experiments.spec import ALL

SCRIPT = REPO / "benchmarks" / "experiments.py"

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"benchmark raw data not found at {SHARED_DATA}")


@pytest.mark.parametrize("config", sorted(p.stem for p in CONFIGS.glob("*.json")))
def test_shipped_configs_load(config):
    exp = Experiment.load(config)
    assert exp.runs and exp.description
    for spec, seeds in exp.runs.values():
        assert spec.test_families and seeds
        assert set(spec.train_families) <= set(ALL)


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="learning_rate"):
        RunSpec.from_dict({"learning_rate": 1e-4})
    with pytest.raises(ValueError, match=r"interpolate must lie in \[0, 1\], not 1.5"):
        RunSpec(interpolate=1.5)
    with pytest.raises(ValueError, match="interpolate needs training"):
        RunSpec(train_families=(), interpolate=0.5)


def test_quick_cut_keeps_pretraining_off():
    assert RunSpec().quick().pretrain_steps == 0
    assert RunSpec(pretrain_steps=100).quick().pretrain_steps == 2
    assert RunSpec(train_subsets=None).quick().train_subsets == 8


def test_run_resume_and_report(tiny_backbone, tmp_path):
    families = ("clinc_intent", "product_same")
    build_benchmarks(SHARED_DATA, tmp_path / "bench", families=families, n_train=12, n_val=4, n_test=4,
                     progress=False)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"description": "tiny", "runs": {
        "pretrained": {"attention": "nia", "train_families": [], "test_families": list(families)},
        "sia": {"train_families": list(families), "test_families": list(families), "seeds": [0, 1]},
    }}))
    common = ["--results", str(tmp_path / "results"), "--quick"]
    run = [sys.executable, str(SCRIPT), "run", str(config), "--bench", str(tmp_path / "bench"),
           "--backbone", tiny_backbone, "--work", str(tmp_path / "work"), *common]
    out = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 run(s) to do" in out.stdout
    records = sorted((tmp_path / "results" / "runs").glob("*.json"))
    assert len(records) == 3
    sia = [json.loads(p.read_text()) for p in records if p.name.startswith("sia_")]
    assert sorted(r["seed"] for r in sia) == [0, 1]
    for r in sia:
        assert r["training_summary"]["steps"] == 4 and r["s0"] and r["threshold"] is not None
        assert set(r["families"]) == set(families) and 0 < r["peak_rss_mib"]
        for fam in families:
            assert -1 <= r["families"][fam]["stored"]["ami"] <= 1 and r["families"][fam]["test_subsets"] == 3
    again = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert "0 run(s) to do" in again.stdout

    # rescore: a record without per-subset scores gets them back from its rebuilt model; a record whose model
    # has moved on is refused
    path = next(p for p in records if p.name.endswith("_s1.json") and p.name.startswith("sia_"))
    full = json.loads(path.read_text())
    stripped = json.loads(path.read_text())
    for fam in families:
        assert len(full["families"][fam]["stored_ami_per_subset"]) == 3
        del stripped["families"][fam]["stored_ami_per_subset"], stripped["families"][fam]["own_ami_per_subset"]
    path.write_text(json.dumps(stripped))
    rescore = [sys.executable, str(SCRIPT), "rescore", str(config), "--bench", str(tmp_path / "bench"),
               "--backbone", tiny_backbone, "--work", str(tmp_path / "work"), *common]
    out = subprocess.run(rescore, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0 and f"rescored {path.name}" in out.stdout, out.stdout + out.stderr
    assert json.loads(path.read_text()) == full
    path.write_text(json.dumps(stripped | {"threshold": stripped["threshold"] + 0.01}))
    out = subprocess.run(rescore, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode != 0 and f"{path.name}: the model rebuilt for it has threshold" in out.stderr
    path.write_text(json.dumps(full))

    report = subprocess.run([sys.executable, str(SCRIPT), "report", str(config), *common], capture_output=True,
                            text=True, cwd=REPO, timeout=600)
    assert report.returncode == 0, report.stderr
    summary = json.loads((tmp_path / "results" / "tiny.json").read_text())["runs"]
    assert summary["sia"]["seeds"] == [0, 1] and summary["pretrained"]["train_subsets_per_second"] is None
    assert "| sia | 2 |" in (tmp_path / "results" / "tiny.md").read_text()
    assert (tmp_path / "results" / "tiny.png").stat().st_size > 0


def test_a_run_being_made_by_a_live_process_is_taken(tmp_path):
    import os

    from experiments import record_path, taken

    spec = RunSpec()
    marker = record_path(tmp_path, spec, 0).with_suffix(".running")
    marker.parent.mkdir(parents=True)
    assert not taken(tmp_path, spec, 0)
    marker.write_text(str(os.getpid()))
    assert taken(tmp_path, spec, 0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker.write_text(str(dead.pid))
    assert not taken(tmp_path, spec, 0)


def test_a_saved_model_is_tested_at_its_own_threshold(tiny_backbone, tmp_path):
    from cactus import Cactus

    build_benchmarks(SHARED_DATA, tmp_path / "bench", families=("clinc_intent",), n_train=4, n_val=4, n_test=4,
                     progress=False)
    Cactus(backbone=tiny_backbone, attention="sia", threshold=0.5, device="cpu").save_pretrained(tmp_path / "model")
    config = tmp_path / "saved.json"
    config.write_text(json.dumps({"description": "saved", "runs": {"saved": {
        "init": str(tmp_path / "model"), "train_families": [], "test_families": ["clinc_intent"]}}}))
    out = subprocess.run([sys.executable, str(SCRIPT), "run", str(config), "--quick",
                          "--bench", str(tmp_path / "bench"), "--results", str(tmp_path / "results"),
                          "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    assert record["key"].startswith("sia_saved_none_") and record["threshold"] == 0.5
    assert record["training_summary"] is None and "clinc_intent" in record["families"]


def test_a_longer_run_continues_a_shorter_one_exactly(tiny_backbone, tmp_path):
    """Runs that differ only in steps share a training folder: the 5-step run waits for the 2-step one, continues its
    checkpoint and ends where a 5-step run trained from the start in a fresh folder ends. A run shorter than the
    folder's checkpoint is refused, naming the folder."""
    families = ("clinc_intent",)
    build_benchmarks(SHARED_DATA, tmp_path / "bench", families=families, n_train=12, n_val=4, n_test=4,
                     progress=False)
    small = {"train_families": list(families), "test_families": list(families), "train_subsets": 8,
             "val_subsets": 3, "test_subsets": 3}
    config = tmp_path / "steps.json"
    config.write_text(json.dumps({"description": "steps", "runs": {  # the longer first: the runner reorders
        "long": {**small, "steps": 5}, "short": {**small, "steps": 2}}}))

    def run(work: str, results: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), "run", str(config), "--bench", str(tmp_path / "bench"),
                               "--backbone", tiny_backbone, "--work", str(tmp_path / work), "--results",
                               str(tmp_path / results), *extra], capture_output=True, text=True, cwd=REPO, timeout=600)

    keys = {steps: RunSpec.from_dict({**small, "steps": steps}).key() for steps in (2, 5)}
    chained = run("work", "results")
    assert chained.returncode == 0, chained.stdout + chained.stderr
    started = [line.split()[1] for line in chained.stdout.splitlines() if line.startswith("started")]
    assert started == [f"{keys[2]}_s0", f"{keys[5]}_s0"]
    fresh = run("fresh", "fresh_results", "--runs", "long")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr

    def record(results: str, steps: int) -> dict:
        return json.loads((tmp_path / results / "runs" / f"{keys[steps]}_s0.json").read_text())

    short, long, alone = record("results", 2), record("results", 5), record("fresh_results", 5)
    assert (short["resumed_from_step"], long["resumed_from_step"], alone["resumed_from_step"]) == (0, 2, 0)
    assert long["training_summary"]["steps"] == alone["training_summary"]["steps"] == 5
    assert long["s0"] == alone["s0"] and long["s0"][:len(short["s0"])] == short["s0"]
    for fam in families:
        assert long["families"][fam]["own"] == alone["families"][fam]["own"]

    (tmp_path / "results" / "runs" / f"{keys[2]}_s0.json").unlink()
    refused = run("work", "results", "--runs", "short")
    assert refused.returncode != 0
    assert "past this run's 2 steps" in (tmp_path / "work" / "logs" / f"{keys[2]}_s0.log").read_text()


def test_paired_gain_over_the_reference():
    from experiments import FIVE, paired_gain

    rng = np.random.default_rng(1)
    ref = {"families": {f: {"own_ami_per_subset": rng.uniform(0.3, 0.9, 40).tolist()} for f in FIVE}}
    same = {"families": {f: {"stored_ami_per_subset": ref["families"][f]["own_ami_per_subset"]} for f in FIVE}}
    point, low, high = paired_gain(same, ref)
    assert point == 0 and low == 0 and high == 0  # paired: identical scores leave no spread
    better = {"families": {f: {"stored_ami_per_subset": (np.asarray(ref["families"][f]["own_ami_per_subset"]) * 1.2
                                                         ).tolist()} for f in FIVE}}
    point, low, high = paired_gain(better, ref)
    assert point == pytest.approx(0.2) and low == pytest.approx(0.2) and high == pytest.approx(0.2)
    noisy = {"families": {f: {"stored_ami_per_subset": rng.uniform(0.3, 0.9, 40).tolist()} for f in FIVE}}
    point, low, high = paired_gain(noisy, ref)
    assert low < point < high and high - low > 0.05
    one = paired_gain(noisy, ref, ("banking77",))
    assert one[0] == pytest.approx(np.mean(noisy["families"]["banking77"]["stored_ami_per_subset"])
                                   / np.mean(ref["families"]["banking77"]["own_ami_per_subset"]) - 1)
    del noisy["families"]["banking77"]
    assert paired_gain(noisy, ref) is None


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_interpolated_runs_share_the_training_and_end_at_the_start(tiny_backbone, tmp_path, lora_rank):
    """Runs that differ only in `interpolate` train once; interpolate 0 gives back the starting encoder, which tunes
    the same threshold and scores the same as the untrained run: with every weight trained, and with an adapter
    (whose update is scaled)."""
    import torch

    from cactus import Cactus

    families = ["clinc_intent"]
    build_benchmarks(SHARED_DATA, tmp_path / "bench", families=tuple(families), n_train=8, n_val=4, n_test=4,
                     progress=False)
    small = {"train_families": families, "test_families": families, "train_subsets": 8, "val_subsets": 3,
             "test_subsets": 3, "steps": 3, "lora_rank": lora_rank}
    config = tmp_path / "wise.json"
    config.write_text(json.dumps({"description": "wise", "runs": {
        "trained": small, "halfway": {**small, "interpolate": 0.5}, "start": {**small, "interpolate": 0.0},
        "untrained": {**small, "train_families": []}}}))
    out = subprocess.run([sys.executable, str(SCRIPT), "run", str(config), "--bench", str(tmp_path / "bench"),
                          "--backbone", tiny_backbone, "--work", str(tmp_path / "work"), "--results",
                          str(tmp_path / "results")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    exp = Experiment.load(str(config))
    rec = {label: json.loads((tmp_path / "results" / "runs" / f"{spec.key()}_s0.json").read_text())
           for label, (spec, _) in exp.runs.items()}
    assert [rec[k]["resumed_from_step"] for k in ("trained", "halfway", "start")] == [0, 3, 3]
    assert rec["trained"]["interpolated_validation"] is None and rec["halfway"]["interpolated_validation"] is not None
    assert rec["start"]["threshold"] == rec["untrained"]["threshold"]
    assert rec["start"]["families"]["clinc_intent"]["own"] == rec["untrained"]["families"]["clinc_intent"]["own"]

    # rescore rebuilds an interpolated model the way the run made it
    halfway = tmp_path / "results" / "runs" / f"{exp.runs['halfway'][0].key()}_s0.json"
    stripped = json.loads(halfway.read_text())
    del stripped["families"]["clinc_intent"]["stored_ami_per_subset"]
    halfway.write_text(json.dumps(stripped))
    out = subprocess.run([sys.executable, str(SCRIPT), "rescore", str(config), "--runs", "halfway", "--bench",
                          str(tmp_path / "bench"), "--backbone", tiny_backbone, "--work", str(tmp_path / "work"),
                          "--results", str(tmp_path / "results")], capture_output=True, text=True, cwd=REPO,
                         timeout=600)
    assert out.returncode == 0 and f"rescored {halfway.name}" in out.stdout, out.stdout + out.stderr
    assert json.loads(halfway.read_text()) == rec["halfway"]

    a, b = (Cactus(backbone=tiny_backbone, device="cpu") for _ in range(2))
    with torch.no_grad():
        for p in b.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in a.encoder.parameters()]
    a.interpolate(0.25, b)
    for p0, p, q in zip(before, a.encoder.parameters(), b.encoder.parameters()):
        assert torch.allclose(p, 0.25 * p0 + 0.75 * q)
