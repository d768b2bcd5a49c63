import torch

from cactus.text import tokenize_subsets


def test_padding_layout_and_truncation_count(default_backbone):
    _, tok = default_backbone
    long_text = " ".join(["word"] * 40)
    batch = tokenize_subsets(tok, [["short one", long_text], ["x"]], max_tokens=16)
    B, N, L = batch.input_ids.shape
    assert (B, N, L) == (2, 2, 16)
    assert batch.entity_mask.tolist() == [[True, True], [True, False]]
    assert batch.n_truncated == 1
    assert batch.attention_mask[1, 1].sum() == 0  # padded entity
    # the cut entity keeps its end token, like the tokenizer's own truncation
    assert batch.input_ids[0, 1, -1].item() == tok.sep_token_id
    alone = tok(["short one"])["input_ids"][0]
    assert batch.input_ids[0, 0, : len(alone)].tolist() == alone
    assert batch.attention_mask[0, 0].sum().item() == len(alone)
    assert torch.all(batch.input_ids[0, 0, len(alone):] == tok.pad_token_id)


def test_nothing_truncated_within_limit(default_backbone):
    _, tok = default_backbone
    batch = tokenize_subsets(tok, [["a b c", "d e"]], max_tokens=64)
    assert batch.n_truncated == 0 and batch.input_ids.shape[-1] == 5
