"""The model card: the README.md that `Cactus.save_pretrained` writes beside a model's config, for a person to read
what the model is, how it was made (threshold, cut, adapter, training, interpolation) and how to use it."""

from __future__ import annotations

import json

from cactus.cluster import Cut, ThresholdCurve
from cactus.config import CactusConfig
from cactus.encoder import ADAPTER_DIR, LoraSpec
from cactus.version import __version__


def model_card(config: CactusConfig, curve: ThresholdCurve | None) -> str:
    """The README.md of a saved model folder: what it is, how it was made, how to use it."""
    lines = [
        "# cactus model", "",
        f"Context-aware clustering of entity subsets with cactus {__version__}.", "",
        "| setting | value |", "|---|---|",
        f"| backbone | `{config.backbone}` |",
        f"| inter-entity attention | {config.attention} |",
        f"| pooling | {config.pooling} of the final hidden states, L2-normalised |",
        f"| token limit per entity | {config.max_tokens} |",
        f"| threshold | {config.threshold} (clusters merge while their average cosine similarity is at least this) |",
        f"| threshold objective | {config.objective} |",
        f"| cut | {Cut.from_dict(config.cut).describe()} |",
        f"| training loss | {config.loss or 'none: the pretrained encoder as it is'} |",
    ]
    if config.adapter:
        spec = LoraSpec.from_dict(config.adapter)
        lines.append(f"| adapter | LoRA, rank {spec.rank}, alpha {spec.alpha:g}, on {', '.join(spec.targets)} "
                     f"(`{ADAPTER_DIR}/`) |")
    if config.neutral is not None:
        lines.append(f"| neutral similarity s0 | {config.neutral:.4f} |")
    if config.training.get("interpolated"):
        towards = "the backbone under the adapter" if config.adapter else "the weights it started from"
        weights = config.training["interpolated"]
        by = f"by weight {weights[0]}" if len(weights) == 1 else f"by weights {', '.join(map(str, weights))} in turn"
        lines.append(f"| interpolated | towards {towards}, {by} (`Cactus.interpolate`) |")
    if config.onnx:
        quantized = "int8 weights" if config.onnx.get("quantize") == "int8" else "fp32"
        lines.append(f"| runtime | ONNX graph `{config.onnx['file']}` ({quantized}), run by onnxruntime |")
    if config.cut_provenance:
        lines += ["", "## Cut", "", Cut.from_dict(config.cut).describe() + ".", "", "```json",
                  json.dumps(config.cut_provenance, indent=2), "```"]
    if config.threshold_provenance:
        lines += ["", "## Threshold", "", "```json", json.dumps(config.threshold_provenance, indent=2), "```"]
    if curve is not None:
        lines += ["", f"Validation {curve.objective} at the chosen threshold: {curve.best_score:.4f}."]
    if config.training:
        lines += ["", "## Training", "", "```json", json.dumps(config.training, indent=2), "```"]
    lines += [
        "", "## Use", "",
        "```bash", "cactus predict subsets.jsonl -o predictions.jsonl --model path/to/this/folder", "```", "",
        "```python", "from cactus import Cactus", "model = Cactus.from_pretrained('path/to/this/folder')",
        "clusters = model.predict(subsets)", "```", "",
        "The encoder weights (`backbone/`, or the backbone loaded by name where only an adapter is saved) derive "
        "from the backbone's published weights and carry its license (Apache-2.0 for all-MiniLM-L6-v2).", "",
    ]
    return "\n".join(lines)
