"""ONNX export of the set encoder, and the encoder that runs an exported graph with onnxruntime.

`export_onnx` traces `GraphEncoder` (NIA or SIA, any backbone the set encoder takes) with torch's dynamo exporter into
one .onnx file whose every dimension is dynamic: any number of subsets, entities and tokens. A LoRA adapter is merged
into the weights first. `quantize="int8"` then applies onnxruntime's dynamic int8 quantisation to the weight matrices
(per output channel; products of two activations, as in the attention, stay in float, which keeps the embeddings
within about 0.01 cosine of fp32).

`OnnxEncoder` is called like `SetEncoder`, on a `cactus.text.SubsetBatch`, and returns the same (B, N, D) embeddings.
`cactus.Cactus.export` writes a whole model folder around the graph, and `Cactus.from_pretrained` runs one.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from cactus.encoder import adapter as lora
from cactus.encoder.graph import BATCH_INPUTS, GRIDS, OUTPUT_NAME, GraphEncoder, graph_inputs, input_names
from cactus.encoder.set_encoder import SetEncoder
from cactus.text.tokenize import SubsetBatch

ONNX_FILE = "model.onnx"
QUANTIZE = ("int8",)
OPSET = 20  # the first with a Gelu operator: at 18 GELU exports as five elementwise operators
# onnxruntime (1.32) fuses a residual addition and the layer norm after it into SkipLayerNormalization, whose CPU
# kernel took 13.5% of the int8 SIA graph's time (docs/benchmarks/onnx_profile.md as of 0f9153a: 1,084 ms); unfused,
# the layer norms take 166 ms
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]
# Real tokens per encoder call for an exported graph, by measurement (docs/encoder.md#onnx-export, int8 SIA on an
# AMD EPYC): timed interleaved in one process, 4,096 was fastest on both families (1.07 and 1.17 times 1,024); in the
# benchmark's sweeps from 1,024 up the order changes from run to run. Before the summaries were gathered as extra key
# rows, 1,024 was fastest (on an Intel Xeon).
ONNX_BATCH_TOKENS = 4096


def _example_inputs(grids: int) -> tuple[torch.Tensor, ...]:
    """Inputs whose sizes are all distinct and above 1, so that the exporter keeps every dimension symbolic instead of
    fixing one to the example's value or tying two together: class g has 4G + 5 + 2g entities (odd, above every
    width) of width 2g + 2 (even), in B=3 subsets of 2, 3 and E - 5 entities (N = 5G^2 + 4G - 5, never a class's
    count or width)."""
    classes = [(4 * grids + 5 + 2 * g, 2 * g + 2) for g in range(grids)]
    ids = [[1 + i for i in range(width)] for count, width in classes for _ in range(count)]  # valid in any vocabulary
    batch = SubsetBatch.from_token_ids(ids, [2, 3, len(ids) - 5])
    ends = [sum(count for count, _ in classes[:g]) for g in range(grids + 1)]
    return graph_inputs(batch, grids, classes=list(zip(ends, ends[1:])))


def export_onnx(encoder: SetEncoder, file: str | os.PathLike, quantize: str | None = None,
                grids: int | None = None) -> dict:
    """Write `encoder`'s graph to `file` (one .onnx file, weights inside), int8-quantised when `quantize` is "int8",
    its attention in `grids` width classes (`cactus.encoder.graph`; default `GRIDS`). The encoder is left as it was
    (a copy is merged and exported). Returns what the model config records of it."""
    grids = GRIDS if grids is None else grids
    if quantize is not None and quantize not in QUANTIZE:
        raise ValueError(f"quantize must be None or one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if not isinstance(grids, int) or grids < 1:
        raise ValueError(f"grids must be a positive integer, got {grids!r}")
    graph = GraphEncoder(copy.deepcopy(encoder).to("cpu").float()).eval()  # refuses fia
    lora.merge_lora(graph.encoder.backbone)
    tokens = torch.export.Dim("tokens")
    # one entry per argument of GraphEncoder.forward; its *classes are one more, a tuple
    shapes = [{0: tokens}, {0: tokens}, {0: tokens}, {0: torch.export.Dim("subsets"), 1: torch.export.Dim("slots")}]
    for g in range(grids):
        entities = torch.export.Dim(f"entities_{g}")
        shapes += [{0: entities, 1: torch.export.Dim(f"width_{g}")}, {0: entities}]
    file = Path(file)
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="cactus-onnx-") as tmp, _exporter_quiet():
        fp32 = Path(tmp) / "fp32.onnx"
        program = torch.onnx.export(graph, _example_inputs(grids), dynamo=True, opset_version=OPSET,
                                    input_names=list(input_names(grids)), output_names=[OUTPUT_NAME],
                                    dynamic_shapes=(*shapes[:4], tuple(shapes[4:])), verbose=False)
        program.save(str(fp32), external_data=False)
        _unit_transposes_as_reshapes(fp32)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(fp32, file, weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"MatMulConstBOnly": True})
        else:
            fp32.replace(file)
    return {"file": file.name, "quantize": quantize, "opset": OPSET, "grids": grids,
            "onnxruntime": _onnxruntime_version()}


def _unit_transposes_as_reshapes(file: Path) -> None:
    """Rewrite, in place, every Transpose that only moves axes of size 1 (the backbone's (T, 1, H, d) -> (T, H, 1, d)
    of the queries, keys and values: three per layer) into a Reshape, which onnxruntime runs without copying; a
    Transpose copies its whole input."""
    import onnx

    model = onnx.load(file)
    graph = model.graph
    known = {v.name: v.type.tensor_type.shape for v in (*graph.value_info, *graph.input)}
    for node in graph.node:
        target = _reshape_target(node, known)
        if target is not None:
            shape = onnx.helper.make_tensor(f"{node.output[0]}_shape", onnx.TensorProto.INT64, [len(target)], target)
            graph.initializer.append(shape)
            node.CopyFrom(onnx.helper.make_node("Reshape", [node.input[0], shape.name], list(node.output),
                                                name=node.name))
    onnx.save(model, file)


def _reshape_target(node, known: dict) -> list[int] | None:
    """The Reshape target of a Transpose `node` that moves only axes of size 1 (input shape in `known`), else None:
    static sizes as they are, a dynamic one as 0 (the input's at the same index) or, once at most, -1."""
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
    if node.op_type != "Transpose" or perm is None or node.input[0] not in known:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in known[node.input[0]].dim]
    moved = [i for i in perm if dims[i] != 1]
    if moved != sorted(moved):
        return None
    target = [dims[i] if dims[i] is not None else (0 if i == j else -1) for j, i in enumerate(perm)]
    return target if target.count(-1) <= 1 else None


