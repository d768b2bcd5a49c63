"""The HTTP service (`cactus serve`): one loaded model behind FastAPI, run by uvicorn.

    POST /v1/cluster  {"subsets": [{"id", "texts", "threshold"?}], "similarities"?: false}
                      -> {"subsets": [{"id", "cluster_ids", "similarities"?}]}, in request order
    GET  /healthz     200 while the process answers
    GET  /readyz      200 once the model is loaded, 503 before
    GET  /v1/model    backbone, attention, token limit, threshold, cut, versions
    GET  /metrics     Prometheus metrics: requests by path and status, their latency, batches and their sizes
    GET  /openapi.json, /docs   the schema (FastAPI's)

Requests are checked before any work, with the same rules as the files `cactus predict` reads (`Subset`): a body over
`max_body_bytes`, or more subsets, entities or characters than `ServiceLimits` allows, answers 413 naming the limit
and the subset; a malformed body answers 422 naming the subset and the entity. An unexpected error answers 500 with a
request id, which the server log repeats beside the traceback; the traceback is never sent.

Concurrent requests are micro-batched (`MicroBatcher`): their subsets are encoded together, one batch at a time in a
worker thread (the model's threads already use the cores), and a batch waits at most `batch_wait` seconds for more
requests. So the event loop keeps answering health checks while a batch encodes. Install with
`pip install -e ".[serve]"`.

(No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations, and `Request` is imported
inside `create_app`, where only the evaluated annotation can reach it.)
"""

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cactus.cluster import Cut, check_threshold
from cactus.data.subsets import Subset, SubsetFormatError
from cactus.version import __version__

if TYPE_CHECKING:
    from cactus.model import Cactus

