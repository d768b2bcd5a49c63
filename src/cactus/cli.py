"""The command line: a thin shell over `cactus.Cactus`, the readers and writers, and the benchmark builder."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import typing
from dataclasses import fields
from pathlib import Path

import numpy as np

from cactus.cluster import CRITERIA, CUTS, DEFAULT_GRID, Cut, check_threshold, parse_objective
from cactus.cluster.cut import DEFAULT_BAND
from cactus.data import SubsetFormatError, read_subsets, write_subsets
from cactus.data.subsets import require_labels
from cactus.encoder import ATTENTION_MODES
from cactus.losses import LOSSES
from cactus.selfsup import AUGMENTATIONS
from cactus.train.config import TrainingConfig
from cactus.version import __version__

DEFAULT_DATA_DIR = "../shared/data"


def _load_model(args):
    """--model: a saved cactus folder, "default", or a bare Hugging Face encoder (then a threshold must be passed
    unless the command tunes one). --attention and --max-tokens replace the model's own."""
    import transformers

    from cactus.config import CONFIG_NAME
    from cactus.encoder.backbone import DEFAULT_ALIASES
    from cactus.model import Cactus

    transformers.logging.disable_progress_bar()  # loading the weights takes a moment; its bar is noise

    common = {"batch_entities": args.batch_entities, "device": args.device}
    name = args.model
    if name in DEFAULT_ALIASES or (Path(name) / CONFIG_NAME).is_file():
        return Cactus.from_pretrained("default" if name in DEFAULT_ALIASES else name, attention=args.attention,
                                      max_tokens=args.max_tokens,
                                      allow_attention_change=args.allow_attention_change, **common)
    return Cactus(backbone=name, attention=args.attention or "nia", max_tokens=args.max_tokens or 64, **common)


