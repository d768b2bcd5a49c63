"""Reading a grouping out of a language model's reply, and checking it.

The reply is asked for as JSON, but servers without a JSON mode, and models that talk, answer in other forms too.
`parse_reply` takes, in this order:
1. a JSON value, the whole reply or the first one inside it (in prose, or in a fenced code block) that holds a
   grouping: `{"clusters": [{"name": ..., "members": [1, 2]}, ...]}` (also "groups", and "label" or "title" for
   the name, "entities", "items", "ids" or "indices" for the members), `{"clusters": {"name": [1, 2], ...}}`, a bare
   `{"name": [1, 2], ...}`, a list of such cluster objects, or a list of lists of numbers;
2. else lines like `Fruit: 1, 2, 5` (a bullet or a list number before the name is allowed), every such line one
   cluster.
Members are entity numbers as the prompt gave them, from 1; an integer written as text ("3", "#3", "3. red apple")
counts as that number, and anything else is kept as it is, for `check_grouping` to report. Nothing is repaired
here: a grouping with problems goes back to the model (`cactus.label.labeller`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterator

NAME_KEYS = ("name", "label", "title")
MEMBER_KEYS = ("members", "entities", "items", "ids", "indices")
GROUPING_KEYS = ("clusters", "groups")

_NUMBER_TEXT = re.compile(r"\s*#?(\d+)(?:[.):]\s.*|[.):]?)\s*", re.DOTALL)
_LINE = re.compile(r"\s*(?:[-*\u2022]|\d+[.)])?\s*(?P<name>[^:\n]*?)\s*:\s*"
                   r"(?P<members>#?\d+(?:\s*(?:,|;|&|\band\b)?\s*#?\d+)*)\s*[.,;]?\s*")
_MEMBER_NUMBER = re.compile(r"\d+")


class ReplyError(ValueError):
    """A reply that holds no grouping at all."""


@dataclass(frozen=True)
class Cluster:
    """One cluster of a reply: its name (None when the reply gave none) and its members, entity numbers from 1 as
    the model wrote them (an item that is no number is kept as it was)."""

    name: str | None
    members: tuple

    def to_dict(self) -> dict:
        return {"name": self.name, "members": list(self.members)}


def parse_reply(text: str) -> list[Cluster]:
    """The clusters a reply gives, in its order (empty clusters left out); ReplyError when it holds none."""
    if not text.strip():
        raise ReplyError("the reply was empty")
    for value in _json_values(text):
        clusters = _clusters_of(value)
        if clusters is not None:
            return [c for c in clusters if c.members]
    clusters = [Cluster(m["name"].strip("*_` ") or None,
                        tuple(int(x) for x in _MEMBER_NUMBER.findall(m["members"])))
                for m in map(_LINE.fullmatch, text.splitlines()) if m]
    if clusters:
        return clusters
    raise ReplyError("the reply holds no grouping: neither JSON clusters of entity numbers nor lines "
                     "'name: 1, 2, 5'")


def _json_values(text: str) -> Iterator[object]:
    """The whole text as JSON, else every JSON object or list found in it, left to right."""
    try:
        yield json.loads(text)
        return
    except ValueError:
        pass
    decoder, start = json.JSONDecoder(), 0
    while True:
        starts = [i for i in (text.find("{", start), text.find("[", start)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start += 1
            continue
        yield value
        start = end


def _clusters_of(value: object) -> list[Cluster] | None:
    """The clusters a JSON value holds, or None when it is no grouping."""
    if isinstance(value, dict):
        inner = next((value[k] for k in value if k.lower() in GROUPING_KEYS), None)
        if inner is not None:
            return _clusters_of(inner)
        if _member_key(value) is not None:
            return [_cluster_of_object(value)]
        if value and all(isinstance(v, list) and not any(isinstance(m, (list, dict)) for m in v)
                         for v in value.values()):
            return [Cluster(str(name), tuple(map(_member, members))) for name, members in value.items()]
        if len(value) == 1:  # a wrapper, {"answer": {...}}
            return _clusters_of(next(iter(value.values())))
        return None
    if isinstance(value, list) and value:
        if all(isinstance(item, list) for item in value):
            return [Cluster(None, tuple(map(_member, item))) for item in value]
        if all(isinstance(item, dict) and _member_key(item) is not None for item in value):
            return [_cluster_of_object(item) for item in value]
    return None


def _member_key(record: dict) -> str | None:
    return next((k for k in record if k.lower() in MEMBER_KEYS and isinstance(record[k], list)), None)


def _cluster_of_object(record: dict) -> Cluster:
    name = next((record[k] for k in record if k.lower() in NAME_KEYS and isinstance(record[k], (str, int))), None)
    return Cluster(None if name is None else str(name), tuple(map(_member, record[_member_key(record)])))


def _member(item: object) -> object:
    """An entity number from an item of a reply: an integer, or text that starts with one ("3", "#3", "3. text")."""
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    if isinstance(item, str):
        match = _NUMBER_TEXT.fullmatch(item)
        if match:
            return int(match[1])
    return item


def check_grouping(clusters: list[Cluster], count: int) -> list[str]:
    """What is wrong with `clusters` as a grouping of entities 1..`count`, each problem in words (for the model and
    for the failure record); empty when every entity is in exactly one cluster and nothing else is."""
    problems = []
    placed: dict[int, int] = {}
    invented: list[str] = []
    for cluster in clusters:
        for m in cluster.members:
            if isinstance(m, int) and 1 <= m <= count:
                placed[m] = placed.get(m, 0) + 1
            else:
                invented.append(repr(m) if not isinstance(m, int) else str(m))
    if not clusters:
        problems.append("it has no cluster")
    missing = [str(i) for i in range(1, count + 1) if i not in placed]
    if missing:
        problems.append(f"{_entities(missing)} {'is' if len(missing) == 1 else 'are'} in no cluster")
    repeated = [str(i) for i, times in sorted(placed.items()) if times > 1]
    if repeated:
        problems.append(f"{_entities(repeated)} {'is' if len(repeated) == 1 else 'are'} in more than one cluster "
                        "(or twice in one)")
    if invented:
        problems.append(f"{', '.join(dict.fromkeys(invented))} {'is' if len(set(invented)) == 1 else 'are'} not "
                        f"an entity number (the entities are numbered 1 to {count})")
    return problems


def _entities(numbers: list[str]) -> str:
    return f"entit{'y' if len(numbers) == 1 else 'ies'} {', '.join(numbers)}"


def labels_of(clusters: list[Cluster], count: int) -> tuple[list[str], list[str | None]]:
    """The label of each of `count` entities of a valid grouping, and the cluster names: clusters are numbered by the
    first entity each holds, labels are those numbers as text ("0", "1", ...), and names[k] is cluster k's name."""
    cluster_of = {m: c for c, cluster in enumerate(clusters) for m in cluster.members}
    number: dict[int, int] = {}
    for i in range(1, count + 1):
        number.setdefault(cluster_of[i], len(number))
    names = [None] * len(number)
    for c, k in number.items():
        names[k] = clusters[c].name
    return [str(number[cluster_of[i]]) for i in range(1, count + 1)], names
