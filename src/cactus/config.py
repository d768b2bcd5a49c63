"""What a saved model is apart from its weights: `CactusConfig`, the threshold's provenance, the folder's file names.

Its own module so that the estimator (`cactus.model`) and the trainer (`cactus.train`) both read it without importing
each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from cactus.encoder.backbone import DEFAULT_BACKBONE

CONFIG_NAME = "cactus_config.json"
BACKBONE_DIR = "backbone"
TOKENIZER_DIR = "tokenizer"  # an exported model's tokenizer (its weights are in the ONNX graph)
SCHEMA_VERSION = 1
MODELS_DIR = "models"  # in the package: the shipped model folders, by name
# Names of shipped models: "default" (what `predict` uses unless told otherwise), "context-free" (the pretrained
# encoder alone, with its tuned cut); the backbone's own names mean the context-free model too.
PACKAGED_MODELS = {"default": "default", "context-free": "context-free", DEFAULT_BACKBONE: "context-free",
                   f"sentence-transformers/{DEFAULT_BACKBONE}": "context-free"}


class ModelFormatError(ValueError):
    """A model folder that cannot be loaded: the message names the file and what is wrong with it."""


@dataclass
class ThresholdProvenance:
    """Where a model's threshold came from; one schema whoever chose it (saved in `CactusConfig`).

    Attributes:
        objective: the '+'-joined metrics tuning maximised (None for a threshold given by hand).
        best_score: the objective's mean over the tuning subsets at the threshold.
        subsets: how many labelled subsets it was tuned on.
        tuned_on: what those subsets were, in words.
        step: the training step whose weights it was tuned for (None outside training).
        command: the command that chose it, where one script did (the shipped default's).
        date: the day it was chosen, where recorded.
    """

    objective: str | None = None
    best_score: float | None = None
    subsets: int | None = None
    tuned_on: str | None = None
    step: int | None = None
    command: str | None = None
    date: str | None = None

    def to_dict(self) -> dict:
        """The fields that are set (a JSON object)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class CactusConfig:
    """Everything that defines a model apart from its weights; saved as JSON beside them.

    `threshold` is the fitted threshold (`Cactus.threshold_` reads it); only `Cactus.adopt_threshold` writes it,
    with its `threshold_provenance` (a `ThresholdProvenance.to_dict()`). `cut` is how `predict` cuts each subset's
    dendrogram (`Cactus.cut_`): at that threshold, or adaptively per subset.
    """

    backbone: str = DEFAULT_BACKBONE
    attention: str = "nia"
    max_tokens: int = 64
    threshold: float | None = None
    objective: str = "ami+ari"
    threshold_provenance: dict = field(default_factory=dict)
    cut: dict = field(default_factory=lambda: {"rule": "threshold"})  # a `cactus.cluster.Cut.to_dict()`
    cut_provenance: dict = field(default_factory=dict)  # how the cut was chosen (tuning's score, or a benchmark)
    pooling: str = "mean"  # masked mean of the final hidden states, L2-normalised (the only pooling)
    loss: str | None = None  # the training loss, None for a pretrained encoder used as it is
    neutral: float | None = None  # s0 learned by the augmented triplet loss
    adapter: dict = field(default_factory=dict)  # a `cactus.encoder.LoraSpec.to_dict()`; {} = no adapter
    training: dict = field(default_factory=dict)  # how the weights were trained: config, data, validation results
    onnx: dict = field(default_factory=dict)  # an exported graph's record (`cactus.encoder.onnx`); {} = torch weights

    @property
    def trained(self) -> bool:
        """Whether the weights were trained by cactus (their attention mode is then part of what they learned)."""
        return self.loss is not None

    @classmethod
    def from_dict(cls, record: dict, source: str = "config") -> "CactusConfig":
        """The config saved as `record`; ModelFormatError naming `source` and the field when it is not one."""
        if not isinstance(record, dict):
            raise ModelFormatError(f"{source}: 'config' must be an object, got {type(record).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ModelFormatError(f"{source}: unknown model config field(s) {unknown}")
        config = cls(**record)
        for name, value in asdict(config).items():
            problem = _field_problem(name, value)
            if problem:
                raise ModelFormatError(f"{source}: config field {name!r} {problem}, got {value!r}")
        return config


def _field_problem(name: str, value) -> str | None:
    """What is wrong with a loaded config field's value (None when nothing is)."""
    from cactus.cluster import Cut, check_threshold, parse_objective
    from cactus.encoder import ATTENTION_MODES, LoraSpec
    from cactus.losses import LOSSES

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    checks = {
        "backbone": (lambda v: isinstance(v, str) and v != "", "must be a name or folder"),
        "attention": (lambda v: v in ATTENTION_MODES, f"must be one of {', '.join(ATTENTION_MODES)}"),
        "max_tokens": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2, "must be an integer >= 2"),
        "threshold": (lambda v: v is None or (number(v) and check_threshold(v) is not None),
                      "must be null or a number in [-1, 1]"),
        "objective": (lambda v: isinstance(v, str) and parse_objective(v) is not None, "must be '+'-joined metrics"),
        "threshold_provenance": (lambda v: isinstance(v, dict), "must be an object"),
        "cut": (lambda v: isinstance(v, dict) and Cut.from_dict(v) is not None,
                "must be a cut (rule, criterion, band)"),
        "cut_provenance": (lambda v: isinstance(v, dict), "must be an object"),
        "pooling": (lambda v: v == "mean", "must be 'mean'"),
        "loss": (lambda v: v is None or v in LOSSES, f"must be null or one of {', '.join(LOSSES)}"),
        "neutral": (lambda v: v is None or number(v), "must be null or a number"),
        "adapter": (lambda v: isinstance(v, dict) and (not v or LoraSpec.from_dict(v) is not None),
                    "must be {} or a LoRA adapter (type, rank, alpha, targets)"),
        "training": (lambda v: isinstance(v, dict), "must be an object"),
        "onnx": (lambda v: isinstance(v, dict) and (not v or isinstance(v.get("file"), str)),
                 "must be {} or an exported graph's record (file, quantize, opset)"),
    }
    test, problem = checks[name]
    try:
        return None if test(value) else problem
    except (TypeError, ValueError):
        return problem


def packaged_model(name) -> Path | None:
    """The folder of the shipped model that `name` names (see PACKAGED_MODELS), or None for any other name."""
    folder = PACKAGED_MODELS.get(str(name)) if name is not None else "default"
    return None if folder is None else Path(str(resources.files("cactus").joinpath(MODELS_DIR, folder)))
