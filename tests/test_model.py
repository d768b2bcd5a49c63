import json

import numpy as np
import pytest
import torch

from cactus import Cactus
from cactus.data import Subset, read_subsets
from cactus.metrics import partition_metrics
from conftest import EXAMPLES


@pytest.fixture(scope="module")
def examples():
    return read_subsets(EXAMPLES)


@pytest.fixture(scope="module")
def default_model():
    return Cactus.from_pretrained("default", device="cpu")


def same_partition(a, b) -> bool:
    return partition_metrics(a, b)["ari"] == 1.0


def test_shipped_models_load_offline_with_their_threshold_and_cut(default_model):
    """The default: SIA with a LoRA adapter of a few MB on the installed backbone, trained by
    benchmarks/default_model.py; the context-free model: the backbone alone. Both load from the package, offline."""
    from cactus.config import packaged_model

    assert default_model.threshold_ is not None and -1.0 <= default_model.threshold_ <= 1.0
    assert default_model.config.threshold_provenance["command"].startswith("python benchmarks/default_model.py")
    assert default_model.config.attention == "sia" and default_model.config.adapter["type"] == "lora"
    folder = packaged_model("default")
    assert not (folder / "backbone").exists()
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 5 * 2**20
    assert set(default_model.config.training["data"]["families"]) >= {"clinc_mixed", "hwu64_mixed", "product_mixed"}
    context_free = Cactus.from_pretrained("context-free")
    assert context_free.config.attention == "nia" and not context_free.config.trained
    assert context_free.config.threshold_provenance["command"].startswith("python benchmarks/baseline.py")
    assert context_free.cut_.criterion == "silhouette" and context_free.cut_.centre > 0
    assert context_free.config.cut_provenance["command"].startswith("python benchmarks/adaptive_cut.py")
    assert Cactus.from_pretrained("all-MiniLM-L6-v2").config == context_free.config


def test_predict_shapes_and_quality_on_examples(default_model, examples):
    preds = default_model.predict(examples)
    assert [len(p) for p in preds] == [len(s) for s in examples]
    for p in preds:
        assert p.dtype.kind == "i" and p.min() == 0 and list(np.unique(p)) == list(range(p.max() + 1))
    # far from perfect on these small subsets, but well above chance (0)
    mean_ami = np.mean([partition_metrics(s.labels, p)["ami"] for s, p in zip(examples, preds)])
    assert mean_ami > 0.2


def test_predict_does_not_depend_on_entity_order(default_model, examples):
    rng = np.random.default_rng(0)
    base = default_model.predict(examples)
    for _ in range(3):
        perms = [rng.permutation(len(s)) for s in examples]
        shuffled = [Subset(s.id, [s.texts[i] for i in p]) for s, p in zip(examples, perms)]
        for b, p, got in zip(base, perms, default_model.predict(shuffled)):
            assert same_partition(b[p], got)


def test_batching_does_not_change_embeddings(examples):
    small = Cactus(batch_tokens=8, device="cpu").embed(examples)  # one subset per batch
    large = Cactus(batch_tokens=100_000, device="cpu").embed(examples)  # all in one
    for a, b in zip(small, large):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_fit_tunes_threshold_and_round_trips(tmp_path, examples):
    model = Cactus(device="cpu").fit(examples[:2], examples[2:])
    curve = model.threshold_curve_
    assert model.threshold_ == curve.best_threshold and model.config.threshold == curve.best_threshold
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "cactus_config.json").read_text())
    assert saved["config"]["threshold"] == model.threshold_ and saved["schema_version"] == 1
    card = (tmp_path / "m" / "README.md").read_text()
    assert f"| threshold | {model.threshold_} " in card and "| inter-entity attention | nia |" in card
    loaded = Cactus.from_pretrained(tmp_path / "m", device="cpu")
    assert loaded.threshold_ == model.threshold_
    assert loaded.threshold_curve_.best_score == curve.best_score
    for a, b in zip(model.predict(examples), loaded.predict(examples)):
        np.testing.assert_array_equal(a, b)
    # saving again replaces the folder whole
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_errors(tmp_path, examples):
    with pytest.raises(ValueError, match="no threshold"):
        Cactus(device="cpu").predict(examples)
    with pytest.raises(FileNotFoundError, match="not a cactus model folder"):
        Cactus.from_pretrained(tmp_path)
    unlabelled = [Subset("u", ["a", "b"])]
    with pytest.raises(ValueError, match="subset 'u': threshold tuning needs 'labels'"):
        Cactus(device="cpu").fit(unlabelled)


