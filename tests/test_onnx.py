"""ONNX export: the static graph equals the eager set encoder, exported graphs run with dynamic shapes and give torch's
embeddings and predictions, and broken folders fail naming the file.

Tiny random BERT and T5 backbones carry the exactness checks; the shipped default model (SIA with a LoRA adapter)
exports and predicts as its torch self does.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModel, T5EncoderModel

from cactus import Cactus
from cactus.config import CONFIG_NAME, ModelFormatError
from cactus.data import read_subsets
from cactus.encoder import SetEncoder
from cactus.encoder.graph import GraphEncoder, graph_inputs, width_classes
from cactus.encoder.onnx import ONNX_FILE, OnnxEncoder, export_onnx
from cactus.text.tokenize import SubsetBatch
from conftest import EXAMPLES

CACTUS = [shutil.which("cactus") or sys.executable, *([] if shutil.which("cactus") else ["-m", "cactus.cli"])]
ATOL = 1e-5


def ragged_batch(sizes, vocab, longest=20, seed=0) -> SubsetBatch:
    """Subsets of the given sizes, entities of 1 to `longest` random tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(1, vocab, (int(torch.randint(1, longest + 1, (), generator=g)),), generator=g).tolist()
           for n in sizes for _ in range(n)]
    return SubsetBatch.from_token_ids(ids, sizes)


@pytest.fixture(scope="module")
def backbones(tiny_backbone, tiny_t5):
    return {"bert": AutoModel.from_pretrained(tiny_backbone).eval(),
            "t5": T5EncoderModel.from_pretrained(tiny_t5).eval()}


@pytest.mark.parametrize("grids", [1, 2, 4])
@pytest.mark.parametrize("mode", ["nia", "sia"])
@pytest.mark.parametrize("name", ["bert", "t5"])
def test_graph_equals_the_eager_encoder(name, mode, grids, backbones):
    encoder = SetEncoder(backbones[name], mode)
    batch = ragged_batch([1, 12, 5, 30], backbones[name].config.vocab_size)
    with torch.no_grad():
        graph = GraphEncoder(encoder)(*graph_inputs(batch, grids, mode == "sia"))
        torch.testing.assert_close(graph, encoder(batch), atol=ATOL, rtol=0)


def test_width_classes_cut_where_the_padded_work_is_least():
    """Against every way of cutting the runs into at most `grids` classes; fewer runs than classes leave empty ones,
    and the grids' token places invert the token indices they hold."""
    from itertools import combinations

    for sizes, grids, summaries, seed in [([3, 9, 4], 3, True, 0), ([20], 4, False, 1), ([6, 2], 2, True, 2)]:
        batch = ragged_batch(sizes, 100, longest=12, seed=seed)
        runs, N = batch.runs, max(sizes) if summaries else 0
        ends = np.cumsum([0] + [count for _, count in runs]).tolist()

        def work(classes):
            return sum((b - a) * L * (L + N) for a, b in classes if b > a
                       for L in [next(length for (length, _), end in zip(runs, ends[1:]) if end >= b)])

        best = min(work(list(zip([0, *cut], [*cut, ends[-1]]))) for k in range(grids)
                   for cut in combinations(ends[1:-1], k))
        classes = width_classes(batch, grids, summaries)
        assert len(classes) == grids and work(classes) == best
        assert [a for a, _ in classes[1:]] == [b for _, b in classes[:-1]] and classes[0][0] == 0
        inputs = graph_inputs(batch, grids, summaries)
        places = torch.cat([t.flatten() for t in inputs[4::2]])
        assert places[inputs[2]].tolist() == list(range(batch.n_tokens))  # token t sits where index t is held
    few = SubsetBatch.from_token_ids([[1, 2], [3], [4, 5]], [3])  # two runs, four classes
    assert width_classes(few, 4, True) == [(0, 1), (1, 3), (3, 3), (3, 3)]
    tokens = graph_inputs(few, 4)[4::2]
    assert [tuple(t.shape) for t in tokens] == [(1, 1), (2, 2), (0, 1), (0, 1)]
    assert tokens[1].tolist() == [[1, 2], [3, 4]]


