"""The set encoder's attention modes: exactness against the stock models and an explicit SIA reference.

Tiny random BERT and T5 encoders carry most checks (random token ids, with garbage ids under every padding position so
that any leak through a mask shows); the real default model checks NIA, SIA on one entity, and permutations.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface, BertConfig, BertModel, T5Config, T5EncoderModel

from cactus.encoder import (
    ATTENTION_MODES, SIA_ATTENTION, EntityLayout, SetEncoder, attention_implementation, masked_mean, sia_attention,
)
from cactus.text.tokenize import SubsetBatch, tokenize_subsets

ATOL = 1e-5
TEXTS = [
    ["wireless mouse", "usb-c charging cable 2m", "bluetooth keyboard for ipad", "apple"],
    ["banana bread recipe", "how to bake sourdough at home", "apple pie"],
]


@pytest.fixture(scope="module")
def bert(default_backbone):
    """Tiny random BERT with the default model's vocabulary; 40 positions only, so FIA must restart them."""
    torch.manual_seed(0)
    vocab = default_backbone[1].vocab_size
    config = BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=40,
    )
    return BertModel(config).eval()


@pytest.fixture(scope="module")
def t5():
    """Tiny random T5 encoder; few buckets and a short max distance so that FIA reaches the far buckets."""
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=100, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=64,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
    )
    return T5EncoderModel(config).eval()


@pytest.fixture(scope="module")
def real(default_backbone):
    """The real default model and a batch of real texts."""
    model, tokenizer = default_backbone
    return model, tokenize_subsets(tokenizer, TEXTS, 32)


def random_batch(lengths, vocab, seed=0, n_slots=None, l_max=None):
    """SubsetBatch of random ids; lengths[b][n] tokens for entity n of subset b; garbage ids under all padding."""
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    N = n_slots or max(len(x) for x in lengths)
    L = l_max or max(max(x) for x in lengths)
    ids = torch.randint(1, vocab, (B, N, L), generator=g)
    mask = torch.zeros(B, N, L, dtype=torch.long)
    entities = torch.zeros(B, N, dtype=torch.bool)
    for b, row in enumerate(lengths):
        for n, length in enumerate(row):
            mask[b, n, :length] = 1
            entities[b, n] = True
    return SubsetBatch(ids, mask, entities, 0)


def pad_more(batch, new_slots=(1,), extra_tokens=3, vocab=100, seed=1):
    """The same subsets with padding entity slots inserted at `new_slots` and `extra_tokens` more padding tokens."""
    g = torch.Generator().manual_seed(seed)
    B, N, L = batch.input_ids.shape
    keep = [i for i in range(N + len(new_slots)) if i not in new_slots]
    ids = torch.randint(1, vocab, (B, N + len(new_slots), L + extra_tokens), generator=g)
    mask = torch.zeros_like(ids)
    entities = torch.zeros(B, N + len(new_slots), dtype=torch.bool)
    real = batch.attention_mask.bool()
    ids[:, keep, :L] = torch.where(real, batch.input_ids, ids[:, keep, :L])
    mask[:, keep, :L] = batch.attention_mask
    entities[:, keep] = batch.entity_mask
    return SubsetBatch(ids, mask, entities, 0), keep


def permute(batch, perm):
    return SubsetBatch(batch.input_ids[:, perm], batch.attention_mask[:, perm], batch.entity_mask[:, perm], 0)


def stock_entity(model, ids, **kwargs):
    """L2-normalised mean of the stock model's states over a (T,) run of real tokens, batch of one."""
    hidden = model(input_ids=ids[None], **kwargs).last_hidden_state[0]
    return F.normalize(hidden.mean(0), dim=-1)


def encode(model, mode, batch):
    with torch.no_grad():
        return SetEncoder(model, mode)(batch)


def tiny(request, bert, t5):
    model = {"bert": bert, "t5": t5}[request]
    return model, model.config.vocab_size


# --- NIA ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bert", "t5", "real"])
def test_nia_equals_each_entity_alone(name, bert, t5, real):
    if name == "real":
        model, batch = real
    else:
        model, vocab = tiny(name, bert, t5)
        batch = random_batch([[5, 3, 7], [2, 6]], vocab)
    out = encode(model, "nia", batch)
    with torch.no_grad():
        for b, n in batch.entity_mask.nonzero().tolist():
            ids = batch.input_ids[b, n][batch.attention_mask[b, n].bool()]
            torch.testing.assert_close(out[b, n], stock_entity(model, ids), atol=ATOL, rtol=0)


