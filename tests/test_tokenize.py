import pytest
import torch

from cactus.text import SubsetBatch, tokenize_subsets


def test_packed_layout_and_truncation_count(default_backbone):
    _, tok = default_backbone
    long_text = " ".join(["word"] * 40)
    batch = tokenize_subsets(tok, [["short one", long_text], ["x"]], max_tokens=16)
    alone = tok(["short one", "x"])["input_ids"]
    assert batch.entity_mask.tolist() == [[True, True], [True, False]]
    assert batch.n_truncated == 1
    # shortest first, every entity's tokens consecutive, nothing padded
    assert batch.runs == ((len(alone[1]), 1), (len(alone[0]), 1), (16, 1))
    assert batch.entity_slot.tolist() == [2, 0, 1]  # slots b * N + n
    assert batch.n_tokens == len(batch.input_ids) == len(alone[0]) + len(alone[1]) + 16
    assert batch.input_ids[: len(alone[1])].tolist() == alone[1]
    assert tok.pad_token_id not in batch.input_ids.tolist()
    # the cut entity keeps its end token, like the tokenizer's own truncation
    assert batch.input_ids[-1].item() == tok.sep_token_id


def test_padded_view_puts_every_token_in_its_slot(default_backbone):
    _, tok = default_backbone
    batch = tokenize_subsets(tok, [["a b c", "d e"], ["f g h i j k"]], max_tokens=64)
    ids, mask = batch.padded(pad_id=tok.pad_token_id)
    assert ids.shape == mask.shape == (2, 2, 8)
    for b, texts in enumerate([["a b c", "d e"], ["f g h i j k"]]):
        for n, text in enumerate(texts):
            own = tok([text])["input_ids"][0]
            assert ids[b, n, : len(own)].tolist() == own and mask[b, n].sum() == len(own)
    assert mask[1, 1].sum() == 0 and torch.all(ids[1, 1] == tok.pad_token_id)


def test_equal_lengths_form_runs_in_input_order():
    batch = SubsetBatch.from_token_ids([[1, 2], [3], [4, 5], [6], [7, 8]], [2, 3])
    assert batch.runs == ((1, 2), (2, 3))
    assert batch.input_ids.tolist() == [3, 6, 1, 2, 4, 5, 7, 8]
    assert batch.entity_slot.tolist() == [1, 4, 0, 3, 5]
    assert batch.positions().tolist() == [0, 0, 0, 1, 0, 1, 0, 1]


def test_inconsistent_sizes_are_refused():
    with pytest.raises(ValueError, match="do not split into subsets"):
        SubsetBatch.from_token_ids([[1], [2]], [3])
    with pytest.raises(ValueError, match="at least one token"):
        SubsetBatch.from_token_ids([[1], []], [2])
