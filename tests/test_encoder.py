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
    ATTENTION_MODES, SIA_ATTENTION, EntityLayout, SetEncoder, attention_implementation, sia_attention,
)
from cactus.text.tokenize import SubsetBatch, tokenize_subsets

ATOL = 1e-5
TEXTS = [
    ["wireless mouse", "usb-c charging cable 2m", "bluetooth keyboard for ipad", "apple"],
    ["banana bread recipe", "how to bake sourdough at home", "apple pie"],
]


@pytest.fixture(scope="module")
def bert(default_backbone):
    """Tiny random BERT with the default model's vocabulary; 64 positions, so FIA must restart them."""
    torch.manual_seed(0)
    vocab = default_backbone[1].vocab_size
    config = BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64,
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


def random_ids(lengths, vocab, seed=0):
    """Per subset, per entity, a list of random token ids; lengths[b][n] tokens for entity n of subset b."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randint(1, vocab, (length,), generator=g).tolist() for length in row] for row in lengths]


def pack(ids):
    return SubsetBatch.from_token_ids([x for row in ids for x in row], [len(row) for row in ids])


def random_batch(lengths, vocab, seed=0):
    return pack(random_ids(lengths, vocab, seed))


def ragged_lengths(seed, sizes, longest=64):
    """Subsets of the given sizes, entities of 1 to `longest` tokens."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, longest + 1, (n,), generator=g).tolist() for n in sizes]


def padded_rows(batch, vocab, seed=1):
    """The padded path's input: (E, L) token rows of the real entities (in (B, N) slot order) with garbage ids under
    every padding position, so that any leak through a mask shows, and their (E, L) mask."""
    ids, mask = batch.padded()
    garbage = torch.randint(1, vocab, ids.shape, generator=torch.Generator().manual_seed(seed))
    ids = torch.where(mask.bool(), ids, garbage)
    return ids[batch.entity_mask], mask[batch.entity_mask]