def test_truncation_is_counted_and_reported(caplog, examples):
    model = Cactus(max_tokens=6, threshold=0.5, device="cpu")
    with caplog.at_level("WARNING"):
        model.predict(examples[:1])
    assert model.n_truncated_ > 0
    assert f"{model.n_truncated_} of {len(examples[0])} entities were longer than max_tokens=6" in caplog.text


@pytest.mark.parametrize("attention", ["nia", "fia", "sia"])
def test_every_attention_mode_predicts_with_the_default_model(examples, attention):
    model = Cactus(attention=attention, threshold=0.35, device="cpu")
    preds = model.predict(examples)
    assert [len(p) for p in preds] == [len(s) for s in examples]
    if attention == "nia":
        return
    # context changes the embeddings, and still does not depend on the order of the entities
    nia = Cactus(device="cpu").embed(examples)
    emb = model.embed(examples)
    assert max(np.abs(a - b).max() for a, b in zip(nia, emb)) > 1e-3
    perm = np.arange(len(examples[0]))[::-1]
    flipped = model.embed([Subset("x", [examples[0].texts[i] for i in perm])])[0]
    np.testing.assert_allclose(flipped, emb[0][perm], atol=1e-5)


def test_t5_backbone_from_a_local_folder(tmp_path, examples, tiny_t5):
    """The paper's backbone family: a tiny random T5 saved to disk loads as an encoder and runs in every mode."""
    for attention in ("nia", "fia", "sia"):
        model = Cactus(backbone=tiny_t5, attention=attention, device="cpu")
        assert type(model.encoder.backbone).__name__ == "T5EncoderModel"
        model.fit(examples)
        model.save_pretrained(tmp_path / f"m-{attention}")
        loaded = Cactus.from_pretrained(tmp_path / f"m-{attention}", device="cpu")
        assert loaded.config.attention == attention
        for a, b in zip(model.predict(examples), loaded.predict(examples)):
            np.testing.assert_array_equal(a, b)


SAVE_LOOP = """
import sys
from cactus import Cactus
model = Cactus(backbone=sys.argv[1], device="cpu")
i = 0
while True:
    model.adopt_threshold(round(0.01 * (i % 50), 2))
    model.save_pretrained(sys.argv[2])
    print(i, flush=True)
    i += 1
"""