def test_graph_has_no_scatter_add(backbones, tmp_path):
    """onnxruntime's threaded ScatterND with reduction drops additions to repeated indices (seen with the default
    model at 2 threads, on batches larger than a test's): the graph takes every mean over the grid instead."""
    import onnx

    export_onnx(SetEncoder(backbones["bert"], "sia"), tmp_path / ONNX_FILE)
    scatters = [n for n in onnx.load(tmp_path / ONNX_FILE).graph.node if n.op_type.startswith("Scatter")]
    assert all(a.s in (b"", b"none") for n in scatters for a in n.attribute if a.name == "reduction")


@pytest.mark.parametrize("name", ["bert", "t5"])
def test_graph_copies_nothing_to_move_a_unit_axis(name, backbones, tmp_path):
    """The backbones' (T, 1, H, d) -> (T, H, 1, d) transposes of the queries, keys and values become reshapes (no
    copy); the graph's own transposes stay (its outputs equal torch's: test_exported_graph_takes_any_shape)."""
    import onnx

    export_onnx(SetEncoder(backbones[name], "sia"), tmp_path / ONNX_FILE)
    graph = onnx.load(tmp_path / ONNX_FILE).graph
    perms = [list(a.ints) for n in graph.node if n.op_type == "Transpose" for a in n.attribute if a.name == "perm"]
    layers = backbones[name].config.num_hidden_layers if name == "bert" else backbones[name].config.num_layers
    assert [0, 2, 1, 3] not in perms
    assert perms.count([1, 0, 2]) == 4 * layers  # queries, keys, values and the output, per layer


def test_fia_has_no_graph(backbones):
    with pytest.raises(ValueError, match="export supports nia and sia"):
        GraphEncoder(SetEncoder(backbones["bert"], "fia"))


@pytest.mark.parametrize("mode", ["nia", "sia"])
@pytest.mark.parametrize("name", ["bert", "t5"])
def test_exported_graph_takes_any_shape(name, mode, backbones, tmp_path):
    """Exported once, run on batches of other numbers of subsets, entities and tokens (one-entity subsets and
    one-token entities too): torch's embeddings to float rounding."""
    encoder = SetEncoder(backbones[name], mode)
    export_onnx(encoder, tmp_path / ONNX_FILE)
    graph = OnnxEncoder(tmp_path / ONNX_FILE, mode)
    vocab = backbones[name].config.vocab_size
    for sizes, longest in [([1], 1), ([3, 1, 40], 30), ([7] * 9, 8), ([2, 2], 3)]:
        batch = ragged_batch(sizes, vocab, longest, seed=len(sizes))
        with torch.no_grad():
            torch.testing.assert_close(graph(batch), encoder(batch), atol=ATOL, rtol=0)


