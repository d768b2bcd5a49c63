from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples" / "subsets.jsonl"


@pytest.fixture(scope="session")
def default_backbone():
    """The real default encoder and tokenizer (offline), loaded once."""
    from cactus.encoder import load_backbone

    model, tokenizer = load_backbone("all-MiniLM-L6-v2")
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory, default_backbone) -> str:
    """Folder of a tiny random BERT (dropout on) with the default model's tokenizer: fast training and saving."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    _, tokenizer = default_backbone
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        vocab_size=tokenizer.vocab_size)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
