"""Where to cut a subset's average-link dendrogram: at the model's one threshold, or per subset.

A subset's dendrogram (`Dendrogram`) offers n cuts: after k = 0 .. n - 1 merges. Cut k holds for every threshold t
with h[k] < t <= h[k - 1], where h = `Dendrogram.similarities` are the merge similarities (h[-1] = +inf: no merge;
h[n - 1] = -inf: everything merged).

Rules (`CUTS`):
- "threshold": cut k = the merges whose average similarity is >= the model's threshold (one t for every subset).
- "adaptive": among the cuts that hold for some threshold inside a band [low, high], the one with the best internal
  criterion (`CRITERIA`). No label and no threshold is needed, so it suits families a model never saw.

Criteria are computed for every cut of a subset in one pass along its merges (no clustering per cut):
- "silhouette": mean silhouette on cosine distance 1 - s; s(i) = 0 for an entity alone in its cluster, and the
  criterion is undefined for one cluster or n clusters. With `Cut.centre` c > 0 the distances are those of the
  embeddings less c times their subset's mean (`centred_similarity`): what every entity of the subset shares counts
  less, so the criterion weighs the differences that the subset's own context makes. The dendrogram is unchanged.
- "calinski_harabasz": between- over within-cluster dispersion, (B / (c - 1)) / (W / (n - c)) for c clusters. For
  unit-norm embeddings ||x_i - x_j||^2 = 2 - 2 s_ij, so W and B follow from the similarities: a cluster C adds
  |C| - (sum of s_ij over i, j in C) / |C| to W, and a merge adds its average similarity x |A| x |B| to that sum.
- "gap": the width of the cut's threshold range inside the band, min(h[k - 1], high) - max(h[k], low): the largest
  gap between consecutive merge similarities wins.

Ties (criteria within 1e-9 of the best) go to the cut with the fewest merges, the one made at the highest threshold.
When no candidate has a defined criterion (e.g. two entities), the cut at the fallback threshold (the model's, else
the band's middle) is taken. Criteria use the dendrogram's rounded similarities, so the choice does not depend on the
order of the entities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cactus.cluster.agglomerative import Dendrogram, check_threshold

CUTS = {
    "threshold": "one similarity threshold for every subset (the model's tuned threshold)",
    "adaptive": "per subset, the cut of its own dendrogram with the best internal criterion, among the cuts whose "
                "thresholds lie in a band (needs no threshold)",
}
CRITERIA = {
    "silhouette": "mean silhouette on cosine distance (optionally of the embeddings less a share of their subset's "
                  "mean: `centre`)",
    "calinski_harabasz": "between- over within-cluster dispersion of the embeddings",
    "gap": "the widest range of thresholds inside the band over which the cut holds",
}
DEFAULT_BAND = (0.05, 0.7)
_TIE = 1e-9
_CHUNK = 4_000_000  # elements of the (cuts, n, 2n - 1) silhouette arrays computed at once


@dataclass(frozen=True)
class Cut:
    """How every subset's dendrogram is cut (see the module docstring); saved in a model's config.

    Attributes:
        rule: one of `CUTS`.
        criterion: one of `CRITERIA` (adaptive only).
        band: (low, high) thresholds whose cuts are candidates (adaptive only).
        centre: in [0, 1], the share of the subset's mean embedding removed before the silhouette's distances
            (`centred_similarity`; adaptive silhouette only, 0 elsewhere).
    """

    rule: str = "threshold"
    criterion: str = "silhouette"
    band: tuple[float, float] = DEFAULT_BAND
    centre: float = 0.0

    def __post_init__(self) -> None:
        if self.rule not in CUTS:
            raise ValueError(f"cut must be one of {', '.join(CUTS)}, got {self.rule!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"cut criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        low, high = (check_threshold(t, "cut band") for t in self.band)
        if low > high:
            raise ValueError(f"cut band: low {low} is above high {high}")
        object.__setattr__(self, "band", (low, high))
        try:
            centre = float(self.centre)
        except (TypeError, ValueError):
            raise ValueError(f"cut centre must be a number in [0, 1], got {self.centre!r}") from None
        if not 0.0 <= centre <= 1.0:  # also refuses NaN
            raise ValueError(f"cut centre must be a number in [0, 1], got {self.centre!r}")
        if centre and (self.rule, self.criterion) != ("adaptive", "silhouette"):
            raise ValueError(f"cut centre {centre:g} applies to the adaptive silhouette cut only, not to "
                             f"{self.rule}{' ' + self.criterion if self.rule == 'adaptive' else ''}")
        object.__setattr__(self, "centre", centre)

    def to_dict(self) -> dict:
        """JSON-friendly; the threshold rule saves its rule alone, and a centre of 0 is left out."""
        if self.rule == "threshold":
            return {"rule": self.rule}
        return {k: v for k, v in asdict(self).items() if k != "centre" or v} | {"band": list(self.band)}

    @classmethod
    def from_dict(cls, record: dict) -> "Cut":
        return cls(**{k: tuple(v) if k == "band" else v for k, v in record.items()})

    def describe(self) -> str:
        if self.rule == "threshold":
            return "threshold: one threshold for every subset"
        centred = f" (of the embeddings less {self.centre:g} x their subset's mean)" if self.centre else ""
        return f"adaptive: per subset, best {self.criterion}{centred} among the cuts at thresholds {self.band[0]:g} " \
               f"to {self.band[1]:g}"


def _bounds(dendrogram: Dendrogram) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower), each (n,): cut k holds for lower[k] < t <= upper[k]."""
    h = dendrogram.similarities
    return np.concatenate([[np.inf], h]), np.concatenate([h, [-np.inf]])