@contextmanager
def _exporter_quiet():
    """Silence the exporter's and quantiser's notices that say nothing about the graph: optional torchvision
    operators it skips, deprecations inside torch, dimension names merged because two inputs share one (as ours do
    by design), and advice to pre-process."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    # onnxruntime's quantiser suggests its pre-processing pass on the root logger; that pass's symbolic shape
    # inference fails on this graph (dynamic grid shapes), and quantisation works without it
    advice = logging.Filter()
    advice.filter = lambda record: "pre-processing before quantization" not in record.getMessage()
    logging.getLogger().addFilter(advice)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*treespec.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*The axis name.*", category=UserWarning)
            yield
    finally:
        registration.setLevel(level)
        logging.getLogger().removeFilter(advice)


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


class OnnxEncoder:
    """An exported graph run by onnxruntime on the CPU, called like `SetEncoder` on a `SubsetBatch`.

    threads: intra-op threads (default: every core, `os.cpu_count()`). profile: a file prefix; onnxruntime then
    records every operator's time, written by `session.end_profiling()`. Raises `cactus.config.ModelFormatError`
    naming the file when it is missing or not a loadable ONNX graph.
    """

    def __init__(self, file: str | os.PathLike, attention: str, threads: int | None = None,
                 profile: str | None = None):
        import onnxruntime as ort

        from cactus.config import ModelFormatError

        file = Path(file)
        if not file.is_file():
            raise ModelFormatError(f"{file}: missing (the config names an ONNX graph)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        if profile is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile
        try:
            self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=DISABLED_OPTIMIZERS)
        except Exception as e:  # onnxruntime raises its own error types for unreadable or invalid graphs
            raise ModelFormatError(f"{file}: not a loadable ONNX graph ({' '.join(str(e).split())})") from None
        names = tuple(i.name for i in self.session.get_inputs())
        self.grids = (len(names) - len(BATCH_INPUTS)) // 2
        if names != input_names(self.grids):
            raise ModelFormatError(f"{file}: not a cactus encoder graph of this version (inputs {list(names)}, "
                                   f"expected {list(input_names(GRIDS))} or the same for another number of width "
                                   "classes); export the model again")
        self.file = file
        self.attention = attention
        self.names = names

    def __call__(self, batch: SubsetBatch) -> torch.Tensor:
        """(B, N, D) L2-normalised entity embeddings; empty slots are zero vectors."""
        inputs = graph_inputs(batch, self.grids, self.attention == "sia")
        feed = {name: np.ascontiguousarray(x.cpu().numpy()) for name, x in zip(self.names, inputs)}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])
