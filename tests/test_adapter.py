"""LoRA adapters: a fresh one changes nothing, training moves the adapter alone, an adapter on the published backbone
saves alone and reloads offline, merging and interpolation, damaged folders, BERT and T5."""

import json

import numpy as np
import pytest
import torch

from cactus import Cactus
from cactus.config import ModelFormatError
from cactus.data.benchmarks import build_family
from cactus.encoder import LoraSpec
from cactus.train import Trainer, TrainingConfig

from conftest import EXAMPLES, SHARED_DATA


@pytest.fixture(scope="module")
def data() -> dict:
    return build_family("clinc_intent", SHARED_DATA, n_train=8, n_val=4, n_test=0)


@pytest.fixture(scope="module")
def examples():
    from cactus.data import read_subsets

    return read_subsets(EXAMPLES)


def nudge_adapter(model: Cactus, seed: int = 0, scale: float = 0.05) -> None:
    """Random adapter weights, as training would leave them (a fresh adapter's B is zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.encoder.named_parameters():
            if ".lora_" in name:
                p.copy_(scale * torch.randn(p.shape, generator=gen))


def embeddings_equal(a: Cactus, b: Cactus, subsets, atol: float = 0.0) -> bool:
    return all(np.allclose(x, y, rtol=0, atol=atol) for x, y in zip(a.embed(subsets), b.embed(subsets)))


def test_adapter_on_the_published_backbone_saves_alone_and_reloads(examples, tmp_path):
    plain = Cactus(attention="sia", device="cpu")
    model = Cactus(attention="sia", device="cpu")
    spec = model.add_adapter(LoraSpec(rank=4, alpha=8))
    assert spec.targets == ("query", "value")
    assert embeddings_equal(model, plain, examples[:3], atol=1e-6), "a fresh adapter (B = 0) must change nothing"
    trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)

    nudge_adapter(model)
    assert not embeddings_equal(model, plain, examples[:3], atol=1e-4)
    model.adopt_threshold(0.4)
    model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "backbone").exists()
    size = sum(f.stat().st_size for f in (tmp_path / "m").rglob("*") if f.is_file())
    assert size < 1_000_000, size  # the backbone (90 MB) loads by name
    assert "LoRA, rank 4, alpha 8, on query, value" in (tmp_path / "m" / "README.md").read_text()
    reloaded = Cactus.from_pretrained(tmp_path / "m", device="cpu")
    assert reloaded.config == model.config
    assert embeddings_equal(reloaded, model, examples, atol=1e-6)


def test_a_float16_adapter_halves_the_file_and_reloads_rounded(tiny_backbone, examples, tmp_path):
    """Stored as float16 the adapter's file is half the float32 one; the model loads with the adapter rounded to
    float16 (and back to the backbone's float32), embedding within rounding of the model saved; the model in memory
    keeps its float32 adapter; a bad dtype, or one asked of a model without adapter, is refused by name."""
    from safetensors import safe_open

    model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model.add_adapter(LoraSpec(rank=4))
    nudge_adapter(model)
    model.adopt_threshold(0.3)
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters() if ".lora_" in n}
    model.save_pretrained(tmp_path / "f32")
    model.save_pretrained(tmp_path / "f16", adapter_dtype="float16")
    file = "adapter/adapter_model.safetensors"
    def data_bytes(path) -> int:  # a safetensors file: 8 bytes of header length, the JSON header, the tensors
        raw = path.read_bytes()
        return len(raw) - 8 - int.from_bytes(raw[:8], "little")

    weights = sum(t.numel() for t in before.values())
    assert [data_bytes(tmp_path / d / file) for d in ("f32", "f16")] == [4 * weights, 2 * weights]
    with safe_open(str(tmp_path / "f16" / file), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert all(torch.equal(p, before[n]) for n, p in model.encoder.named_parameters() if ".lora_" in n)

    half = Cactus.from_pretrained(tmp_path / "f16", device="cpu")
    loaded = {n: p for n, p in half.encoder.named_parameters() if ".lora_" in n}
    assert all(p.dtype == torch.float32 and torch.equal(p, before[n].half().float()) for n, p in loaded.items())
    assert not embeddings_equal(half, model, examples, atol=0.0), "float16 must round the adapter"
    assert embeddings_equal(half, model, examples, atol=1e-3)

    with pytest.raises(ValueError, match="adapter dtype 'int8' is not one of float32, float16, bfloat16"):
        model.save_pretrained(tmp_path / "bad", adapter_dtype="int8")
    assert not (tmp_path / "bad").exists()
    plain = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    with pytest.raises(ValueError, match="has no adapter"):
        plain.save_pretrained(tmp_path / "plain", adapter_dtype="float16")


def test_adapter_on_a_local_backbone_saves_both(tiny_backbone, examples, tmp_path):
    model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model.add_adapter(LoraSpec(rank=2))
    nudge_adapter(model)
    model.adopt_threshold(0.3)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "backbone").is_dir() and (tmp_path / "m" / "adapter").is_dir()
    # the backbone is saved without the adapter's layers, under the architecture's own names
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m" / "backbone" / "model.safetensors"), framework="pt") as f:
        assert not [k for k in f.keys() if "lora" in k or "base_layer" in k]
    reloaded = Cactus.from_pretrained(tmp_path / "m", device="cpu")
    assert embeddings_equal(reloaded, model, examples, atol=1e-6)


def test_lora_training_moves_the_adapter_alone_and_resumes_exactly(tiny_backbone, data, tmp_path, one_thread):
    def run(folder, max_steps, resume=False):
        model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
        base = {k: v.clone() for k, v in model.encoder.backbone.state_dict().items()}
        config = TrainingConfig(lr=1e-2, max_steps=max_steps, eval_every=2, lora_rank=4, progress=False)
        Trainer(model, config, folder).train(data["train"], data["val"], resume=resume)
        return model, base

    model, base = run(tmp_path / "whole", 4)
    state = model.encoder.backbone.state_dict()
    lora = {k: v for k, v in state.items() if ".lora_B." in k}
    assert lora and any(v.abs().sum() > 0 for v in lora.values()), "the adapter must have learned"
    for k, v in state.items():
        if ".lora_" not in k:
            assert torch.equal(v, base[k.replace(".base_layer", "")]), f"{k} moved"
    assert model.config.adapter["rank"] == 4 and (tmp_path / "whole" / "best" / "adapter").is_dir()

    run(tmp_path / "split", 2)
    resumed, _ = run(tmp_path / "split", 4, resume=True)
    again = resumed.encoder.backbone.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in state.items())


def test_validation_folds_the_adapter_and_training_goes_on_unfolded(tiny_backbone, data, tmp_path, one_thread):
    # Validation runs the adapter folded into the weights, as prediction does; a step after it must see the weights
    # as they were, so validating after every step trains exactly as validating at the end only.
    def adapter_after(eval_every, folder):
        model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
        config = TrainingConfig(lr=1e-2, max_steps=3, eval_every=eval_every, lora_rank=4, progress=False,
                                restore_best=False)
        Trainer(model, config, folder).train(data["train"], data["val"])
        evals = [r for r in map(json.loads, (folder / "train_log.jsonl").read_text().splitlines())
                 if r["type"] == "eval"]
        return {k: v for k, v in model.encoder.backbone.state_dict().items() if ".lora_" in k}, len(evals)

    often, n_often = adapter_after(1, tmp_path / "often")
    once, n_once = adapter_after(None, tmp_path / "once")
    assert n_often == 3 and n_once < 3  # the other run validates at the epoch end (step 2) and the end
    assert often and all(torch.equal(v, once[k]) for k, v in often.items())


def test_full_training_of_an_adapter_model_merges_it_first(tiny_backbone, data, examples, tmp_path):
    model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model.add_adapter(LoraSpec(rank=2))
    nudge_adapter(model)
    before = model.embed(examples[:3])
    model.merge_adapter()
    assert model.config.adapter == {} and not [n for n, _ in model.encoder.named_parameters() if "lora" in n]
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(before, model.embed(examples[:3])))
    assert all(p.requires_grad for p in model.encoder.parameters())

    model.add_adapter(LoraSpec(rank=2))
    config = TrainingConfig(lr=1e-3, max_steps=1, progress=False)  # lora_rank 0: every weight
    Trainer(model, config, tmp_path).train(data["train"], data["val"])
    assert model.config.adapter == {} and (tmp_path / "best" / "backbone").is_dir()
    assert not (tmp_path / "best" / "adapter").exists()


def test_interpolating_an_adapter_scales_its_update(tiny_backbone, examples):
    plain = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model.add_adapter(LoraSpec(rank=2))
    nudge_adapter(model)
    with pytest.raises(ValueError, match="no start"):
        model.interpolate(0.5, plain)
    model.interpolate(0.0)
    assert embeddings_equal(model, plain, examples, atol=1e-6)


def test_an_interpolated_adapter_saves_as_scaled_and_its_card_says_so(tiny_backbone, examples, tmp_path):
    """Two halvings equal one quartering; the weights applied are kept in the config, shown on the card, and the
    saved model reloads with the scaled update."""
    twice, once = (Cactus(backbone=tiny_backbone, attention="sia", device="cpu") for _ in range(2))
    for model in (twice, once):
        torch.manual_seed(0)
        model.add_adapter(LoraSpec(rank=2))
        nudge_adapter(model)
    twice.interpolate(0.5)
    twice.interpolate(0.5)
    once.interpolate(0.25)
    assert embeddings_equal(twice, once, examples, atol=1e-6)
    assert twice.config.training["interpolated"] == [0.5, 0.5] and once.config.training["interpolated"] == [0.25]
    twice.adopt_threshold(0.5)
    twice.save_pretrained(tmp_path / "m")
    loaded = Cactus.from_pretrained(tmp_path / "m", device="cpu")
    assert embeddings_equal(loaded, once, examples, atol=1e-6)
    assert loaded.config.training["interpolated"] == [0.5, 0.5]
    assert "| interpolated | towards the backbone under the adapter, by weights 0.5, 0.5 in turn" in (
        tmp_path / "m" / "README.md").read_text()


def test_compressing_every_weight_fine_tuning_keeps_the_low_rank_update(tiny_backbone, examples, tmp_path):
    """A backbone whose every linear layer moved by a rank-2 update and whose layer norms moved too: compressed at
    rank 2 it is the start plus exactly those updates (the layer norms go back to the start's: an adapter holds none
    of them), saved as an adapter and reloaded; at rank 1 it keeps less of the update."""
    def tuned_and_expected() -> tuple[Cactus, Cactus]:
        tuned, expected = (Cactus(backbone=tiny_backbone, attention="sia", device="cpu") for _ in range(2))
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m, e in zip(tuned.encoder.backbone.modules(), expected.encoder.backbone.modules()):
                if isinstance(m, torch.nn.Linear):
                    (n_out, n_in), r = m.weight.shape, 2
                    delta = 0.1 * torch.randn(n_out, r, generator=gen) @ torch.randn(r, n_in, generator=gen)
                    m.weight.add_(delta)
                    e.weight.add_(delta)
                elif isinstance(m, torch.nn.LayerNorm):
                    m.weight.add_(0.1)
        return tuned, expected

    tuned, expected = tuned_and_expected()
    assert not embeddings_equal(tuned, expected, examples, atol=1e-3)  # the layer norms' change shows
    kept = tuned.compress(rank=2)
    assert tuned.config.adapter["rank"] == 2 and tuned.config.adapter["alpha"] == 2.0
    assert set(tuned.config.adapter["targets"]) == {"query", "key", "value", "dense"}
    assert tuned.config.training["compressed"] == {"rank": 2, "update_norm_kept": kept}
    assert 0.5 < kept < 1.0  # all of the linear layers' updates, none of the layer norms'
    assert embeddings_equal(tuned, expected, examples, atol=1e-5)
    tuned.adopt_threshold(0.4)
    tuned.save_pretrained(tmp_path / "m")
    reloaded = Cactus.from_pretrained(tmp_path / "m", device="cpu")
    assert embeddings_equal(reloaded, tuned, examples, atol=1e-6)
    with pytest.raises(ValueError, match="has an adapter already"):
        reloaded.compress(rank=2)

    smaller, _ = tuned_and_expected()
    assert smaller.compress(rank=1) < kept
    assert not embeddings_equal(smaller, expected, examples, atol=1e-4)


def test_t5_backbone_takes_an_adapter(tmp_path, examples, tiny_t5):
    model = Cactus(backbone=tiny_t5, attention="sia", device="cpu")
    assert model.add_adapter(LoraSpec(rank=2)).targets == ("q", "v")
    nudge_adapter(model)
    model.adopt_threshold(0.5)
    model.save_pretrained(tmp_path / "m")
    assert embeddings_equal(Cactus.from_pretrained(tmp_path / "m", device="cpu"), model, examples, atol=1e-6)


def test_bad_adapters_are_refused_with_the_reason(tiny_backbone, tmp_path):
    model = Cactus(backbone=tiny_backbone, device="cpu")
    with pytest.raises(ValueError, match=r"\['nope'\] are not linear layers.*query"):
        model.add_adapter(LoraSpec(targets=("nope",)))
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        LoraSpec(rank=0)

    model = Cactus(attention="sia", device="cpu")
    model.add_adapter(LoraSpec(rank=2))
    model.adopt_threshold(0.4)
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"not safetensors")
    with pytest.raises(ModelFormatError, match="adapter_model.safetensors: not a readable safetensors file"):
        Cactus.from_pretrained(tmp_path / "m")
    weights.unlink()
    with pytest.raises(ModelFormatError, match="adapter_model.safetensors: missing"):
        Cactus.from_pretrained(tmp_path / "m")
    record = json.loads((tmp_path / "m" / "cactus_config.json").read_text())
    record["config"]["adapter"] = {"type": "lora", "rank": -1}
    (tmp_path / "m" / "cactus_config.json").write_text(json.dumps(record))
    with pytest.raises(ModelFormatError, match="'adapter' must be"):
        Cactus.from_pretrained(tmp_path / "m")


def test_folding_for_inference_keeps_the_embeddings_and_undoes_exactly(tiny_backbone, data, examples, tmp_path):
    model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model.add_adapter(LoraSpec(rank=2))
    nudge_adapter(model)
    weights = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.fold_adapter = False
    unfolded = model.embed(examples)
    model.fold_adapter = True
    folded = model.embed(examples)
    layer = next(m for m in model.encoder.modules() if hasattr(m, "lora_A"))
    assert layer.merged  # the plain layer runs
    assert all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(unfolded, folded))
    # Training after a folded prediction starts from the exact weights, and trains the adapter apart.
    Trainer(model, TrainingConfig(lr=0.0, neutral_lr=0.0, max_steps=1, lora_rank=2, progress=False),
            tmp_path).train(data["train"], data["val"])
    model.fold_adapter = False
    model.embed(examples[:1])
    after = model.encoder.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items())


def test_cli_trains_an_adapter_and_continues_it_from_a_saved_model(tiny_backbone, tmp_path):
    """The adaptation path: `cactus train --lora-rank` makes an adapter model; training from that model with
    --lora-rank continues its adapter (its rank kept), and the result predicts from the command line."""
    from cactus.cli import main

    common = ["--train", str(EXAMPLES), "--val", str(EXAMPLES), "--attention", "sia", "--max-steps", "1",
              "--batch-size", "2", "-q", "--lr", "1e-2"]
    assert main(["train", *common, "--out", str(tmp_path / "a"), "--model", tiny_backbone, "--lora-rank", "2"]) == 0
    first = Cactus.from_pretrained(tmp_path / "a" / "best")
    assert first.config.adapter["rank"] == 2
    assert main(["train", *common, "--out", str(tmp_path / "b"), "--model", str(tmp_path / "a" / "best"),
                 "--lora-rank", "8"]) == 0
    second = Cactus.from_pretrained(tmp_path / "b" / "best")
    assert second.config.adapter == first.config.adapter  # the adapter it started with, trained on
    assert main(["predict", str(EXAMPLES), "-o", str(tmp_path / "p.jsonl"), "--model", str(tmp_path / "b" / "best"),
                 "-q"]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == len(EXAMPLES.read_text().splitlines())


def test_tune_interpolation_keeps_the_best_weight_with_its_cut(tiny_backbone, examples):
    """Each weight scores as a twin interpolated once by it (every weight starts from the weights as they came in);
    the model ends as the twin of the best score, with the cut chosen there; the weights tried before leave no trace
    in the config."""

    def adapted() -> Cactus:
        m = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
        torch.manual_seed(0)
        m.add_adapter(LoraSpec(rank=2))
        nudge_adapter(m, scale=1.0)  # an update large enough that every weight tried scores differently
        return m

    model = adapted()
    scores = model.tune_interpolation(examples, weights=(0.0, 0.5, 0.75))
    assert list(scores) == [0.75, 0.5, 0.0]
    twins = {}
    for w in scores:
        twins[w] = adapted()
        twins[w].interpolate(w)
        assert twins[w].tune_cut(examples).best_score == pytest.approx(scores[w], abs=1e-9)
    assert len(set(scores.values())) == 3  # so the check above tells the weights apart
    best = model.interpolation_weight_
    assert scores[best] == max(scores.values()) and model.cut_choice_.best_score == scores[best]
    assert embeddings_equal(model, twins[best], examples, atol=1e-6)
    assert model.config.training["interpolated"] == [best]
    assert twins[best].cut_ == model.cut_ and twins[best].threshold_ == model.threshold_


def test_tune_interpolation_of_every_weight_moves_towards_the_backbone(tiny_backbone, examples):
    start = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model, twin = (Cactus(backbone=tiny_backbone, attention="sia", device="cpu") for _ in range(2))
    for m in (model, twin):
        torch.manual_seed(1)
        with torch.no_grad():
            for p in m.encoder.parameters():
                p.add_(0.05 * torch.randn_like(p))
    assert model.tune_interpolation(examples, weights=[0.5]).keys() == {0.5}
    twin.interpolate(0.5, start)
    assert embeddings_equal(model, twin, examples, atol=1e-6)
    for bad, match in (([], "at least one weight"), ([1.5], r"\[0, 1\]")):
        with pytest.raises(ValueError, match=match):
            model.tune_interpolation(examples, weights=bad)
