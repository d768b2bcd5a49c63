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
from cactus.encoder.graph import INPUT_NAMES, OUTPUT_NAME, GraphEncoder, graph_inputs
from cactus.encoder.set_encoder import SetEncoder
from cactus.text.tokenize import SubsetBatch

ONNX_FILE = "model.onnx"
QUANTIZE = ("int8",)
OPSET = 18
# Real tokens per encoder call for an exported graph, by measurement (docs/benchmarks/onnx_speed.md, int8 SIA: 1,024
# was fastest or within 1% of it on both families, 15-19% above 2,048): its attention pads every entity to the batch's
# longest, so smaller batches than the eager path's run faster.
ONNX_BATCH_TOKENS = 1024


def _example_batch() -> SubsetBatch:
    """A batch whose sizes are all distinct and above 1 (B=2, N=4, E=7, L=5, T=22), so that the exporter keeps
    every dimension symbolic instead of fixing one to the example's value."""
    lengths = [[3, 5, 2, 4], [2, 3, 3]]
    ids = [[1 + i for i in range(n)] for row in lengths for n in row]  # ids valid in any vocabulary
    return SubsetBatch.from_token_ids(ids, [len(row) for row in lengths])


def export_onnx(encoder: SetEncoder, file: str | os.PathLike, quantize: str | None = None) -> dict:
    """Write `encoder`'s graph to `file` (one .onnx file, weights inside), int8-quantised when `quantize` is "int8".
    The encoder is left as it was (a copy is merged and exported). Returns what the model config records of it."""
    if quantize is not None and quantize not in QUANTIZE:
        raise ValueError(f"quantize must be None or one of {', '.join(QUANTIZE)}, got {quantize!r}")
    graph = GraphEncoder(copy.deepcopy(encoder).to("cpu").float()).eval()  # refuses fia
    lora.merge_lora(graph.encoder.backbone)
    dims = {name: torch.export.Dim(name) for name in ("tokens", "entities", "width", "subsets", "slots")}
    shapes = {"input_ids": {0: dims["tokens"]}, "token_place": {0: dims["tokens"]},
              "entity_tokens": {0: dims["entities"], 1: dims["width"]}, "entity_slot": {0: dims["entities"]},
              "entity_mask": {0: dims["subsets"], 1: dims["slots"]}}
    file = Path(file)
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="cactus-onnx-") as tmp, _exporter_quiet():
        fp32 = Path(tmp) / "fp32.onnx"
        program = torch.onnx.export(graph, graph_inputs(_example_batch()), dynamo=True, opset_version=OPSET,
                                    input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], dynamic_shapes=shapes,
                                    verbose=False)
        program.save(str(fp32), external_data=False)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(fp32, file, weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"MatMulConstBOnly": True})
        else:
            fp32.replace(file)
    return {"file": file.name, "quantize": quantize, "opset": OPSET, "onnxruntime": _onnxruntime_version()}


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

    threads: intra-op threads (default: every core, `os.cpu_count()`). Raises `cactus.config.ModelFormatError`
    naming the file when it is missing or not a loadable ONNX graph.
    """

    def __init__(self, file: str | os.PathLike, attention: str, threads: int | None = None):
        import onnxruntime as ort

        from cactus.config import ModelFormatError

        file = Path(file)
        if not file.is_file():
            raise ModelFormatError(f"{file}: missing (the config names an ONNX graph)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        try:
            self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own error types for unreadable or invalid graphs
            raise ModelFormatError(f"{file}: not a loadable ONNX graph ({' '.join(str(e).split())})") from None
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUT_NAMES:
            raise ModelFormatError(f"{file}: not a cactus encoder graph (inputs {list(names)}, expected "
                                   f"{list(INPUT_NAMES)})")
        self.file = file
        self.attention = attention

    def __call__(self, batch: SubsetBatch) -> torch.Tensor:
        """(B, N, D) L2-normalised entity embeddings; empty slots are zero vectors."""
        feed = {name: np.ascontiguousarray(x.cpu().numpy()) for name, x in zip(INPUT_NAMES, graph_inputs(batch))}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])