def test_save_killed_midway_leaves_a_whole_model(tmp_path, examples, tiny_backbone):
    """Kill a process that saves over and over at random moments: the folder always loads, whole."""
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "model"
    rng = np.random.default_rng(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, tiny_backbone, str(target)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline()  # at least one save completed
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model = Cactus.from_pretrained(target, device="cpu")
        assert model.threshold_ in {round(0.01 * i, 2) for i in range(50)}
        assert len(model.predict(examples[:1])[0]) == len(examples[0])


def test_no_subsets_give_no_predictions(default_model):
    assert default_model.predict([]) == [] and default_model.embed([]) == []


def test_batches_keep_subsets_whole_group_similar_sizes_and_respect_the_budget():
    from cactus.text import token_batches

    sizes = [3, 5, 2, 4, 6, 1, 9]
    tokens = [30, 50, 20, 40, 60, 10, 90]
    batches = token_batches(sizes, tokens, batch_tokens=70)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    assert [[sizes[i] for i in b] for b in batches] == [[1, 2, 3], [4], [5], [6], [9]]  # 90 > 70: alone
    assert all(len(b) == 1 or sum(tokens[i] for i in b) <= 70 for b in batches)


def test_constructor_validates_its_arguments():
    for kwargs, message in [
        ({"attention": "full"}, "attention must be one of nia, fia, sia, got 'full'"),
        ({"max_tokens": 0}, "max_tokens must be an integer >= 2, got 0"),
        ({"max_tokens": 3.5}, "max_tokens must be an integer >= 2"),
        ({"batch_tokens": 0}, "batch_tokens must be an integer >= 1"),
        ({"threshold": float("nan")}, r"threshold must be a number in \[-1, 1\], got nan"),
        ({"threshold": 35}, r"threshold must be a number in \[-1, 1\], got 35"),
        ({"objective": "ami+bogus"}, "unknown metric"),
        ({"device": "gpu0"}, "'gpu0' is not a torch device"),
    ]:
        with pytest.raises(ValueError, match=message):
            Cactus(**kwargs)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            Cactus(device="cuda")
    with pytest.raises(ValueError, match=r"threshold must be a number in \[-1, 1\]"):
        Cactus(threshold=0.3, device="cpu").predict([Subset("a", ["x", "y"])], threshold=2.0)


def test_every_threshold_writer_goes_through_adopt_with_one_schema(tmp_path, examples, tiny_backbone):
    """Given by hand, tuned, and tuned in training: each lands in threshold_ and config.threshold alike, with a
    provenance whose keys all belong to ThresholdProvenance, and survives a save."""
    from dataclasses import fields

    from cactus.config import ThresholdProvenance
    from cactus.train import TrainingConfig

    schema = {f.name for f in fields(ThresholdProvenance)}
    given = Cactus(backbone=tiny_backbone, threshold=0.25, device="cpu")
    assert given.threshold_ == given.config.threshold == 0.25 and given.config.threshold_provenance == {}

    tuned = Cactus(backbone=tiny_backbone, device="cpu")
    curve = tuned.tune_threshold(examples)
    assert tuned.threshold_ == curve.best_threshold and tuned.threshold_curve_ is curve
    assert tuned.config.threshold_provenance == {"objective": "ami+ari", "best_score": curve.best_score,
                                                 "subsets": len(examples)}

    trained = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    trained.fit(examples, examples, config=TrainingConfig(max_steps=2, batch_size=2, progress=False),
                output_dir=tmp_path / "run")
    prov = trained.config.threshold_provenance
    assert trained.threshold_ == trained.threshold_curve_.best_threshold
    assert prov["step"] == trained.config.training["step"] and prov["subsets"] == len(examples)

    for model in (given, tuned, trained):
        assert set(model.config.threshold_provenance) <= schema
        model.save_pretrained(tmp_path / "m")
        loaded = Cactus.from_pretrained(tmp_path / "m", device="cpu")
        assert loaded.threshold_ == model.threshold_
        assert loaded.config.threshold_provenance == model.config.threshold_provenance
    # a hand-given threshold replaces a tuned one, and its curve with it
    tuned.adopt_threshold(0.5)
    assert tuned.threshold_ == 0.5 and tuned.threshold_curve_ is None and tuned.config.threshold_provenance == {}


def test_loading_a_trained_model_in_another_attention_mode_is_refused(tmp_path, examples, tiny_backbone, caplog):
    from cactus.train import TrainingConfig

    model = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
    model.fit(examples, examples, config=TrainingConfig(max_steps=1, batch_size=2, progress=False),
              output_dir=tmp_path / "run")
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="trained with attention 'sia'.*refusing to run it with 'nia'"):
        Cactus.from_pretrained(tmp_path / "m", attention="nia", device="cpu")
    with caplog.at_level("WARNING"):
        switched = Cactus.from_pretrained(tmp_path / "m", attention="nia", allow_attention_change=True, device="cpu")
    assert switched.config.attention == "nia" and "now run with 'nia'" in caplog.text
    assert switched.encoder.attention == "nia"
    # the same mode, and an untrained encoder in any mode, load as asked
    assert Cactus.from_pretrained(tmp_path / "m", attention="sia", device="cpu").config.attention == "sia"
    assert Cactus.from_pretrained("context-free", attention="sia", device="cpu").config.attention == "sia"


