"""The command line: a thin shell over `cactus.Cactus`, the readers and writers, and the benchmark builder."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

import cactus
from cactus.data import SubsetFormatError, read_subsets, write_subsets
from cactus.data.subsets import require_labels

DEFAULT_DATA_DIR = "../shared/data"


def _load_model(args) -> "cactus.Cactus":
    """--model: a saved cactus folder, "default", or a bare Hugging Face encoder (then --threshold is needed
    unless the command tunes one)."""
    import transformers

    from cactus.encoder.backbone import DEFAULT_ALIASES
    from cactus.model import CONFIG_NAME, Cactus

    transformers.logging.disable_progress_bar()  # loading the weights takes a moment; its bar is noise

    common = {"batch_entities": args.batch_entities, "device": args.device}
    name = args.model
    if name in DEFAULT_ALIASES:
        model = Cactus.from_pretrained("default", **common)
    elif (Path(name) / CONFIG_NAME).is_file():
        model = Cactus.from_pretrained(name, **common)
    else:
        model = Cactus(backbone=name, max_tokens=args.max_tokens or 64, **common)
    if args.max_tokens:
        model.config.max_tokens = args.max_tokens
    if args.attention:
        model.config.attention = args.attention  # read when the encoder is first built
    if getattr(args, "threshold", None) is not None:
        model.threshold_ = args.threshold
    return model


def _add_model_args(p: argparse.ArgumentParser, threshold: bool = True) -> None:
    p.add_argument("--model", default="default", metavar="M",
                   help="a saved cactus model folder, 'default' (all-MiniLM-L6-v2, offline, with its shipped "
                        "threshold), or any Hugging Face encoder name or folder (default: %(default)s)")
    if threshold:
        p.add_argument("--threshold", type=float, default=None, metavar="T",
                       help="override the model's threshold: clusters merge while their average cosine "
                            "similarity is at least T")
    p.add_argument("--max-tokens", type=int, default=None, metavar="K",
                   help="token limit per entity, special tokens included; longer texts are cut and counted "
                        "(default: the model's, 64 for a bare encoder)")
    p.add_argument("--attention", choices=("nia", "fia", "sia"), default=None,
                   help="how the entities of a subset see each other while encoded: nia = not at all (context-free), "
                        "fia = full attention over the concatenated subset, sia = scalable inter-entity attention "
                        "(default: the model's; nia for a bare encoder)")
    p.add_argument("--batch-entities", type=int, default=512, metavar="E",
                   help="entities per forward pass; lower it to save memory (default: %(default)s)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")


def cmd_predict(args) -> int:
    model = _load_model(args)
    if model.threshold_ is None:
        raise SystemExit(f"error: --model {args.model} has no threshold; pass --threshold or tune one first "
                         "with 'cactus tune-threshold'")
    subsets = read_subsets(args.input)
    start = time.perf_counter()
    preds = model.predict(subsets, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    write_subsets(args.output, [s.with_labels([int(c) for c in p]) for s, p in zip(subsets, preds)])
    n = sum(len(s) for s in subsets)
    _say(args, f"clustered {len(subsets)} subsets ({n} entities) at threshold {model.threshold_:.3f} in "
               f"{elapsed:.1f} s ({n / elapsed:.0f} entities/s); wrote {args.output}")
    return 0


def cmd_evaluate(args) -> int:
    from cactus.evaluate import evaluate_predictions, format_summary

    gold = read_subsets(args.input)
    require_labels(gold, "evaluation")
    if args.predictions:
        pred_subsets = {s.id: s for s in read_subsets(args.predictions)}
        missing = [s.id for s in gold if s.id not in pred_subsets]
        if missing:
            raise SubsetFormatError(f"no prediction for {len(missing)} subsets", source=args.predictions,
                                    subset_id=missing[0])
        preds = [pred_subsets[s.id].labels for s in gold]
        for s, p in zip(gold, preds):
            if p is None or len(p) != len(s):
                raise SubsetFormatError("prediction has no labels or a different number of entities",
                                        source=args.predictions, subset_id=s.id)
        threshold = None
    else:
        model = _load_model(args)
        if model.threshold_ is None:
            raise SystemExit(f"error: --model {args.model} has no threshold; pass --threshold")
        preds = model.predict(gold, progress=not args.quiet)
        threshold = model.threshold_
    report = evaluate_predictions(gold, preds)
    report["input"] = str(args.input)
    report["model"] = None if args.predictions else args.model
    report["predictions"] = args.predictions
    report["threshold"] = threshold
    print(format_summary(report["summary"]))
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
        _say(args, f"wrote {args.report}")
    return 0


def cmd_tune_threshold(args) -> int:
    model = _load_model(args)
    model.config.objective = args.objective
    subsets = read_subsets(args.input)
    grid = np.round(np.arange(args.grid[0], args.grid[1] + args.grid[2] / 2, args.grid[2]), 6)
    curve = model.tune_threshold(subsets, grid=grid, progress=not args.quiet)
    scores = curve.scores_at_best()
    print(f"best threshold {curve.best_threshold:.3f}  {curve.objective} = {curve.best_score:.4f}  " +
          "  ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != curve.objective))
    if args.curve:
        Path(args.curve).parent.mkdir(parents=True, exist_ok=True)
        Path(args.curve).write_text(json.dumps(curve.to_dict(), indent=2) + "\n")
        _say(args, f"wrote the curve to {args.curve}")
    if args.save_to:
        model.save_pretrained(args.save_to)
        _say(args, f"saved the model with threshold {curve.best_threshold:.3f} to {args.save_to}")
    return 0


TRAINING_FLAGS = ("loss", "epochs", "max_steps", "batch_size", "lr", "neutral_lr", "eval_every", "patience", "seed")


def _training_config(args, **overrides):
    """The training config: defaults, then the --config file (JSON or YAML), then the flags given."""
    from cactus.train import TrainingConfig

    record: dict = {}
    if args.config:
        path = Path(args.config)
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            record = yaml.safe_load(text) or {}
        else:
            record = json.loads(text)
        if not isinstance(record, dict):
            raise SystemExit(f"error: {path}: a training config must be a mapping of field to value")
    record.update({k: getattr(args, k) for k in TRAINING_FLAGS if getattr(args, k) is not None})
    record.update(overrides)
    record["progress"] = not args.quiet
    try:
        return TrainingConfig.from_dict(record)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"error: training config: {e}") from None


def cmd_train(args) -> int:
    if args.pretrained_from:
        args.model = args.pretrained_from
    model = _load_model(args)
    overrides = {}
    if args.pretrained_from and model.config.neutral is not None and args.loss in (None, "augmented_triplet"):
        overrides["init_neutral"] = model.config.neutral  # continue from the s0 that pretraining reached
    config = _training_config(args, **overrides)
    train, val = read_subsets(args.train), read_subsets(args.val)
    require_labels(train, "training")
    require_labels(val, "validation")
    model.fit(train, val, config=config, output_dir=args.out, resume=args.resume)
    summary = model.training_summary_
    if _main_process():
        print(f"best {summary['objective']} {summary['best_score']:.4f} at step {summary['best_step']}, threshold "
              f"{model.threshold_:.2f}" + (f", s0 {model.config.neutral:.3f}" if model.config.neutral is not None else ""))
    _say(args, f"the best model is in {Path(args.out) / 'best'}; log: {Path(args.out) / 'train_log.jsonl'}")
    return 0


def cmd_pretrain(args) -> int:
    from cactus.selfsup import unique_texts
    from cactus.train import Trainer

    model = _load_model(args)
    config = _training_config(args)
    pool = unique_texts(read_subsets(args.train))
    val = read_subsets(args.val) if args.val else None
    if val is not None:
        require_labels(val, "validation")
    summary = Trainer(model, config, args.out).pretrain(pool, args.subsets_per_epoch, val_subsets=val,
                                                        augmentation=args.augmentation, resume=args.resume)
    if _main_process():
        print(f"pretrained on synthetic subsets of {len(pool)} texts: best {summary['objective']} "
              f"{summary['best_score']:.4f} at step {summary['best_step']}")
    _say(args, f"the pretrained model is in {Path(args.out) / 'best'}; fine-tune it with "
               f"'cactus train --pretrained-from {Path(args.out) / 'best'} ...'")
    return 0


def cmd_data_build(args) -> int:
    from cactus.data.benchmarks import FAMILIES, build_benchmarks, format_stats

    families = args.families or list(FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"error: unknown families {unknown}; choose from {list(FAMILIES)}")
    stats = build_benchmarks(args.data_dir, args.out, families=families, seed=args.seed, n_train=args.n_train,
                             n_val=args.n_val, n_test=args.n_test, progress=not args.quiet)
    print(format_stats(stats))
    _say(args, f"wrote {len(families)} families to {args.out}")
    return 0


def _main_process() -> bool:
    """False on the other processes of a `torchrun` launch, which must not repeat the main one's output."""
    return int(os.environ.get("RANK", "0")) == 0


