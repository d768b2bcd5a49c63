"""The command line: a thin shell over `cactus.Cactus`, the readers and writers, and the benchmark builder.

Every command checks its options and outputs, builds its model (reading only its config) and reads its inputs before
it loads any weights or does any work; every error ends it with one line, `error: ...`, and an exit code by kind
(`EXIT_CODES`; docs/io.md). `--debug` shows the traceback as well. The options are declared in `cactus.cli_args`,
the checks of outputs and inputs made before any work are in `cactus.cli_checks`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import fields
from pathlib import Path


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"error: interrupted\n")
    os._exit(130)


if __name__ == "__main__" or Path(sys.argv[0]).name == "cactus":
    # Ctrl-C during the imports below ends quietly too; main() hands Ctrl-C back to Python.
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import numpy as np  # noqa: E402

from cactus.atomic import recover_dir, write_text  # noqa: E402
from cactus.cluster import Cut  # noqa: E402
from cactus.config import CONFIG_NAME, ModelFormatError  # noqa: E402
from cactus.data import SubsetFormatError  # noqa: E402
from cactus.data.io import layout_of  # noqa: E402
from cactus.data.subsets import require_labels  # noqa: E402
from cactus.data.tables import one_line  # noqa: E402
from cactus.train.config import TrainingConfig  # noqa: E402
from cactus.cli_checks import (  # noqa: E402
    CommandError,
    check_output_file,
    check_output_folder,
    check_run_folder,
    check_writable,
    clear_run,
    column_options,
    read_input,
)
from cactus.cli_args import (  # noqa: E402
    EXIT_DATA,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_MODEL,
    EXIT_USAGE,
    build_parser,
)

logger = logging.getLogger("cactus")
SERVE_ARGV = "CACTUS_SERVE_ARGV"  # `cactus serve --workers N`: its options, for each worker process (`worker_app`)


def _looks_like_path(name: str) -> bool:
    """A local path rather than a Hugging Face name ('name' or 'org/name')."""
    return (name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name) or Path(name).is_absolute())


def _load_model(args):
    """--model: a saved cactus folder, a shipped model's name ("default", "context-free"), or a bare Hugging Face
    encoder (then a threshold must be passed unless the command tunes one). --attention and --max-tokens replace the
    model's own. Only the model's config is read here (and its folder checked); the weights load later, in
    `_load_weights`."""
    import transformers

    from cactus.config import PACKAGED_MODELS
    from cactus.model import Cactus

    transformers.logging.disable_progress_bar()  # loading the weights takes a moment; its bar is noise

    # --batch-tokens only when given: an exported model has its own default
    common = {"device": args.device} | ({"batch_tokens": args.batch_tokens} if args.batch_tokens else {})
    name = args.model
    folder = Path(name)
    if name not in PACKAGED_MODELS:
        recover_dir(folder)  # put back a model folder whose save was killed, before deciding what it is
        if not folder.exists() and _looks_like_path(name):
            raise CommandError(f"--model {name}: no such folder", EXIT_MODEL)
        if folder.is_dir() and not (folder / CONFIG_NAME).is_file() and not (folder / "config.json").is_file():
            raise CommandError(f"--model {name}: neither a cactus model folder (no {CONFIG_NAME}) nor an encoder "
                               "folder (no config.json)", EXIT_MODEL)
    try:
        if name in PACKAGED_MODELS or (folder / CONFIG_NAME).is_file():
            return Cactus.from_pretrained(name, attention=args.attention,
                                          max_tokens=args.max_tokens,
                                          allow_attention_change=args.allow_attention_change, **common)
        return Cactus(backbone=name, attention=args.attention or "nia", max_tokens=args.max_tokens or 64, **common)
    except ModelFormatError as e:
        raise CommandError(str(e), EXIT_MODEL) from None
    except ValueError as e:  # the constructor's checks of --attention, --device and the like
        raise CommandError(str(e), EXIT_USAGE) from None


def _load_weights(model, args) -> None:
    """Load the encoder now, so that a model that cannot load fails before any work, as a model error."""
    try:
        model.encoder
    except Exception as e:  # transformers and safetensors raise many kinds for a damaged or absent encoder
        raise CommandError(f"--model {args.model}: cannot load the encoder ({one_line(e)})", EXIT_MODEL) from None


def _cut_and_threshold(model, args) -> tuple[Cut, float | None]:
    """How a command cuts: the model's cut and threshold, with --cut, --cut-criterion, --cut-band, --cut-centre and
    --threshold replacing their parts (the model's centre goes with its silhouette criterion only)."""
    own = model.cut_
    # a threshold given by hand means: cut there, unless --cut says otherwise
    rule = args.cut or ("threshold" if args.threshold is not None else own.rule)
    criterion = args.cut_criterion or own.criterion
    try:
        band = Cut(band=tuple(args.cut_band or own.band)).band
    except ValueError as e:
        raise CommandError(f"--cut-band: {e}") from None
    centre = own.centre if (rule, criterion) == ("adaptive", "silhouette") else 0.0
    try:
        cut = Cut(rule, criterion, band, centre if args.cut_centre is None else args.cut_centre)
    except ValueError as e:
        raise CommandError(f"--cut-centre: {e}") from None
    threshold = args.threshold if args.threshold is not None else model.threshold_
    if threshold is None and cut.rule == "threshold":
        where = "" if Path(args.model).exists() else " (no such folder here: taken as a Hugging Face encoder name)"
        raise CommandError(f"--model {args.model}{where} has no threshold; pass --threshold (or --cut adaptive), or "
                           "tune one first with 'cactus tune-threshold'")
    if args.threshold in (-1.0, 1.0) and cut.rule == "threshold":
        logger.warning("--threshold %g %s", args.threshold, "puts all of each subset in one cluster"
                       if args.threshold == -1.0 else "leaves only identical texts together")
    return cut, threshold


def _cut_words(cut: Cut, threshold: float | None) -> str:
    return f"threshold {threshold:.3f}" if cut.rule == "threshold" else f"the {cut.describe()}"


def _grid(args) -> np.ndarray:
    start, stop, step = args.grid
    if not (np.isfinite(args.grid).all() and step > 0 and start <= stop):
        raise CommandError(f"--grid {start:g} {stop:g} {step:g}: needs START <= STOP and STEP > 0")
    if not (-1.0 <= start and stop <= 1.0):
        raise CommandError(f"--grid {start:g} {stop:g} {step:g}: thresholds lie in [-1, 1]")
    if (stop - start) / step > 100_000:
        raise CommandError(f"--grid {start:g} {stop:g} {step:g}: over 100,000 thresholds; take a larger STEP")
    return np.round(np.arange(start, stop + step / 2, step), 6)


# ---- commands ----------------------------------------------------------------------------------------------------
def cmd_predict(args) -> int:
    from cactus.batch import predict_file

    if args.engine == "ray":
        return _predict_on_ray(args)
    columns = column_options(args, args.input)
    check_output_file(args.output, "-o", inputs=[args.input], subsets=True)
    model = _load_model(args)
    cut, threshold = _cut_and_threshold(model, args)
    _load_weights(model, args)
    done = predict_file(model, args.input, args.output, threshold=threshold, cut=cut, describe=args.describe,
                        chunk_subsets=args.chunk_subsets, resume=args.resume, progress=not args.quiet,
                        columns=columns)
    n = done.resumed_chunks
    resumed = f" (resumed after {n} answered chunk{'s' * (n != 1)})" if n else ""
    _say(args, f"clustered {done.subsets} subsets ({done.entities} entities) at {_cut_words(cut, threshold)} in "
               f"{done.seconds:.1f} s{resumed}; wrote {args.output}")
    return 0


def _predict_on_ray(args) -> int:
    try:
        from cactus.ray import input_layout, predict_dataset
    except ImportError as e:
        raise CommandError(f"--engine ray needs the ray extra: pip install -e \".[ray]\" ({one_line(e)})") from None
    if args.resume:
        raise CommandError("--engine ray: --resume is for --engine local (on Ray, failed tasks run again; a new run "
                           "writes the output folder anew)")
    try:
        input_layout(args.input)
    except ValueError as e:
        raise CommandError(f"--engine ray: {e}") from None
    columns = column_options(args, args.input, layout=input_layout)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CommandError(f"-o {out}: is a file; --engine ray writes a folder of Parquet files")
    model = _load_model(args)
    cut, threshold = _cut_and_threshold(model, args)
    start = time.perf_counter()
    rows = predict_dataset(model, args.input, out, threshold=threshold, cut=cut, actors=args.actors,
                           num_gpus=args.num_gpus, address=args.ray_address, columns=columns,
                           describe=args.describe)
    _say(args, f"clustered {rows} entities on Ray ({args.actors} actor(s)) at {_cut_words(cut, threshold)} in "
               f"{time.perf_counter() - start:.1f} s; wrote {out}/")
    return 0


def cmd_serve(args) -> int:
    from cactus.service import serve

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise CommandError(f"serve needs the service extra: pip install -e \".[serve]\" ({one_line(e)})") from None
    if args.workers == 1:
        serve(_service_app(args), args.host, args.port)
        return 0
    # Each worker process builds its own app from these same options (`worker_app`); the options and the model's
    # config are checked here first, so that a mistake fails once, before any worker starts.
    _cut_and_threshold(_load_model(args), args)
    os.environ[SERVE_ARGV] = json.dumps(args.argv)
    serve("cactus.cli:worker_app", args.host, args.port, workers=args.workers)
    return 0


def _service_app(args):
    """The service's app over the model of `args`, its weights loaded."""
    from cactus.service import ServiceLimits, create_app

    model = _load_model(args)
    cut, threshold = _cut_and_threshold(model, args)
    _load_weights(model, args)
    limits = ServiceLimits(**{f.name: getattr(args, f.name) for f in fields(ServiceLimits)})
    wait = None if args.no_batching else args.batch_wait_ms / 1000
    return create_app(model, limits, cut, threshold, wait)


def worker_app():
    """The app of one worker process of `cactus serve --workers N` (uvicorn calls it in each): the parent's options,
    and an equal share of the cores for its torch threads."""
    import torch

    args = build_parser().parse_args(json.loads(os.environ[SERVE_ARGV]))
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s: %(message)s")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    return _service_app(args)


def cmd_evaluate(args) -> int:
    from cactus.evaluate import evaluate_predictions, format_summary

    check_output_file(args.report, "--report", inputs=[args.input, args.predictions])
    gold, preds, model, cut, threshold = _labelled_input(args, "evaluation")
    if model is not None:
        preds = model.predict(gold, threshold=threshold, cut=cut, progress=not args.quiet)
    report = evaluate_predictions(gold, preds)
    report["input"] = str(args.input)
    report["model"] = None if args.predictions else args.model
    report["predictions"] = args.predictions
    report["threshold"] = threshold
    report["cut"] = cut.to_dict() if cut else None
    print(format_summary(report["summary"]))
    if args.report:
        write_text(args.report, json.dumps(report, indent=2) + "\n")
        _say(args, f"wrote {args.report}")
    return 0


def _labelled_input(args, purpose: str, check=None) -> tuple:
    """The labelled subsets of IN with either --predictions matched to them or the model (its weights loaded), as
    (gold, predictions or None, model or None, cut, threshold). `check(gold)` runs before any weights load."""
    from cactus.evaluate import match_predictions

    columns = column_options(args, args.input, args.predictions)
    model = preds = cut = threshold = None
    if not args.predictions:
        model = _load_model(args)
        cut, threshold = _cut_and_threshold(model, args)
    gold = read_input(args.input, columns)
    require_labels(gold, purpose)
    if check is not None:
        check(gold)
    if args.predictions:
        preds, reordered = match_predictions(gold, read_input(args.predictions, columns), source=args.predictions)
        if reordered:
            _say(args, f"matched the entities of {reordered} subsets by content (they were in another order)")
    else:
        _load_weights(model, args)
    return gold, preds, model, cut, threshold


def cmd_report(args) -> int:
    from cactus.report import subset_groups, write_report

    check_output_file(args.output, "-o", inputs=[args.input, args.predictions])
    gold, preds, model, cut, threshold = _labelled_input(
        args, "a report", check=lambda gold: subset_groups(gold, args.group_by, source=args.input))
    about = {"input": str(args.input), "model": None if args.predictions else args.model,
             "predictions": args.predictions}
    start = time.perf_counter()
    write_report(args.output, gold, predictions=preds, model=model, threshold=threshold, cut=cut, worst=args.worst,
                 group_by=args.group_by, source=args.input, about=about, progress=not args.quiet)
    _say(args, f"reported on {len(gold)} subsets in {time.perf_counter() - start:.1f} s; wrote {args.output} "
               f"({Path(args.output).stat().st_size / 1e6:.2f} MB)")
    return 0


def cmd_tune_threshold(args) -> int:
    grid = _grid(args)
    columns = column_options(args, args.input)
    check_output_file(args.curve, "--curve", inputs=[args.input])
    check_output_folder(args.save_to, "--save-to")
    model = _load_model(args)
    model.config.objective = args.objective
    subsets = read_input(args.input, columns)
    require_labels(subsets, "threshold tuning")
    _load_weights(model, args)
    if args.choose_weight:
        weights = model.tune_interpolation(subsets, grid=grid, progress=not args.quiet)
        print("interpolation weight: " + "  ".join(f"{w:g}: {model.config.objective} = {score:.4f}"
                                                   for w, score in weights.items())
              + f"  (kept {model.interpolation_weight_:g})")
    if args.choose_cut or args.choose_weight:
        choice = model.cut_choice_ if args.choose_weight else model.tune_cut(subsets, grid=grid,
                                                                             progress=not args.quiet)
        curve, record = choice.curve, choice.curve.to_dict() | {"cut_choice": choice.to_dict()}
    else:
        curve = model.tune_threshold(subsets, grid=grid, progress=not args.quiet)
        record = curve.to_dict()
    scores = curve.scores_at_best()
    print(f"best threshold {curve.best_threshold:.3f}  {curve.objective} = {curve.best_score:.4f}  " +
          "  ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != curve.objective))
    if args.choose_cut or args.choose_weight:
        print(f"cut: {model.cut_.describe()}  {choice.objective} = {choice.best_score:.4f}")
    if args.curve:
        write_text(args.curve, json.dumps(record, indent=2) + "\n")
        _say(args, f"wrote the curve to {args.curve}")
    if args.save_to:
        model.save_pretrained(args.save_to)
        _say(args, f"saved the model with threshold {curve.best_threshold:.3f} and the cut "
                   f"({model.cut_.describe()}) to {args.save_to}")
    return 0


def cmd_export(args) -> int:
    check_output_folder(args.output, "-o")
    model = _load_model(args)
    if model.config.onnx:
        raise CommandError(f"{args.model}: already an exported graph; export the model it came from")
    if model.config.attention == "fia":
        raise CommandError(f"{args.model}: attention 'fia' has no static graph; export supports nia and sia")
    _load_weights(model, args)
    model.export(args.output, format=args.format, quantize=args.quantize)
    _say(args, f"exported {args.model} ({model.config.attention}, {args.quantize or 'fp32'} weights) as an ONNX "
               f"graph to {args.output}")
    return 0


def _config_file(path: Path) -> dict:
    """The --config file's mapping of field to value."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            record = yaml.safe_load(text) or {}
        else:
            record = json.loads(text)
    except FileNotFoundError:
        raise CommandError(f"--config {path}: no such file") from None
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, or not JSON
        raise CommandError(f"--config {path}: {one_line(e)}") from None
    except Exception as e:  # yaml's errors are its own kind
        raise CommandError(f"--config {path}: not valid YAML ({one_line(e)})") from None
    if not isinstance(record, dict):
        raise CommandError(f"--config {path}: a training config must be a mapping of field to value")
    return record


def _training_config(args):
    """The training config: defaults, then the --config file (JSON or YAML), then the flags given."""
    record: dict = _config_file(Path(args.config)) if args.config else {}
    record.update({f.name: getattr(args, f.name) for f in fields(TrainingConfig)
                   if f.metadata["cli"] and getattr(args, f.name) is not None})
    record["progress"] = not args.quiet
    try:
        return TrainingConfig.from_dict(record)
    except (TypeError, ValueError) as e:
        where = f" ({args.config})" if args.config else ""
        raise CommandError(f"training config{where}: {e}") from None


def cmd_train(args) -> int:
    check_run_folder(args)
    config = _training_config(args)
    columns = column_options(args, args.train, args.val)
    if args.pretrained_from:
        args.model = args.pretrained_from
    model = _load_model(args)
    train, val = read_input(args.train, columns), read_input(args.val, columns)
    require_labels(train, "training")
    require_labels(val, "validation")
    _load_weights(model, args)
    if args.overwrite and _main_process():
        clear_run(Path(args.out))
    model.fit(train, val, config=config, output_dir=args.out, resume=args.resume)
    summary = model.training_summary_
    if _main_process():
        s0 = f", s0 {model.config.neutral:.3f}" if model.config.neutral is not None else ""
        print(f"best {summary['objective']} {summary['best_score']:.4f} at step {summary['best_step']}, threshold "
              f"{model.threshold_:.2f}{s0}")
    _say(args, f"the best model is in {Path(args.out) / 'best'}; log: {Path(args.out) / 'train_log.jsonl'}")
    return 0


def cmd_pretrain(args) -> int:
    from cactus.selfsup import unique_texts
    from cactus.train import Trainer

    check_run_folder(args)
    config = _training_config(args)
    columns = column_options(args, args.train, args.val)
    model = _load_model(args)
    pool = unique_texts(read_input(args.train, columns))
    val = read_input(args.val, columns) if args.val else None
    if val is not None:
        require_labels(val, "validation")
    _load_weights(model, args)
    if args.overwrite and _main_process():
        clear_run(Path(args.out))
    summary = Trainer(model, config, args.out).pretrain(pool, args.subsets_per_epoch, val_subsets=val,
                                                        augmentation=args.augmentation, resume=args.resume)
    if _main_process():
        print(f"pretrained on synthetic subsets of {len(pool)} texts: best {summary['objective']} "
              f"{summary['best_score']:.4f} at step {summary['best_step']}")
    _say(args, f"the pretrained model is in {Path(args.out) / 'best'}; fine-tune it with "
               f"'cactus train --pretrained-from {Path(args.out) / 'best'} ...'")
    return 0


def cmd_label(args) -> int:
    from cactus.label import ChatClient, EndpointError, Prompt, PromptError, label_file
    from cactus.label.cache import DEFAULT_FOLDER
    from cactus.label.client import check_endpoint

    try:
        check_endpoint(args.endpoint)
    except ValueError as e:
        raise CommandError(f"--endpoint {args.endpoint}: {e}") from None
    try:
        prompt = Prompt.from_file(args.prompt) if args.prompt else Prompt()
    except FileNotFoundError:
        raise CommandError(f"--prompt {args.prompt}: no such file") from None
    except (OSError, PromptError) as e:
        raise CommandError(f"--prompt {args.prompt}: {getattr(e, 'strerror', None) or e}") from None
    api_key = os.environ.get(args.api_key_env or "OPENAI_API_KEY") or None
    if args.api_key_env and api_key is None:
        raise CommandError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    columns = column_options(args, args.input)
    check_output_file(args.output, "-o", inputs=[args.input], subsets=True)
    if layout_of(args.output) != "jsonl":
        raise CommandError(f"-o {args.output}: labels are written as JSONL (.jsonl, .jsonl.gz)")
    check_output_file(args.summary, "--summary", inputs=[args.input, args.output])
    cache = Path(args.cache) if args.cache else Path(args.output).parent / DEFAULT_FOLDER
    if cache.exists() and not cache.is_dir():
        raise CommandError(f"--cache {cache}: is a file; name a folder")
    check_writable(cache / "x", "--cache")
    client = ChatClient(args.endpoint, args.llm, api_key=api_key, temperature=args.temperature,
                        timeout=args.timeout, retries=args.retries, backoff=args.backoff,
                        concurrency=args.concurrency)
    try:
        summary = label_file(args.input, args.output, client, prompt=prompt, cache=cache, max_reasks=args.max_reasks,
                             retry_failed=args.retry_failed, prices=(args.price_prompt, args.price_completion),
                             progress=not args.quiet, columns=columns)
    except EndpointError as e:
        raise CommandError(f"{e}; the answers received are kept in {cache}", EXIT_USAGE) from None
    if args.summary:
        write_text(args.summary, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    run = summary["this_run"]
    failed = f"; {summary['failed']} failed ('label_error' in {args.output})" if summary["failed"] else ""
    _say(args, f"labelled {summary['labelled']} of {summary['subsets']} subsets{failed}: "
               f"{summary['questions']['asked']} asked in {summary['requests']} requests, "
               f"{summary['questions']['from_cache']} from the cache; {run['prompt_tokens']:,} prompt and "
               f"{run['completion_tokens']:,} completion tokens, cost {run['cost']:g}; wrote {args.output}")
    return 0


def cmd_data_build(args) -> int:
    from cactus.data.benchmarks import FAMILIES, build_benchmarks, format_stats

    families = args.families or list(FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise CommandError(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CommandError(f"--out {args.out}: is a file; name a folder")
    check_writable(Path(args.out) / "x", "--out")
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


COMMANDS = {"predict": cmd_predict, "serve": cmd_serve, "evaluate": cmd_evaluate, "tune-threshold": cmd_tune_threshold,
            "train": cmd_train, "pretrain": cmd_pretrain, "label": cmd_label, "export": cmd_export,
            "data build": cmd_data_build, "report": cmd_report}


def _error_line(error: Exception) -> tuple[int, str]:
    """The exit code and the one-line message of an error that ended a command."""
    if isinstance(error, CommandError):
        return error.code, str(error)
    if isinstance(error, (SubsetFormatError, FileNotFoundError)):
        return EXIT_DATA, str(error)
    if isinstance(error, ModelFormatError):
        return EXIT_MODEL, str(error)
    if isinstance(error, ValueError):  # the library's checks of its arguments
        return EXIT_USAGE, str(error)
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename and str(error.filename) not in str(error.strerror) else ""
        return EXIT_IO, f"{where}{error.strerror or error}"
    return EXIT_INTERNAL, (f"internal error: {type(error).__name__}: {error} (run again with --debug to see where, "
                           "and please report it)")


def _interrupt(signum, frame) -> None:
    """Ctrl-C while working: raise KeyboardInterrupt, which unwinds and cleans up. Python prints and drops an
    exception raised in a finalizer (`__del__`, run whenever garbage is collected, as while a library imports), so
    there the signal is sent again a moment later instead, to land outside it."""
    caller = frame
    while caller is not None:
        if caller.f_code.co_name == "__del__":
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        caller = caller.f_back
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, _interrupt)  # from here on, Ctrl-C unwinds and cleans up
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return COMMANDS[args.run](args)
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        code, message = _error_line(e)
        if args.debug:
            traceback.print_exc()
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
