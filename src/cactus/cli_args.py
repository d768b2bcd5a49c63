"""The command line's declarations: every subcommand, its options and their checks, and the exit codes.

`cactus.cli` runs the commands (`COMMANDS`, by the name each parser sets as `run`); this module only says what a
command line may hold, so that `cactus COMMAND --help` reads as the one list of options.
"""

from __future__ import annotations

import argparse
import math
import typing
from dataclasses import fields

from cactus.cluster import CRITERIA, CUTS, DEFAULT_GRID, check_threshold, parse_objective
from cactus.cluster.cut import DEFAULT_BAND, Cut
from cactus.data.tables import ROLES
from cactus.encoder import ATTENTION_MODES
from cactus.metrics import METRICS
from cactus.selfsup import AUGMENTATIONS
from cactus.train.config import INTERPOLATION_WEIGHTS, TrainingConfig
from cactus.version import __version__

DEFAULT_DATA_DIR = "../shared/data"
EXIT_INTERNAL, EXIT_USAGE, EXIT_DATA, EXIT_MODEL, EXIT_IO, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130
EXIT_CODES = {
    0: "done",
    EXIT_INTERNAL: "internal error: a bug in cactus (--debug shows where; please report it)",
    EXIT_USAGE: "usage: an option is wrong, or an output cannot or must not be written (checked before any work)",
    EXIT_DATA: "data: an input file is missing, unreadable or malformed (the message names file, line, subset, "
               "entity)",
    EXIT_MODEL: "model: a model folder or encoder cannot be found or loaded",
    EXIT_IO: "the system refused a write or a read while working (disk full, permissions)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); files already written are whole, no half-written file is left",
}


