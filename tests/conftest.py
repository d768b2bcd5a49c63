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


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory, default_backbone) -> str:
    """Folder of a tiny random T5 encoder (the paper's backbone family) with the default model's tokenizer; few
    buckets and a short max distance, so that short inputs reach the far buckets."""
    import torch
    from transformers import T5Config, T5EncoderModel

    folder = tmp_path_factory.mktemp("tiny_t5")
    _, tokenizer = default_backbone
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=64,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16)
    torch.manual_seed(0)
    T5EncoderModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def one_thread():
    """One torch thread for the test: bit-for-bit comparisons of training runs. At one thread every CPU kernel adds
    in one order; at more, under load, some reductions do not (differences of 1e-9 seen)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
