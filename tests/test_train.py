"""The trainer: learning, logging, the best model, resuming, DDP, early stopping, every loss.

A tiny random BERT with the default model's tokenizer, SIA attention, CLINC150 intent subsets from the benchmark
builder (small: 16 train, 6 val).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cactus import Cactus
from cactus.data.benchmarks import build_family
from cactus.train import LOSSES, Trainer, TrainingConfig, label_ids

from conftest import REPO, SHARED_DATA


@pytest.fixture(scope="module")
def data() -> dict:
    return build_family("clinc_intent", SHARED_DATA, n_train=16, n_val=6, n_test=0)


def make_model(backbone: str) -> Cactus:
    return Cactus(backbone=backbone, attention="sia", device="cpu")


def read_log(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


def without_time(log: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in log]


def test_label_ids():
    from cactus.data import Subset

    subsets = [Subset("a", ["x", "y", "z"], ["b", "a", "b"]), Subset("b", ["x"], [7])]
    assert label_ids(subsets, 3).tolist() == [[0, 1, 0], [0, -1, -1]]


def test_config_round_trip_and_validation():
    config = TrainingConfig(loss="triplet", max_steps=3)
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="loss must be"):
        TrainingConfig(loss="nope")
    with pytest.raises(ValueError, match="unknown"):
        TrainingConfig.from_dict({"lr": 1e-4, "learning_rate": 1e-4})


def test_training_learns_logs_and_saves_the_best(tiny_backbone, data, tmp_path):
    model = make_model(tiny_backbone)
    config = TrainingConfig(lr=1e-3, epochs=6, eval_every=3, log_every=1, progress=False)
    summary = Trainer(model, config, tmp_path).train(data["train"], data["val"])

    log = read_log(tmp_path)
    losses = [r["loss"] for r in log if r["type"] == "loss"]
    assert len(losses) == summary["steps"] == 24
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    evals = [r for r in log if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [3, 4, 6, 8, 9, 12, 15, 16, 18, 20, 21, 24]  # every 3 steps + epoch ends
    fields = {"step", "epoch", "train_loss", "skipped", "objective", "score", "ami", "ari", "threshold", "neutral",
              "best", "elapsed_s"}
    assert all(fields <= set(r) for r in evals)
    assert summary["neutral"] != 0.0 and evals[-1]["neutral"] == pytest.approx(summary["neutral"])
    best = max(evals, key=lambda r: r["score"])
    assert summary["best_step"] == best["step"] and summary["best_score"] == pytest.approx(best["score"])

    # The in-memory model was restored to the best one; the saved folder reloads to the same predictions.
    assert model.threshold_ == best["threshold"] == summary["threshold"]
    assert model.config.threshold_provenance["step"] == model.config.training["step"] == best["step"]
    assert model.config.loss == "augmented_triplet" and model.config.neutral == best["neutral"]
    training = model.config.training
    assert training["data"]["train_subsets"] == len(data["train"]) and not training["data"]["per_epoch_synthetic"]
    assert training["validation"]["ami"] == pytest.approx(best["ami"])
    card = (tmp_path / "best" / "README.md").read_text()
    assert '"train_subsets": 16' in card and f"| neutral similarity s0 | {best['neutral']:.4f} |" in card
    assert model.config.training["config"] == config.to_dict()
    reloaded = Cactus.from_pretrained(tmp_path / "best", device="cpu")
    assert reloaded.config == model.config
    for a, b in zip(model.predict(data["val"]), reloaded.predict(data["val"])):
        np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


@pytest.mark.parametrize("options", [{}, {"lr_schedule": "linear", "warmup_steps": 2, "schedule_steps": 8,
                                          "grad_accumulation": 3}], ids=["constant", "schedule-and-accumulation"])
def test_resume_reaches_the_same_weights(tiny_backbone, data, tmp_path, one_thread, options):
    """8 steps at once == 6 steps (mid-epoch 2, dropout on), then resumed to 8 in a fresh model and trainer."""

    def run(output_dir: Path, max_steps: int, resume: bool = False) -> dict:
        config = TrainingConfig(lr=1e-3, epochs=3, max_steps=max_steps, eval_every=3, log_every=1, progress=False,
                                **options)
        return Trainer(make_model(tiny_backbone), config, output_dir).train(data["train"], data["val"], resume=resume)

    whole, split = tmp_path / "whole", tmp_path / "split"
    expected = run(whole, 8)
    assert run(split, 6)["steps"] == 6
    resumed = run(split, 8, resume=True)

    a, b = load_file(whole / "checkpoint" / "model.safetensors"), load_file(split / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["neutral"] == expected["neutral"] and resumed["best_step"] == expected["best_step"]
    assert without_time(read_log(split)) == without_time(read_log(whole))


def test_learning_rate_schedule(tiny_backbone, data, tmp_path):
    """Warmup, then linear decay to 0 at schedule_steps (max_steps by default); the log has each step's rate."""

    def rates(**options) -> list[float]:
        config = TrainingConfig(lr=1e-3, max_steps=6, log_every=1, progress=False, **options)
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        Trainer(make_model(tiny_backbone), config, out).train(data["train"], data["val"][:2])
        return [r["lr"] for r in read_log(out) if r["type"] == "loss"]

    assert rates() == [1e-3] * 6
    assert rates(warmup_steps=2) == pytest.approx([5e-4] + [1e-3] * 5)
    # factor (s + 1) / 2 in warmup, then (6 - s) / 4 for s = 2..5
    assert rates(warmup_steps=2, lr_schedule="linear") == pytest.approx([5e-4, 1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert rates(lr_schedule="linear", schedule_steps=12) == pytest.approx([1e-3 * (12 - s) / 12 for s in range(6)])


def without_dropout(model: Cactus) -> Cactus:
    for module in model.encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def test_gradient_accumulation_takes_the_same_steps(tiny_backbone, data, tmp_path, one_thread):
    """A batch of 4 encoded in 1, 2 or 3 parts (sizes 2+2, 2+1+1) gives the same weights, to float rounding: no
    subset of these is skipped, so each part's weight (its share of the batch) makes the mean of the whole."""
    weights, losses = [], []
    for parts in (1, 2, 3):
        model = without_dropout(make_model(tiny_backbone))
        config = TrainingConfig(lr=1e-3, max_steps=3, grad_accumulation=parts, log_every=1, progress=False)
        Trainer(model, config, tmp_path / str(parts)).train(data["train"], data["val"][:2])
        weights.append(model.encoder.state_dict())
        losses.append([r["loss"] for r in read_log(tmp_path / str(parts)) if r["type"] == "loss"])
    for other in weights[1:]:
        for name, value in weights[0].items():
            torch.testing.assert_close(other[name], value, rtol=1e-4, atol=1e-6)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and losses[2] == pytest.approx(losses[0], rel=1e-5)
    with pytest.raises(ValueError, match="grad_accumulation"):
        TrainingConfig(batch_size=2, grad_accumulation=3)


def test_bf16_autocast_trains_float32_weights(tiny_backbone, data, tmp_path):
    """bf16 changes the arithmetic (the losses move), not the weights' dtype; the run saves and reloads as usual."""

    def run(precision: str) -> tuple[Cactus, list[float]]:
        model = without_dropout(make_model(tiny_backbone))
        config = TrainingConfig(lr=1e-3, max_steps=3, mixed_precision=precision, log_every=1, progress=False)
        Trainer(model, config, tmp_path / precision).train(data["train"], data["val"][:2])
        return model, [r["loss"] for r in read_log(tmp_path / precision) if r["type"] == "loss"]

    (_, fp32_losses), (bf16, bf16_losses) = run("no"), run("bf16")
    assert all(p.dtype == torch.float32 for p in bf16.encoder.parameters())
    assert bf16_losses != fp32_losses and bf16_losses == pytest.approx(fp32_losses, rel=0.05)
    reloaded = Cactus.from_pretrained(tmp_path / "bf16" / "best", device="cpu")
    assert reloaded.threshold_ == bf16.threshold_
    with pytest.raises(ValueError, match="mixed_precision must be one of no, bf16"):
        TrainingConfig(mixed_precision="fp8")


def test_tensorboard_holds_the_logged_scalars_and_the_curve_is_drawn(tiny_backbone, data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainingConfig(lr=1e-3, max_steps=6, eval_every=2, log_every=1, report_to="tensorboard",
                            progress=False)
    Trainer(make_model(tiny_backbone), config, tmp_path).train(data["train"], data["val"][:3])

    expected: dict[str, list[tuple[int, float]]] = {}
    for r in read_log(tmp_path):
        for k, v in r.items():
            if k not in ("type", "step") and isinstance(v, (int, float)):
                expected.setdefault(f"{r['type']}/{k}", []).append((r["step"], float(v)))
    assert {"loss/loss", "loss/lr", "eval/ami", "eval/threshold", "eval/neutral"} <= set(expected)
    events = EventAccumulator(str(tmp_path / "trackers" / "cactus"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(expected)
    for tag, points in expected.items():
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in logged] == [s for s, _ in points]
        assert [v for _, v in logged] == pytest.approx([v for _, v in points], rel=1e-6)  # stored as float32
    with pytest.raises(ValueError, match="report_to must name trackers"):
        TrainingConfig(report_to="tensorboard,neptune")

    png = (tmp_path / "training_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_early_stopping(tiny_backbone, data, tmp_path):
    model = make_model(tiny_backbone)
    config = TrainingConfig(lr=0.0, neutral_lr=0.0, epochs=5, eval_every=1, patience=1, progress=False)
    summary = Trainer(model, config, tmp_path).train(data["train"], data["val"])
    assert summary["stopped_early"] and summary["steps"] == 2 and summary["best_step"] == 1
    assert [r["best"] for r in read_log(tmp_path) if r["type"] == "eval"] == [True, False]


def test_eval_on_start_lets_the_starting_model_compete(tiny_backbone, data, tmp_path):
    # lr 0: every evaluation scores the same, and a tie keeps the earlier model; so the start is best only when it
    # was evaluated at all.
    for on_start, first_best in ((True, 0), (False, 1)):
        config = TrainingConfig(lr=0.0, neutral_lr=0.0, max_steps=2, eval_every=1, eval_on_start=on_start,
                                progress=False)
        out = tmp_path / str(on_start)
        summary = Trainer(make_model(tiny_backbone), config, out).train(data["train"], data["val"])
        evals = [r for r in read_log(out) if r["type"] == "eval"]
        assert [r["step"] for r in evals] == ([0] if on_start else []) + [1, 2]
        assert summary["best_step"] == first_best and summary["steps"] == 2


def test_without_restoring_the_best_the_last_weights_get_their_threshold(tiny_backbone, data, tmp_path):
    model = make_model(tiny_backbone)
    config = TrainingConfig(lr=1e-3, max_steps=3, eval_every=1, restore_best=False, progress=False)
    Trainer(model, config, tmp_path).train(data["train"], data["val"])
    last = [r for r in read_log(tmp_path) if r["type"] == "eval"][-1]
    assert model.threshold_ == last["threshold"] and model.config.training["step"] == last["step"] == 3


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains(tiny_backbone, data, loss, tmp_path):
    config = TrainingConfig(loss=loss, lr=1e-3, max_steps=1, log_every=1, progress=False)
    summary = Trainer(make_model(tiny_backbone), config, tmp_path).train(data["train"], data["val"][:2])
    (line,) = [r for r in read_log(tmp_path) if r["type"] == "loss"]
    assert np.isfinite(line["loss"]) and summary["steps"] == 1
    assert (summary["neutral"] is not None) == (loss == "augmented_triplet")


def test_anchor_keeps_the_weights_near_their_start(tiny_backbone, data, tmp_path):
    start = {k: v.clone() for k, v in make_model(tiny_backbone).encoder.state_dict().items()}

    def drift(anchor: float) -> float:
        model = make_model(tiny_backbone)
        config = TrainingConfig(lr=1e-2, max_steps=4, anchor=anchor, seed=0, progress=False)
        Trainer(model, config, tmp_path / str(anchor)).train(data["train"], data["val"][:2])
        weights = model.encoder.state_dict()
        return sum(float(((weights[k] - v) ** 2).sum()) for k, v in start.items())

    free, anchored = drift(0.0), drift(50.0)
    assert 0 < anchored < 0.5 * free


def test_pretrain_on_synthetic_subsets(tiny_backbone, data, tmp_path):
    pool = sorted({t for s in data["train"] for t in s.texts})
    config = TrainingConfig(lr=1e-3, epochs=2, progress=False)
    summary = Trainer(make_model(tiny_backbone), config, tmp_path).pretrain(pool, n_subsets_per_epoch=8, n_val=4)
    assert summary["steps"] == 4 and summary["best_score"] is not None


def test_ddp_two_processes(tiny_backbone, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           str(REPO / "tests" / "ddp_train_script.py"), tiny_backbone, str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"batches_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["steps"] == 8 for r in ranks)
    assert ranks[0]["neutral"] == ranks[1]["neutral"]  # s0's gradient is all-reduced with the encoder's
    for epoch in (0, 1):  # 16 subsets, batches of 2, 2 ranks: 4 steps an epoch, every subset seen once
        seen = [{i for batch in r["batches"][4 * epoch: 4 * epoch + 4] for i in batch} for r in ranks]
        assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 16
    assert any(r["type"] == "eval" for r in read_log(tmp_path))
    assert {"random_states_0.pkl", "random_states_1.pkl", "model.safetensors", "trainer_state.json"} <= {
        p.name for p in (tmp_path / "checkpoint").iterdir()}


def test_killed_run_resumes_to_the_same_weights(tiny_backbone, data, tmp_path):
    """`cactus train` killed (SIGKILL) in the middle, then run again with --resume, ends with exactly the weights
    and log of a run that was never interrupted."""
    import signal
    import time

    from cactus.data import write_subsets

    write_subsets(tmp_path / "train.jsonl", data["train"])
    write_subsets(tmp_path / "val.jsonl", data["val"])

    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "cactus.cli", "train", "--train", str(tmp_path / "train.jsonl"),
                "--val", str(tmp_path / "val.jsonl"), "--out", str(out), "--model", tiny_backbone,
                "--attention", "sia", "--lr", "1e-3", "--epochs", "3", "--eval-every", "2", "-q", *extra]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # bit-for-bit: see the one_thread fixture
    subprocess.run(command(whole), check=True, timeout=300, env=env)
    proc = subprocess.Popen(command(killed), env=env)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint" / "trainer_state.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((killed / "checkpoint" / "trainer_state.json").read_text())
    assert 0 < state["step"] < 12, "the kill must fall mid-run for this test to mean anything"
    subprocess.run(command(killed, "--resume"), check=True, timeout=300, env=env)

    a = load_file(whole / "checkpoint" / "model.safetensors")
    b = load_file(killed / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert without_time(read_log(killed)) == without_time(read_log(whole))


def test_interpolate_checks_its_arguments(tiny_backbone):
    a, b = (Cactus(backbone=tiny_backbone, device="cpu") for _ in range(2))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], not 1.5"):
        a.interpolate(1.5, b)
    other = Cactus(device="cpu")  # the default encoder: another architecture
    with pytest.raises(ValueError, match="different weights"):
        a.interpolate(0.5, other)
    before = [p.clone() for p in a.encoder.parameters()]
    a.interpolate(1.0, b)  # w = 1 keeps the model as it is
    assert all(torch.equal(p, q) for p, q in zip(before, a.encoder.parameters()))