@pytest.mark.parametrize("grids", [1, 3])
def test_any_number_of_width_classes_exports(grids, backbones, tmp_path):
    """The runtime reads the graph's number of width classes from its inputs."""
    encoder = SetEncoder(backbones["bert"], "sia")
    record = export_onnx(encoder, tmp_path / ONNX_FILE, grids=grids)
    graph = OnnxEncoder(tmp_path / ONNX_FILE, "sia")
    assert record["grids"] == graph.grids == grids
    batch = ragged_batch([4, 9, 2], backbones["bert"].config.vocab_size, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(graph(batch), encoder(batch), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="grids must be a positive integer"):
        export_onnx(encoder, tmp_path / "none.onnx", grids=0)


@pytest.fixture(scope="module")
def tiny_model(tiny_backbone, tmp_path_factory):
    """A tiny SIA model with a threshold, saved, and its fp32 and int8 exports."""
    folder = tmp_path_factory.mktemp("onnx_models")
    model = Cactus(tiny_backbone, attention="sia", threshold=0.9)
    model.save_pretrained(folder / "torch")
    model.export(folder / "fp32")
    model.export(folder / "int8", quantize="int8")
    return folder


def test_exported_model_predicts_as_torch(tiny_model):
    subsets = read_subsets(EXAMPLES)
    torch_model = Cactus.from_pretrained(tiny_model / "torch")
    exported = Cactus.from_pretrained(tiny_model / "fp32")
    for a, b in zip(torch_model.embed(subsets), exported.embed(subsets)):
        np.testing.assert_allclose(a, b, atol=ATOL)
    assert [p.tolist() for p in exported.predict(subsets)] == [p.tolist() for p in torch_model.predict(subsets)]
    config = json.loads((tiny_model / "fp32" / CONFIG_NAME).read_text())["config"]
    assert config["onnx"]["file"] == ONNX_FILE and config["threshold"] == 0.9 and config["attention"] == "sia"
    assert "ONNX graph" in (tiny_model / "fp32" / "README.md").read_text()


def test_int8_export_is_smaller_and_close(tiny_model):
    subsets = read_subsets(EXAMPLES)
    fp32, int8 = (Cactus.from_pretrained(tiny_model / q) for q in ("fp32", "int8"))
    assert (tiny_model / "int8" / ONNX_FILE).stat().st_size < (tiny_model / "fp32" / ONNX_FILE).stat().st_size
    cosines = np.concatenate([(a * b).sum(1) for a, b in zip(fp32.embed(subsets), int8.embed(subsets))])
    assert cosines.min() > 0.95 and cosines.min() < 1 - 1e-7  # quantised: close, and not the same graph
    assert json.loads((tiny_model / "int8" / CONFIG_NAME).read_text())["config"]["onnx"]["quantize"] == "int8"


def test_exported_model_resaves_and_refuses_training(tiny_model, tmp_path):
    model = Cactus.from_pretrained(tiny_model / "fp32")
    model.tune_threshold(read_subsets(EXAMPLES))
    model.save_pretrained(tmp_path / "retuned")
    again = Cactus.from_pretrained(tmp_path / "retuned")
    assert again.threshold_ == model.threshold_ and again.config.onnx == model.config.onnx
    for call in (lambda: model.interpolate(0.5), lambda: model.add_adapter(), lambda: model.export(tmp_path / "x")):
        with pytest.raises(ValueError, match="exported ONNX graph"):
            call()
    with pytest.raises(ValueError, match="runs the attention it was exported with"):
        Cactus.from_pretrained(tiny_model / "fp32", attention="nia")


def test_corrupt_or_missing_graph_names_the_file(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model / "fp32", broken)
    (broken / ONNX_FILE).write_bytes(b"not a graph")
    with pytest.raises(ModelFormatError, match=f"{ONNX_FILE}: not a loadable ONNX graph"):
        Cactus.from_pretrained(broken).embed(read_subsets(EXAMPLES)[:1])
    import onnx
    from onnx import TensorProto, helper

    other = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["embeddings"])], "other",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None])],
                              [helper.make_tensor_value_info("embeddings", TensorProto.INT64, [None])])
    onnx.save(helper.make_model(other), broken / ONNX_FILE)  # loads, but is not a cactus encoder of this version
    with pytest.raises(ModelFormatError, match=f"{ONNX_FILE}: not a cactus encoder graph .*export the model again"):
        Cactus.from_pretrained(broken).embed(read_subsets(EXAMPLES)[:1])
    (broken / ONNX_FILE).unlink()
    with pytest.raises(ModelFormatError, match=f"{ONNX_FILE}: missing"):
        Cactus.from_pretrained(broken)


def test_cli_exports_the_default_model_and_predicts_with_it(tmp_path):
    """The shipped default (SIA, LoRA adapter merged into the graph) through the installed script: the exported
    model's predictions equal the torch model's; a corrupt graph is a model error (exit 4) naming the file."""
    def run(*args):
        return subprocess.run([*CACTUS, *map(str, args)], capture_output=True, text=True, timeout=600)

    proc = run("export", "default", "-o", tmp_path / "onnx", "-q")
    assert proc.returncode == 0, proc.stderr
    for model, out in (("default", "torch.jsonl"), (tmp_path / "onnx", "onnx.jsonl")):
        proc = run("predict", EXAMPLES, "-o", tmp_path / out, "--model", model, "-q")
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "onnx.jsonl").read_text() == (tmp_path / "torch.jsonl").read_text()
    (tmp_path / "onnx" / ONNX_FILE).write_bytes(b"\0" * 10)
    proc = run("predict", EXAMPLES, "-o", tmp_path / "x.jsonl", "--model", tmp_path / "onnx", "-q")
    assert proc.returncode == 4 and f"{ONNX_FILE}: not a loadable ONNX graph" in proc.stderr
    proc = run("export", tmp_path / "onnx", "-o", tmp_path / "again")
    assert proc.returncode == 2 and "already an exported graph" in proc.stderr