logger = logging.getLogger("cactus.service")
PATHS = ("/v1/cluster", "/healthz", "/readyz", "/v1/model", "/metrics")


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may hold; over a limit answers 413."""

    max_body_bytes: int = field(default=8_000_000, metadata={"help": "bytes per request body"})
    max_subsets: int = field(default=1_000, metadata={"help": "subsets per request"})
    max_entities: int = field(default=1_000, metadata={"help": "entities per subset"})
    max_text_chars: int = field(default=2_000, metadata={"help": "characters per entity"})


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, limits: ServiceLimits) -> tuple[list[Subset], list[float | None], bool]:
    """(subsets, per-subset thresholds, whether similarities are wanted) of a /v1/cluster body, or RequestError."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"the body has {len(body)} bytes, over the limit of {limits.max_body_bytes}")
    try:
        record = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(422, f"the body is not JSON: {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("subsets"), list):
        raise RequestError(422, "the body must be an object with a 'subsets' list")
    unknown = set(record) - {"subsets", "similarities"}
    if unknown:
        raise RequestError(422, f"unknown field(s) {sorted(unknown)}")
    items = record["subsets"]
    if len(items) > limits.max_subsets:
        raise RequestError(413, f"{len(items)} subsets, over the limit of {limits.max_subsets} per request")
    subsets, thresholds = [], []
    for index, item in enumerate(items):
        subset, threshold = _parse_subset(index, item, limits)
        subsets.append(subset)
        thresholds.append(threshold)
    wanted = record.get("similarities", False)
    if not isinstance(wanted, bool):
        raise RequestError(422, f"'similarities' must be true or false, got {wanted!r}")
    return subsets, thresholds, wanted


def _parse_subset(index: int, item, limits: ServiceLimits) -> tuple[Subset, float | None]:
    where = f"subsets[{index}]" + (f", subset {item['id']!r}" if isinstance(item, dict) and "id" in item else "")
    if not isinstance(item, dict):
        raise RequestError(422, f"{where}: must be an object with 'id' and 'texts'")
    unknown = set(item) - {"id", "texts", "threshold"}
    if unknown or "id" not in item or "texts" not in item:
        raise RequestError(422, f"{where}: needs 'id' and 'texts' (and optionally 'threshold'), got {sorted(item)}")
    texts = item["texts"]
    if isinstance(texts, list):
        if len(texts) > limits.max_entities:
            raise RequestError(413, f"{where}: {len(texts)} entities, over the limit of {limits.max_entities}")
        for i, t in enumerate(texts):
            if isinstance(t, str) and len(t) > limits.max_text_chars:
                raise RequestError(413, f"{where}, entity {i}: {len(t)} characters, over the limit of "
                                        f"{limits.max_text_chars}")
    try:
        subset = Subset(item["id"], texts)
        threshold = item.get("threshold")
        if threshold is not None:
            threshold = check_threshold(threshold, f"{where}: threshold")
    except (SubsetFormatError, ValueError) as e:
        message = f"subsets[{index}], {e}" if isinstance(e, SubsetFormatError) and e.subset_id is not None else None
        raise RequestError(422, message or (str(e) if str(e).startswith(where) else f"{where}: {e}")) from None
    return subset, threshold


def _schemas():
    """The request and response schemas, for the OpenAPI document (the request is checked by `parse_request`)."""
    from pydantic import BaseModel, Field

    class SubsetIn(BaseModel):
        id: str | int
        texts: list[str] = Field(description="the entities, non-empty strings")
        threshold: float | None = Field(None, description="cut this subset at this threshold, not the model's cut")

    class ClusterRequest(BaseModel):
        subsets: list[SubsetIn]
        similarities: bool = Field(False, description="also answer each subset's (n, n) cosine similarities")

    class SubsetOut(BaseModel):
        id: str | int
        cluster_ids: list[int]
        similarities: list[list[float]] | None = None

    class ClusterResponse(BaseModel):
        subsets: list[SubsetOut]

    return ClusterRequest, ClusterResponse


class MicroBatcher:
    """Encodes the subsets of concurrent requests together.

    A request queues its subsets and awaits its similarity matrices. One loop takes the first waiting request, waits
    `wait` seconds, adds the requests waiting then (up to `max_entities` entities), encodes them in one call in a
    worker thread, and hands each request its part. `wait` = None turns batching off: every
    request is encoded alone. Batches run one at a time.
    """

    def __init__(self, encode: Callable[[list[Subset]], list], wait: float | None = 0.005,
                 max_entities: int = 4096, on_batch: Callable[[int, int], None] | None = None):
        self.encode, self.wait, self.max_entities = encode, wait, max_entities
        self.on_batch = on_batch  # called with (requests, entities) of every batch encoded
        self.queue: asyncio.Queue = asyncio.Queue()

    async def similarities(self, subsets: list[Subset]) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((subsets, future))
        return await future

    async def run(self) -> None:
        import anyio

        while True:
            batch = await self._collect()
            subsets = [s for part, _ in batch for s in part]
            try:
                sims = await anyio.to_thread.run_sync(self.encode, subsets)
            except Exception as error:  # each request answers 500 with its own id
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch), sum(map(len, subsets)))
            start = 0
            for part, future in batch:
                if not future.done():  # a request whose client left is cancelled
                    future.set_result(sims[start: start + len(part)])
                start += len(part)

    async def _collect(self) -> list:
        batch = [await self.queue.get()]
        if self.wait is None:
            return batch
        await asyncio.sleep(self.wait)  # let concurrent requests arrive; then take what waits, without racing a get
        entities = sum(map(len, batch[0][0]))
        while entities < self.max_entities and not self.queue.empty():
            batch.append(self.queue.get_nowait())
            entities += sum(map(len, batch[-1][0]))
        return batch


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("cactus_requests", "HTTP requests answered", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("cactus_request_seconds", "time to answer an HTTP request", ["path"],
                                 registry=self.registry)
        self.batch_requests = Histogram("cactus_batch_requests", "requests encoded together in one batch",
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.batch_entities = Histogram("cactus_batch_entities", "entities encoded in one batch",
                                        buckets=(1, 10, 30, 100, 300, 1000, 3000, 10000), registry=self.registry)

    def batch(self, requests: int, entities: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_entities.observe(entities)

    def answered(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ClusterService:
    """What the endpoints do, over one model: loading, the model's description, and clustering a request."""

    def __init__(self, model: "Cactus", limits: ServiceLimits, cut: Cut | None, threshold: float | None,
                 batch_wait: float | None):
        self.model, self.limits, self.cut, self.threshold = model, limits, cut, threshold
        self.ready = False
        self.metrics = ServiceMetrics()
        self.batcher = MicroBatcher(model.similarities, batch_wait, on_batch=self.metrics.batch)

    def load(self) -> None:
        self.model.tokenizer  # loads the encoder and tokenizer
        self.ready = True
        logger.info("model loaded: ready")

    def describe(self) -> dict:
        config = self.model.config
        return {"backbone": config.backbone, "attention": config.attention, "max_tokens": config.max_tokens,
                "threshold": self.model.threshold_, "cut": self.model.cut_.to_dict(), "cactus": __version__,
                "threshold_provenance": config.threshold_provenance or None}

    async def cluster(self, body: bytes) -> dict:
        subsets, thresholds, wanted = parse_request(body, self.limits)
        sims = await self.batcher.similarities(subsets)
        out = []
        for s, sim, t in zip(subsets, sims, thresholds):
            given = (t, None) if t is not None else (self.threshold, self.cut)
            answer = {"id": s.id, "cluster_ids": [int(c) for c in self.model.cluster_similarities([sim], *given)[0]]}
            if wanted:
                answer["similarities"] = sim.round(6).tolist()
            out.append(answer)
        return {"subsets": out}


def create_app(model: "Cactus", limits: ServiceLimits = ServiceLimits(), cut: Cut | None = None,
               threshold: float | None = None, batch_wait: float | None = 0.005):
    """The service's FastAPI app over `model`; its weights load in a background thread when the app starts. `cut`
    and `threshold` replace the model's (as `predict`'s do); a subset's own threshold cuts it there. `batch_wait`:
    see `MicroBatcher` (None: no batching)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    ClusterRequest, ClusterResponse = _schemas()
    service = ClusterService(model, limits, cut, threshold, batch_wait)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=service.load, daemon=True, name="cactus-load").start()
        batcher = asyncio.create_task(service.batcher.run())
        yield
        batcher.cancel()

    app = FastAPI(title="cactus", version=__version__, lifespan=lifespan,
                  description="Context-aware clustering of entity subsets.")
    app.state.service = service
    _add_routes(app, service, ClusterRequest, ClusterResponse)
    return app


def _add_routes(app, service: ClusterService, ClusterRequest, ClusterResponse) -> None:
    from fastapi import Request, Response
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        path = request.url.path if request.url.path in PATHS else "other"  # bounded label values
        service.metrics.answered(path, response.status_code, time.perf_counter() - start)
        return response

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        return {"status": "ready"} if service.ready else JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/v1/model")
    async def model_info():
        return service.describe()

    @app.get("/metrics")
    async def metrics():
        body, media_type = service.metrics.exposition()
        return Response(body, media_type=media_type)

    @app.post("/v1/cluster", response_model=ClusterResponse, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": ClusterRequest.model_json_schema()}}}})
    async def cluster(request: Request):
        if not service.ready:
            return JSONResponse({"error": "the model is still loading"}, status_code=503)
        try:
            return await service.cluster(await request.body())
        except RequestError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        request_id = uuid.uuid4().hex[:12]
        logger.error("request %s: %s %s failed", request_id, request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": "internal error", "request_id": request_id}, status_code=500)


def serve(app, host: str, port: int, workers: int = 1) -> None:
    """Run `app` until interrupted; in-flight requests finish on shutdown (uvicorn's graceful shutdown). With
    `workers` > 1, `app` is the import string of a function that makes the app, called in each worker process."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", workers=workers, factory=workers > 1)
