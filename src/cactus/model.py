"""The estimator users meet: `Cactus` with fit / predict / embed / save_pretrained / from_pretrained.

The CLI (and later the service and batch inference) are thin shells over this class, so each behaviour lives here once.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from cactus.version import __version__
from cactus.atomic import atomic_dir
from cactus.card import model_card
from cactus.cluster import (
    Cut,
    CutChoice,
    SubsetDescription,
    ThresholdCurve,
    check_threshold,
    cut_cluster,
    describe_subset,
    parse_objective,
    tune_cut,
    tune_threshold,
)
from cactus.config import (
    BACKBONE_DIR,
    CONFIG_NAME,
    SCHEMA_VERSION,
    TOKENIZER_DIR,
    CactusConfig,
    ThresholdProvenance,
    packaged_model,
)
from cactus.data.subsets import Subset, require_labels
from cactus.encoder import ADAPTER_DIR, ATTENTION_MODES, DEFAULT_BACKBONE, LoraSpec, SetEncoder, load_backbone
from cactus.encoder.backbone import DEFAULT_ALIASES
from cactus.encoder import adapter as lora
from cactus.encoder.interpolate import check_weight, interpolate_weights, moved_tensors
from cactus.model_folder import read_model_folder
from cactus.text import SubsetBatch, token_batches, token_ids
from cactus.train.config import INTERPOLATION_WEIGHTS

if TYPE_CHECKING:
    from cactus.train import TrainingConfig

logger = logging.getLogger(__name__)

# Real tokens per forward pass by attention mode, measured on the 2-core CPU (docs/encoder.md): SIA runs each layer's
# token-wise work on the whole packed batch at once, which past about 4,096 tokens leaves the cache; NIA runs it run
# by run of equal-length entities, and gains from larger batches up to 8,192. FIA's is not measured.
BATCH_TOKENS = {"nia": 8192, "fia": 8192, "sia": 4096}


class Cactus:
    """Context-aware supervised clustering of entity subsets.

    Parameters (checked here, when the model is made):
        backbone: Hugging Face encoder name or folder; "all-MiniLM-L6-v2" is the offline default.
        attention: how entities of a subset see each other while encoded, one of `cactus.encoder.ATTENTION_MODES`
            ("nia" = not at all).
        max_tokens: token limit per entity, special tokens included; longer entities are cut and counted.
        threshold: a threshold given by hand, in [-1, 1]: clusters merge while their average cosine similarity is at
            least this. It becomes `threshold_` (until a tuning replaces it); None = tune one with `fit`.
        objective: '+'-joined metrics that threshold tuning maximises (mean over subsets).
        cut: how `predict` cuts each subset's dendrogram: a `cactus.cluster.Cut`, or its rule's name ("threshold",
            "adaptive" with the default criterion and band); `tune_cut` can choose it on labelled subsets.
        batch_tokens: real tokens encoded per forward pass (whole subsets are kept together; nothing is padded);
            None = `BATCH_TOKENS` of the attention mode, the fastest measured on a 2-core CPU.
        device: torch device; default cuda when available, else cpu.

    Fitted attributes:
        threshold_: the threshold `predict` uses and `save_pretrained` saves; written only by `adopt_threshold`
            (which tuning, training and the default-model script all call). It lives in `config.threshold`.
        threshold_curve_: the `ThresholdCurve` of the last tuning, if any.
        cut_: the `Cut` that `predict` uses (it lives in `config.cut`).
        cut_choice_: the `CutChoice` of the last `tune_cut`, if any.
        n_truncated_: entities cut at `max_tokens` in the last `embed` call.
        fold_adapter: whether `embed` folds a LoRA adapter into the backbone's weights (`cactus.encoder.adapter.fold`:
            the same embeddings, faster); the trainer turns it off while it trains.
        training_summary_: what the trainer reported, after `fit` with a training config.
        interpolation_weight_: the weight `tune_interpolation` kept.
    """

    def __init__(
        self,
        backbone: str | os.PathLike = DEFAULT_BACKBONE,
        attention: str = "nia",
        max_tokens: int = 64,
        threshold: float | None = None,
        objective: str = "ami+ari",
        cut: Cut | str = "threshold",
        batch_tokens: int | None = None,
        device: str | None = None,
    ):
        batch_tokens = BATCH_TOKENS.get(attention) if batch_tokens is None else batch_tokens
        _check_params(attention, max_tokens, objective, batch_tokens)
        cut = cut if isinstance(cut, Cut) else Cut(cut)
        self.config = CactusConfig(str(backbone), attention, max_tokens, objective=objective, cut=cut.to_dict())
        self.cut_choice_: CutChoice | None = None
        self.batch_tokens = batch_tokens
        self.device = _resolve_device(device)
        self.threshold_curve_: ThresholdCurve | None = None
        if threshold is not None:
            self.adopt_threshold(threshold)
        self.n_truncated_ = 0
        self.training_summary_: dict | None = None
        self._encoder: SetEncoder | None = None
        self._tokenizer = None
        self._backbone_path = str(backbone)  # where the backbone's own weights load from
        self._adapter_path: Path | None = None  # where the adapter's weights load from (a saved model's adapter/)
        self._onnx_dir: Path | None = None  # an exported model's folder (its graph and tokenizer)
        # Whether the backbone's own weights are still those `config.backbone` names (`save_pretrained` then need
        # not copy the default backbone's). Training or merging them, or loading them from a model folder, ends it.
        self.base_published_ = True
        self.fold_adapter = True

    @property
    def threshold_(self) -> float | None:
        """The fitted threshold (None until tuned or given); see `adopt_threshold`."""
        return self.config.threshold

    @property
    def cut_(self) -> Cut:
        """How `predict` cuts each subset's dendrogram."""
        return Cut.from_dict(self.config.cut)

    def adopt_threshold(self, choice: ThresholdCurve | float,
                        provenance: ThresholdProvenance | dict | None = None) -> None:
        """Make `choice` the model's threshold: the best threshold of a tuned curve (kept as `threshold_curve_`,
        its objective and best score filled into the provenance), or a number given by hand. The one writer of
        `threshold_` and of its provenance."""
        prov = (ThresholdProvenance(**provenance) if isinstance(provenance, dict)
                else provenance or ThresholdProvenance())
        if isinstance(choice, ThresholdCurve):
            threshold = float(choice.best_threshold)
            prov = replace(prov, objective=choice.objective, best_score=float(choice.best_score))
            self.threshold_curve_ = choice
        else:
            threshold = check_threshold(choice)
            self.threshold_curve_ = None
        self.config.threshold = threshold
        self.config.threshold_provenance = prov.to_dict()

    # ---- encoder -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._encoder is None and self.config.onnx:
            from transformers import AutoTokenizer

            from cactus.encoder.onnx import OnnxEncoder

            self._encoder = OnnxEncoder(self._onnx_dir / self.config.onnx["file"], self.config.attention)
            self._tokenizer = AutoTokenizer.from_pretrained(str(self._onnx_dir / TOKENIZER_DIR), local_files_only=True)
        if self._encoder is None:
            model, self._tokenizer = load_backbone(self._backbone_path)
            if self.config.adapter:
                lora.load_lora(model, LoraSpec.from_dict(self.config.adapter), self._adapter_path)
            self._encoder = SetEncoder(model, self.config.attention).to(self.device).eval()

    # ---- adapter -------------------------------------------------------------------------------------------
    def _require_weights(self, what: str) -> None:
        """ValueError when the model is an exported graph, which predicts only."""
        if self.config.onnx:
            raise ValueError(f"{what} needs the torch weights: this is an exported ONNX graph ({self._onnx_dir}), "
                             "which predicts only; use the model it was exported from")

    def add_adapter(self, spec: LoraSpec | None = None) -> LoraSpec:
        """Give the backbone a fresh LoRA adapter (`cactus.encoder.adapter`): training then updates the adapter
        alone, and `save_pretrained` writes it apart from the backbone. Returns the spec with its targets resolved."""
        self._require_weights("adding an adapter")
        self._load()
        spec = lora.add_lora(self._encoder.backbone, spec or LoraSpec())
        self._encoder.to(self.device)
        self.config.adapter = spec.to_dict()
        return spec

    def merge_adapter(self) -> None:
        """Fold the adapter into the backbone's weights (every weight then trains); a no-op without one."""
        if self.config.adapter:
            self._require_weights("merging an adapter")
            self._load()
            lora.merge_lora(self._encoder.backbone)
            self.config.adapter = {}
            self.base_published_ = False

    def compress(self, rank: int, targets: Sequence[str] = ()) -> float:
        """Replace a fine-tuned encoder by its published backbone plus a LoRA adapter of `rank` that holds the closest
        rank-`rank` approximation of each target linear layer's update (`cactus.encoder.adapter.lora_from_update`;
        `targets`: the layers' last names, default every linear layer). `save_pretrained` then writes the adapter
        alone (a few MB). The update of every other weight is dropped: tune the threshold again. Returns the share of
        the update's squared norm kept, which `config.training["compressed"]` records with the rank."""
        self._require_weights("compression")
        if self.config.adapter:
            raise ValueError("the model has an adapter already: compression turns every-weight fine-tuning into one")
        self._load()
        start, _ = load_backbone(self.config.backbone)
        spec, kept = lora.lora_from_update(self._encoder.backbone, start.state_dict(), rank, tuple(targets))
        self._encoder.to(self.device)
        self.config.adapter = spec.to_dict()
        self.base_published_ = True
        self.config.training["compressed"] = {"rank": rank, "update_norm_kept": kept}
        return kept

    @property
    def encoder(self) -> SetEncoder:
        """The torch set encoder (or, for an exported model, the `cactus.encoder.onnx.OnnxEncoder`)."""
        self._load()
        return self._encoder

    @property
    def tokenizer(self):
        self._load()
        return self._tokenizer

    def embed(self, subsets: Sequence[Subset], progress: bool = False) -> list[np.ndarray]:
        """Entity embeddings, one (n_i, D) float32 array of unit vectors per subset, in input order."""
        self._load()
        if not subsets:
            self.n_truncated_ = 0
            return []
        if self.config.adapter:
            (lora.fold if self.fold_adapter else lora.unfold)(self._encoder.backbone)
        out: list[np.ndarray | None] = [None] * len(subsets)
        ids, self.n_truncated_ = token_ids(self._tokenizer, [t for s in subsets for t in s.texts],
                                           self.config.max_tokens)
        ends = np.cumsum([len(s) for s in subsets]).tolist()
        per_subset = [ids[end - len(s): end] for s, end in zip(subsets, ends)]
        batches = token_batches([len(s) for s in subsets], [sum(map(len, x)) for x in per_subset], self.batch_tokens)
        with torch.inference_mode():
            for idx in tqdm(batches, desc="encoding", unit="batch", disable=not progress):
                batch = SubsetBatch.from_token_ids([x for i in idx for x in per_subset[i]],
                                                   [len(subsets[i]) for i in idx])
                emb = self._encoder(batch.to(self.device)).float().cpu().numpy()
                for row, i in enumerate(idx):
                    out[i] = emb[row, : len(subsets[i])]
        if self.n_truncated_:
            logger.warning(
                "%d of %d entities were longer than max_tokens=%d tokens and were truncated (raise max_tokens to keep "
                "more)",
                self.n_truncated_, sum(len(s) for s in subsets), self.config.max_tokens,
            )
        return out  # type: ignore[return-value]

    def similarities(self, subsets: Sequence[Subset], progress: bool = False) -> list[np.ndarray]:
        """Cosine similarity matrices, one (n_i, n_i) per subset."""
        return [e @ e.T for e in self.embed(subsets, progress=progress)]

    # ---- fit / predict -------------------------------------------------------------------------------------
    def fit(self, train_subsets: Sequence[Subset], val_subsets: Sequence[Subset] | None = None,
            config: "TrainingConfig | None" = None, output_dir: str | os.PathLike | None = None,
            resume: bool = False, progress: bool = False) -> "Cactus":
        """Fit the model.

        Without `config`: keep the encoder as it is and tune the threshold on `val_subsets` (or `train_subsets`).
        With a `cactus.train.TrainingConfig`: train the encoder on `train_subsets` (validation on `val_subsets`, then
        required), keep the best weights with their tuned threshold, loss and s0, and store the trainer's summary in
        `training_summary_`. Log, checkpoints and best model go to `output_dir` (a new temporary folder if None);
        `resume` continues from its checkpoint. `progress` shows the encoding bar of threshold tuning; a training run's
        bar is `config.progress`.
        """
        if config is None:
            self.tune_threshold(val_subsets if val_subsets is not None else train_subsets, progress=progress)
            return self
        from cactus.train import Trainer  # imported when needed: training pulls in accelerate, prediction does not

        self._require_weights("training")
        if val_subsets is None:
            raise ValueError("training needs val_subsets: they choose the threshold, the best weights and when to stop")
        output_dir = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="cactus-train-"))
        self.training_summary_ = Trainer(self, config, output_dir).train(train_subsets, val_subsets, resume=resume)
        return self

    def tune_threshold(self, subsets: Sequence[Subset], grid: np.ndarray | None = None,
                       progress: bool = False) -> ThresholdCurve:
        """Choose the threshold that maximises the objective on labelled `subsets`, adopt it, return the curve."""
        require_labels(subsets, "threshold tuning")
        sims = self.similarities(subsets, progress=progress)
        curve = tune_threshold(sims, [s.labels for s in subsets], grid=grid, objective=self.config.objective)
        self.adopt_threshold(curve, ThresholdProvenance(subsets=len(subsets)))
        return curve

    def tune_cut(self, subsets: Sequence[Subset], grid: np.ndarray | None = None,
                 progress: bool = False) -> CutChoice:
        """Tune the threshold on labelled `subsets`, then choose between it and the adaptive rules by the same
        objective (`cactus.cluster.tune_cut`); adopt both and return the choice."""
        require_labels(subsets, "cut tuning")
        sims = self.similarities(subsets, progress=progress)
        choice = tune_cut(sims, [s.labels for s in subsets], grid=grid, objective=self.config.objective)
        self._adopt_cut(choice, len(subsets))
        return choice

    def _adopt_cut(self, choice: CutChoice, n_subsets: int) -> None:
        self.adopt_threshold(choice.curve, ThresholdProvenance(subsets=n_subsets))
        self.config.cut = choice.cut.to_dict()
        self.config.cut_provenance = {"objective": choice.objective, "best_score": choice.best_score,
                                      "subsets": n_subsets, "rules_tried": len(choice.rules)}
        self.cut_choice_ = choice

    def tune_interpolation(self, subsets: Sequence[Subset], weights: Sequence[float] = INTERPOLATION_WEIGHTS,
                           grid: np.ndarray | None = None, progress: bool = False) -> dict[float, float]:
        """Choose on labelled `subsets` how far to move the encoder towards the weights it started from
        (`interpolate`): at each of `weights` the cut is chosen (`tune_cut`) and scored by the objective, and the
        best weight (the larger on a tie) is applied with its cut and kept in `interpolation_weight_`. Returns
        weight -> that best score.

        A model trained on a few dozen subsets of a new family can be pulled too far from the start; held-out
        subsets say how much of the move to keep."""
        require_labels(subsets, "interpolation tuning")
        if not weights:
            raise ValueError("tune_interpolation needs at least one weight")
        for w in weights:  # all checked before any is applied
            check_weight(w)
        towards = self._interpolation_start(None)
        moved = moved_tensors(self._encoder, bool(self.config.adapter))
        saved = {n: t.detach().clone() for n, t in moved.items()}

        def restore() -> None:  # the weights as they came in
            with torch.no_grad():
                for n, t in moved.items():
                    t.copy_(saved[n])

        labels = [s.labels for s in subsets]
        choices = {}
        for w in sorted({float(w) for w in weights}, reverse=True):
            restore()
            interpolate_weights(self._encoder, w, towards)
            choices[w] = tune_cut(self.similarities(subsets, progress=progress), labels, grid=grid,
                                  objective=self.config.objective)
        best = max(choices, key=lambda w: choices[w].best_score)  # the first maximum: the largest weight
        restore()
        if best != 1.0:
            self._interpolate(best, towards)  # recorded as `interpolate` records it: the kept weight alone
        self._adopt_cut(choices[best], len(subsets))
        self.interpolation_weight_ = best
        return {w: c.best_score for w, c in choices.items()}

    def predict(self, subsets: Sequence[Subset], threshold: float | None = None, cut: Cut | None = None,
                progress: bool = False) -> list[np.ndarray]:
        """Cluster ids, one (n_i,) int array per subset, numbered by first appearance. `threshold` and `cut`
        override the model's `threshold_` and `cut_` for this call; a `threshold` without a `cut` cuts there."""
        return self.cluster_similarities(self.similarities(subsets, progress=progress), threshold, cut)

    def cluster_similarities(self, similarities: Sequence[np.ndarray], threshold: float | None = None,
                             cut: Cut | None = None) -> list[np.ndarray]:
        """`predict` from the (n_i, n_i) similarity matrices of `similarities` (as `similarities` returns them)."""
        cut, t = self.resolve_cut(threshold, cut)
        return [cut_cluster(s, cut, t) for s in similarities]

    def describe(self, subsets: Sequence[Subset], threshold: float | None = None, cut: Cut | None = None,
                 n_terms: int = 5, progress: bool = False) -> list[SubsetDescription]:
        """`predict`, with every cluster described (name, size, members, representative, top terms) and every
        entity's cohesion: one `cactus.cluster.SubsetDescription` per subset (see `cactus.cluster.describe`)."""
        sims = self.similarities(subsets, progress=progress)
        clusters = self.cluster_similarities(sims, threshold, cut)
        return [describe_subset(s.texts, sim, ids, n_terms) for s, sim, ids in zip(subsets, sims, clusters)]

    def predict_iter(self, subsets: Iterable[Subset], threshold: float | None = None, cut: Cut | None = None,
                     describe: bool = False, chunk_subsets: int = 1000,
                     ) -> Iterator[np.ndarray | SubsetDescription]:
        """`predict` (or, with `describe`, `describe`) over any iterable of subsets, lazily and in input order:
        `chunk_subsets` subsets are read, encoded and answered at a time, so memory holds one chunk whatever the
        input's length (`cactus.data.io.iter_subsets` streams a file). Each chunk is `predict`'s (or `describe`'s) call
        on that list."""
        if chunk_subsets < 1:
            raise ValueError(f"chunk_subsets must be at least 1, got {chunk_subsets}")
        self.resolve_cut(threshold, cut)  # fail before reading anything
        subsets = iter(subsets)
        while chunk := list(itertools.islice(subsets, chunk_subsets)):
            yield from (self.describe if describe else self.predict)(chunk, threshold=threshold, cut=cut)

    def resolve_cut(self, threshold: float | None, cut: Cut | None) -> tuple[Cut, float | None]:
        """The (cut, threshold) a call with these overrides uses: `cut`, else a threshold cut when `threshold` is
        given, else the model's `cut_`; `threshold`, else the model's `threshold_`. ValueError when a threshold cut
        has no threshold."""
        cut = cut or (Cut() if threshold is not None else self.cut_)
        t = check_threshold(threshold) if threshold is not None else self.threshold_
        if t is None and cut.rule == "threshold":
            raise ValueError("no threshold: tune one with fit() / tune_threshold(), or pass threshold=")
        return cut, t

    def interpolate(self, weight: float, start: "Cactus | None" = None) -> None:
        """Move the encoder's weights towards those it started from, in place: weight x its own + (1 - weight) x
        `start`'s (WiSE-FT, Wortsman et al. 2022). This keeps more of the start's generality on data unlike the
        training data. weight = 1 keeps the model, 0 gives the start.

        With an adapter, the start is the backbone under it and the adapter's update is scaled by `weight` (exact,
        and saved as such); otherwise `start` is a model of the same architecture (default: the published
        `config.backbone`). The threshold tuned for the old weights does not fit the new ones: tune it again.
        Each weight applied is appended to `config.training["interpolated"]`, which the model card shows.
        """
        check_weight(weight)
        self._interpolate(weight, self._interpolation_start(start))

    def _interpolation_start(self, start: "Cactus | None") -> dict[str, torch.Tensor] | None:
        """The state dict `interpolate_weights` moves towards (None with an adapter: its update is scaled)."""
        self._require_weights("interpolation")
        self._load()
        if self.config.adapter:
            if start is not None:
                raise ValueError("a model with an adapter interpolates towards the backbone under it: no start")
            return None
        return (start or Cactus(self.config.backbone, device=str(self.device))).encoder.state_dict()

    def _interpolate(self, weight: float, towards: dict[str, torch.Tensor] | None) -> None:
        interpolate_weights(self._encoder, weight, towards)
        if towards is not None:
            self.base_published_ = self.base_published_ and weight == 1
        self.config.training["interpolated"] = [*self.config.training.get("interpolated", []), weight]

    # ---- persistence ---------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike, adapter_dtype: str = "float32") -> None:
        """Write the model to folder `path` atomically (`cactus.atomic`): an existing model is replaced only once the
        new one is complete and on disk. The folder holds the JSON config, a model card, and the weights: the
        backbone's safetensors in `backbone/`, and an adapter's in `adapter/`, stored as `adapter_dtype` ("float16"
        halves it; this model in memory is unchanged, the saved one loads with the adapter so rounded). Weights that
        are still those of the installed default backbone (all-MiniLM-L6-v2) are not copied: that backbone loads
        offline by its name, so an adapter on it is saved alone (a few MB). An exported model is saved with its graph
        and tokenizer."""
        if adapter_dtype != "float32" and not self.config.adapter:
            raise ValueError(f"adapter_dtype={adapter_dtype!r}: the model has no adapter to store so")
        self._load()
        with atomic_dir(path) as tmp:
            if self.config.onnx:
                shutil.copyfile(self._onnx_dir / self.config.onnx["file"], tmp / self.config.onnx["file"])
                self._tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
            else:
                backbone = self._encoder.backbone
                if self.config.adapter:
                    lora.save_lora(backbone, tmp / ADAPTER_DIR, adapter_dtype)
                if not (self.base_published_ and self.config.backbone in DEFAULT_ALIASES):
                    backbone.save_pretrained(tmp / BACKBONE_DIR, state_dict=lora.base_weights(backbone))
                    self._tokenizer.save_pretrained(tmp / BACKBONE_DIR)
            self._write_config(tmp, self.config)

    def _write_config(self, folder: Path, config: CactusConfig) -> None:
        """The config record (with the threshold curve and cut choice) and the model card, into `folder`."""
        record = {
            "schema_version": SCHEMA_VERSION,
            "cactus_version": __version__,
            "config": asdict(config),
            "threshold_curve": self.threshold_curve_.to_dict() if self.threshold_curve_ else None,
            "cut_choice": self.cut_choice_.to_dict() if self.cut_choice_ else None,
        }
        (folder / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
        (folder / "README.md").write_text(model_card(config, self.threshold_curve_))

    def export(self, path: str | os.PathLike, format: str = "onnx", quantize: str | None = None,
               grids: int | None = None) -> None:
        """Write the model to folder `path` (atomically) as an ONNX graph for onnxruntime (`cactus.encoder.onnx`):
        config, threshold, cut and model card as `save_pretrained` writes them, with `model.onnx` and the tokenizer
        in place of the weights; a LoRA adapter is merged into the graph. `quantize="int8"` quantises its weight
        matrices; `grids` sets the attention's width classes (default `cactus.encoder.graph.GRIDS`, by measurement).
        `Cactus.from_pretrained(path)` runs it; NIA and SIA export (FIA does not)."""
        from cactus.encoder.onnx import ONNX_FILE, export_onnx

        if format != "onnx":
            raise ValueError(f"format must be 'onnx', got {format!r}")
        self._require_weights("export")
        self._load()
        if self.config.adapter:
            lora.unfold(self._encoder.backbone)  # the exporter merges a copy of the adapter itself
        with atomic_dir(path) as tmp:
            record = export_onnx(self._encoder, tmp / ONNX_FILE, quantize, grids)
            self._tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
            merged = {"adapter_merged": self.config.adapter} if self.config.adapter else {}
            self._write_config(tmp, replace(self.config, adapter={}, onnx={**record, **merged}))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, *, attention: str | None = None,
                        max_tokens: int | None = None, allow_attention_change: bool = False, **kwargs) -> "Cactus":
        """Load a saved model folder, or a shipped model by name: "default" (also when `path` is None) or
        "context-free" (the pretrained encoder alone; the backbone's names, e.g. "all-MiniLM-L6-v2", mean it too).

        `attention` and `max_tokens` replace the saved ones. A model whose weights cactus trained learned them under
        its attention mode, and its threshold was tuned for that mode: another mode is refused unless
        `allow_attention_change`, and then it warns. Other keyword arguments (`batch_tokens`, `device`) go to the
        constructor.
        """
        folder = packaged_model(path) or Path(path)
        config, curve, choice = read_model_folder(folder)
        where = folder
        if attention is not None and attention != config.attention and config.trained:
            if not allow_attention_change:
                raise ValueError(
                    f"{where}: its weights were trained with attention {config.attention!r}, and its threshold tuned "
                    f"for it; refusing to run it with {attention!r} (allow it explicitly to do so anyway)")
            logger.warning("%s: trained with attention %r, now run with %r: its threshold was tuned for %r",
                           where, config.attention, attention, config.attention)
        if config.onnx:
            if attention is not None and attention != config.attention:
                raise ValueError(f"{where}: an exported graph runs the attention it was exported with "
                                 f"({config.attention!r}), not {attention!r}")
            from cactus.encoder.onnx import ONNX_BATCH_TOKENS

            kwargs.setdefault("batch_tokens", ONNX_BATCH_TOKENS)
        config = replace(config, attention=attention or config.attention, max_tokens=max_tokens or config.max_tokens)
        model = cls(config.backbone, config.attention, config.max_tokens, objective=config.objective,
                    cut=Cut.from_dict(config.cut), **kwargs)
        model.config = config
        model.threshold_curve_, model.cut_choice_ = curve, choice
        if (folder / BACKBONE_DIR).is_dir():
            model._backbone_path, model.base_published_ = str(folder / BACKBONE_DIR), False
        model._adapter_path = folder / ADAPTER_DIR
        if config.onnx:
            model._onnx_dir, model.base_published_ = folder, False
        return model


def _check_params(attention: str, max_tokens: int, objective: str, batch_tokens: int) -> None:
    """ValueError naming the first constructor argument that is wrong (the threshold is checked when adopted)."""
    if attention not in ATTENTION_MODES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {attention!r}")
    for name, value, least in (("max_tokens", max_tokens, 2), ("batch_tokens", batch_tokens, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    parse_objective(objective)


def _resolve_device(device: str | None) -> torch.device:
    """The torch device named, or cuda when available else cpu; ValueError for an unknown or absent device."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA GPU is available here (use cpu)")
    return resolved

