"""Training the set encoder on labelled subsets (METHOD.md sections 2-4) with Hugging Face accelerate.

One optimizer step = one batch of whole subsets: tokenize -> `SetEncoder` (train mode) -> (B, N, D) embeddings -> a
subset loss (`cactus.losses`). Every `eval_every` steps and at the end of each epoch the validation subsets are
embedded (eval mode), the clustering threshold is tuned on them, and the tuned objective decides the best model
(saved with its threshold by `Cactus.save_pretrained`) and early stopping.

accelerate provides device placement, DDP (`torchrun --nproc_per_node K`, gloo on CPU, with no code change) and
checkpoints of model, optimizer, scheduler and every process's RNG. The data order is a pure function of
(seed, epoch), and the RNG states are checkpointed, so a resumed run reaches the same weights as an uninterrupted one.

Output folder:
    train_log.jsonl        one JSON object a line: {"type": "loss", ...} every `log_every` steps, {"type": "eval", ...}
                           at every evaluation (fields in `Trainer._evaluate`)
    training_curve.png     validation AMI, threshold and s0 against steps, drawn from train_log.jsonl at the end
    trackers/              what `report_to` trackers write (tensorboard's event files under trackers/cactus/)
    training_config.json   the `TrainingConfig` of the latest run
    best/                  the best model so far (a `Cactus` folder; its threshold is the one tuned at that step)
    checkpoint/            the latest resumable state (`cactus.train.checkpoint`)
    summary.json           what `Trainer.train` returns
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from torch import nn
from tqdm.auto import tqdm

from cactus.atomic import recover_dir, replace_dir
from cactus.cluster import ThresholdCurve
from cactus.config import CONFIG_NAME, ThresholdProvenance
from cactus.data.subsets import Subset, require_labels
from cactus.encoder.adapter import unfold
from cactus.losses import LossOutput, make_loss
from cactus.selfsup import Augmentation, make_synthetic_subsets
from cactus.text import SubsetBatch, tokenize_subsets
from cactus.train.checkpoint import TrainerState
from cactus.train.config import TrainingConfig, lora_spec
from cactus.train.evaluator import ThresholdEvaluator
from cactus.train.plot import plot_training_log

logger = logging.getLogger(__name__)

LOG_NAME = "train_log.jsonl"
CURVE_NAME = "training_curve.png"
TRACKERS_DIR = "trackers"
BEST_DIR = "best"
CHECKPOINT_DIR = "checkpoint"
VAL_STREAM = 2**32 - 1  # seed stream of synthetic validation subsets; epochs use (seed, epoch) with small epochs


def label_ids(subsets: Sequence[Subset], n_max: int) -> torch.Tensor:
    """(B, N) long: each subset's labels numbered 0..k-1 by first appearance, -1 on padded entities."""
    out = torch.full((len(subsets), n_max), -1, dtype=torch.long)
    for b, s in enumerate(subsets):
        codes = {label: i for i, label in enumerate(dict.fromkeys(s.labels))}
        out[b, : len(s)] = torch.tensor([codes[label] for label in s.labels])
    return out


