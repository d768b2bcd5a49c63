"""What an experiment runs: the families, `RunSpec` (one training-and-test setup) and `Experiment` (a config)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "benchmarks" / "configs"
FIVE = ("clinc_intent", "clinc_domain", "banking77", "amazon_category", "product_same")
SIX = FIVE + ("clinc_mixed",)
ALL = SIX + ("hwu64_intent", "hwu64_scenario", "hwu64_mixed", "product_mixed")  # every family `cactus data build` makes
QUICK = {"steps": 4, "pretrain_steps": 2, "train_subsets": 8, "val_subsets": 3, "test_subsets": 3}


@dataclass(frozen=True)
class RunSpec:
    """One training-and-test setup. Sizes are per family; `train_families` empty = the pretrained encoder as it is
    (its one threshold tuned on the validation subsets of `test_families`)."""

    attention: str = "sia"
    loss: str = "augmented_triplet"
    train_families: tuple[str, ...] = FIVE
    test_families: tuple[str, ...] = SIX
    train_subsets: int | None = None  # first N training subsets of each family (None = all)
    val_subsets: int = 25  # first N validation subsets of each family: threshold, model choice, own thresholds
    test_subsets: int = 80  # first N test subsets of each family
    steps: int = 250
    batch_size: int = 4
    # 32 covers the 90th percentile of every family's entity length (medians 10-19 tokens); 64, the model's default,
    # costs about 1.7x per training step here, because a batch pads to its longest title
    max_tokens: int = 32
    lr: float = 5e-5
    lora_rank: int = 0  # > 0: train a LoRA adapter of this rank instead of every weight
    lora_alpha: float = 16.0
    lora_targets: str | None = None  # comma-separated linear layers (None: query and value)
    anchor: float = 0.0
    pretrain_steps: int = 0  # self-supervised pretraining steps before fine-tuning (0 = none)
    pretrain_families: tuple[str, ...] | None = None  # whose (unlabelled) training texts; None = train_families
    pretrain_augmentation: str = "word_drop"
    pretrain_lr: float = 1e-4
    init: str | None = None  # a saved model folder (relative to the repo) to start from instead of the default
    # encoder; its attention must be `attention`, and without training it keeps its own stored threshold
    # WiSE-FT: the trained weights become interpolate x trained + (1 - interpolate) x starting weights, and the
    # threshold is tuned again on the training families' validation subsets (1 = the trained model as it is)
    interpolate: float = 1.0

    def __post_init__(self):
        if not 0 <= self.interpolate <= 1:
            raise ValueError(f"interpolate must lie in [0, 1], not {self.interpolate}")
        if self.interpolate != 1 and not self.train_families:
            raise ValueError("interpolate needs training: it mixes the trained weights with the starting ones")

    @classmethod
    def from_dict(cls, record: dict) -> "RunSpec":
        known = {f.name for f in fields(cls)}
        if set(record) - known:
            raise ValueError(f"unknown run setting(s): {sorted(set(record) - known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})

    def key(self) -> str:
        """A file name: readable settings plus a hash of those that differ from the defaults (so a new setting,
        added with a default, leaves earlier records' keys alone)."""
        changed = {k: v for k, v in asdict(self).items() if v != getattr(RunSpec, k)}
        digest = hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
        trained_on = ("none" if not self.train_families else "five" if set(self.train_families) == set(FIVE)
                      else "all" if set(self.train_families) == set(ALL)
                      else "+".join(self.train_families) if len(self.train_families) < 3
                      else "not-" + "+".join(sorted(set(FIVE if set(self.train_families) <= set(FIVE) else ALL)
                                                    - set(self.train_families))))
        start = "saved" if self.init else "pretrained"
        return f"{self.attention}_{self.loss if self.train_families else start}_{trained_on}_{digest}"

    def training_key(self) -> str:
        """The key without `steps` and `interpolate`: runs that differ only in those share one training folder, and
        a longer run continues the checkpoint of a shorter one. Training reaches exactly the weights of an
        uninterrupted run,
        because the learning rate is constant (no warmup or decay here) and the trainer checkpoints its RNG states;
        as in every run, the model kept is the best on validation among its evaluations, which here include one at
        the end of each shorter run."""
        return replace(self, steps=RunSpec.steps, interpolate=RunSpec.interpolate).key()

    def quick(self) -> "RunSpec":
        cut = {k: v if getattr(self, k) is None else min(v, getattr(self, k)) for k, v in QUICK.items()}
        return replace(self, **cut)


@dataclass
class Experiment:
    name: str
    description: str
    runs: dict[str, tuple[RunSpec, tuple[int, ...]]]  # label -> (spec, seeds)
    tables: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, name: str) -> "Experiment":
        """A config by name (benchmarks/configs/<name>.json) or by path."""
        path = Path(name) if name.endswith(".json") else CONFIGS / f"{name}.json"
        config = json.loads(path.read_text())
        name = path.stem
        defaults = config.get("defaults", {})
        runs = {}
        for label, run in config["runs"].items():
            run = {**defaults, **run}
            seeds = tuple(run.pop("seeds", (0,)))
            runs[label] = (RunSpec.from_dict(run), seeds)
        return cls(name, config["description"], runs)
