"""The subset: a small set of short texts (entities), optionally with their ground-truth clustering.

Validation lives here, at the boundary; everything downstream trusts a `Subset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

Label = str | int


class SubsetFormatError(ValueError):
    """Bad input, with where it is: source file and line, subset id, entity index."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        subset_id: str | None = None,
        entity_index: int | None = None,
    ):
        self.reason = message
        self.source = source
        self.line = line
        self.subset_id = subset_id
        self.entity_index = entity_index
        where = []
        if source is not None:
            where.append(f"{source}:{line}" if line is not None else source)
        if subset_id is not None:
            where.append(f"subset {subset_id!r}")
        if entity_index is not None:
            where.append(f"entity {entity_index}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

    def located(self, source: str, line: int | None) -> "SubsetFormatError":
        """The same error, placed in a file."""
        return SubsetFormatError(
            self.reason, source=source, line=line, subset_id=self.subset_id, entity_index=self.entity_index
        )


@dataclass
class Subset:
    """One subset of entities.

    Attributes:
        id: unique name of the subset.
        texts: the entities, (n,) non-empty strings.
        labels: ground-truth cluster of each entity, (n,) str or int; None when unknown.
        entity_ids: optional caller ids of the entities, (n,).
        extra: any other fields of the input record, written back unchanged.
    """

    id: str
    texts: list[str]
    labels: list[Label] | None = None
    entity_ids: list[Label] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_subset(self)

    def __len__(self) -> int:
        return len(self.texts)

    def with_labels(self, labels: Sequence[Label]) -> "Subset":
        """A copy of this subset carrying `labels` (for example predicted cluster ids)."""
        return Subset(self.id, list(self.texts), list(labels), self.entity_ids, dict(self.extra))


def _is_label(x: Any) -> bool:
    return isinstance(x, str) or (isinstance(x, int) and not isinstance(x, bool))


def validate_subset(s: Subset) -> None:
    """Raise `SubsetFormatError` naming the subset and entity if `s` is malformed."""

    def fail(msg: str, entity_index: int | None = None) -> None:
        raise SubsetFormatError(msg, subset_id=s.id if isinstance(s.id, str) else None, entity_index=entity_index)

    if not isinstance(s.id, str) or not s.id:
        fail(f"'id' must be a non-empty string, got {s.id!r}")
    if not isinstance(s.texts, list):
        fail(f"'texts' must be a list of strings, got {type(s.texts).__name__}")
    if len(s.texts) == 0:
        fail("'texts' is empty: a subset needs at least one entity")
    for i, t in enumerate(s.texts):
        if not isinstance(t, str):
            fail(f"text must be a string, got {type(t).__name__} {t!r}", i)
        if not t.strip():
            fail("text is empty", i)
    for name in ("labels", "entity_ids"):
        values = getattr(s, name)
        if values is None:
            continue
        if not isinstance(values, list):
            fail(f"'{name}' must be a list, got {type(values).__name__}")
        if len(values) != len(s.texts):
            fail(f"'{name}' has {len(values)} items but 'texts' has {len(s.texts)}")
        for i, v in enumerate(values):
            if not _is_label(v):
                fail(f"{name[:-1]} must be a string or an integer, got {type(v).__name__} {v!r}", i)
    if s.entity_ids is not None:
        seen: dict[Label, int] = {}
        for i, e in enumerate(s.entity_ids):
            if e in seen:
                fail(f"entity id {e!r} repeats entity {seen[e]}", i)
            seen[e] = i


def check_unique_ids(subsets: Sequence[Subset], source: str | None = None) -> None:
    seen: set[str] = set()
    for s in subsets:
        if s.id in seen:
            raise SubsetFormatError("duplicate subset id", source=source, subset_id=s.id)
        seen.add(s.id)


def require_labels(subsets: Sequence[Subset], purpose: str) -> None:
    """Fail naming the first subset without labels (training, tuning and evaluation need them)."""
    for s in subsets:
        if s.labels is None:
            raise SubsetFormatError(f"{purpose} needs 'labels', and this subset has none", subset_id=s.id)
