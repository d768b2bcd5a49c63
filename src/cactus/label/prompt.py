"""The prompt: how a subset is put to the language model, and how a grouping that is not valid is asked for again.

A template is plain text with two placeholders (`string.Template` syntax, so that JSON braces in it need no
escaping): `$entities`, the subset's texts, one per line, numbered from 1, and `$count`, how many there are. Its
version is a hash of its text and of the re-ask text, so that a changed prompt never reuses answers cached for
another.
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TEMPLATE = """\
Below are $count entities, numbered from 1. Group them into clusters: entities that belong together go into the same \
cluster, judged by what they are and by what else is in this list. A cluster may hold a single entity.

$entities

Answer with a JSON object only, in this form:
{"clusters": [{"name": "a short name for the cluster", "members": [1, 4]}, {"name": "...", "members": [2, 3]}]}
Every entity number from 1 to $count must be in exactly one cluster.
"""

REASK_TEMPLATE = """\
That grouping is not valid: $problems. Answer again with the whole grouping in the same form: every entity number \
from 1 to $count in exactly one cluster, and no other number.
"""

PLACEHOLDERS = ("entities", "count")


class PromptError(ValueError):
    """A prompt template that cannot be used (no `$entities`, an unknown placeholder, a stray `$`)."""


@dataclass(frozen=True)
class Prompt:
    """A prompt template and the messages it makes.

    Attributes:
        template: the text of the first message, with `$entities` (required) and `$count`.
        source: where the template came from ("default" or a file), for messages and the summary.
    """

    template: str = DEFAULT_TEMPLATE
    source: str = "default"

    def __post_init__(self) -> None:
        t = string.Template(self.template)
        if not t.is_valid():
            raise PromptError("a '$' that starts no placeholder; write '$$' for a dollar sign")
        names = set(t.get_identifiers())
        unknown = sorted(names - set(PLACEHOLDERS))
        if unknown:
            raise PromptError(f"unknown placeholder(s) {', '.join('$' + n for n in unknown)}; a template may use "
                              f"{' and '.join('$' + n for n in PLACEHOLDERS)}")
        if "entities" not in names:
            raise PromptError("the template has no $entities, where the numbered entities go")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Prompt":
        """The template in a UTF-8 text file; OSError if it cannot be read, PromptError if it cannot be used."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise PromptError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
        return cls(text, source=str(path))

    @property
    def version(self) -> str:
        """"sha256:" and the first 16 hex digits of the hash of the template and the re-ask text."""
        digest = hashlib.sha256(f"{self.template}\0{REASK_TEMPLATE}".encode("utf-8")).hexdigest()
        return f"sha256:{digest[:16]}"

    def messages(self, texts: list[str]) -> list[dict]:
        """The chat messages that ask for a grouping of `texts` (each on one line: its whitespace runs made one
        space, so that a text holding a line break cannot pass for two entities)."""
        numbered = "\n".join(f"{i}. {' '.join(text.split())}" for i, text in enumerate(texts, start=1))
        content = string.Template(self.template).substitute(entities=numbered, count=len(texts))
        return [{"role": "user", "content": content}]

    @staticmethod
    def reask(problems: list[str], count: int) -> dict:
        """The message that follows a reply whose grouping has `problems`."""
        return {"role": "user", "content": string.Template(REASK_TEMPLATE).substitute(problems="; ".join(problems),
                                                                                       count=count)}
