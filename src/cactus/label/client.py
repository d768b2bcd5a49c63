"""A client of any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp's server, Ollama and the
like): `POST {endpoint}/chat/completions`, over httpx2 (httpx's API; huggingface_hub depends on it, so it comes with
transformers).

- JSON mode (`response_format` json_object) is asked for until the server refuses a request made in it (400 or
  422, which servers without it answer); that request is sent again without it, and so is every later one: plain
  text, which `cactus.label.parse` reads too.
- At most `concurrency` requests are in flight.
- 408, 429 and 5xx answers, timeouts and broken connections are tried again, after `backoff` seconds doubled at each
  try, or after what the server's Retry-After says (capped at `MAX_RETRY_AFTER`).
- 401, 403 and 404 (a wrong key, model or path), and an endpoint that cannot be reached after the retries, end the
  run (`EndpointError`): every other request would fail the same way.
- The API key goes into the Authorization header and nowhere else: no message, log or record holds it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx2

from cactus.data.tables import one_line

logger = logging.getLogger(__name__)

FATAL_STATUS = (401, 403, 404)
MAX_RETRY_AFTER = 300.0  # seconds; a server asking for longer is waited on this long, then tried again
_SHOWN = 200  # characters of a refusal's body shown in a message


class EndpointError(RuntimeError):
    """The endpoint refuses every request (authentication, unknown model or path) or cannot be reached."""


class RequestFailed(RuntimeError):
    """One request failed for good: the retries ran out, or the server refused it."""


@dataclass(frozen=True)
class Reply:
    """A reply's text and its token usage (None where the server reported none)."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass
class RequestCounts:
    """What a client sent and was billed: HTTP requests (each try counts), tries again, and tokens."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    without_usage: int = 0  # replies whose server reported no token usage

    def count(self, reply: Reply) -> None:
        if reply.prompt_tokens is None and reply.completion_tokens is None:
            self.without_usage += 1
        self.prompt_tokens += reply.prompt_tokens or 0
        self.completion_tokens += reply.completion_tokens or 0


def check_endpoint(url: str) -> None:
    """ValueError unless `url` is an http(s) URL with a host."""
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL as e:
        raise ValueError(f"not a URL ({e})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("not an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080/v1")


def public_url(url: str) -> str:
    """`url` without a user name or password, fit for messages and records."""
    return str(httpx2.URL(url).copy_with(userinfo=b""))


class ChatClient:
    """An async chat-completions client; use it as `async with ChatClient(...) as client: await client.chat(...)`.

    Args:
        endpoint: the API's base URL (the part before `/chat/completions`), e.g. https://api.openai.com/v1.
        llm: the model's name at the endpoint.
        api_key: sent as a bearer token; None for a server that needs none.
        temperature: sampling temperature of every request.
        timeout: seconds to wait to connect, to send, and for each read of the answer.
        retries: tries after the first, on a retryable failure.
        backoff: seconds before the first retry, doubled at each next one (when the server says no Retry-After).
        concurrency: most requests in flight at once.
    """

    def __init__(self, endpoint: str, llm: str, *, api_key: str | None = None, temperature: float = 0.0,
                 timeout: float = 60.0, retries: int = 4, backoff: float = 1.0, concurrency: int = 4):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.llm, self.temperature = llm, temperature
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.json_mode = True
        self.counts = RequestCounts()
        self._concurrency = concurrency
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._slots: asyncio.Semaphore | None = None
        self._http: httpx2.AsyncClient | None = None

    async def __aenter__(self) -> "ChatClient":
        self.counts = RequestCounts()  # what this session sends
        self._slots = asyncio.Semaphore(self._concurrency)
        self._http = httpx2.AsyncClient(timeout=self.timeout, headers=self._headers,
                                        limits=httpx2.Limits(max_connections=self._concurrency))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.aclose()

    async def chat(self, messages: list[dict]) -> Reply:
        """The model's reply to `messages`; RequestFailed when it cannot be had, EndpointError when no request can
        be answered."""
        tries = 0
        while True:
            outcome = await self._request(messages)
            if isinstance(outcome, Reply):
                return outcome
            if outcome.json_refused:
                if self.json_mode:
                    self.json_mode = False
                    logger.warning("%s refuses JSON mode (%s); asking for plain text from now on",
                                   public_url(self.url), outcome.message)
                continue  # the same request again, without it
            tries += 1
            if not outcome.retryable or tries > self.retries:
                tried = f" ({tries} tries)" if outcome.retryable else ""
                if outcome.unreachable:
                    raise EndpointError(f"cannot connect to {public_url(self.url)}: {outcome.message}{tried}")
                raise RequestFailed(outcome.message + tried)
            delay = outcome.retry_after if outcome.retry_after is not None else self.backoff * 2 ** (tries - 1)
            logger.info("%s; trying again in %.1f s", outcome.message, delay)
            self.counts.retries += 1
            await asyncio.sleep(delay)

    async def _request(self, messages: list[dict]) -> "Reply | _Failure":
        """One HTTP request: the reply, or what went wrong."""
        async with self._slots:
            # decided once a slot is free: by then an earlier request may have found JSON mode refused
            json_mode = self.json_mode
            body = {"model": self.llm, "messages": messages, "temperature": self.temperature}
            if json_mode:
                body["response_format"] = {"type": "json_object"}
            self.counts.requests += 1
            try:
                response = await self._http.post(self.url, json=body)
            except httpx2.TimeoutException:
                return _Failure(f"no answer within {self.timeout:g} s", retryable=True)
            except httpx2.ConnectError as e:
                return _Failure(one_line(e), retryable=True, unreachable=True)
            except httpx2.TransportError as e:
                return _Failure(f"the connection broke ({one_line(e)})", retryable=True)
        status = response.status_code
        if status == 200:
            reply = _reply(response)
            self.counts.count(reply)
            return reply
        said = f"{public_url(self.url)} answered {status} {response.reason_phrase}: {_body(response)}"
        if status in FATAL_STATUS:
            raise EndpointError(f"{said} (check --endpoint, --llm and the API key)")
        retryable = status in (408, 429) or status >= 500
        return _Failure(said, retryable=retryable, retry_after=_retry_after(response.headers.get("retry-after")),
                        json_refused=json_mode and status in (400, 422))


@dataclass(frozen=True)
class _Failure:
    """A request that got no usable reply: what happened, whether trying again may help, and how long the server
    asked to wait first."""

    message: str
    retryable: bool
    retry_after: float | None = None
    unreachable: bool = False  # no connection could be made
    json_refused: bool = False  # refused, perhaps for the JSON mode


def _reply(response: httpx2.Response) -> Reply:
    """The text and usage of a 200 answer; RequestFailed when it is no chat completion."""
    try:
        data = response.json()
        text = data["choices"][0]["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError("content is not text")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise RequestFailed(f"the answer is not a chat completion: {_body(response)}") from None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Reply(text, _tokens(usage.get("prompt_tokens")), _tokens(usage.get("completion_tokens")))


def _tokens(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _body(response: httpx2.Response) -> str:
    text = " ".join(response.text.split())
    return text[:_SHOWN] + ("..." if len(text) > _SHOWN else "") if text else "(no body)"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds, or an HTTP date), capped at MAX_RETRY_AFTER; None when
    there is none or it cannot be read."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
