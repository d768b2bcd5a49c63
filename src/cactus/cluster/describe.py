"""What a subset's predicted clusters are: a name, top terms, a representative entity, and each entity's cohesion.

- Top terms: class-based TF-IDF over the subset (the clusters are the classes): a term's frequency in a cluster,
  L1-normalised per cluster, times log(1 + A / f), A the mean number of terms per cluster and f the term's frequency in
  the whole subset. Words of two letters or more, lower-cased, English stop words dropped (scikit-learn's
  `CountVectorizer`). The name joins the top three terms; a cluster without terms is named by its representative.
- Representative: the medoid, the member with the highest mean similarity to the other members (ties: the first).
- Cohesion of an entity: its mean similarity to the other members of its cluster, minus its highest mean similarity
  to another cluster (the silhouette's two terms, on cosine similarity, as a difference). An entity alone in its
  cluster takes its similarity to itself, 1, as the first term, so that a singleton that nearly joined a cluster
  scores low (the silhouette's convention, 0 for every singleton, hid exactly the entities wrongly split off:
  docs/benchmarks/describe_quality.md); in a subset of one cluster the second term is 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

NAME_TERMS = 3


@dataclass
class ClusterDescription:
    """One predicted cluster of a subset. `members` and `representative` are entity indices into the subset."""

    id: int
    name: str
    size: int
    members: list[int]
    representative: int
    top_terms: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SubsetDescription:
    """A subset's prediction, described: (n,) cluster ids, one `ClusterDescription` per cluster (in order of first
    appearance), and the (n,) cohesion of every entity."""

    cluster_ids: np.ndarray
    clusters: list[ClusterDescription]
    cohesion: np.ndarray


def _one_hot(cluster_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(clusters in order of first appearance, (n, k) 0/1 membership)."""
    ids, first = np.unique(cluster_ids, return_index=True)
    ids = ids[np.argsort(first)]
    return ids, (cluster_ids[:, None] == ids[None, :]).astype(np.float64)


def cohesion(similarity: np.ndarray, cluster_ids: Sequence[int]) -> np.ndarray:
    """(n,) cohesion of every entity (see the module docstring) from the (n, n) similarity matrix."""
    labels = np.asarray(cluster_ids)
    _, member = _one_hot(labels)
    sim = np.asarray(similarity, dtype=np.float64)
    sizes = member.sum(0)  # (k,)
    sums = sim @ member - member * np.diag(sim)[:, None]  # (n, k), an entity's own similarity left out
    others = sizes[None, :] - member  # members other than the entity itself
    means = np.divide(sums, others, out=np.full_like(sums, np.nan), where=others > 0)
    own = np.nansum(np.where(member > 0, means, 0.0), axis=1)
    alone = (member * (others == 0)).sum(1) > 0
    nearest = np.where(member > 0, -np.inf, means).max(1) if member.shape[1] > 1 else np.zeros(len(labels))
    return np.where(alone, 1.0, own) - nearest


def medoid(similarity: np.ndarray, members: np.ndarray) -> int:
    """The member with the highest mean similarity to the other members (the first on ties)."""
    if len(members) == 1:
        return int(members[0])
    block = np.asarray(similarity, dtype=np.float64)[np.ix_(members, members)]
    return int(members[np.argmax(block.sum(1) - np.diag(block))])


def top_terms(texts: Sequence[str], cluster_ids: Sequence[int], n_terms: int = 5) -> list[list[str]]:
    """Per cluster (in order of first appearance), its top `n_terms` terms by class-based TF-IDF."""
    labels = np.asarray(cluster_ids)
    _, member = _one_hot(labels)
    try:
        counts = CountVectorizer(stop_words="english").fit(texts)
    except ValueError:  # no term at all in the subset (only stop words, digits or one-letter words)
        return [[] for _ in range(member.shape[1])]
    vocab = counts.get_feature_names_out()
    tf = member.T @ counts.transform(texts).toarray()  # (k, V) term counts per cluster
    per_cluster = tf.sum(1, keepdims=True)
    weight = np.divide(tf, per_cluster, out=np.zeros_like(tf), where=per_cluster > 0)
    weight *= np.log1p(per_cluster.mean() / tf.sum(0))[None, :]
    out = []
    for row, present in zip(weight, tf > 0):
        order = np.lexsort((vocab, -row))  # by weight, then alphabetically: deterministic
        out.append([str(vocab[i]) for i in order if present[i]][:n_terms])
    return out


def describe_subset(texts: Sequence[str], similarity: np.ndarray, cluster_ids: Sequence[int],
                    n_terms: int = 5) -> SubsetDescription:
    """texts: (n,) the entities; similarity: (n, n) their cosine similarities; cluster_ids: (n,) predicted clusters."""
    return SubsetDescription(np.asarray(cluster_ids), describe_clusters(texts, similarity, cluster_ids, n_terms),
                             cohesion(similarity, cluster_ids))


def describe_clusters(texts: Sequence[str], similarity: np.ndarray, cluster_ids: Sequence[int],
                      n_terms: int = 5) -> list[ClusterDescription]:
    """One `ClusterDescription` per predicted cluster of a subset, in order of first appearance (shapes as in
    `describe_subset`)."""
    labels = np.asarray(cluster_ids)
    ids, member = _one_hot(labels)
    terms = top_terms(texts, labels, n_terms)
    out = []
    for j, cid in enumerate(ids):
        members = np.flatnonzero(member[:, j])
        rep = medoid(similarity, members)
        name = " / ".join(terms[j][:NAME_TERMS]) or _shorten(texts[rep])
        out.append(ClusterDescription(_plain(cid), name, len(members), members.tolist(), rep, terms[j]))
    return out


def _plain(x):
    return x.item() if isinstance(x, np.generic) else x


def _shorten(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"
