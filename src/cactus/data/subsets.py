"""The subset: a small set of short texts (entities), optionally with their ground-truth clustering.

Validation lives here, at the boundary; everything downstream trusts a `Subset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
        id: unique name of the subset, a string or an integer (kept as given).
        texts: the entities, (n,) non-empty strings.
        labels: ground-truth cluster of each entity, (n,) str or int; None when unknown.
        entity_ids: optional caller ids of the entities, (n,).
        extra: any other fields of the input record, written back unchanged.
        cluster_ids: predicted cluster of each entity, (n,); None before prediction. Kept apart from `labels`, so
            that predictions never overwrite the truth.
        columns: a table's other columns, name -> (n,) values of this subset's rows, written back unchanged.
        rows: the 0-based row of each entity in the table it was read from, (n,); a table written from these
            subsets keeps that order. None when not read from a table.
    """

    id: str | int
    texts: list[str]
    labels: list[Label] | None = None
    entity_ids: list[Label] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cluster_ids: list[Label] | None = None
    columns: dict[str, list] = field(default_factory=dict)
    rows: list[int] | None = None

    def __post_init__(self) -> None:
        validate_subset(self)

    def __len__(self) -> int:
        return len(self.texts)

    def with_labels(self, labels: Sequence[Label]) -> "Subset":
        """A copy of this subset carrying `labels`."""
        return replace(self, labels=list(labels))

    def with_clusters(self, cluster_ids: Sequence[Label]) -> "Subset":
        """A copy of this subset carrying predicted `cluster_ids`; its labels and every other field are kept."""
        return replace(self, cluster_ids=list(cluster_ids))


# The fields of a JSONL record and the columns of a long table that cactus reads itself; any other is carried through.
RECORD_FIELDS = ("id", "texts", "labels", "entity_ids", "cluster_ids")
TABLE_COLUMNS = ("subset_id", "text", "label", "entity_id", "cluster_id")


def is_label(x: Any) -> bool:
    return isinstance(x, str) or (isinstance(x, int) and not isinstance(x, bool))


def validate_subset(s: Subset) -> None:
    """Raise `SubsetFormatError` naming the subset and entity if `s` is malformed."""

    def fail(msg: str, entity_index: int | None = None) -> None:
        raise SubsetFormatError(msg, subset_id=s.id if is_label(s.id) else None, entity_index=entity_index)

    if not is_label(s.id) or s.id == "":
        fail(f"'id' must be a non-empty string or an integer, got {s.id!r}")
    if not isinstance(s.texts, list):
        fail(f"'texts' must be a list of strings, got {type(s.texts).__name__}")
    if len(s.texts) == 0:
        fail("'texts' is empty: a subset needs at least one entity")
    for i, t in enumerate(s.texts):
        if not isinstance(t, str):
            fail(f"text must be a string, got {type(t).__name__} {t!r}", i)
        if not t.strip():
            fail("text is empty", i)
    for name in ("labels", "entity_ids", "cluster_ids"):
        values = getattr(s, name)
        if values is not None:
            _check_values(values, name, len(s.texts), fail)
    if s.entity_ids is not None:
        seen: dict[str, int] = {}
        for i, e in enumerate(s.entity_ids):
            if str(e) in seen:  # 1 and "1" too: a predictions file may hold either, so they must not both be used
                fail(f"entity id {e!r} repeats entity {seen[str(e)]}", i)
            seen[str(e)] = i
    _check_carried(s, fail)


def _check_values(values: Any, name: str, n: int, fail) -> None:
    if not isinstance(values, list):
        fail(f"'{name}' must be a list, got {type(values).__name__}")
    if len(values) != n:
        fail(f"'{name}' has {len(values)} items but 'texts' has {n}")
    for i, v in enumerate(values):
        if not is_label(v):
            fail(f"{name[:-1]} must be a string or an integer, got {type(v).__name__} {v!r}", i)


def _check_carried(s: Subset, fail) -> None:
    """The carried fields: record fields that do not take the name of one cactus reads, and table columns."""
    if not isinstance(s.extra, dict) or not isinstance(s.columns, dict):
        fail("'extra' and 'columns' must be dicts")
    for name in s.extra:
        if name in RECORD_FIELDS:
            fail(f"extra field {name!r} has the name of a field cactus reads")
    # A column may have the default name of a role whose column the table names otherwise (a 'text' column beside
    # the texts in 'title'); whether a table can hold it is `cactus.data.io.check_layout`'s question.
    for name, values in s.columns.items():
        if name in s.extra:
            fail(f"column {name!r} has the name of another field")
        if not isinstance(values, list) or len(values) != len(s.texts):
            fail(f"column {name!r} must be a list with one value per entity")
    if s.rows is not None and (not isinstance(s.rows, list) or len(s.rows) != len(s.texts)):
        fail("'rows' must be a list with one row number per entity")


def printed_alike(values: Sequence[Label]) -> tuple[Label, Label] | None:
    """The first two values that print the same but differ in type (1 and "1"), or None."""
    first: dict[str, Label] = {}
    for v in values:
        other = first.setdefault(str(v), v)
        if type(other) is not type(v):
            return other, v
    return None


def check_unique_ids(subsets: Sequence[Subset], source: str | None = None) -> None:
    """Fail naming the first repeated subset id; ids that print the same (1 and "1") count as one."""
    seen: set[str] = set()
    for s in subsets:
        if str(s.id) in seen:
            raise SubsetFormatError("duplicate subset id", source=source, subset_id=s.id)
        seen.add(str(s.id))


def require_labels(subsets: Sequence[Subset], purpose: str) -> None:
    """Fail naming the first subset without labels (training, tuning and evaluation need them)."""
    for s in subsets:
        if s.labels is None:
            raise SubsetFormatError(f"{purpose} needs 'labels', and this subset has none", subset_id=s.id)