# --- FIA ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bert", "t5"])
def test_fia_equals_stock_model_on_the_concatenation(name, bert, t5):
    """BERT: positions restart per entity (subset 0 has 66 tokens, beyond the tiny model's 40 positions).
    T5: the concatenation's own relative positions."""
    model, vocab = tiny(name, bert, t5)
    batch = random_batch([[12, 9, 15, 11, 14, 5], [4, 7]], vocab, l_max=17)
    out = encode(model, "fia", batch)
    with torch.no_grad():
        for b in range(2):
            real = batch.attention_mask[b].bool()
            spans = [batch.input_ids[b, n][real[n]] for n in range(int(batch.entity_mask[b].sum()))]
            kwargs = {}
            if name == "bert":
                kwargs["position_ids"] = torch.cat([torch.arange(len(s)) for s in spans])[None]
            hidden = model(input_ids=torch.cat(spans)[None], **kwargs).last_hidden_state[0]
            for n, part in enumerate(hidden.split([len(s) for s in spans])):
                torch.testing.assert_close(out[b, n], F.normalize(part.mean(0), dim=-1), atol=ATOL, rtol=0)


# --- SIA ---------------------------------------------------------------------------------------------------------


def reference_sia(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None,
                  groups=(), token_mask=None, far_bias=None, **kwargs):
    """Explicit SIA, one entity at a time: its own real keys, then one mean key/value per other entity of its group."""
    out = torch.zeros_like(query)
    for group in groups:
        for i in group:
            real = token_mask[i]
            others = [j for j in group if j != i]
            keys = torch.cat([key[i][:, real]] + [key[j][:, token_mask[j]].mean(1, keepdim=True) for j in others], 1)
            values = torch.cat([value[i][:, real]] + [value[j][:, token_mask[j]].mean(1, True) for j in others], 1)
            scores = query[i] @ keys.transpose(1, 2) * scaling  # (H, L, own + others)
            if position_bias is not None:
                far = far_bias.view(-1, 1, 1).expand(-1, query.shape[2], len(others))
                scores = scores + torch.cat([position_bias[0][:, :, real], far], -1)
            out[i] = scores.softmax(-1) @ values
    return out.transpose(1, 2), None


AttentionInterface.register("test_reference_sia", reference_sia)


@pytest.mark.parametrize("name", ["bert", "t5"])
def test_sia_equals_explicit_reference(name, bert, t5):
    model, vocab = tiny(name, bert, t5)
    batch = random_batch([[5, 3, 7, 4], [2, 6]], vocab)  # subset 1 has two padding slots
    out = encode(model, "sia", batch)

    rows = batch.entity_mask.sum(1).tolist()
    starts = [sum(rows[:b]) for b in range(len(rows))]
    groups = [list(range(s, s + r)) for s, r in zip(starts, rows)]
    tokens = batch.attention_mask[batch.entity_mask].bool()
    far_bias = None
    if name == "t5":  # the summaries sit in the last bucket: "far after" the query
        table = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        far_bias = table[model.config.relative_attention_num_buckets - 1]
    with torch.no_grad(), attention_implementation(model, "test_reference_sia"):
        hidden = model(
            input_ids=batch.input_ids[batch.entity_mask], groups=groups, token_mask=tokens, far_bias=far_bias
        ).last_hidden_state
    expected = F.normalize(masked_mean(hidden, tokens), dim=-1)
    torch.testing.assert_close(out[batch.entity_mask], expected, atol=ATOL, rtol=0)
    nia = encode(model, "nia", batch)[batch.entity_mask]
    assert (expected - nia).abs().max() > 1e-3  # the context does change the embeddings


@pytest.mark.parametrize("name", ["t5", "real"])
def test_sia_on_one_entity_equals_nia(name, t5, real):
    if name == "real":
        model, batch = real
        batch = SubsetBatch(batch.input_ids[:, :1], batch.attention_mask[:, :1], batch.entity_mask[:, :1], 0)
    else:
        model, vocab = tiny(name, None, t5)
        batch = random_batch([[5], [3]], vocab)
    torch.testing.assert_close(encode(model, "sia", batch), encode(model, "nia", batch), atol=ATOL, rtol=0)


