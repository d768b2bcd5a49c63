"""Labelling a file of subsets with a language model (`cactus label`): one question per subset, asked again while
the reply holds no valid grouping, answers cached as they arrive, and the file written whole.

1. The input is read and checked whole: no subset may hold `labels` already, nor a field the output adds.
2. Each subset is a question (`cactus.label.cache.question_key`); questions already answered in the cache are not
   asked again (with `retry_failed`, those whose answer stayed invalid are).
3. The others are asked concurrently (`ChatClient`). A reply is parsed and checked (`cactus.label.parse`); while it
   is not a grouping of every entity exactly once, the model is told what is wrong and asked again, at most
   `max_reasks` times. Each answer is written to the cache the moment it arrives: a killed run loses only the
   answers in flight, and the next run asks only what is not in the cache.
4. The output is every input subset, in input order, with every field kept: `labels` (each entity's cluster,
   numbered by first appearance, as text) and `label_names` (the model's name of each cluster, by that number), or,
   for a subset that got no valid grouping, `label_error` (why) and no labels. It is written atomically.
5. The summary counts subsets, answers, requests, re-asks, retries, tokens and cost.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping

from tqdm.auto import tqdm

from cactus.data.io import layout_of, read_subsets, write_subsets
from cactus.data.subsets import Subset, SubsetFormatError
from cactus.label.cache import DEFAULT_FOLDER, AnswerCache, question_key
from cactus.label.client import ChatClient, RequestFailed, public_url
from cactus.label.parse import Cluster, ReplyError, check_grouping, labels_of, parse_reply
from cactus.label.prompt import Prompt

# What the output adds to each subset, beside `labels`.
ADDED_FIELDS = ("label_names", "label_error")


async def ask(client: ChatClient, prompt: Prompt, texts: list[str], max_reasks: int) -> dict:
    """Ask for a grouping of `texts`, and again, saying what was wrong, while the reply holds no valid one (at most
    `max_reasks` times). Returns the answer as the cache keeps it: status "ok" with the clusters, or "invalid"
    with the last reply's problems as `error`; the last reply's text; the replies it took; their token usage.
    RequestFailed and EndpointError (`ChatClient.chat`) pass through."""
    messages = prompt.messages(texts)
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    for answers in range(1, max_reasks + 2):
        reply = await client.chat(messages)
        usage["prompt_tokens"] += reply.prompt_tokens or 0
        usage["completion_tokens"] += reply.completion_tokens or 0
        try:
            clusters = parse_reply(reply.text)
            problems = check_grouping(clusters, len(texts))
        except ReplyError as e:
            problems = [str(e)]
        record = {"reply": reply.text, "answers": answers, "usage": usage}
        if not problems:
            return {"status": "ok", "clusters": [c.to_dict() for c in clusters], **record}
        messages = [*messages, {"role": "assistant", "content": reply.text}, prompt.reask(problems, len(texts))]
    error = f"no valid grouping in {answers} {'reply' if answers == 1 else 'replies'}; the last: {'; '.join(problems)}"
    return {"status": "invalid", "error": error, **record}


def label_file(input: str | os.PathLike, output: str | os.PathLike, client: ChatClient, *,
               prompt: Prompt | None = None, cache: str | os.PathLike | None = None, max_reasks: int = 2,
               retry_failed: bool = False, prices: tuple[float, float] = (0.0, 0.0), progress: bool = False,
               columns: Mapping[str, str] | None = None) -> dict:
    """Label every subset of the file `input` with the model behind `client` and write them to the JSONL file
    `output`, as the module docstring says.

    Args:
        prompt: the prompt template (default: `Prompt()`, the shipped one).
        cache: the answers folder (default: `llm-cache` beside `output`).
        max_reasks: most times a reply without a valid grouping is answered with what is wrong in it.
        retry_failed: ask again the questions whose cached answer stayed invalid.
        prices: cost of 1,000 prompt tokens and of 1,000 completion tokens, for the summary.
        columns: a table input's names for the columns cactus reads (`cactus.data.io.read_subsets`).
    Returns:
        the summary (docs/label.md): subsets labelled and failed, answers from the cache and asked, requests,
        re-asks, retries, tokens and cost of this run, and tokens and cost of every answer the output holds.
    """
    start = time.perf_counter()
    prompt = prompt or Prompt()
    if layout_of(output) != "jsonl":
        raise ValueError(f"{output}: labels are written as JSONL (.jsonl, .jsonl.gz)")
    subsets = read_subsets(input, columns)
    check_input(subsets, str(input))
    store = AnswerCache(cache if cache is not None else Path(output).parent / DEFAULT_FOLDER)
    store.clean()
    keys = [question_key(client.llm, prompt.version, client.temperature, s.texts) for s in subsets]
    texts = dict(zip(keys, (s.texts for s in subsets)))
    cached = {k: store.get(k) for k in texts}
    results = {k: r for k, r in cached.items() if r is not None and not (retry_failed and r["status"] == "invalid")}
    todo = {k: t for k, t in texts.items() if k not in results}
    meta = {"llm": client.llm, "prompt_version": prompt.version, "temperature": client.temperature}
    results |= asyncio.run(_ask_all(client, prompt, todo, store, meta, max_reasks, progress))
    labelled = [_labelled(s, results[k]) for s, k in zip(subsets, keys)]
    write_subsets(output, labelled)
    answers = [r for r in (results[k] for k in dict.fromkeys(keys)) if isinstance(r, dict)]
    return {
        "input": str(input), "output": str(output), "cache": str(store.folder), "url": public_url(client.url),
        **meta, "prompt": prompt.source,
        "subsets": len(subsets), "labelled": sum(s.labels is not None for s in labelled),
        "failed": sum(s.labels is None for s in labelled),
        "failures": [{"id": s.id, "error": s.extra["label_error"]} for s in labelled if s.labels is None],
        "questions": {"from_cache": len(texts) - len(todo), "asked": len(todo)},
        "requests": client.counts.requests, "retries": client.counts.retries,
        "reasks": sum(r["answers"] - 1 for k, r in results.items() if k in todo and isinstance(r, dict)),
        "prices_per_1k_tokens": {"prompt": prices[0], "completion": prices[1]},
        "this_run": _account(client.counts.prompt_tokens, client.counts.completion_tokens, prices),
        "requests_without_usage": client.counts.without_usage,
        "all_answers": _account(sum(r["usage"]["prompt_tokens"] for r in answers),
                                sum(r["usage"]["completion_tokens"] for r in answers), prices),
        "seconds": round(time.perf_counter() - start, 3),
    }


def check_input(subsets: list[Subset], source: str) -> None:
    """SubsetFormatError naming the first subset that holds `labels` already, or a field the output adds."""
    for s in subsets:
        if s.labels is not None:
            raise SubsetFormatError("holds 'labels' already, where the model's labels go; remove them first (jq -c "
                                    f"'del(.labels)' {source})", source=source, subset_id=s.id)
        clash = next((name for name in ADDED_FIELDS if name in s.extra or name in s.columns), None)
        if clash:
            raise SubsetFormatError(f"holds a field {clash!r}, which cactus label writes; rename it", source=source,
                                    subset_id=s.id)


async def _ask_all(client: ChatClient, prompt: Prompt, questions: dict[str, list[str]], store: AnswerCache,
                   meta: dict, max_reasks: int, progress: bool) -> dict[str, dict | str]:
    """Ask every question concurrently; each answer is cached as it arrives. Returns key -> the answer, or the
    reason its request failed. An EndpointError cancels the questions still open and passes through."""
    results: dict[str, dict | str] = {}

    async def one(key: str, texts: list[str]) -> None:
        try:
            record = await ask(client, prompt, texts, max_reasks)
        except RequestFailed as e:
            results[key] = str(e)
            return
        store.put(key, {**meta, **record})  # at once: the cache is what a killed run resumes from
        results[key] = record

    async with client:
        tasks = [asyncio.create_task(one(k, t)) for k, t in questions.items()]
        try:
            with tqdm(total=len(tasks), disable=not progress, unit="subset", desc="labelling") as bar:
                for done in asyncio.as_completed(tasks):
                    await done
                    bar.update()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return results


def _labelled(s: Subset, answer: dict | str) -> Subset:
    """The output subset: `labels` and `label_names` from a valid answer, else `label_error`."""
    if isinstance(answer, str):
        return replace(s, extra={**s.extra, "label_error": f"request failed: {answer}"})
    if answer["status"] != "ok":
        return replace(s, extra={**s.extra, "label_error": answer["error"]})
    labels, names = labels_of([Cluster(c["name"], tuple(c["members"])) for c in answer["clusters"]], len(s))
    return replace(s, labels=labels, extra={**s.extra, "label_names": names})


def _account(prompt_tokens: int, completion_tokens: int, prices: tuple[float, float]) -> dict:
    cost = prompt_tokens / 1000 * prices[0] + completion_tokens / 1000 * prices[1]
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "cost": round(cost, 6)}