def candidates(dendrogram: Dendrogram, band: tuple[float, float]) -> np.ndarray:
    """(n,) bool: the cuts that hold for some threshold in [low, high] (a cut between tied merges holds for none)."""
    upper, lower = _bounds(dendrogram)
    low, high = band
    return (lower < upper) & (lower < high) & (upper >= low)


def _node_tables(dendrogram: Dendrogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tree node v (entities, then merges): (size (2n-1,), members (n, 2n-1) bool, alive (n, 2n-1) bool with
    alive[k, v] = v is a cluster of cut k)."""
    n = dendrogram.n_entities
    children = dendrogram.linkage[:, :2].astype(np.int64)
    size = np.concatenate([np.ones(n), dendrogram.linkage[:, 3]])
    members = np.zeros((n, 2 * n - 1), dtype=bool)
    members[np.arange(n), np.arange(n)] = True
    for m, (left, right) in enumerate(children):
        members[:, n + m] = members[:, left] | members[:, right]
    created = np.concatenate([np.zeros(n), np.arange(1, n)])
    merged = np.full(2 * n - 1, n)
    merged[children.ravel()] = np.repeat(np.arange(1, n), 2)
    k = np.arange(n)[:, None]
    return size, members, (created <= k) & (k < merged)


def centred_similarity(similarity: np.ndarray, centre: float) -> np.ndarray:
    """(n, n) cosine similarities of unit vectors x_i less `centre` times their mean m, from their similarities s
    alone: (x_i - c m) . (x_j - c m) = s_ij - c r_i - c r_j + c^2 r, with r_i = mean_j s_ij = x_i . m and
    r = mean r_i = m . m, then normalised by the rows' norms. An entity at the mean itself (c = 1, n = 1) keeps
    similarity 0 to every other."""
    if not centre:
        return similarity
    row = similarity.mean(1)
    gram = similarity - centre * (row[:, None] + row[None, :]) + centre ** 2 * row.mean()
    norm = np.sqrt(np.maximum(np.diag(gram), 0.0))
    norm = np.where(norm > 1e-12, norm, np.inf)
    return gram / norm[:, None] / norm[None, :]


def entity_silhouettes(dendrogram: Dendrogram, ks: np.ndarray, centre: float = 0.0) -> np.ndarray:
    """(len(ks), n) every entity's silhouette on cosine distance (of the embeddings less `centre` times their mean)
    at each cut in `ks` (cuts 1 .. n - 2, which have 2 to n - 1 clusters); nan for an entity alone in its cluster."""
    n = dendrogram.n_entities
    out = np.full((len(ks), n), np.nan)
    if len(ks) == 0:
        return out
    distance = 1.0 - centred_similarity(dendrogram.rounded, centre)
    np.fill_diagonal(distance, 0.0)
    size, members, alive = _node_tables(dendrogram)
    sums = distance @ members  # (n, 2n - 1): total distance from each entity to each node's members
    mean_to = sums / size
    own_sum = np.where(members, sums, 0.0)
    step = max(1, _CHUNK // (n * (2 * n - 1)))
    for rows in np.array_split(np.arange(len(ks)), -(-len(ks) // step)):
        live = alive[ks[rows], None, :]  # (c, 1, 2n - 1)
        own = live & members[None]  # (c, n, 2n - 1): the one live node holding each entity
        own_size = (own * size).sum(-1)
        a = (own * own_sum).sum(-1) / np.maximum(own_size - 1, 1)
        b = np.where(live & ~members[None], mean_to[None], np.inf).min(-1)
        out[rows] = np.where(own_size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), np.nan)
    return out


def silhouettes(dendrogram: Dendrogram, cuts: np.ndarray | None = None, centre: float = 0.0) -> np.ndarray:
    """(n,) mean silhouette on cosine distance (`entity_silhouettes`) of every cut, or of the (n,) bool `cuts` only
    (nan elsewhere), an entity alone in its cluster counting 0; nan for one cluster or n clusters. Each cut's value
    is computed once per dendrogram and centre (kept in `dendrogram.derived`): rules that differ only in their band,
    as `tune_cut` tries, share it."""
    n = dendrogram.n_entities
    out = np.full(n, np.nan)
    wanted = np.zeros(n, dtype=bool)
    wanted[1: n - 1] = True  # cuts 1 .. n - 2 have 2 .. n - 1 clusters
    ks = np.flatnonzero(wanted if cuts is None else wanted & cuts)
    known = dendrogram.derived.setdefault(("silhouette", centre), np.full(n, np.nan))  # nan: not computed yet
    todo = ks[np.isnan(known[ks])]
    known[todo] = np.nan_to_num(entity_silhouettes(dendrogram, todo, centre), nan=0.0).mean(-1)
    out[ks] = known[ks]
    return out


def calinski_harabasz(dendrogram: Dendrogram) -> np.ndarray:
    """(n,) Calinski-Harabasz index of every cut, from the similarities of unit-norm embeddings; nan for one
    cluster or n clusters, +inf when the clusters are tight points (W = 0) apart from each other."""
    n = dendrogram.n_entities
    out = np.full(n, np.nan)
    if n < 3:
        return out
    children = dendrogram.linkage[:, :2].astype(np.int64)
    size = np.concatenate([np.ones(n), dendrogram.linkage[:, 3]])
    inner = np.ones(2 * n - 1)  # sum of s_ij over i, j in the node (s_ii = 1)
    for m, (left, right) in enumerate(children):
        cross = dendrogram.similarities[m] * size[left] * size[right]
        inner[n + m] = inner[left] + inner[right] + 2.0 * cross
    spread = size - inner / size  # each node's contribution to W
    change = spread[n:] - spread[children[:, 0]] - spread[children[:, 1]]
    within = np.concatenate([[0.0], np.cumsum(change)])  # W after k merges
    total = within[-1]
    clusters = n - np.arange(n)
    k = np.arange(1, n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ((total - within[k]) / (clusters[k] - 1)) / (np.maximum(within[k], 0.0) / (n - clusters[k]))
    out[k] = ratio
    return out


def gaps(dendrogram: Dendrogram, band: tuple[float, float]) -> np.ndarray:
    """(n,) width of every cut's threshold range inside the band (<= 0 outside it)."""
    upper, lower = _bounds(dendrogram)
    return np.minimum(upper, band[1]) - np.maximum(lower, band[0])


def criterion_scores(dendrogram: Dendrogram, cut: Cut) -> np.ndarray:
    """(n,) the adaptive `cut`'s criterion of every cut that is a candidate in its band (nan elsewhere, and where
    undefined)."""
    allowed = candidates(dendrogram, cut.band)
    if cut.criterion == "silhouette":
        scores = silhouettes(dendrogram, allowed, cut.centre)
    elif cut.criterion == "calinski_harabasz":
        scores = calinski_harabasz(dendrogram)
    else:
        scores = gaps(dendrogram, cut.band)
    return np.where(allowed, scores, np.nan)


def pick(scores: np.ndarray) -> int | None:
    """The cut with the best defined score (ties to the fewest merges); None if none is defined."""
    valid = ~np.isnan(scores)
    if not valid.any():
        return None
    best = np.max(scores[valid])
    return int(np.flatnonzero(valid & (scores >= best - _TIE))[0])


def choose_cut(dendrogram: Dendrogram, cut: Cut, threshold: float | None) -> int:
    """The number of merges the rule `cut` keeps for one subset; `threshold` is the model's (needed by the
    threshold rule, the fallback of the adaptive one)."""
    if cut.rule == "threshold":
        if threshold is None:
            raise ValueError("the threshold cut needs a threshold")
        return int(dendrogram.merges_at(threshold))
    scores = criterion_scores(dendrogram, cut)
    chosen = pick(scores)
    if chosen is not None:
        return chosen
    fallback = threshold if threshold is not None else (cut.band[0] + cut.band[1]) / 2
    return int(dendrogram.merges_at(fallback))


def cut_cluster(similarity: np.ndarray, cut: Cut, threshold: float | None) -> np.ndarray:
    """(n,) canonical cluster ids of one subset under the rule `cut` (see `agglomerative_cluster` for the ids)."""
    dendrogram = Dendrogram(similarity)
    return dendrogram.cut(choose_cut(dendrogram, cut, threshold))