def test_the_cut_is_a_model_choice_saved_and_used_by_predict(tmp_path, examples, tiny_backbone):
    from cactus.cluster import Cut, cut_cluster

    adaptive = Cut("adaptive", "gap", (0.1, 0.8))
    model = Cactus(backbone=tiny_backbone, cut=adaptive, device="cpu")  # no threshold needed
    sims = model.similarities(examples)
    for got, s in zip(model.predict(examples), sims):
        np.testing.assert_array_equal(got, cut_cluster(s, adaptive, None))
    with pytest.raises(ValueError, match="no threshold"):
        model.predict(examples, cut=Cut())
    choice = model.tune_cut(examples)
    assert model.cut_ == choice.cut and model.threshold_ == choice.curve.best_threshold
    model.save_pretrained(tmp_path / "m")
    loaded = Cactus.from_pretrained(tmp_path / "m", device="cpu")
    assert loaded.cut_ == model.cut_ and loaded.cut_choice_.rules == choice.rules
    assert f"| cut | {model.cut_.describe()} |" in (tmp_path / "m" / "README.md").read_text()
    for a, b in zip(model.predict(examples), loaded.predict(examples)):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory, tiny_backbone):
    folder = tmp_path_factory.mktemp("saved") / "m"
    Cactus(backbone=tiny_backbone, threshold=0.5, device="cpu").save_pretrained(folder)
    return folder


@pytest.mark.parametrize("damage, message", [
    (lambda m: (m / "backbone" / "model.safetensors").write_bytes(b"garbage" * 9),
     r"backbone/model.safetensors: not a readable safetensors file"),
    (lambda m: (m / "backbone" / "model.safetensors").write_bytes((m / "backbone" / "model.safetensors")
                                                                  .read_bytes()[:-100]),
     r"backbone/model.safetensors: not a readable safetensors file"),
    (lambda m: (m / "cactus_config.json").write_text('{"config": {'), r"cactus_config.json: not valid JSON"),
    (lambda m: (m / "cactus_config.json").write_bytes(b"\xff\xfe"), r"cactus_config.json: not a JSON text"),
    (lambda m: edit_config(m, lambda r: r.pop("config")), r"cactus_config.json: missing key 'config'"),
    (lambda m: edit_config(m, lambda r: r["config"].update(colour="red")),
     r"cactus_config.json: unknown model config field\(s\) \['colour'\]"),
    (lambda m: edit_config(m, lambda r: r["config"].update(threshold="high")),
     r"cactus_config.json: config field 'threshold' must be null or a number in \[-1, 1\], got 'high'"),
    (lambda m: edit_config(m, lambda r: r["config"].update(attention="all")),
     r"cactus_config.json: config field 'attention' must be one of nia, fia, sia"),
    (lambda m: edit_config(m, lambda r: r["config"].update(cut={"rule": "sideways"})),
     r"config field 'cut' must be a cut"),
    (lambda m: edit_config(m, lambda r: r.update(threshold_curve={"thresholds": [0.1]})),
     r"cactus_config.json: malformed 'threshold_curve'"),
    (lambda m: edit_config(m, lambda r: r.update(schema_version="1")), r"'schema_version' must be an integer"),
    (lambda m: (m / "backbone" / "config.json").write_text('{"model_type": "no-such-model"}'),
     r"backbone/config.json: not a loadable encoder config"),
    (lambda m: (m / "backbone" / "config.json").write_text("{"), r"backbone/config.json: not a loadable"),
    (lambda m: __import__("shutil").rmtree(m / "backbone"), r"backbone: missing \(the model folder is incomplete\)"),
])
def test_a_damaged_model_folder_fails_when_loaded_naming_the_file(tmp_path, saved_tiny, damage, message):
    import shutil

    from cactus.config import ModelFormatError

    folder = tmp_path / "m"
    shutil.copytree(saved_tiny, folder)
    damage(folder)
    with pytest.raises(ModelFormatError, match=message) as e:
        Cactus.from_pretrained(folder, device="cpu")
    assert "\n" not in str(e.value)


def edit_config(folder, change) -> None:
    record = json.loads((folder / "cactus_config.json").read_text())
    change(record)
    (folder / "cactus_config.json").write_text(json.dumps(record))


def test_a_threshold_given_to_predict_cuts_there_whatever_the_models_cut(examples, default_model):
    from cactus.cluster import Cut, agglomerative_cluster

    assert default_model.cut_.rule == "adaptive"  # the shipped default (see default_model.json)
    sims = default_model.similarities(examples)
    for got, s in zip(default_model.predict(examples, threshold=0.6), sims):
        np.testing.assert_array_equal(got, agglomerative_cluster(s, 0.6))
    adaptive = default_model.predict(examples, threshold=0.6, cut=Cut("adaptive"))  # the threshold as fallback
    assert [len(p) for p in adaptive] == [len(s) for s in examples]