def test_sia_dropout_is_inverted_dropout_on_the_attention_weights():
    """Training mode: random masks, unbiased (mean over draws = no dropout); p = 0 is deterministic."""
    torch.manual_seed(0)
    E, H, L, d = 3, 2, 4, 8
    q, k, v = torch.randn(3, E, H, L, d).unbind(0)
    layout = EntityLayout.from_masks(torch.tensor([[[1, 1, 1, 0], [1, 1, 0, 0]], [[1, 1, 1, 1], [0, 0, 0, 0]]]),
                                     torch.tensor([[True, True], [True, False]]))
    module = torch.nn.Module().train()
    clean, _ = sia_attention(module, q, k, v, None, dropout=0.0, entity_layout=layout)
    samples = [sia_attention(module, q, k, v, None, dropout=0.5, entity_layout=layout)[0] for _ in range(2000)]
    draws = torch.stack(samples)
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), clean, atol=0.08, rtol=0)


def test_sia_dropout_through_the_model_follows_train_and_eval(bert):
    config = copy.deepcopy(bert.config)
    config.attention_probs_dropout_prob, config.hidden_dropout_prob = 0.3, 0.0
    torch.manual_seed(0)
    encoder = SetEncoder(BertModel(config), "sia")
    batch = random_batch([[5, 3, 7]], config.vocab_size)
    with torch.no_grad():
        encoder.train()
        assert not torch.allclose(encoder(batch), encoder(batch))
        encoder.eval()
        torch.testing.assert_close(encoder(batch), encoder(batch), atol=0, rtol=0)


# --- all modes ---------------------------------------------------------------------------------------------------


# Not T5 FIA: it keeps the concatenation's relative positions, so entity order matters there by design.
@pytest.mark.parametrize("name, mode", [("real", m) for m in ATTENTION_MODES] + [("t5", "nia"), ("t5", "sia")])
def test_permuting_entities_permutes_embeddings(name, mode, t5, real):
    if name == "real":
        model, batch = real
    else:
        model, vocab = tiny(name, None, t5)
        batch = random_batch([[5, 3, 7, 4], [2, 6]], vocab)
    perm = [2, 0, 3, 1]  # moves subset 1's padding slot into the middle
    out = encode(model, mode, batch)
    torch.testing.assert_close(encode(model, mode, permute(batch, perm)), out[:, perm], atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ATTENTION_MODES)
@pytest.mark.parametrize("name", ["bert", "t5"])
def test_padding_entities_and_tokens_change_nothing(name, mode, bert, t5):
    model, vocab = tiny(name, bert, t5)
    batch = random_batch([[5, 3, 7], [2, 6]], vocab)
    padded, keep = pad_more(batch, new_slots=(1, 4), extra_tokens=3, vocab=vocab)
    out, out_padded = encode(model, mode, batch), encode(model, mode, padded)
    torch.testing.assert_close(out_padded[:, keep], out, atol=ATOL, rtol=0)
    assert not out_padded[~padded.entity_mask].any()  # padded entities are zero vectors


@pytest.mark.parametrize("mode", ATTENTION_MODES)
@pytest.mark.parametrize("name", ["bert", "t5"])
def test_gradients_reach_every_parameter(name, mode, bert, t5):
    model, vocab = tiny(name, bert, t5)
    encoder = SetEncoder(copy.deepcopy(model), mode)
    batch = random_batch([[5, 3, 7], [2, 6]], vocab)
    out = encoder(batch)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    for pname, p in encoder.named_parameters():
        if pname.startswith("backbone.pooler."):  # BERT's [CLS] pooler: its output is not used, by design
            assert p.grad is None
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_stock_attention_is_restored_and_unaffected(bert):
    ids = torch.randint(1, 1000, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = bert(input_ids=ids).last_hidden_state
    stock = bert.config._attn_implementation
    seen = []
    hook = bert.encoder.register_forward_pre_hook(lambda *_: seen.append(bert.config._attn_implementation))
    try:
        encode(bert, "sia", random_batch([[5, 3]], bert.config.vocab_size))
        bad = random_batch([[5, 3]], bert.config.vocab_size)
        bad.input_ids[0, 0, 0] = bert.config.vocab_size  # out of the vocabulary: fails inside the SIA forward
        with pytest.raises(IndexError):
            encode(bert, "sia", bad)
    finally:
        hook.remove()
    assert seen == [SIA_ATTENTION] and bert.config._attn_implementation == stock
    with torch.no_grad():
        torch.testing.assert_close(bert(input_ids=ids).last_hidden_state, before, atol=0, rtol=0)


def test_unknown_mode_is_refused(bert):
    with pytest.raises(ValueError, match="attention must be one of"):
        SetEncoder(bert, "full")