def masked_mean(hidden, mask):
    """The padded path's pooling: mean of (E, L, D) `hidden` over the positions where (E, L) `mask` is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(-2) / m.sum(-2)


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


def entity_ids(batch):
    """{(b, n): (T,) real token ids} of every entity of a packed batch."""
    B, N = batch.entity_mask.shape
    parts = batch.input_ids.split(batch.lengths().tolist())
    return {(slot // N, slot % N): part for slot, part in zip(batch.entity_slot.tolist(), parts)}


@pytest.mark.parametrize("name", ["bert", "t5", "real"])
def test_nia_equals_each_entity_alone(name, bert, t5, real):
    if name == "real":
        model, batch = real
    else:
        model, vocab = tiny(name, bert, t5)
        batch = random_batch([[5, 3, 7], [2, 6]], vocab)
    out = encode(model, "nia", batch)
    with torch.no_grad():
        for (b, n), ids in entity_ids(batch).items():
            torch.testing.assert_close(out[b, n], stock_entity(model, ids), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["bert", "t5", "real"])
def test_nia_equals_the_padded_path_on_ragged_subsets(name, bert, t5, real):
    """Subsets of 1 to 60 entities of 1 to 64 tokens, against the stock model on padded rows with a mask."""
    model, vocab = (real[0], real[0].config.vocab_size) if name == "real" else tiny(name, bert, t5)
    batch = random_batch(ragged_lengths(2, [1, 60, 7, 23]), vocab)
    ids, mask = padded_rows(batch, vocab)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    expected = F.normalize(masked_mean(hidden, mask), dim=-1)
    torch.testing.assert_close(encode(model, "nia", batch)[batch.entity_mask], expected, atol=ATOL, rtol=0)


# --- FIA ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bert", "t5"])
def test_fia_equals_stock_model_on_the_concatenation(name, bert, t5):
    """BERT: positions restart per entity (subset 0 has 66 tokens, beyond the tiny model's 64 positions).
    T5: the concatenation's own relative positions, entities in slot order."""
    model, vocab = tiny(name, bert, t5)
    lengths = [[12, 9, 15, 11, 14, 5], [4, 7]]
    ids = random_ids(lengths, vocab)
    out = encode(model, "fia", pack(ids))
    with torch.no_grad():
        for b, row in enumerate(ids):
            spans = [torch.tensor(x) for x in row]
            ids_row = torch.cat(spans)[None]
            # an explicit mask: without one, transformers (5.25 on) reads restarting position ids as packed
            # sequences and lets each entity attend to itself alone
            kwargs = {"attention_mask": torch.ones_like(ids_row)}
            if name == "bert":
                kwargs["position_ids"] = torch.cat([torch.arange(len(s)) for s in spans])[None]
            hidden = model(input_ids=ids_row, **kwargs).last_hidden_state[0]
            for n, part in enumerate(hidden.split([len(s) for s in spans])):
                torch.testing.assert_close(out[b, n], F.normalize(part.mean(0), dim=-1), atol=ATOL, rtol=0)


# --- SIA ---------------------------------------------------------------------------------------------------------


def reference_sia(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None,
                  groups=(), token_mask=None, far_bias=None, **kwargs):
    """Explicit SIA on padded (E, H, L, d) rows, one entity at a time: its own real keys, then one mean key/value per
    other entity of its group."""
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


def padded_sia(model, batch, vocab):
    """(E, D) embeddings of the real entities (slot order) by the padded path with the explicit reference."""
    ids, mask = padded_rows(batch, vocab)
    sizes = batch.entity_mask.sum(1).tolist()
    starts = [sum(sizes[:b]) for b in range(len(sizes))]
    groups = [list(range(s, s + r)) for s, r in zip(starts, sizes)]
    far_bias = None
    if hasattr(model.config, "relative_attention_num_buckets"):  # the summaries sit in the last bucket: "far after"
        table = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        far_bias = table[model.config.relative_attention_num_buckets - 1]
    with torch.no_grad(), attention_implementation(model, "test_reference_sia"):
        hidden = model(input_ids=ids, groups=groups, token_mask=mask.bool(), far_bias=far_bias).last_hidden_state
    return F.normalize(masked_mean(hidden, mask), dim=-1)


@pytest.mark.parametrize("name", ["bert", "t5"])
def test_sia_equals_explicit_reference(name, bert, t5):
    model, vocab = tiny(name, bert, t5)
    batch = random_batch([[5, 3, 7, 4], [2, 6]], vocab)  # subset 1 has two empty slots
    expected = padded_sia(model, batch, vocab)
    torch.testing.assert_close(encode(model, "sia", batch)[batch.entity_mask], expected, atol=ATOL, rtol=0)
    nia = encode(model, "nia", batch)[batch.entity_mask]
    assert (expected - nia).abs().max() > 1e-3  # the context does change the embeddings


@pytest.mark.parametrize("name", ["bert", "t5", "real"])
def test_sia_equals_the_padded_path_on_ragged_subsets(name, bert, t5, real):
    """Subsets of 1 to 60 entities of 1 to 64 tokens (the real model: 1 to 24), packed against padded."""
    if name == "real":
        model, vocab = real[0], real[0].config.vocab_size
        lengths = ragged_lengths(3, [1, 60, 9], longest=24)
    else:
        model, vocab = tiny(name, bert, t5)
        lengths = ragged_lengths(3, [1, 60, 7, 23])
    batch = random_batch(lengths, vocab)
    torch.testing.assert_close(encode(model, "sia", batch)[batch.entity_mask], padded_sia(model, batch, vocab),
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["t5", "real"])
def test_sia_on_one_entity_equals_nia(name, t5, real):
    if name == "real":
        ids = entity_ids(real[1])
        model, batch = real[0], pack([[ids[(0, 0)].tolist()], [ids[(1, 0)].tolist()]])
    else:
        model, vocab = tiny(name, None, t5)
        batch = random_batch([[5], [3]], vocab)
    torch.testing.assert_close(encode(model, "sia", batch), encode(model, "nia", batch), atol=ATOL, rtol=0)


def test_sia_dropout_is_inverted_dropout_on_the_attention_weights():
    """Training mode: random masks, unbiased (mean over draws = no dropout); p = 0 is deterministic."""
    torch.manual_seed(0)
    batch = random_batch([[3, 2], [4]], 100)  # 9 tokens
    H, d = 2, 8
    q, k, v = torch.randn(3, batch.n_tokens, H, 1, d).unbind(0)
    layout = EntityLayout.of(batch.entity_slot, batch.runs, batch.entity_mask)
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
        ids = [[x.tolist() for _, x in sorted((n, x) for (b, n), x in entity_ids(real[1]).items() if b == row)]
               for row in range(2)]
        model = real[0]
    else:
        model, vocab = tiny(name, None, t5)
        ids = random_ids([[5, 3, 7, 4], [2, 6, 4]], vocab)
    perm = [[2, 0, 3, 1], [2, 0, 1]]
    out = encode(model, mode, pack(ids))
    permuted = encode(model, mode, pack([[row[i] for i in p] for row, p in zip(ids, perm)]))
    for b, p in enumerate(perm):
        torch.testing.assert_close(permuted[b, : len(p)], out[b, p], atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ATTENTION_MODES)
@pytest.mark.parametrize("name", ["bert", "t5"])
def test_the_rest_of_the_batch_changes_nothing(name, mode, bert, t5):
    """A subset's embeddings are the same alone and batched with subsets of other sizes and lengths; empty slots are
    zero vectors."""
    model, vocab = tiny(name, bert, t5)
    ids = random_ids([[5, 3, 7], [2, 6, 6, 1, 9], [4]], vocab)
    together = encode(model, mode, pack(ids))
    for b, row in enumerate(ids):
        torch.testing.assert_close(together[b, : len(row)], encode(model, mode, pack([row]))[0], atol=ATOL, rtol=0)
    assert not together[~pack(ids).entity_mask].any()


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


@pytest.mark.parametrize("mode", ["nia", "sia"])
def test_gradients_equal_the_padded_path(mode, bert):
    """Training runs the packed path: its gradients are the padded path's (stock model with a mask for NIA, the
    explicit reference for SIA)."""
    vocab = bert.config.vocab_size
    batch = random_batch(ragged_lengths(4, [6, 2, 9], longest=20), vocab)
    weights = torch.randn(int(batch.entity_mask.sum()), bert.config.hidden_size,
                          generator=torch.Generator().manual_seed(0))
    packed = copy.deepcopy(bert)
    (SetEncoder(packed, mode)(batch)[batch.entity_mask] * weights).sum().backward()
    padded = copy.deepcopy(bert)
    ids, mask = padded_rows(batch, vocab)
    if mode == "nia":
        hidden = padded(input_ids=ids, attention_mask=mask).last_hidden_state
    else:
        sizes = batch.entity_mask.sum(1).tolist()
        groups = [list(range(sum(sizes[:b]), sum(sizes[: b + 1]))) for b in range(len(sizes))]
        with attention_implementation(padded, "test_reference_sia"):
            hidden = padded(input_ids=ids, groups=groups, token_mask=mask.bool()).last_hidden_state
    (F.normalize(masked_mean(hidden, mask), dim=-1) * weights).sum().backward()
    for (name, p), q in zip(packed.named_parameters(), padded.parameters()):
        if name.startswith("pooler."):
            continue
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


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
        bad.input_ids[0] = bert.config.vocab_size  # out of the vocabulary: fails inside the SIA forward
        with pytest.raises(IndexError):
            encode(bert, "sia", bad)
    finally:
        hook.remove()
    assert seen == [SIA_ATTENTION] and bert.config._attn_implementation == stock and bert.pooler is not None
    with torch.no_grad():
        torch.testing.assert_close(bert(input_ids=ids).last_hidden_state, before, atol=0, rtol=0)


def test_unknown_mode_is_refused(bert):
    with pytest.raises(ValueError, match="attention must be one of"):
        SetEncoder(bert, "full")
