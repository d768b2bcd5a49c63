"""The CUDA paths, run where a GPU is (skipped elsewhere): the GPU embeds as the CPU does, in every attention mode,
for BERT and T5 and the shipped models; training on the GPU (every weight or an adapter, float32 or bf16 autocast)
resumes there and leaves a model that saves, loads on the CPU and exports; `cactus predict --device cuda` writes what
the CPU writes."""

import numpy as np
import pytest
import torch

from cactus import Cactus
from cactus.cli import main as cli_main
from cactus.train import TrainingConfig

from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ATOL = 1e-5  # float32 on both devices; the kernels differ, so the sums round differently


@pytest.fixture(scope="module")
def examples():
    from cactus.data import read_subsets

    return read_subsets(EXAMPLES)


def max_gap(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize("attention", ["nia", "fia", "sia"])
@pytest.mark.parametrize("backbone", ["tiny_backbone", "tiny_t5"])
def test_the_gpu_embeds_as_the_cpu_does(request, backbone, attention, examples):
    path = request.getfixturevalue(backbone)
    cpu = Cactus(backbone=path, attention=attention, device="cpu")
    gpu = Cactus(backbone=path, attention=attention, device="cuda")
    assert {p.device.type for p in gpu.encoder.parameters()} == {"cuda"}
    assert max_gap(gpu.embed(examples), cpu.embed(examples)) < ATOL


@pytest.mark.parametrize("name", ["default", "context-free"])
def test_the_shipped_models_predict_on_the_gpu_as_on_the_cpu(name, examples):
    cpu = Cactus.from_pretrained(name, device="cpu")
    gpu = Cactus.from_pretrained(name, device="cuda")
    assert max_gap(gpu.similarities(examples), cpu.similarities(examples)) < 1e-4
    assert [list(p) for p in gpu.predict(examples)] == [list(p) for p in cpu.predict(examples)]


def weights(model: Cactus) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.encoder.named_parameters()}


@pytest.mark.parametrize("precision", ["no", "bf16"])
@pytest.mark.parametrize("rank", [0, 4])
def test_training_on_the_gpu_resumes_saves_loads_on_the_cpu_and_exports(tiny_backbone, examples, tmp_path,
                                                                       precision, rank):
    def train(steps: int, folder: str) -> Cactus:
        model = Cactus(backbone=tiny_backbone, attention="sia", device="cuda")
        config = TrainingConfig(lr=1e-3, max_steps=steps, epochs=100, batch_size=2, eval_every=3, log_every=1,
                                checkpoint_every=3, progress=False, mixed_precision=precision, lora_rank=rank,
                                lora_alpha=8.0)
        model.fit(examples[:3], examples[3:], config=config, output_dir=tmp_path / folder, resume=True)
        return model

    start = weights(Cactus(backbone=tiny_backbone, attention="sia", device="cpu"))
    straight = train(6, "straight")
    train(3, "resumed")
    resumed = train(6, "resumed")  # continues from its step-3 checkpoint
    after = weights(straight)
    assert {p.device.type for p in straight.encoder.parameters()} == {"cuda"}
    assert all(t.dtype == torch.float32 for t in after.values())  # autocast computes in bf16, keeps float32 weights
    moved = [n for n, t in after.items() if n in start and not torch.equal(t, start[n])]
    adapter = [n for n in after if ".lora_" in n]
    if rank:
        assert adapter and not moved, "an adapter trains alone"
    else:
        assert moved and not adapter
    # Resuming replays the same batches and RNG states: the weights agree up to the GPU's summation order.
    assert max(float((after[n] - t).abs().max()) for n, t in weights(resumed).items()) < 1e-4
    assert straight.threshold_ is not None

    straight.save_pretrained(tmp_path / "saved")
    loaded = Cactus.from_pretrained(tmp_path / "saved", device="cpu")
    assert loaded.threshold_ == straight.threshold_
    assert max_gap(loaded.embed(examples), straight.embed(examples)) < ATOL
    if rank == 0:  # interpolating towards a start on the CPU, in the GPU model's place
        straight.interpolate(0.5, Cactus(backbone=tiny_backbone, attention="sia", device="cpu"))
        half = {n: (a + start[n]) / 2 for n, a in after.items()}
        assert max(float((half[n] - t).abs().max()) for n, t in weights(straight).items()) < 1e-6
    straight.export(tmp_path / "onnx")
    exported = Cactus.from_pretrained(tmp_path / "onnx")
    assert max_gap(exported.embed(examples), straight.embed(examples)) < 1e-4


def test_cli_predicts_on_the_gpu_what_it_predicts_on_the_cpu(tmp_path):
    from cactus.data import read_subsets

    clusters = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.jsonl"
        assert cli_main(["predict", str(EXAMPLES), "-o", str(out), "--device", device, "-q"]) == 0
        clusters[device] = [list(s.cluster_ids) for s in read_subsets(out)]
    assert clusters["cuda"] == clusters["cpu"]