def _say(args, msg: str) -> None:
    if not args.quiet and _main_process():
        print(msg, file=sys.stderr)



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cactus", description="Context-aware supervised clustering of entity subsets.",
        epilog="Subsets are JSONL (one {\"id\", \"texts\", \"labels\"} object per line) or a long CSV/Parquet "
               "table with columns subset_id, text, label.")
    parser.add_argument("--version", action="version", version=f"cactus {cactus.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p):
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")

    p = sub.add_parser("predict", help="cluster every subset of a file",
                       description="Cluster every subset of IN and write the subsets with integer cluster ids as "
                                   "'labels' (in input order) to OUT, in the format its suffix names.")
    p.add_argument("input", metavar="IN", help="subsets to cluster (.jsonl, .csv or .parquet); labels ignored")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the predictions")
    _add_model_args(p)
    common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="score a model or a predictions file against labelled subsets",
                       description="Print AMI, ARI, NMI, RI and best-match precision/recall/F1 (mean and 95%% "
                                   "confidence interval over subsets) of a model's predictions on IN, or of "
                                   "--predictions against IN.")
    p.add_argument("input", metavar="IN", help="labelled subsets (.jsonl, .csv or .parquet)")
    p.add_argument("--predictions", default=None, metavar="P",
                   help="score this predictions file instead of running a model")
    p.add_argument("--report", default=None, metavar="R.json", help="write the full report (per subset too)")
    _add_model_args(p)
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tune-threshold", help="choose the clustering threshold on labelled validation subsets",
                       description="Cluster IN at every threshold of a grid (one linkage per subset) and pick "
                                   "the one that maximises the objective averaged over subsets.")
    p.add_argument("input", metavar="IN", help="labelled validation subsets")
    p.add_argument("--objective", default="ami+ari",
                   help="'+'-joined metrics to maximise: ami, ari, nmi, ri, precision, recall, f1 "
                        "(default: %(default)s; the paper's is nmi+ami+ri+ari)")
    p.add_argument("--grid", type=float, nargs=3, default=(-1.0, 1.0, 0.01), metavar=("START", "STOP", "STEP"),
                   help="threshold grid, inclusive (default: -1 1 0.01)")
    p.add_argument("--curve", default=None, metavar="C.json", help="write the whole curve as JSON")
    p.add_argument("--save-to", default=None, metavar="DIR", help="save the model with the chosen threshold")
    _add_model_args(p, threshold=False)
    common(p)
    p.set_defaults(func=cmd_tune_threshold)

    def training_args(p, lr_default: str):
        p.add_argument("--out", required=True, metavar="DIR",
                       help="run folder: training log, checkpoint, and the best model in DIR/best")
        p.add_argument("--config", default=None, metavar="CFG",
                       help="training config file (.json, .yaml) with TrainingConfig fields; flags override it")
        p.add_argument("--loss", default=None,
                       choices=("augmented_triplet", "triplet", "pairwise_bce", "structured_mst"),
                       help="training loss (default: augmented_triplet, with a learnable neutral similarity s0)")
        p.add_argument("--epochs", type=int, default=None, help="passes over the training data (default: 10)")
        p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
        p.add_argument("--batch-size", type=int, default=None, help="subsets per step (default: 4)")
        p.add_argument("--lr", type=float, default=None, help=f"encoder learning rate (default: {lr_default})")
        p.add_argument("--neutral-lr", type=float, default=None, help="learning rate of s0 (default: 5e-3)")
        p.add_argument("--eval-every", type=int, default=None,
                       help="validate (tune the threshold, keep the best) every this many steps (default: each epoch)")
        p.add_argument("--patience", type=int, default=None,
                       help="stop after this many validations without improvement (default: never)")
        p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
        p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
        _add_model_args(p, threshold=False)
        common(p)

    p = sub.add_parser("train", help="train the encoder on labelled subsets",
                       description="Fine-tune the encoder on labelled training subsets; every validation tunes the "
                                   "threshold and the best model is kept with it in OUT/best. Runs under "
                                   "'torchrun --nproc_per_node K' unchanged.")
    p.add_argument("--train", required=True, metavar="T", help="labelled training subsets")
    p.add_argument("--val", required=True, metavar="V", help="labelled validation subsets")
    p.add_argument("--pretrained-from", default=None, metavar="DIR",
                   help="start from this model folder (e.g. the OUT/best of 'cactus pretrain'), and its s0")
    training_args(p, "5e-5")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pretrain", help="self-supervised pretraining on synthetic clusterings",
                       description="Pretrain the encoder on synthetic subsets made from the unique texts of T: each "
                                   "cluster is copies of one seed text, changed by --augmentation.")
    p.add_argument("--train", required=True, metavar="T", help="subsets whose texts form the pool (labels unused)")
    p.add_argument("--val", default=None, metavar="V",
                   help="labelled validation subsets (default: synthetic ones from the same pool)")
    p.add_argument("--subsets-per-epoch", type=int, default=8000, help="synthetic subsets per epoch (default: 8000)")
    p.add_argument("--augmentation", default="word_drop", choices=("word_drop", "word_shuffle", "span_delete"),
                   help="how a cluster's members are made from its seed text (default: word_drop, the paper's)")
    training_args(p, "5e-5; the paper pretrained at 1e-4")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("data", help="benchmark data")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    b = dsub.add_parser("build", help="build the benchmark subset families from the raw datasets",
                        description="Build train/val/test JSONL subset families from the raw public datasets, "
                                    "deterministically from --seed, and print their statistics.")
    b.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="raw datasets folder (default: %(default)s)")
    b.add_argument("--out", default="data/benchmark", help="output folder (default: %(default)s)")
    b.add_argument("--families", nargs="+", default=None, metavar="F", help="families to build (default: all)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    b.add_argument("--n-train", type=int, default=2000, help="training subsets per family (default: %(default)s)")
    b.add_argument("--n-val", type=int, default=200, help="validation subsets per family (default: %(default)s)")
    b.add_argument("--n-test", type=int, default=500, help="test subsets per family (default: %(default)s)")
    common(b)
    b.set_defaults(func=cmd_data_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except (SubsetFormatError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
