"""A subset's clustering errors in words: each gold cluster split across predicted clusters, and each predicted
cluster that merges gold clusters, with example texts of every part."""

from __future__ import annotations

from typing import Sequence

from cactus.data.subsets import Label

_PARTS = 5  # parts named in one sentence; the rest are counted


def _entities(k: int) -> str:
    return f"{k} entit{'y' if k == 1 else 'ies'}"


def _other(k: int, what: str) -> str:
    return f"{k} other {what}{'s' * (k != 1)}"


def _listed(items: list[str], rest: str | None = None) -> str:
    """'a', 'a and b', 'a, b and c'; `rest` (what was left out) comes last."""
    items = items + ([rest] if rest else [])
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _parts(members: list[int], key: Sequence[Label]) -> list[tuple[Label, list[int]]]:
    """`members` grouped by `key`, largest group first (ties: first appearance)."""
    groups: dict[Label, list[int]] = {}
    for i in members:
        groups.setdefault(key[i], []).append(i)
    return sorted(groups.items(), key=lambda kv: -len(kv[1]))


def partition_errors(texts: Sequence[str], gold: Sequence[Label], pred: Sequence[Label],
                     names: dict | None = None, examples: int = 2) -> list[dict]:
    """The split and merge errors of one subset, those that misplace the most entities first.

    Args:
        texts, gold, pred: (n,) the entities, their gold labels, their predicted cluster ids.
        names: predicted cluster id -> its name (e.g. its top terms), said with a merging cluster.
        examples: texts shown of every part.

    Returns:
        [{"kind": "split" | "merge", "misplaced": entities outside the largest part, "sentence": str,
          "examples": [{"part": str, "texts": [str]}]}]
    """
    errors = []
    for label, members in _parts(list(range(len(gold))), gold):
        parts = _parts(members, pred)
        if len(parts) > 1:
            shown = [f"{cid} ({_entities(len(m))})" for cid, m in parts[:_PARTS]]
            rest = parts[_PARTS:]
            more = f"{_other(len(rest), 'cluster')} ({_entities(sum(len(m) for _, m in rest))})" if rest else None
            errors.append(_error("split", len(members) - len(parts[0][1]),
                                 f"gold '{label}' ({_entities(len(members))}) is split across predicted clusters "
                                 f"{_listed(shown, more)}", parts, "predicted cluster {}", texts, examples))
    for cid, members in _parts(list(range(len(pred))), pred):
        parts = _parts(members, gold)
        if len(parts) > 1:
            name = f" ('{names[cid]}', {_entities(len(members))})" if names and cid in names else \
                f" ({_entities(len(members))})"
            shown = [f"'{label}' ({len(m)})" for label, m in parts[:_PARTS]]
            rest = parts[_PARTS:]
            more = f"{_other(len(rest), 'gold cluster')} ({sum(len(m) for _, m in rest)})" if rest else None
            errors.append(_error("merge", len(members) - len(parts[0][1]),
                                 f"predicted cluster {cid}{name} merges gold {_listed(shown, more)}", parts,
                                 "gold '{}'", texts, examples))
    return sorted(errors, key=lambda e: -e["misplaced"])  # stable: ties keep splits, then merges, as found


def _error(kind: str, misplaced: int, sentence: str, parts: list[tuple[Label, list[int]]], part_name: str,
           texts: Sequence[str], examples: int) -> dict:
    return {"kind": kind, "misplaced": misplaced, "sentence": sentence,
            "examples": [{"part": part_name.format(key), "texts": [texts[i] for i in members[:examples]]}
                         for key, members in parts[:_PARTS]]}
