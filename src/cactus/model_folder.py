"""Reading a saved model folder (what `Cactus.save_pretrained` writes): its config, threshold curve and cut choice,
with every file it names checked before any weights load, so that a damaged folder fails at once with a
ModelFormatError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

from cactus.atomic import recover_dir
from cactus.cluster import CutChoice, ThresholdCurve
from cactus.config import BACKBONE_DIR, CONFIG_NAME, SCHEMA_VERSION, TOKENIZER_DIR, CactusConfig, ModelFormatError
from cactus.encoder import ADAPTER_DIR
from cactus.encoder import adapter as lora
from cactus.encoder.backbone import DEFAULT_ALIASES
from cactus.version import __version__


def read_model_folder(path: Path) -> tuple[CactusConfig, ThresholdCurve | None, CutChoice | None]:
    """The config, threshold curve and cut choice saved in a model folder (recovering an interrupted save first).
    A folder that is there but cannot be loaded raises ModelFormatError naming the file; its weights' header and its
    encoder config are checked here, so that a damaged folder fails before any work."""
    recover_dir(path)
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: not a cactus model folder (no {CONFIG_NAME})")
    try:
        record = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{cfg_file}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (UnicodeDecodeError, RecursionError):
        raise ModelFormatError(f"{cfg_file}: not a JSON text") from None
    if not isinstance(record, dict) or "config" not in record:
        raise ModelFormatError(f"{cfg_file}: missing key 'config' (not a cactus model config)")
    version = record.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{cfg_file}: 'schema_version' must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ModelFormatError(f"{cfg_file}: schema version {version} is newer than this cactus ({__version__}) "
                               f"reads ({SCHEMA_VERSION}); upgrade cactus")
    config = CactusConfig.from_dict(record["config"], source=str(cfg_file))
    try:
        curve = ThresholdCurve.from_dict(record["threshold_curve"]) if record.get("threshold_curve") else None
        choice = CutChoice.from_dict(record["cut_choice"], curve) if record.get("cut_choice") else None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelFormatError(f"{cfg_file}: malformed 'threshold_curve' or 'cut_choice' ({e!r})") from None
    # Without backbone/, the installed default backbone loads by its name (as `save_pretrained` leaves it): only
    # for an untrained model, or an adapter on it.
    if config.onnx:
        _check_onnx_folder(path, config.onnx["file"])
        return config, curve, choice
    by_name = config.backbone in DEFAULT_ALIASES and (config.adapter or not config.trained)
    if (path / BACKBONE_DIR).exists() or not by_name:
        _check_backbone_folder(path / BACKBONE_DIR)
    if config.adapter:
        _check_adapter_folder(path / ADAPTER_DIR)
    return config, curve, choice


def _check_onnx_folder(folder: Path, name: str) -> None:
    """ModelFormatError naming the file unless `folder` holds the graph file `name` and a tokenizer (the graph itself
    is read when the model first encodes)."""
    if Path(name).name != name:
        raise ModelFormatError(f"{folder / CONFIG_NAME}: the graph's file name {name!r} must be a plain file name")
    for required in (folder / name, folder / TOKENIZER_DIR):
        if not required.exists():
            raise ModelFormatError(f"{required}: missing (the model folder is an exported graph)")


def _check_adapter_folder(folder: Path) -> None:
    """ModelFormatError naming the file unless `folder` holds readable adapter weights."""
    file = folder / lora.ADAPTER_WEIGHTS
    if not file.is_file():
        raise ModelFormatError(f"{file}: missing (the config names an adapter)")
    _check_safetensors(file)


def _check_backbone_folder(folder: Path) -> None:
    """ModelFormatError naming the file unless `folder` holds a loadable encoder config and readable safetensors
    weights."""
    from transformers import AutoConfig

    if not folder.is_dir():
        raise ModelFormatError(f"{folder}: missing (the model folder is incomplete)")
    try:
        AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # transformers raises many kinds (OSError, ValueError, KeyError) for a bad config
        raise ModelFormatError(f"{folder / 'config.json'}: not a loadable encoder config ({_one_line(e)})") from None
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ModelFormatError(f"{folder}: no .safetensors weights")
    for file in weights:
        _check_safetensors(file)


def _check_safetensors(file: Path) -> None:
    """ModelFormatError naming `file` unless its safetensors header reads (only the header: cheap)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            f.keys()
    except Exception as e:  # safetensors raises its own error type, or OSError
        raise ModelFormatError(f"{file}: not a readable safetensors file ({_one_line(e)})") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
