"""The answers of a language model, on disk: one small JSON file per question, written atomically the moment its
answer arrives, so that the cache is also the state a killed run resumes from.

A question is identified by the model's name, the prompt's version, the temperature and the subset's texts in
order (`question_key`): the same texts under another subset id, or in another file, are the same question. Only
answers are kept (a valid grouping, or one that stayed invalid after the re-asks, which was paid for too); a
request that failed is not, so that the next run asks again. Nothing in an entry comes from the request's headers:
the API key is never written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from cactus.atomic import clean_temporaries, write_text

logger = logging.getLogger(__name__)

DEFAULT_FOLDER = "llm-cache"  # beside the output, unless told otherwise


def question_key(llm: str, prompt_version: str, temperature: float, texts: list[str]) -> str:
    """The 64 hex digits that name one question."""
    question = {"llm": llm, "prompt": prompt_version, "temperature": float(temperature), "texts": texts}
    return hashlib.sha256(json.dumps(question, ensure_ascii=False).encode("utf-8")).hexdigest()


class AnswerCache:
    """A folder of answers, `<folder>/<first 2 hex digits>/<key>.json`."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def clean(self) -> None:
        """Remove the temporaries that runs killed in the middle of a write left (each write cleans only the
        sub-folder it writes in)."""
        if self.folder.is_dir():
            for sub in self.folder.iterdir():
                if sub.is_dir():
                    clean_temporaries(sub / "entry")

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The answer stored under `key`, or None (an entry that does not read is taken as absent, with a
        warning)."""
        path = self.path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            logger.warning("%s: unreadable cache entry, asking again (%s)", path, e)
            return None
        if not isinstance(record, dict) or record.get("status") not in ("ok", "invalid"):
            logger.warning("%s: not a cache entry, asking again", path)
            return None
        return record

    def put(self, key: str, record: dict) -> None:
        write_text(self.path(key), json.dumps(record, ensure_ascii=False) + "\n")