def _threshold_arg(text: str) -> float:
    try:
        return check_threshold(text, "--threshold")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _centre_arg(text: str) -> float:
    try:
        return Cut("adaptive", centre=text).centre
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _objective_arg(text: str) -> str:
    try:
        parse_objective(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _count_arg(least: int):
    """An argparse type: a whole number >= `least`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {least}, got {text!r}")
        return value

    return parse


def _number_arg(least: float, strict: bool = False):
    """An argparse type: a finite number >= `least` (> `least` when `strict`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < least or (strict and value == least):
            raise argparse.ArgumentTypeError(f"must be a number {'>' if strict else '>='} {least:g}, got {text!r}")
        return value

    return parse


def _choices_help(choices: dict[str, str]) -> str:
    return "; ".join(f"{name} = {what}" for name, what in choices.items())


def _add_model_args(p: argparse.ArgumentParser, threshold: bool = True) -> None:
    p.add_argument("--model", default="default", metavar="M",
                   help="a saved cactus model folder; 'default' (the shipped model, offline); 'context-free' "
                        "(the pretrained all-MiniLM-L6-v2 encoder alone, offline, with its shipped cut); or any "
                        "Hugging Face encoder name or folder (default: %(default)s)")
    if threshold:
        p.add_argument("--threshold", type=_threshold_arg, default=None, metavar="T",
                       help="cut every subset at T: clusters merge while their average cosine similarity is at "
                            "least T, in [-1, 1] (the threshold cut, unless --cut says otherwise; with --cut "
                            "adaptive, T is its fallback)")
        p.add_argument("--cut", choices=list(CUTS), default=None,
                       help=f"override the model's cut: {_choices_help(CUTS)} (default: the model's)")
        p.add_argument("--cut-criterion", choices=list(CRITERIA), default=None,
                       help=f"the adaptive cut's criterion: {_choices_help(CRITERIA)} (default: the model's, "
                            "else silhouette)")
        p.add_argument("--cut-band", type=_threshold_arg, nargs=2, default=None, metavar=("LOW", "HIGH"),
                       help="the thresholds whose cuts the adaptive cut chooses among (default: the model's, else "
                            f"{DEFAULT_BAND[0]} {DEFAULT_BAND[1]})")
        p.add_argument("--cut-centre", type=_centre_arg, default=None, metavar="C",
                       help="the adaptive silhouette's share, in [0, 1], of each subset's mean embedding removed "
                            "before its distances: shared context counts less (default: the model's, else 0)")
    p.add_argument("--max-tokens", type=_count_arg(2), default=None, metavar="K",
                   help="token limit per entity, special tokens included; longer texts are cut and counted "
                        "(default: the model's, 64 for a bare encoder)")
    p.add_argument("--attention", choices=list(ATTENTION_MODES), default=None,
                   help="how the entities of a subset see each other while encoded: "
                        f"{_choices_help(ATTENTION_MODES)} (default: the model's; nia for a bare encoder)")
    p.add_argument("--allow-attention-change", action="store_true",
                   help="run a trained model with another --attention than it was trained with (it warns: its "
                        "weights and threshold were fitted for its own)")
    p.add_argument("--batch-tokens", type=_count_arg(1), default=None, metavar="T",
                   help="real tokens per forward pass (whole subsets together, nothing padded); lower it to save "
                        "memory (default: 8192 for NIA and FIA, 4096 for SIA and for an exported ONNX model)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")
    _common(p)


# --subset-id-column, --text-column, --label-column, --entity-id-column: a table's names for the column roles, the
# flag named after the role's default name, as the readers' `columns` mapping is keyed.
COLUMN_FLAGS = {role: f"--{role.replace('_', '-')}-column" for role in ROLES}


def _add_column_args(p: argparse.ArgumentParser) -> None:
    """The names a command's CSV and Parquet inputs give the columns cactus reads (docs/io.md)."""
    what = {"subset_id": "the subset ids", "text": "the entity texts", "label": "the true clusters",
            "entity_id": "the entities' own ids"}
    group = p.add_argument_group(
        "column names of a table", "A CSV or Parquet input may name its columns otherwise; a table written from it "
        "keeps its names (predictions go to 'cluster_id'). JSONL fields have fixed names.")
    for role, flag in COLUMN_FLAGS.items():
        group.add_argument(flag, default=None, metavar="NAME", help=f"the column of {what[role]} (default: {role})")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    # SUPPRESS: a subcommand's default must not undo `cactus --debug COMMAND`
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, show the traceback too")


def _command(sub, name: str, **texts) -> argparse.ArgumentParser:
    """A subcommand `name`, run by `cactus.cli.COMMANDS[name]`; `texts` are its help and description."""
    p = sub.add_parser(name, **texts)
    p.set_defaults(run=name)
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
        elif f.metadata["choices"]:
            p.add_argument(flag, choices=list(f.metadata["choices"]), default=None, help=help_text)
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
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out that holds a run, removing that run's log, checkpoint and best "
                        "model (without it, or --resume, such an --out is refused)")
    _add_column_args(p)
    _add_model_args(p, threshold=False)


def _add_predict(sub) -> None:
    p = _command(sub, "predict", help="cluster every subset of a file",
                 description="Cluster every subset of IN and write it to OUT, in the format its suffix names: "
                             "every input field kept, rows in input order, and the integer cluster ids added as "
                             "'cluster_ids' (JSONL) or a 'cluster_id' column (CSV, Parquet).")
    p.add_argument("input", metavar="IN", help="subsets to cluster (.jsonl, .jsonl.gz, .csv or .parquet); labels "
                                                 "ignored")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the predictions")
    p.add_argument("--describe", action="store_true",
                   help="also describe the clusters: in JSONL a 'clusters' list per subset (id, name, size, members, "
                        "representative, top_terms) and a 'cohesion' list; in a table 'cluster_name' and 'cohesion' "
                        "columns (docs/io.md)")
    p.add_argument("--chunk-subsets", type=_count_arg(1), default=1000, metavar="N",
                   help="subsets read, encoded and saved at a time: memory holds one chunk, and an interrupted run "
                        "keeps its answered chunks beside OUT (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run to OUT from its last answered chunk (same input, model and "
                        "options); the output is what an uninterrupted run writes")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local = this process, streamed in chunks; ray = Ray Data, a pool of actors with one model "
                        "each, on this machine or --ray-address: IN is JSONL (.jsonl.gz too) or Parquet (a file, or "
                        "a folder of them), OUT a folder of Parquet files, one entity per row (needs the ray extra; "
                        "docs/batch.md) (default: %(default)s)")
    p.add_argument("--ray-address", default=None, metavar="A",
                   help="with --engine ray: the cluster to run on, e.g. ray://head:10001 or auto (default: a local "
                        "cluster on this machine)")
    p.add_argument("--actors", type=_count_arg(1), default=1, metavar="N",
                   help="with --engine ray: models running at once, one per actor (default: %(default)s)")
    p.add_argument("--num-gpus", type=float, default=0, metavar="G",
                   help="with --engine ray: GPUs per actor (default: %(default)s)")
    _add_column_args(p)
    _add_model_args(p)