def _threshold_arg(text: str) -> float:
    try:
        return check_threshold(text, "--threshold")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _objective_arg(text: str) -> str:
    try:
        parse_objective(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _choices_help(choices: dict[str, str]) -> str:
    return "; ".join(f"{name} = {what}" for name, what in choices.items())


def _add_model_args(p: argparse.ArgumentParser, threshold: bool = True) -> None:
    p.add_argument("--model", default="default", metavar="M",
                   help="a saved cactus model folder, 'default' (all-MiniLM-L6-v2, offline, with its shipped "
                        "threshold), or any Hugging Face encoder name or folder (default: %(default)s)")
    if threshold:
        p.add_argument("--threshold", type=_threshold_arg, default=None, metavar="T",
                       help="override the model's threshold: clusters merge while their average cosine "
                            "similarity is at least T, in [-1, 1]")
        p.add_argument("--cut", choices=list(CUTS), default=None,
                       help=f"override the model's cut: {_choices_help(CUTS)} (default: the model's)")
        p.add_argument("--cut-criterion", choices=list(CRITERIA), default=None,
                       help=f"the adaptive cut's criterion: {_choices_help(CRITERIA)} (default: the model's, "
                            "else silhouette)")
        p.add_argument("--cut-band", type=_threshold_arg, nargs=2, default=None, metavar=("LOW", "HIGH"),
                       help="the thresholds whose cuts the adaptive cut chooses among (default: the model's, else "
                            f"{DEFAULT_BAND[0]} {DEFAULT_BAND[1]})")
    p.add_argument("--max-tokens", type=int, default=None, metavar="K",
                   help="token limit per entity, special tokens included; longer texts are cut and counted "
                        "(default: the model's, 64 for a bare encoder)")
    p.add_argument("--attention", choices=list(ATTENTION_MODES), default=None,
                   help="how the entities of a subset see each other while encoded: "
                        f"{_choices_help(ATTENTION_MODES)} (default: the model's; nia for a bare encoder)")
    p.add_argument("--allow-attention-change", action="store_true",
                   help="run a trained model with another --attention than it was trained with (it warns: its "
                        "weights and threshold were fitted for its own)")
    p.add_argument("--batch-entities", type=int, default=512, metavar="E",
                   help="entities per forward pass; lower it to save memory (default: %(default)s)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")
    _common(p)


def _cut_and_threshold(model, args) -> tuple[Cut, float | None]:
    """How a command cuts: the model's cut and threshold, with --cut, --cut-criterion, --cut-band and --threshold
    replacing their parts."""
    own = model.cut_
    cut = Cut(args.cut or own.rule, args.cut_criterion or own.criterion, tuple(args.cut_band or own.band))
    threshold = args.threshold if args.threshold is not None else model.threshold_
    if threshold is None and cut.rule == "threshold":
        raise SystemExit(f"error: --model {args.model} has no threshold; pass --threshold (or --cut adaptive), or "
                         "tune one first with 'cactus tune-threshold'")
    return cut, threshold


def _describe(cut: Cut, threshold: float | None) -> str:
    return f"threshold {threshold:.3f}" if cut.rule == "threshold" else f"the {cut.describe()}"


def cmd_predict(args) -> int:
    model = _load_model(args)
    cut, threshold = _cut_and_threshold(model, args)
    subsets = read_subsets(args.input)
    start = time.perf_counter()
    preds = model.predict(subsets, threshold=threshold, cut=cut, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    write_subsets(args.output, [s.with_labels([int(c) for c in p]) for s, p in zip(subsets, preds)])
    n = sum(len(s) for s in subsets)
    _say(args, f"clustered {len(subsets)} subsets ({n} entities) at {_describe(cut, threshold)} in "
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
        threshold, cut = None, None
    else:
        model = _load_model(args)
        cut, threshold = _cut_and_threshold(model, args)
        preds = model.predict(gold, threshold=threshold, cut=cut, progress=not args.quiet)
    report = evaluate_predictions(gold, preds)
    report["input"] = str(args.input)
    report["model"] = None if args.predictions else args.model
    report["predictions"] = args.predictions
    report["threshold"] = threshold
    report["cut"] = cut.to_dict() if cut else None
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
    start, stop, step = args.grid
    if not (np.isfinite(args.grid).all() and step > 0 and start <= stop):
        raise SystemExit(f"error: --grid {start} {stop} {step}: needs START <= STOP and STEP > 0")
    grid = np.round(np.arange(start, stop + step / 2, step), 6)
    if args.choose_cut:
        choice = model.tune_cut(subsets, grid=grid, progress=not args.quiet)
        curve, record = choice.curve, choice.curve.to_dict() | {"cut_choice": choice.to_dict()}
    else:
        curve = model.tune_threshold(subsets, grid=grid, progress=not args.quiet)
        record = curve.to_dict()
    scores = curve.scores_at_best()
    print(f"best threshold {curve.best_threshold:.3f}  {curve.objective} = {curve.best_score:.4f}  " +
          "  ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != curve.objective))
    if args.choose_cut:
        print(f"cut: {model.cut_.describe()}  {choice.objective} = {choice.best_score:.4f}")
    if args.curve:
        Path(args.curve).parent.mkdir(parents=True, exist_ok=True)
        Path(args.curve).write_text(json.dumps(record, indent=2) + "\n")
        _say(args, f"wrote the curve to {args.curve}")
    if args.save_to:
        model.save_pretrained(args.save_to)
        _say(args, f"saved the model with threshold {curve.best_threshold:.3f} and the cut "
                   f"({model.cut_.describe()}) to {args.save_to}")
    return 0


def _training_config(args, **overrides):
    """The training config: defaults, then the --config file (JSON or YAML), then the flags given."""
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
    record.update({f.name: getattr(args, f.name) for f in fields(TrainingConfig)
                   if f.metadata["cli"] and getattr(args, f.name) is not None})
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



def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")


def _command(sub, name: str, func, **texts) -> argparse.ArgumentParser:
    """A subcommand `name` that runs `func(args)`; `texts` are its help and description."""
    p = sub.add_parser(name, **texts)
    p.set_defaults(func=func)
    return p


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    """One flag per `TrainingConfig` field (--max-steps for max_steps), with its help text and default; a flag left
    out keeps the --config file's value, else the field's default."""
    hints = typing.get_type_hints(TrainingConfig)
    for f in fields(TrainingConfig):
        if not f.metadata["cli"]:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        kind = next((t for t in typing.get_args(kind) if t is not type(None)), kind)  # X | None -> X
        help_text = f"{f.metadata['help']} (default: {'none' if f.default is None else f.default})"
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name == "loss":
            p.add_argument(flag, choices=list(LOSSES), default=None, help=help_text)
        else:
            p.add_argument(flag, type=kind, default=None, metavar=f.name.upper(), help=help_text)


def _add_training_args(p: argparse.ArgumentParser, train_help: str, val_help: str, val_required: bool) -> None:
    p.add_argument("--train", required=True, metavar="T", help=train_help)
    p.add_argument("--val", required=val_required, default=None, metavar="V", help=val_help)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: training log, checkpoint, and the best model in DIR/best")
    p.add_argument("--config", default=None, metavar="CFG",
                   help="training config file (.json, .yaml) with TrainingConfig fields; flags override it")
    _add_training_flags(p)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    _add_model_args(p, threshold=False)


def _add_predict(sub) -> None:
    p = _command(sub, "predict", cmd_predict, help="cluster every subset of a file",
                 description="Cluster every subset of IN and write the subsets with integer cluster ids as "
                             "'labels' (in input order) to OUT, in the format its suffix names.")
    p.add_argument("input", metavar="IN", help="subsets to cluster (.jsonl, .csv or .parquet); labels ignored")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the predictions")
    _add_model_args(p)


def _add_evaluate(sub) -> None:
    p = _command(sub, "evaluate", cmd_evaluate,
                 help="score a model or a predictions file against labelled subsets",
                 description="Print AMI, ARI, NMI, RI and best-match precision/recall/F1 (mean and 95%% "
                             "confidence interval over subsets) of a model's predictions on IN, or of "
                             "--predictions against IN.")
    p.add_argument("input", metavar="IN", help="labelled subsets (.jsonl, .csv or .parquet)")
    p.add_argument("--predictions", default=None, metavar="P",
                   help="score this predictions file instead of running a model")
    p.add_argument("--report", default=None, metavar="R.json", help="write the full report (per subset too)")
    _add_model_args(p)


def _add_tune_threshold(sub) -> None:
    p = _command(sub, "tune-threshold", cmd_tune_threshold,
                 help="choose the clustering threshold on labelled validation subsets",
                 description="Cluster IN at every threshold of a grid (one linkage per subset) and pick "
                             "the one that maximises the objective averaged over subsets.")
    p.add_argument("input", metavar="IN", help="labelled validation subsets")
    p.add_argument("--objective", type=_objective_arg, default="ami+ari",
                   help="'+'-joined metrics to maximise: ami, ari, nmi, ri, precision, recall, f1 "
                        "(default: %(default)s; the paper's is nmi+ami+ri+ari)")
    grid = (float(DEFAULT_GRID[0]), float(DEFAULT_GRID[-1]), round(float(DEFAULT_GRID[1] - DEFAULT_GRID[0]), 6))
    p.add_argument("--grid", type=float, nargs=3, default=grid, metavar=("START", "STOP", "STEP"),
                   help="threshold grid, inclusive (default: %s %s %s)" % grid)
    p.add_argument("--choose-cut", action="store_true",
                   help="also choose between the threshold and the adaptive cut (criterion and band) by the same "
                        "objective; --save-to then saves the chosen cut")
    p.add_argument("--curve", default=None, metavar="C.json", help="write the whole curve as JSON")
    p.add_argument("--save-to", default=None, metavar="DIR", help="save the model with the chosen threshold")
    _add_model_args(p, threshold=False)


def _add_train(sub) -> None:
    p = _command(sub, "train", cmd_train, help="train the encoder on labelled subsets",
                 description="Fine-tune the encoder on labelled training subsets; every validation tunes the "
                             "threshold and the best model is kept with it in OUT/best. Runs under "
                             "'torchrun --nproc_per_node K' unchanged.")
    p.add_argument("--pretrained-from", default=None, metavar="DIR",
                   help="start from this model folder (e.g. the OUT/best of 'cactus pretrain'), and its s0")
    _add_training_args(p, "labelled training subsets", "labelled validation subsets", val_required=True)


def _add_pretrain(sub) -> None:
    p = _command(sub, "pretrain", cmd_pretrain, help="self-supervised pretraining on synthetic clusterings",
                 description="Pretrain the encoder on synthetic subsets made from the unique texts of T: each "
                             "cluster is copies of one seed text, changed by --augmentation. The paper "
                             "pretrained at --lr 1e-4.")
    p.add_argument("--subsets-per-epoch", type=int, default=8000, help="synthetic subsets per epoch (default: 8000)")
    p.add_argument("--augmentation", default="word_drop", choices=list(AUGMENTATIONS),
                   help="how a cluster's members are made from its seed text (default: word_drop, the paper's)")
    _add_training_args(p, "subsets whose texts form the pool (labels unused)",
                       "labelled validation subsets (default: synthetic ones from the same pool)", val_required=False)


def _add_data(sub) -> None:
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
    _common(b)
    b.set_defaults(func=cmd_data_build)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cactus", description="Context-aware supervised clustering of entity subsets.",
        epilog="Subsets are JSONL (one {\"id\", \"texts\", \"labels\"} object per line) or a long CSV/Parquet "
               "table with columns subset_id, text, label.")
    parser.add_argument("--version", action="version", version=f"cactus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_predict, _add_evaluate, _add_tune_threshold, _add_train, _add_pretrain, _add_data):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except (SubsetFormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
