"""`TrainingConfig`: the hyperparameters of one training run.

Each field carries its help text in its metadata: the docstring below, the CLI's training flags (generated from the
fields by `cactus.cli`) and the saved training record all read this one list.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from cactus.losses import LOSSES


LR_SCHEDULES = ("constant", "linear")
MIXED_PRECISION = ("no", "bf16")
TRACKERS = ("tensorboard", "wandb", "mlflow")
# The interpolation weights that `Cactus.tune_interpolation` tries after training: 1 keeps the trained model, 0 is
# its start.
INTERPOLATION_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)


def _option(default, help: str, cli: bool = True, choices: tuple[str, ...] | None = None):
    """A field with its help text; `cli=False` keeps it off the command line; `choices` are its only values."""
    return field(default=default, metadata={"help": help, "cli": cli, "choices": choices})


@dataclass
class TrainingConfig:
    """Hyperparameters of one training run; JSON-serialisable (`to_dict` / `from_dict`).

    Every field's meaning is its `help` (`TrainingConfig.help(name)`), also shown by `cactus train --help`. Notes that
    are too long for a help line:
        neutral_lr: AdamW moves a parameter by about lr per step whatever its gradient, so at the encoder's rate s0
            would stay near its initial value.
        anchor: L2-SP, decoupled like AdamW's weight decay, which pulls towards 0 instead; it keeps the fine-tuned
            encoder near the pretrained one, which generalises to families it never saw.
        lora_rank: 0 on a model with an adapter folds the adapter into the backbone first, then trains every weight.
        max_steps: a run stopped by max_steps=k and resumed with a larger max_steps reaches exactly the weights of an
            uninterrupted run: bit for bit at one torch thread; at more, to float rounding (under load, some CPU
            kernels' reductions do not add in one order).
    """

    loss: str = _option("augmented_triplet", "training loss: " + "; ".join(f"{k} = {v}" for k, v in LOSSES.items()),
                        choices=tuple(LOSSES))
    margin: float = _option(0.3, "margin m of the triplet losses")
    init_neutral: float | None = _option(None, "starting s0 of the augmented triplet loss (default: the model's own "
                                               "s0 where training or pretraining left one, else 0)")
    lr: float = _option(5e-5, "AdamW learning rate of the encoder, after warmup (the paper: 5e-5 fine-tuning, 1e-4 "
                              "pretraining)")
    neutral_lr: float = _option(5e-3, "learning rate of the loss's own parameters (s0)")
    weight_decay: float = _option(0.01, "AdamW weight decay of the encoder; the loss's parameters get none")
    anchor: float = _option(0.0, "decay of the encoder's weights towards those it started from: each step pulls "
                                 "every weight back by lr x anchor of its distance from its start (0 = off)")
    lora_rank: int = _option(0, "train a LoRA adapter of this rank on the backbone instead of every weight (0 = "
                                "every weight); a model that already has an adapter trains that one")
    lora_alpha: float = _option(16.0, "LoRA scale numerator: the adapter's update is multiplied by alpha / rank")
    lora_targets: str | None = _option(None, "comma-separated names of the linear layers that get an adapter "
                                             "(default: the query and value projections)")
    warmup_steps: int = _option(0, "linear warmup of both learning rates over this many steps (0 = none)")
    lr_schedule: str = _option("constant", "both learning rates after warmup: constant, or linear decay to 0 at "
                                           "schedule_steps", choices=LR_SCHEDULES)
    schedule_steps: int | None = _option(None, "the step at which the linear schedule reaches 0 (default: max_steps, "
                                               "else epochs x batches per epoch)")
    batch_size: int = _option(4, "subsets per optimizer step and process")
    grad_accumulation: int = _option(1, "encode each batch in this many parts, one backward pass each, and step once: "
                                        "the same step in less memory")
    mixed_precision: str = _option("no", "bf16: run the encoder in bfloat16 autocast (CUDA GPUs with bf16, CPUs "
                                         "with AVX512-BF16 or AMX); the loss stays float32", choices=MIXED_PRECISION)
    epochs: int = _option(10, "passes over the training subsets")
    max_steps: int | None = _option(None, "stop after this many optimizer steps, if sooner")
    grad_clip: float | None = _option(1.0, "max global gradient norm (the paper's code used 0.3)")
    eval_every: int | None = _option(None, "validate (tune the threshold, keep the best model) every this many "
                                           "steps; always at the end of each epoch")
    eval_on_start: bool = _option(False, "validate the starting model before the first step too, so that it competes "
                                         "for the best model: training then never returns a model that validates "
                                         "worse than the one it started from (adapting a trained model)")
    patience: int | None = _option(None, "stop after this many validations without a better objective")
    log_every: int = _option(50, "write a training-loss line every this many steps (0 = none)")
    report_to: str | None = _option(None, "also send every logged scalar to these experiment trackers, comma-"
                                          "separated: " + ", ".join(TRACKERS) + " (each installed separately; files "
                                          "go under OUT/trackers)")
    checkpoint_every: int | None = _option(None, "save a resumable checkpoint every this many steps (default: after "
                                                 "every validation); one is always saved when training ends")
    restore_best: bool = _option(True, "at the end, load the best weights and their threshold back into the model "
                                       "(else keep the last weights, with the threshold tuned for them)")
    seed: int = _option(0, "seeds the data order, the synthetic subsets and (with the process index) torch's RNG")
    progress: bool = _option(True, "show a progress bar (main process only)", cli=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _typed(f.name, getattr(self, f.name), f.type))
        for f in fields(self):
            allowed = f.metadata["choices"]
            if allowed and getattr(self, f.name) not in allowed:
                raise ValueError(f"{f.name} must be one of {', '.join(allowed)}, got {getattr(self, f.name)!r}")
        unknown = [t for t in self.trackers if t not in TRACKERS]
        if unknown:
            raise ValueError(f"report_to must name trackers among {', '.join(TRACKERS)}, got {unknown[0]!r}")
        for name in ("batch_size", "epochs", "max_steps", "eval_every", "patience", "checkpoint_every",
                     "schedule_steps", "grad_accumulation"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lora_rank < 0 or self.lora_alpha <= 0:
            raise ValueError(f"lora_rank must be >= 0 and lora_alpha > 0, got {self.lora_rank!r}, {self.lora_alpha!r}")
        if self.warmup_steps < 0 or self.log_every < 0 or self.anchor < 0:
            raise ValueError("warmup_steps, log_every and anchor must be >= 0")
        if self.grad_accumulation > self.batch_size:
            raise ValueError(f"grad_accumulation ({self.grad_accumulation}) cannot exceed batch_size "
                             f"({self.batch_size}): each part holds at least one subset")

    @property
    def trackers(self) -> list[str]:
        """The tracker names of `report_to`."""
        return [t.strip() for t in (self.report_to or "").split(",") if t.strip()]

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata["help"] for f in fields(cls) if f.name == name)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "TrainingConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(record) - known
        if unknown:
            raise ValueError(f"unknown training config field(s): {sorted(unknown)}")
        return cls(**record)


def _typed(name: str, value, annotation: str):
    """`value` as the field's type ("float", "int | None", ...), or ValueError naming the field. Numbers written as
    text are read as numbers (YAML reads `1e-4`, without a dot, as text); a bool is not a number."""
    kind, *rest = [k.strip() for k in annotation.split("|")]
    if value is None and "None" in rest:
        return None
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind in ("int", "float") and not isinstance(value, bool):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, (int, float)) and math.isfinite(value):
            if kind == "float":
                return float(value)
            if float(value).is_integer():
                return int(value)
    expected = {"int": "a whole number", "float": "a finite number", "bool": "true or false", "str": "text"}[kind]
    raise ValueError(f"field {name!r} must be {expected}{' or null' if rest else ''}, got {value!r}")


def lora_spec(config: TrainingConfig):
    """The `cactus.encoder.LoraSpec` that `config` asks for (None for training every weight)."""
    from cactus.encoder import LoraSpec

    if not config.lora_rank:
        return None
    targets = tuple(t.strip() for t in (config.lora_targets or "").split(",") if t.strip())
    return LoraSpec(config.lora_rank, config.lora_alpha, targets)