def _add_serve(sub) -> None:
    p = _command(sub, "serve", help="answer clustering requests over HTTP",
                 description="Serve the model over HTTP (FastAPI + uvicorn): POST /v1/cluster, GET /healthz, "
                             "/readyz, /v1/model and /docs. One process holds one model; see docs/service.md.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=_count_arg(1), default=8000, help="port (default: %(default)s)")
    from cactus.service import ServiceLimits

    for f in fields(ServiceLimits):
        p.add_argument("--" + f.name.replace("_", "-"), type=_count_arg(1), default=f.default, metavar="N",
                       help=f"most {f.metadata['help']}; more answers 413 (default: %(default)s)")
    p.add_argument("--batch-wait-ms", type=_count_arg(0), default=5, metavar="MS",
                   help="how long a batch of concurrent requests waits for more before it encodes (default: "
                        "%(default)s)")
    p.add_argument("--no-batching", action="store_true", help="encode every request alone")
    p.add_argument("--workers", type=_count_arg(1), default=1, metavar="N",
                   help="worker processes, each with its own copy of the model and an equal share of the cores "
                        "(default: %(default)s)")
    _add_model_args(p)


def _add_evaluate(sub) -> None:
    p = _command(sub, "evaluate",
                 help="score a model or a predictions file against labelled subsets",
                 description="Print AMI, ARI, NMI, RI and best-match, pairwise and B-cubed precision/recall/F1 "
                             "(mean and 95%% confidence interval over subsets, clipped to the metric's range) of a "
                             "model's predictions on IN, or of --predictions against IN.")
    p.add_argument("input", metavar="IN", help="labelled subsets (.jsonl, .csv or .parquet)")
    p.add_argument("--predictions", default=None, metavar="P",
                   help="score this predictions file instead of running a model")
    p.add_argument("--report", default=None, metavar="R.json", help="write the full report (per subset too)")
    _add_column_args(p)
    _add_model_args(p)


def _add_report(sub) -> None:
    p = _command(sub, "report", help="write an HTML report of how a model or a predictions file clusters IN",
                 description="Write one self-contained HTML page (no script, nothing fetched when viewed) on a "
                             "model's predictions on the labelled subsets of IN, or on --predictions: the summary "
                             "metrics with 95% intervals, the threshold curve (with a model), the metrics per group, "
                             "every subset by AMI, and the worst subsets opened: similarity heatmap (co-assignment "
                             "without a model), dendrogram and cut, and their split and merge errors in words "
                             "(docs/report.md).")
    p.add_argument("input", metavar="IN", help="labelled subsets (.jsonl, .jsonl.gz, .csv or .parquet)")
    p.add_argument("--predictions", default=None, metavar="P",
                   help="report on this predictions file (matched to IN by subset id, then entity id or text) "
                        "instead of running a model")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the HTML file to write, e.g. report.html")
    p.add_argument("--worst", type=_count_arg(0), default=10, metavar="K",
                   help="how many of the worst subsets (lowest AMI) to open (default: %(default)s)")
    p.add_argument("--group-by", default=None, metavar="FIELD",
                   help="break the metrics down by this per-subset field of IN (a JSONL field, or a table column "
                        "with one value per subset) (default: the subset id's prefix before '/', when every id has "
                        "one)")
    _add_column_args(p)
    _add_model_args(p)


def _add_tune_threshold(sub) -> None:
    p = _command(sub, "tune-threshold",
                 help="choose the clustering threshold on labelled validation subsets",
                 description="Cluster IN at every threshold of a grid (one linkage per subset) and pick "
                             "the one that maximises the objective averaged over subsets.")
    p.add_argument("input", metavar="IN", help="labelled validation subsets")
    p.add_argument("--objective", type=_objective_arg, default="ami+ari",
                   help=f"'+'-joined metrics to maximise: {', '.join(METRICS)} "
                        "(default: %(default)s; the paper's is nmi+ami+ri+ari)")
    grid = (float(DEFAULT_GRID[0]), float(DEFAULT_GRID[-1]), round(float(DEFAULT_GRID[1] - DEFAULT_GRID[0]), 6))
    p.add_argument("--grid", type=float, nargs=3, default=grid, metavar=("START", "STOP", "STEP"),
                   help="threshold grid, inclusive (default: %s %s %s)" % grid)
    p.add_argument("--choose-cut", action="store_true",
                   help="also choose between the threshold and the adaptive cut (criterion and band) by the same "
                        "objective; --save-to then saves the chosen cut")
    p.add_argument("--choose-weight", action="store_true",
                   help="also choose how much of the training's move from the start to keep (the interpolation "
                        "weight, `Cactus.tune_interpolation`: %s), each with its own cut, by the same objective; "
                        "implies --choose-cut" % ", ".join(f"{w:g}" for w in INTERPOLATION_WEIGHTS))
    p.add_argument("--curve", default=None, metavar="C.json", help="write the whole curve as JSON")
    p.add_argument("--save-to", default=None, metavar="DIR", help="save the model with the chosen threshold")
    _add_column_args(p)
    _add_model_args(p, threshold=False)


def _add_train(sub) -> None:
    p = _command(sub, "train", help="train the encoder on labelled subsets",
                 description="Fine-tune the encoder on labelled training subsets; every validation tunes the "
                             "threshold and the best model is kept with it in OUT/best. Runs under "
                             "'torchrun --nproc_per_node K' unchanged.")
    p.add_argument("--pretrained-from", default=None, metavar="DIR",
                   help="start from this model folder (e.g. the OUT/best of 'cactus pretrain'), and its s0")
    _add_training_args(p, "labelled training subsets", "labelled validation subsets", val_required=True)


def _add_pretrain(sub) -> None:
    p = _command(sub, "pretrain", help="self-supervised pretraining on synthetic clusterings",
                 description="Pretrain the encoder on synthetic subsets made from the unique texts of T: each "
                             "cluster is copies of one seed text, changed by --augmentation. The paper "
                             "pretrained at --lr 1e-4.")
    p.add_argument("--subsets-per-epoch", type=int, default=8000, help="synthetic subsets per epoch (default: 8000)")
    p.add_argument("--augmentation", default="word_drop", choices=list(AUGMENTATIONS),
                   help="how a cluster's members are made from its seed text (default: word_drop, the paper's)")
    _add_training_args(p, "subsets whose texts form the pool (labels unused)",
                       "labelled validation subsets (default: synthetic ones from the same pool)", val_required=False)


def _add_label(sub) -> None:
    p = _command(sub, "label", help="label subsets with a large language model",
                 description="Ask an OpenAI-compatible chat-completions endpoint (POST URL/chat/completions) to "
                             "group the entities of every subset of IN, and write OUT (JSONL): every input field "
                             "kept, rows in input order, and 'labels' (each entity's cluster) with 'label_names' "
                             "(the model's name of each cluster), or 'label_error' where no valid grouping came. "
                             "Answers are cached as they arrive: a rerun, or a run after a crash, asks only what is "
                             "not answered yet. See docs/label.md.")
    p.add_argument("input", metavar="IN", help="subsets to label (.jsonl, .jsonl.gz, .csv or .parquet), without "
                                                 "labels")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the labelled subsets "
                                                                          "(.jsonl or .jsonl.gz)")
    p.add_argument("--endpoint", required=True, metavar="URL",
                   help="the API's base URL, before /chat/completions: https://api.openai.com/v1, "
                        "http://127.0.0.1:8080/v1 (llama.cpp), http://127.0.0.1:11434/v1 (Ollama), ...")
    p.add_argument("--llm", required=True, metavar="NAME", help="the model's name at the endpoint")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="the environment variable that holds the API key, sent as a bearer token and written "
                        "nowhere (default: OPENAI_API_KEY when it is set; none for a local server)")
    p.add_argument("--prompt", default=None, metavar="FILE",
                   help="a prompt template file (UTF-8) with $entities (the numbered texts) and optionally $count, "
                        "instead of the shipped one (docs/label.md)")
    p.add_argument("--temperature", type=_number_arg(0), default=0.0, metavar="T",
                   help="sampling temperature (default: %(default)s)")
    p.add_argument("--max-reasks", type=_count_arg(0), default=2, metavar="N",
                   help="most times a reply without a valid grouping (an entity missing or placed twice, a number "
                        "that is no entity's) goes back to the model with what is wrong; then the subset is a "
                        "failure (default: %(default)s)")
    p.add_argument("--retry-failed", action="store_true",
                   help="ask again the subsets whose cached answer stayed invalid (requests that failed are always "
                        "asked again)")
    p.add_argument("--concurrency", type=_count_arg(1), default=4, metavar="K",
                   help="most requests in flight at once (default: %(default)s)")
    p.add_argument("--timeout", type=_number_arg(0, strict=True), default=60.0, metavar="S",
                   help="seconds to wait to connect, to send, and for each read of an answer (default: "
                        "%(default)s)")
    p.add_argument("--retries", type=_count_arg(0), default=4, metavar="N",
                   help="tries after the first on a 408, 429 or 5xx answer, a timeout or a broken connection "
                        "(default: %(default)s)")
    p.add_argument("--backoff", type=_number_arg(0), default=1.0, metavar="S",
                   help="seconds before the first retry, doubled at each next one, unless the server's "
                        "Retry-After says otherwise (default: %(default)s)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="the answers folder, one file per question, which a rerun reads instead of asking "
                        "(default: llm-cache beside OUT)")
    p.add_argument("--summary", default=None, metavar="S.json",
                   help="write the account: subsets labelled and failed, requests, re-asks, retries, tokens, cost")
    p.add_argument("--price-prompt", type=_number_arg(0), default=0.0, metavar="P",
                   help="cost of 1,000 prompt tokens, for the account (default: %(default)s)")
    p.add_argument("--price-completion", type=_number_arg(0), default=0.0, metavar="P",
                   help="cost of 1,000 completion tokens, for the account (default: %(default)s)")
    _add_column_args(p)
    _common(p)


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
    b.set_defaults(run="data build")