class _EncoderWithLoss(nn.Module):
    """Encoder and loss as one module, so that DDP all-reduces the loss's parameters (s0) with the encoder's."""

    def __init__(self, encoder: nn.Module, loss: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.loss = loss

    def forward(self, batch: SubsetBatch, labels: torch.Tensor) -> LossOutput:
        """`batch` of (B, N, L) tokens, (B, N) labels -> the loss of the (B, N, D) embeddings."""
        embeddings = self.encoder(batch)
        # Under bf16 autocast the encoder runs in bfloat16; margins of 0.3 on cosines want the loss in float32.
        with torch.autocast(embeddings.device.type, enabled=False):
            return self.loss(embeddings.float(), labels, batch.entity_mask)


TrainSubsets = Sequence[Subset] | Callable[[int], Sequence[Subset]]


def _check_bf16(device: torch.device) -> None:
    """Refuse bf16 on a GPU without it; warn on a CPU whose oneDNN lacks it (emulated there, hence slower)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"mixed_precision=bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16")
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        logger.warning("mixed_precision=bf16: this CPU has no bfloat16 instructions; autocast emulates them, which "
                       "is usually slower than float32")


class Trainer:
    """Trains the encoder of `model` (a `cactus.Cactus`) in place; see the module docstring for what lands in
    `output_dir`. The trainer reads the estimator through its methods and never imports its module, which calls the
    trainer from `Cactus.fit`.

    The model's attention mode, token limit and threshold objective are used as they are; its `device` chooses
    CPU (device "cpu") or accelerate's default accelerator, on which it then stays. Under `torchrun` every
    process builds its own Trainer on the same arguments; the main process writes the log and the best model, every
    process writes its RNG state into the checkpoint (a single shared file system is assumed).
    """

    def __init__(self, model, config: TrainingConfig, output_dir: str | Path):
        self.model = model
        self.config = config
        self.output_dir = Path(output_dir)
        # cpu=True also makes accelerate run `torchrun` processes as DDP over gloo when there is no GPU. BERT's pooler
        # runs but feeds no loss, so its parameters get no gradient: DDP must be told to expect that.
        self.accelerator = Accelerator(
            cpu=model.device.type == "cpu",
            log_with=config.trackers or None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / TRACKERS_DIR)),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        set_seed(config.seed, device_specific=True)  # different dropout masks on different processes
        if config.mixed_precision == "bf16":
            _check_bf16(self.accelerator.device)
        model.device = self.accelerator.device  # `Cactus.embed` (validation) then feeds the same device
        spec = lora_spec(config)
        if spec is None:
            model.merge_adapter()
            model.base_published_ = False  # every weight trains
        elif not model.config.adapter:
            model.add_adapter(spec)
        model.fold_adapter = False  # training needs the adapter apart; `train` turns folding back on at its end
        unfold(model.encoder.backbone)  # folded by an earlier prediction
        self.encoder = model.encoder.to(model.device)
        init_neutral = config.init_neutral if config.init_neutral is not None else model.config.neutral or 0.0
        self.loss_fn = make_loss(config.loss, margin=config.margin, init_neutral=init_neutral)
        groups = [{"params": [p for p in self.encoder.parameters() if p.requires_grad],
                   "lr": config.lr, "weight_decay": config.weight_decay}]
        # The starting weights, for `anchor`; a resumed run rebuilds them from the same starting model.
        self._anchor = ([(p, p.detach().clone()) for p in groups[0]["params"]] if config.anchor else [])
        loss_params = list(self.loss_fn.parameters())
        if loss_params:
            groups.append({"params": loss_params, "lr": config.neutral_lr, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups)
        self._schedule_steps = config.schedule_steps  # `train` fills in the default, which depends on the data
        # Not passed to prepare(): accelerate would step it once per process per step; it counts optimizer steps.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        self.module, self.optimizer = self.accelerator.prepare(_EncoderWithLoss(self.encoder, self.loss_fn), optimizer)
        self.accelerator.register_for_checkpointing(self.scheduler)
        self.n_truncated = 0
        self._step_lr = config.lr
        self._data_stats: dict = {}
        self._last_eval: tuple[ThresholdCurve, int, int] | None = None  # this run's last: curve, epoch, n_val
        self._clock = (time.monotonic(), 0.0)  # (when this run started, training seconds of earlier runs)

    # ---- public API ------------------------------------------------------------------------------------------
    @property
    def neutral(self) -> float | None:
        """Current s0 of the augmented triplet loss (None for other losses)."""
        neutral = getattr(self.loss_fn, "neutral", None)
        return None if neutral is None else float(neutral.detach())

    def lr_factor(self, step: int) -> float:
        """The learning rates' multiplier for the optimizer step after `step` steps: a linear warmup over
        `warmup_steps`, then 1 (constant) or a linear decay that reaches 0 at `schedule_steps` (linear)."""
        warmup = self.config.warmup_steps
        if step < warmup:
            return (step + 1) / warmup
        if self.config.lr_schedule == "constant" or self._schedule_steps is None:
            return 1.0
        return max(0.0, (self._schedule_steps - step) / max(1, self._schedule_steps - warmup))

    def epoch_batches(self, n_subsets: int, epoch: int) -> list[list[int]]:
        """This process's batches of `epoch`: lists of indices into that epoch's `n_subsets` training subsets.

        The shuffle depends only on (seed, epoch), so a resumed run sees the same order. Under DDP process r takes
        batches r, r + K, ... of K processes; the last len % K batches are dropped, since every process must take
        the same number of steps (each step synchronises gradients).
        """
        size, world = self.config.batch_size, self.accelerator.num_processes
        order = np.random.default_rng([self.config.seed, epoch]).permutation(n_subsets)
        batches = [order[i: i + size].tolist() for i in range(0, n_subsets, size)]
        if len(batches) < world:
            raise ValueError(f"{n_subsets} training subsets make {len(batches)} batches, fewer than {world} processes")
        return batches[self.accelerator.process_index: len(batches) // world * world: world]

    def train(self, train_subsets: TrainSubsets, val_subsets: Sequence[Subset], resume: bool = False) -> dict:
        """Train, evaluating and checkpointing on the way; return a summary (also written to summary.json).

        Args:
            train_subsets: labelled subsets, or a function epoch -> that epoch's subsets (e.g. synthetic ones;
                it must return the same subsets for the same epoch, for resuming).
            val_subsets: labelled subsets for threshold tuning, model selection and early stopping.
            resume: continue from output_dir/checkpoint if there is one (else start afresh).

        Evaluations happen every `eval_every` steps, at the end of every epoch, at `max_steps`, and before the first
        step with `eval_on_start`. A run stopped by max_steps=k and resumed with a larger max_steps reaches exactly
        the weights of an uninterrupted run; its log and early stopping match too when k is an evaluation step anyway
        (else the extra evaluation at k counts).
        """
        evaluator = ThresholdEvaluator(val_subsets)
        subsets_of = train_subsets if callable(train_subsets) else (lambda epoch: train_subsets)
        first = subsets_of(0)
        self._data_stats = {  # for the model card; synthetic data changes per epoch, epoch 0 stands for all
            "train_subsets": len(first), "train_entities": sum(len(s) for s in first),
            "mean_clusters_per_subset": float(np.mean([len(set(s.labels)) for s in first])) if first else 0.0,
            "per_epoch_synthetic": callable(train_subsets),
        }
        state = self._start(resume)
        self._clock = (time.monotonic(), state.elapsed_s)
        per_epoch = len(self.epoch_batches(len(subsets_of(state.epoch)), state.epoch))
        cfg = self.config
        total = per_epoch * cfg.epochs if cfg.max_steps is None else min(per_epoch * cfg.epochs, cfg.max_steps)
        if self._schedule_steps is None:
            self._schedule_steps = cfg.max_steps or per_epoch * cfg.epochs
        self._start_trackers(state)
        if cfg.eval_on_start and state.step == 0:  # a resumed run has stepped (checkpoints follow steps)
            self._evaluate(state, evaluator, state.epoch)
        bar = tqdm(total=total, initial=state.step, desc="training", unit="step",
                   disable=not (cfg.progress and self.accelerator.is_main_process))
        stepped = self._run(state, subsets_of, evaluator, bar)
        bar.close()
        self.encoder.eval()  # the model's inference methods expect eval mode (no dropout)
        self.model.fold_adapter = True
        if stepped:
            self._checkpoint(state)  # always resumable from the end, e.g. with a larger max_steps
        if self.n_truncated:
            logger.warning("%d training entities were longer than max_tokens=%d tokens and were truncated",
                           self.n_truncated, self.model.config.max_tokens)
        best = self.output_dir / BEST_DIR
        if cfg.restore_best and (best / CONFIG_NAME).is_file():
            self._restore(best)
        elif self._last_eval is not None and state.last_eval_step == state.step:
            self._adopt(*self._last_eval, state=state)  # the last weights get the threshold tuned for them
        self.accelerator.end_training()
        if self.accelerator.is_main_process:
            plot_training_log(self.output_dir / LOG_NAME, self.output_dir / CURVE_NAME)
        return self._summary(state)

    def step(self, subsets: Sequence[Subset]) -> tuple[float, int, int]:
        """One optimizer step on a batch of labelled subsets; returns (loss x kept subsets, kept subsets, skipped
        subsets), summed over processes. A subset is skipped when its loss has no term (e.g. one cluster).

        With `grad_accumulation` = k the batch is encoded in k parts, each part's mean loss weighted by its share of
        the batch's subsets: the gradient of the whole batch's mean whenever no subset is skipped.
        """
        acc, tokenizer = self.accelerator, self.model.tokenizer
        parts = np.array_split(np.arange(len(subsets)), min(self.config.grad_accumulation, len(subsets)))
        loss_sum, kept, skipped = 0.0, 0, 0
        for i, part in enumerate(parts):
            chunk = [subsets[j] for j in part]
            batch = tokenize_subsets(tokenizer, [s.texts for s in chunk], self.model.config.max_tokens)
            self.n_truncated += batch.n_truncated
            batch = batch.to(acc.device)
            # DDP all-reduces the gradients once, in the last part's backward pass.
            sync = acc.no_sync(self.module) if i < len(parts) - 1 else contextlib.nullcontext()
            # Autocast here, not accelerate's mixed_precision: that is fixed once per process for every Accelerator.
            with sync, torch.autocast(acc.device.type, torch.bfloat16, enabled=self.config.mixed_precision == "bf16"):
                out: LossOutput = self.module(batch, label_ids(chunk, batch.entity_mask.shape[1]).to(acc.device))
                acc.backward(out.loss * (len(chunk) / len(subsets)))
            loss_sum += out.loss.item() * (len(chunk) - out.n_skipped)
            kept += len(chunk) - out.n_skipped
            skipped += out.n_skipped
        if self.config.grad_clip is not None:
            acc.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self._anchor:  # decoupled from the gradient, so Adam's per-parameter scaling does not undo it
            pull = self.optimizer.param_groups[0]["lr"] * self.config.anchor
            with torch.no_grad():
                for p, p0 in self._anchor:
                    p.sub_(pull * (p - p0))
        self._step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used, for the log
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        totals = torch.tensor([loss_sum, kept, skipped], dtype=torch.float64, device=acc.device)
        loss_sum, kept, skipped = acc.reduce(totals, reduction="sum").tolist()
        return loss_sum, int(kept), int(skipped)

    def pretrain(
        self,
        pool: Sequence[str],
        n_subsets_per_epoch: int,
        val_subsets: Sequence[Subset] | None = None,
        n_val: int = 200,
        augmentation: Augmentation | str = "word_drop",
        resume: bool = False,
    ) -> dict:
        """Self-supervised pretraining (METHOD.md section 3): `train` on fresh synthetic subsets of `pool` each epoch.

        Epoch e's subsets come from `make_synthetic_subsets(pool, n_subsets_per_epoch, augmentation, seed=(seed, e))`;
        without `val_subsets`, `n_val` synthetic ones from a stream no epoch uses serve for validation.
        """
        seed = self.config.seed
        if val_subsets is None:
            val_subsets = make_synthetic_subsets(pool, n_val, augmentation, seed=(seed, VAL_STREAM))
        return self.train(
            lambda epoch: make_synthetic_subsets(pool, n_subsets_per_epoch, augmentation, seed=(seed, epoch)),
            val_subsets,
            resume=resume,
        )

    # ---- the loop -----------------------------------------------------------------------------------------
    def _run(self, state: TrainerState, subsets_of: Callable[[int], Sequence[Subset]],
             evaluator: ThresholdEvaluator, bar) -> bool:
        """Step through the epochs from `state` until the last epoch, `max_steps` or early stopping; whether any
        step ran."""
        stepped = False
        done = state.stopped_early or self._at_max_steps(state)
        self.module.train()
        while not done and state.epoch < self.config.epochs:
            subsets = subsets_of(state.epoch)
            require_labels(subsets, "training")
            batches = self.epoch_batches(len(subsets), state.epoch)
            for batch in batches[state.batch_in_epoch:]:
                self._count_step(state, *self.step([subsets[i] for i in batch]))
                stepped = True
                bar.update(1)
                done = self._after_step(state, len(batches), evaluator, bar)
                if done:
                    break
        return stepped

    def _count_step(self, state: TrainerState, loss_sum: float, kept: int, skipped: int) -> None:
        state.step += 1
        state.batch_in_epoch += 1
        run_start, elapsed_before = self._clock
        state.elapsed_s = elapsed_before + time.monotonic() - run_start
        state.loss_sum += loss_sum
        state.loss_count += kept
        state.skipped += skipped
        state.log_loss_sum += loss_sum
        state.log_loss_count += kept

    def _after_step(self, state: TrainerState, n_batches: int, evaluator: ThresholdEvaluator, bar) -> bool:
        """Log, evaluate, move to the next epoch and checkpoint as due after a step; whether training is done."""
        cfg, epoch = self.config, state.epoch
        if cfg.log_every and state.step % cfg.log_every == 0:
            self._log_loss(state, epoch)
        epoch_end = state.batch_in_epoch == n_batches
        at_max = self._at_max_steps(state)
        evaluated = (cfg.eval_every is not None and state.step % cfg.eval_every == 0) or epoch_end or at_max
        if evaluated:
            self._evaluate(state, evaluator, epoch)
            bar.set_postfix(score=f"{state.best_score:.4f}")
        if epoch_end:
            state.epoch += 1
            state.batch_in_epoch = 0
        if state.stopped_early or at_max:
            return True
        if (state.step % cfg.checkpoint_every == 0) if cfg.checkpoint_every else evaluated:
            self._checkpoint(state)
        return False

    def _at_max_steps(self, state: TrainerState) -> bool:
        return self.config.max_steps is not None and state.step >= self.config.max_steps

    def _summary(self, state: TrainerState) -> dict:
        """What `train` returns, also written to summary.json (main process)."""
        summary = {
            "steps": state.step,
            "epochs_completed": state.epoch,
            "stopped_early": state.stopped_early,
            "best_score": state.best_score,
            "best_step": state.best_step,
            "objective": self.model.config.objective,
            "threshold": self.model.threshold_,
            "neutral": self.neutral,
            "best_neutral": self.model.config.neutral,
            "elapsed_s": state.elapsed_s,
            "n_truncated": self.n_truncated,
            "best_dir": str(self.output_dir / BEST_DIR),
            "log": str(self.output_dir / LOG_NAME),
        }
        if self.accelerator.is_main_process:
            (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    # ---- evaluation and the best model ---------------------------------------------------------------------
    def _evaluate(self, state: TrainerState, evaluator: ThresholdEvaluator, epoch: int) -> None:
        """Tune the threshold on the validation subsets, log, keep the best model, update early stopping.

        Log fields: type "eval", step, epoch, train_loss (mean over subsets since the last evaluation), skipped
        (subsets without a loss term since then), objective, score (its mean at the tuned threshold), ami, ari,
        threshold, neutral (s0), best (this evaluation is the best so far), elapsed_s.
        """
        # Validate as `predict` runs, with the adapter folded into the weights: a second product in every adapted
        # layer made validation about 1.4x slower, and its temporaries raised the validation's memory.
        self.model.fold_adapter = True
        try:
            curve = evaluator(self.model, self.accelerator)
        finally:
            self.model.fold_adapter = False
            unfold(self.encoder.backbone)  # training needs the adapter apart
        self._last_eval = (curve, epoch, len(evaluator))
        at_best = curve.scores_at_best()
        improved = state.best_score is None or curve.best_score > state.best_score
        record = {
            "type": "eval",
            "step": state.step,
            "epoch": epoch,
            "train_loss": state.loss_sum / state.loss_count if state.loss_count else None,
            "skipped": state.skipped,
            "objective": curve.objective,
            "score": curve.best_score,
            "ami": at_best["ami"],
            "ari": at_best["ari"],
            "threshold": curve.best_threshold,
            "neutral": self.neutral,
            "best": improved,
            "elapsed_s": round(state.elapsed_s, 3),
        }
        state.loss_sum, state.loss_count, state.skipped = 0.0, 0, 0
        state.last_eval_step = state.step
        if improved:
            state.best_score, state.best_step, state.evals_since_best = curve.best_score, state.step, 0
            self._save_best(curve, state, epoch, len(evaluator))
        else:
            state.evals_since_best += 1
            state.stopped_early = self.config.patience is not None and state.evals_since_best >= self.config.patience
        self._write_log(state, record)

    def _adopt(self, curve: ThresholdCurve, epoch: int, n_val: int, state: TrainerState) -> None:
        """Give the model the threshold tuned for its current weights, the loss, s0 and the training record."""
        model = self.model
        model.adopt_threshold(curve, ThresholdProvenance(subsets=n_val, tuned_on="validation subsets",
                                                         step=state.step))
        model.config.loss = self.config.loss
        model.config.neutral = self.neutral
        model.config.training = {
            "config": self.config.to_dict(), "step": state.step, "epoch": epoch,
            "processes": self.accelerator.num_processes, "validation_subsets": n_val, "best_score": curve.best_score,
            "validation": curve.scores_at_best(),
            "data": self._data_stats,
        }

    def _save_best(self, curve: ThresholdCurve, state: TrainerState, epoch: int, n_val: int) -> None:
        """`_adopt` the curve and save the model as output_dir/best (main process)."""
        self._adopt(curve, epoch, n_val, state)
        if self.accelerator.is_main_process:
            self.model.save_pretrained(self.output_dir / BEST_DIR)
        self.accelerator.wait_for_everyone()

    def _restore(self, best: Path) -> None:
        """Load the best weights back into the model, with their threshold, loss, s0 and training record."""
        saved = type(self.model).from_pretrained(best, device=str(self.accelerator.device))
        self.encoder.load_state_dict(saved.encoder.state_dict())
        self.model.adopt_threshold(saved.threshold_curve_, ThresholdProvenance(**saved.config.threshold_provenance))
        self.model.config.loss, self.model.config.neutral = saved.config.loss, saved.config.neutral
        self.model.config.training = saved.config.training

    # ---- log and checkpoints -------------------------------------------------------------------------------
    def _log_loss(self, state: TrainerState, epoch: int) -> None:
        record = {
            "type": "loss",
            "step": state.step,
            "epoch": epoch,
            "loss": state.log_loss_sum / state.log_loss_count if state.log_loss_count else None,
            "lr": self._step_lr,
            "neutral": self.neutral,
            "elapsed_s": round(state.elapsed_s, 3),
        }
        state.log_loss_sum, state.log_loss_count = 0.0, 0
        self._write_log(state, record)

    def _write_log(self, state: TrainerState, record: dict) -> None:
        """Append `record` to the log and send its numbers to the trackers, as "<type>/<field>" at its step."""
        if self.accelerator.is_main_process:
            with open(self.output_dir / LOG_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")
                state.log_offset = f.tell()
        if self.config.trackers:
            scalars = {f"{record['type']}/{k}": float(v) for k, v in record.items()
                       if k not in ("type", "step") and isinstance(v, (int, float))}
            self.accelerator.log(scalars, step=record["step"])

    def _start_trackers(self, state: TrainerState) -> None:
        """Start the `report_to` trackers with the config as hyperparameters. A resumed tensorboard run drops its
        events after the checkpoint's step, which the resumed run logs again (as it does train_log.jsonl's)."""
        if not self.config.trackers:
            return
        # Trackers take numbers, text and booleans; the config's None becomes "none".
        hparams = {k: v if isinstance(v, (bool, int, float, str)) else str(v).lower()
                   for k, v in self.config.to_dict().items()}
        kwargs = {"tensorboard": {"purge_step": state.step + 1}} if state.step else {}
        self.accelerator.init_trackers("cactus", config=hparams, init_kwargs=kwargs)

    def _start(self, resume: bool) -> TrainerState:
        """Load the checkpoint (resume) or start afresh; prepare the output folder and the log."""
        acc = self.accelerator
        checkpoint = self.output_dir / CHECKPOINT_DIR
        log = self.output_dir / LOG_NAME
        if resume and acc.is_main_process:
            recover_dir(checkpoint)
        acc.wait_for_everyone()
        if resume and (checkpoint / "trainer_state.json").is_file():
            state = TrainerState.load(checkpoint)
            if state.world_size != acc.num_processes:
                raise ValueError(f"{checkpoint} was written by {state.world_size} processes, not "
                                 f"{acc.num_processes}: the data shards would differ")
            acc.load_state(str(checkpoint))
            if acc.is_main_process:
                with open(log, "a+b") as f:
                    f.truncate(state.log_offset)  # lines written after the checkpoint are replayed
        else:
            if resume:
                logger.warning("%s: no checkpoint to resume from; training from the start", checkpoint)
            state = TrainerState(world_size=acc.num_processes)
            if acc.is_main_process:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                log.write_text("")
        if acc.is_main_process:
            (self.output_dir / "training_config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        acc.wait_for_everyone()
        return state

    def _checkpoint(self, state: TrainerState) -> None:
        """Save model, optimizer, scheduler, RNG states and `state` to output_dir/checkpoint, atomically."""
        acc = self.accelerator
        tmp = self.output_dir / f".{CHECKPOINT_DIR}.tmp"  # one name for all processes: each adds its RNG file
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            state.save(tmp)
            replace_dir(tmp, self.output_dir / CHECKPOINT_DIR)
        acc.wait_for_everyone()
