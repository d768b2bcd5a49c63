import itertools
import math

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import minimum_spanning_tree

from cactus.losses import (
    AugmentedTripletLoss,
    PairwiseBCELoss,
    StructuredMSTLoss,
    TripletLoss,
    max_spanning_forest,
)

# --- slow references: explicit loops over subsets, pairs and triplets of real entities -----------------------------


def _real(embeddings, labels, mask, b):
    idx = [i for i in range(mask.shape[1]) if mask[b, i]]
    x = embeddings[b].detach().double().numpy()
    s = {(i, j): float(x[i] @ x[j]) for i in idx for j in idx}
    return idx, s, [int(v) for v in labels[b]]


def ref_augmented(embeddings, labels, mask, margin=0.3, neutral=0.0, self_pairs=False, with_neutral=True):
    out = []
    for b in range(mask.shape[0]):
        idx, s, y = _real(embeddings, labels, mask, b)
        terms = []
        for a, p, n in itertools.product(idx, idx, idx):
            if (a != p or self_pairs) and y[a] == y[p] and y[a] != y[n]:
                terms.append(max(0.0, margin - s[a, p] + s[a, n]))
        if with_neutral:
            for i, j in itertools.product(idx, idx):
                if y[i] == y[j] and (i != j or self_pairs):
                    terms.append(max(0.0, margin / 2 - s[i, j] + neutral))
                elif y[i] != y[j]:
                    terms.append(max(0.0, margin / 2 - neutral + s[i, j]))
        out.append(sum(terms) / len(terms) if terms else None)
    return out


def ref_triplet(embeddings, labels, mask, margin=0.3, self_pairs=False):
    return ref_augmented(embeddings, labels, mask, margin, self_pairs=self_pairs, with_neutral=False)


def ref_bce(embeddings, labels, mask, eps=1e-5):
    out = []
    for b in range(mask.shape[0]):
        idx, s, y = _real(embeddings, labels, mask, b)
        terms = []
        for i, j in itertools.product(idx, idx):
            if i != j:
                p = min(max((s[i, j] + 1) / 2, eps), 1 - eps)
                terms.append(-math.log(p) if y[i] == y[j] else -math.log(1 - p))
        out.append(sum(terms) / len(terms) if terms else None)
    return out


def kruskal(nodes, weighted_edges):
    """Maximum spanning forest: list of (i, j) edges, by Kruskal with union-find."""
    root = {i: i for i in nodes}

    def find(i):
        while root[i] != i:
            i = root[i]
        return i

    forest = []
    for _, i, j in sorted(weighted_edges, reverse=True):
        if find(i) != find(j):
            root[find(i)] = find(j)
            forest.append((i, j))
    return forest


def ref_mst(embeddings, labels, mask, c=0.15, r=0.5):
    out = []
    for b in range(mask.shape[0]):
        idx, s, y = _real(embeddings, labels, mask, b)
        if len(idx) < 2:
            out.append(None)
            continue
        pairs = list(itertools.combinations(idx, 2))
        gold = kruskal(idx, [(s[i, j], i, j) for i, j in pairs if y[i] == y[j]])
        augmented = {(i, j): s[i, j] + (-c if y[i] == y[j] else c * r) for i, j in pairs}
        pred = kruskal(idx, [(w, i, j) for (i, j), w in augmented.items() if w > 0])
        n_same = sum(y[i] == y[j] for i, j in pred)
        delta = len(gold) - n_same + r * (len(pred) - n_same)
        violation = sum(s[e] for e in pred) + c * delta - sum(s[e] for e in gold)
        out.append(max(0.0, violation) if delta > 0 else 0.0)
    return out


LOSSES = {
    "augmented": (lambda: AugmentedTripletLoss(init_neutral=0.07, self_pairs=False),
                  lambda *a: ref_augmented(*a, neutral=0.07)),
    "augmented_self_pairs": (  # the default
        lambda: AugmentedTripletLoss(init_neutral=-0.05),
        lambda *a: ref_augmented(*a, neutral=-0.05, self_pairs=True),
    ),
    "triplet": (lambda: TripletLoss(self_pairs=False), ref_triplet),
    "triplet_self_pairs": (TripletLoss, lambda *a: ref_triplet(*a, self_pairs=True)),
    "bce": (PairwiseBCELoss, ref_bce),
    "mst": (StructuredMSTLoss, ref_mst),
    "mst_other": (lambda: StructuredMSTLoss(c=0.4, r=2.0), lambda *a: ref_mst(*a, c=0.4, r=2.0)),
}