class _Parser(argparse.ArgumentParser):
    """Option errors in one line, with the usage exit code."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see '{self.prog} --help')\n")


def _add_export(sub) -> None:
    p = _command(sub, "export",
                 help="export a model as an ONNX graph for fast CPU inference",
                 description="Write MODEL as a cactus model folder whose encoder is one ONNX graph run by onnxruntime "
                             "(NIA or SIA; a LoRA adapter is merged into it): config, threshold, cut and model card "
                             "as saved, with model.onnx and the tokenizer in place of the weights. Use it as any "
                             "model: cactus predict --model DIR.")
    p.add_argument("model", metavar="MODEL",
                   help="a saved cactus model folder, 'default', 'context-free', or a Hugging Face encoder")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the exported model folder")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the graph format (default: %(default)s)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="quantise the weight matrices to int8 (onnxruntime's dynamic quantisation; default: fp32)")
    p.set_defaults(attention=None, max_tokens=None, allow_attention_change=False, batch_tokens=None, device="cpu")
    _common(p)


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:<4} {what}" for code, what in EXIT_CODES.items())
    parser = _Parser(
        prog="cactus", description="Context-aware supervised clustering of entity subsets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Subsets are JSONL (one {\"id\", \"texts\", \"labels\"} object per line) or a long CSV/Parquet table\n"
               "with columns subset_id, text, label. Predictions keep every input field and row order and add\n"
               "'cluster_ids' (a 'cluster_id' column); see docs/io.md.\n\n"
               f"Every error is one line 'error: ...'. Exit codes:\n{codes}")
    parser.add_argument("--version", action="version", version=f"cactus {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_predict, _add_evaluate, _add_tune_threshold, _add_train, _add_pretrain, _add_label, _add_export,
                _add_data, _add_serve, _add_report):
        add(sub)
    return parser