def random_batch(seed, B=3, N=7, D=5, n_clusters=3, garbage=1e3):
    """Unit embeddings, labels and a random (not only trailing) padding mask; padded slots hold garbage."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(B, N, D, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.randint(0, n_clusters, (B, N), generator=g)
    mask = torch.rand(B, N, generator=g) < torch.rand(B, 1, generator=g) + 0.3
    x = torch.where(mask[..., None], x, garbage * torch.randn(B, N, D, generator=g, dtype=torch.float64))
    labels = torch.where(mask, labels, torch.randint(0, 10, (B, N), generator=g))
    return x, labels, mask


def unit_vectors(gram):
    """Rows of unit vectors with the given (n, n) Gram matrix of cosine similarities, as a (1, n, n) batch."""
    return torch.linalg.cholesky(torch.tensor(gram, dtype=torch.float64))[None]


def check_against_reference(out, expected):
    kept = [v for v in expected if v is not None]
    assert out.n_skipped == len(expected) - len(kept)
    got = out.per_subset.detach()
    assert torch.isnan(got).tolist() == [v is None for v in expected]
    assert torch.allclose(got[~torch.isnan(got)], torch.tensor(kept, dtype=got.dtype), atol=1e-6, rtol=0)
    assert out.loss.item() == pytest.approx(sum(kept) / len(kept) if kept else 0.0, abs=1e-6)


# --- agreement with the references -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES)
def test_matches_reference(name):
    make, reference = LOSSES[name]
    loss = make().double()
    for seed in range(30):
        x, labels, mask = random_batch(seed, N=1 + seed % 7)
        check_against_reference(loss(x, labels, mask), reference(x, labels, mask))


@pytest.mark.parametrize("name", LOSSES)
def test_padding_changes_nothing(name):
    loss = LOSSES[name][0]().double()
    x, labels, mask = random_batch(0, B=4, N=6)
    # The same subsets again with 3 more padded slots, everything at random places; padding holds NaN, inf, 1e30.
    B, N, D = x.shape
    g = torch.Generator().manual_seed(1)
    keep = torch.randperm(N + 3, generator=g)[:N]
    x_big = torch.full((B, N + 3, D), torch.nan, dtype=x.dtype)
    x_big[..., 0], x_big[..., 1] = torch.inf, 1e30
    x_big[:, keep] = torch.where(mask[..., None], x, torch.nan)
    labels_big = torch.randint(0, 3, (B, N + 3), generator=g)
    labels_big[:, keep] = labels
    mask_big = torch.zeros(B, N + 3, dtype=torch.bool)
    mask_big[:, keep] = mask

    small, big = x.clone().requires_grad_(), x_big.clone().requires_grad_()
    out_small, out_big = loss(small, labels, mask), loss(big, labels_big, mask_big)
    assert out_big.n_skipped == out_small.n_skipped
    assert torch.allclose(out_big.loss, out_small.loss, atol=1e-12)
    assert torch.equal(out_big.per_subset.isnan(), out_small.per_subset.isnan())
    out_small.loss.backward()
    out_big.loss.backward()
    assert torch.isfinite(big.grad).all()
    assert torch.allclose(big.grad[:, keep][mask], small.grad[mask], atol=1e-12)
    assert (big.grad[~mask_big] == 0).all()


@pytest.mark.parametrize("name", LOSSES)
def test_permuting_entities_changes_nothing(name):
    loss = LOSSES[name][0]().double()
    x, labels, mask = random_batch(2, B=3, N=7)
    reference = loss(x, labels, mask).per_subset
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        perm = torch.stack([torch.randperm(7, generator=g) for _ in range(3)])
        rows = torch.arange(3)[:, None]
        got = loss(x[rows, perm], labels[rows, perm], mask[rows, perm]).per_subset
        assert torch.allclose(got, reference, atol=1e-12, equal_nan=True)


# --- skipped subsets -------------------------------------------------------------------------------------------------


def batch_of(subsets, D=4, seed=0):
    """A padded batch from a list of label lists (one per subset), with random unit embeddings."""
    g = torch.Generator().manual_seed(seed)
    N = max(len(s) for s in subsets)
    x = torch.nn.functional.normalize(torch.randn(len(subsets), N, D, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.tensor([s + [0] * (N - len(s)) for s in subsets])
    mask = torch.tensor([[True] * len(s) + [False] * (N - len(s)) for s in subsets])
    return x.requires_grad_(), labels, mask


@pytest.mark.parametrize(
    "name, skipped",
    [
        # subsets: one entity, one cluster of 3, all singletons, no entity, mixed
        ("augmented", [True, False, False, True, False]),
        ("augmented_self_pairs", [False, False, False, True, False]),
        ("triplet", [True, True, True, True, False]),
        ("triplet_self_pairs", [True, True, False, True, False]),
        ("bce", [True, False, False, True, False]),
        ("mst", [True, False, False, True, False]),
    ],
)
def test_skipped_subsets_are_counted_and_left_out(name, skipped):
    loss = LOSSES[name][0]().double()
    x, labels, mask = batch_of([[0], [1, 1, 1], [0, 1, 2], [], [0, 0, 1, 2]])
    out = loss(x, labels, mask)
    assert out.n_skipped == sum(skipped)
    assert out.per_subset.isnan().tolist() == skipped
    kept = out.per_subset[~torch.tensor(skipped)]
    assert torch.allclose(out.loss, kept.mean())


@pytest.mark.parametrize("name", LOSSES)
def test_all_skipped_batch_gives_a_connected_zero(name):
    loss = LOSSES[name][0]().double()
    x, labels, mask = batch_of([[3], [], [1]])
    if name == "augmented_self_pairs":
        mask[:] = False  # there a single entity has a term: its pair with itself
    out = loss(x, labels, mask)
    assert out.n_skipped == 3 and out.loss.item() == 0.0 and out.loss.requires_grad
    out.loss.backward()
    assert (x.grad == 0).all()
    if isinstance(loss, AugmentedTripletLoss):
        assert loss.neutral.grad is not None and loss.neutral.grad.item() == 0.0


# --- hand-computed values --------------------------------------------------------------------------------------------

# Entities 0 and 1 share a cluster, 2 is alone; s01 = 0.5, s02 = 0.4, s12 = 0.1.
HAND = unit_vectors([[1.0, 0.5, 0.4], [0.5, 1.0, 0.1], [0.4, 0.1, 1.0]])
HAND_LABELS, HAND_MASK = torch.tensor([[0, 0, 1]]), torch.ones(1, 3, dtype=torch.bool)


def test_hand_computed_values():
    # Triplets (0, 1, 2): 0.3 - 0.5 + 0.4 = 0.2 and (1, 0, 2): 0.3 - 0.5 + 0.1 < 0 -> 0.2 over 2.
    assert TripletLoss(self_pairs=False)(HAND, HAND_LABELS, HAND_MASK).loss.item() == pytest.approx(0.1)
    # Plus ordered P (0,1), (1,0): 0.15 - 0.5 + 0 < 0; N (0,2), (2,0): 0.15 + 0.4, (1,2), (2,1): 0.15 + 0.1.
    expected = (0.2 + 2 * 0.55 + 2 * 0.25) / (2 + 2 + 4)
    assert AugmentedTripletLoss(self_pairs=False)(HAND, HAND_LABELS, HAND_MASK).loss.item() == pytest.approx(expected)
    # s0 = 0.2: N terms become 0.35, 0.35, 0.05, 0.05.
    expected = (0.2 + 0.8) / 8
    loss = AugmentedTripletLoss(init_neutral=0.2, self_pairs=False)(HAND, HAND_LABELS, HAND_MASK).loss
    assert loss.item() == pytest.approx(expected)
    # BCE on p = 0.75 (same), 0.7 and 0.55 (different), each pair twice.
    expected = -(math.log(0.75) + math.log(0.3) + math.log(0.45)) / 3
    assert PairwiseBCELoss()(HAND, HAND_LABELS, HAND_MASK).loss.item() == pytest.approx(expected)
    # MST: gold tree {01}, score 0.5. Augmented: 01 -> 0.35, 02 -> 0.475, 12 -> 0.175; predicted tree {02, 01},
    # score 0.9, one same-cluster and one cross edge: Delta = 1 - 1 + 0.5 = 0.5; 0.9 + 0.15 * 0.5 - 0.5 = 0.475.
    assert StructuredMSTLoss()(HAND, HAND_LABELS, HAND_MASK).loss.item() == pytest.approx(0.475)


def test_structured_mst_is_zero_for_a_well_separated_subset():
    # Two clusters whose inner similarities are above c and whose cross similarities are below -c * r.
    x = unit_vectors([[1.0, 0.9, -0.5], [0.9, 1.0, -0.4], [-0.5, -0.4, 1.0]])
    out = StructuredMSTLoss()(x, HAND_LABELS, HAND_MASK)
    assert out.loss.item() == 0.0 and out.n_skipped == 0


def test_max_spanning_forest_matches_scipy():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = int(torch.randint(1, 9, (1,), generator=g))
        w = torch.rand(1, n, n, generator=g, dtype=torch.float64) * 2 - 1
        w = (w + w.transpose(1, 2)) / 2
        allowed = torch.rand(1, n, n, generator=g) < 0.4  # sparse: usually several components
        allowed = (allowed | allowed.transpose(1, 2)) & ~torch.eye(n, dtype=torch.bool)
        forest = max_spanning_forest(w, allowed, torch.ones(1, n, dtype=torch.bool))[0]
        # scipy's minimum spanning forest of -(w + 10): all edges nonzero, same forests up to the constant shift.
        expected = minimum_spanning_tree(np.where(allowed[0].numpy(), -(w[0].numpy() + 10), 0.0)).toarray()
        assert int(forest.sum()) // 2 == int((expected != 0).sum())
        assert float((w[0] * forest).sum() / 2) == pytest.approx(float(-(expected[expected != 0] + 10).sum()))
        assert torch.equal(forest, forest.T) and not forest.diagonal().any() and not (forest & ~allowed[0]).any()


# --- gradients -------------------------------------------------------------------------------------------------------


def test_augmented_gradients_reach_neutral_and_embeddings():
    loss = AugmentedTripletLoss(self_pairs=False).double()
    x, labels, mask = random_batch(5, B=3, N=7)
    x.requires_grad_()
    loss(x, labels, mask).loss.backward()
    assert loss.neutral.grad.abs().item() > 0
    assert x.grad[mask].abs().sum() > 0
    assert list(loss.parameters()) == [loss.neutral]


def test_augmented_gradient_directions():
    same, different = torch.tensor([[0, 0]]), torch.tensor([[0, 1]])
    mask = torch.ones(1, 2, dtype=torch.bool)

    def grads(similarity, labels):
        loss = AugmentedTripletLoss(self_pairs=False).double()
        x = unit_vectors([[1.0, similarity], [similarity, 1.0]]).requires_grad_()
        out = loss(x, labels, mask)
        out.loss.backward()
        # s01 = x0 . x1 is the only similarity used, so x1's gradient is (d loss / d s01) * x0, and x0 is a unit vector.
        return out.loss.item(), loss.neutral.grad.item(), (x.grad[0, 1] @ x[0, 0]).item()

    # Positive pair at 0.9, s0 = 0: 0.15 - 0.9 + 0 < 0, no loss and no gradient.
    assert grads(0.9, same) == (0.0, 0.0, 0.0)
    # Positive pair at 0.1: 0.15 - 0.1 + 0 > 0; descent lowers s0 and raises s01.
    value, d_neutral, d_sim = grads(0.1, same)
    assert value == pytest.approx(0.05) and d_neutral > 0 and d_sim < 0
    # Negative pair at 0.5: 0.15 - 0 + 0.5 > 0; descent raises s0 and lowers s01.
    value, d_neutral, d_sim = grads(0.5, different)
    assert value == pytest.approx(0.65) and d_neutral < 0 and d_sim > 0


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_descent_reduces_the_loss(name):
    torch.manual_seed(0)
    loss = LOSSES[name][0]()
    labels = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]])
    mask = torch.tensor([[True] * 6, [True] * 5 + [False]])
    free = torch.nn.Parameter(torch.randn(2, 6, 8))
    optimizer = torch.optim.SGD([free, *loss.parameters()], lr=0.5)
    values = []
    for _ in range(30):
        out = loss(torch.nn.functional.normalize(free, dim=-1), labels, mask)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        values.append(out.loss.item())
    assert values[-1] < 0.7 * values[0]  # BCE cannot go near 0: three clusters cannot be pairwise at s = -1
