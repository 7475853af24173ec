"""The HTTP service: ingest events into the live state, score charge attempts, serve embeddings.

Routes (JSON in and out; errors are `{"error": {"status", "message", "problems": [...]}}`):
- `POST /v1/events`      one raw event (object) or a batch (array); raw column names of the data schema.
- `POST /v1/score`       one charge attempt -> fraud / approval probabilities; `?commit=true` also applies it.
- `GET  /v1/entities/{entity_type}/{entity_id}`            the entity's retained state (ids, count).
- `GET  /v1/entities/{entity_type}/{entity_id}/embedding`  point-in-time embedding (`?as_of=` optional).
- `GET  /healthz`, `GET /metrics` (Prometheus text); never behind the token.

Bad input never reaches the state: a request is parsed and validated completely before anything is
applied, and `apply` is one atomic transaction. The body limit is enforced while reading the body, before
any parsing (a Content-Length above the limit is refused without reading).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis
from anyio import CapacityLimiter, to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from foundation.serving.metrics import CONTENT_TYPE, ServiceMetrics
from foundation.serving.schemas import EventParser, RequestError, parse_as_of
from foundation.serving.state import StateStore

logger = logging.getLogger(__name__)
TOKEN_ENV = "FOUNDATION_API_TOKEN"


@dataclass(frozen=True)
class ServiceSettings:
    """Request limits and auth.

    Args:
        max_body_bytes: largest request body accepted (413 above it), checked before parsing.
        max_batch_events: most events in one POST /v1/events (413 above it).
        api_token: when set, /v1/* requires `Authorization: Bearer <token>`.
        warm_on_ingest: recompute the states of ingested entities in the background (see StateWarmer).
        model_concurrency: scoring/embedding requests computed at once; the rest wait their turn. Most of
            a score is Python holding the interpreter lock, so parallel scoring threads only add switching
            (16 clients, 2 cores: 157 req/s with 1, 104 with 2, 63 with 4). Scale with processes instead.
    """

    max_body_bytes: int = 1_048_576
    max_batch_events: int = 1000
    api_token: str | None = None
    warm_on_ingest: bool = True
    model_concurrency: int = 1


def error_response(err: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(status_code=err.status, content={"error": err.to_dict()}, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than `limit` bytes without buffering past the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"Content-Length header {declared!r} is not a number")
        if int(declared) > limit:
            raise RequestError(413, f"request body is {declared} bytes; the limit is {limit} bytes "
                                    "(server.max_body_bytes); split the batch")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds {limit} bytes (server.max_body_bytes); split the batch")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    if not body:
        raise RequestError(400, "request body is empty; send a JSON object (one event) or array (a batch)")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "request body is not UTF-8") from None
    except json.JSONDecodeError as err:
        raise RequestError(400, f"request body is not valid JSON: {err.msg} at line {err.lineno} "
                                f"column {err.colno}") from None
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply") from None


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request by route template and status, times it."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status["code"], time.perf_counter() - start)


def create_app(
    parser: EventParser,
    store: StateStore,
    scorer: Any | None = None,
    settings: ServiceSettings | None = None,
) -> FastAPI:
    """Build the FastAPI app around its components.

    Args:
        parser: validates raw events against the data schema.
        store: the live per-entity state (closed on shutdown).
        scorer: `foundation.serving.scorer.Scorer`, or None for an ingest-only service (scoring and
            embeddings answer 503).
        settings: limits and auth.
    Returns:
        the app; run it with uvicorn.
    """
    settings = settings or ServiceSettings()
    model_version = getattr(scorer, "model_version", None)
    metrics = ServiceMetrics(store.stats, model_version)
    model_slots = CapacityLimiter(max(1, settings.model_concurrency))
    warmer = None
    if scorer is not None and settings.warm_on_ingest:
        from foundation.serving.engine import StateWarmer

        warmer = StateWarmer(list(scorer.engines.values()), store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if warmer is not None:
            warmer.stop()
        store.close()

    app = FastAPI(title="payment-foundation scoring", version="1", lifespan=lifespan)
    app.state.parser, app.state.store, app.state.scorer, app.state.metrics = parser, store, scorer, metrics
    app.state.warmer = warmer
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, err: RequestError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(sqlite3.OperationalError)
    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _store_unavailable(_request: Request, err: Exception) -> JSONResponse:
        # The transaction did not commit, so nothing was acknowledged: the client may retry (idempotent).
        logger.warning("state store unavailable: %s", err)
        return error_response(RequestError(503, f"state store unavailable ({type(err).__name__}); retry"))

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, err: Exception) -> JSONResponse:
        # A bug, not bad input (bad input is a RequestError): log it whole, answer without internals.
        logger.exception("unhandled error: %s", err)
        return error_response(RequestError(500, f"internal error ({type(err).__name__}); see the service log"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]) or None, "reason": e.get("msg")}
                    for e in err.errors()]
        return error_response(RequestError(422, "invalid request parameters", problems))

    def authorize(request: Request) -> None:
        if settings.api_token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise RequestError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(token.strip().encode(), settings.api_token.encode()):
            raise RequestError(401, "invalid bearer token")

    def count_cache(hits: int, misses: int) -> None:
        metrics.cache.labels(result="hit").inc(hits)
        metrics.cache.labels(result="miss").inc(misses)

    def need_scorer() -> Any:
        if scorer is None:
            raise RequestError(503, "no model loaded (service started without a checkpoint): scoring and "
                                    "embeddings are unavailable, ingestion works")
        return scorer

    @app.post("/v1/events", dependencies=[Depends(authorize)])
    async def post_events(request: Request) -> JSONResponse:
        payload = parse_json(await read_body(request, settings.max_body_bytes))

        def ingest() -> dict[str, Any]:
            events = parser.parse_batch(payload, settings.max_batch_events)
            applied = store.apply(events)
            if scorer is not None:
                changed = list(dict.fromkeys(ref for ev, ok in zip(events, applied) if ok for ref in ev.entities))
                scorer.invalidate(changed)
                if warmer is not None:
                    warmer.submit(changed)
            return {"received": len(events), "applied": sum(applied), "duplicates": len(events) - sum(applied),
                    "results": [{"event_id": ev.event_id, "status": "applied" if ok else "duplicate"}
                                for ev, ok in zip(events, applied)]}

        result = await run_in_threadpool(ingest)
        metrics.events.labels(result="applied").inc(result["applied"])
        metrics.events.labels(result="duplicate").inc(result["duplicates"])
        return JSONResponse(result)

    @app.post("/v1/score", dependencies=[Depends(authorize)])
    async def post_score(request: Request, commit: bool = False) -> JSONResponse:
        active = need_scorer()
        payload = parse_json(await read_body(request, settings.max_body_bytes))

        def score() -> dict[str, Any]:
            attempt = parser.parse_attempt(payload, commit=commit)
            result = active.score(attempt, store, on_cache=count_cache)
            result["committed"] = False
            if commit:
                # Scored first, then applied: the attempt's own score never sees the attempt.
                result["committed"] = store.apply([attempt.record])[0]
                active.invalidate(list(attempt.record.entities))
                if warmer is not None:
                    warmer.submit(list(attempt.record.entities))
            return result

        result = await to_thread.run_sync(score, limiter=model_slots)
        return JSONResponse(result)

    @app.get("/v1/entities/{entity_type}/{entity_id}", dependencies=[Depends(authorize)])
    async def get_entity(entity_type: str, entity_id: str) -> JSONResponse:
        parser.check_entity_type(entity_type)
        hist = await run_in_threadpool(store.history, entity_type, entity_id)
        return JSONResponse({
            "entity_type": entity_type, "entity_id": entity_id, "n_events": hist.n_events,
            "n_retained": len(hist.events), "event_ids": [e["event_id"] for e in hist.events],
            "last_event_time": parser.format_time(hist.events[-1]["event_time"]) if hist.events else None,
        })

    @app.get("/v1/entities/{entity_type}/{entity_id}/embedding", dependencies=[Depends(authorize)])
    async def get_embedding(entity_type: str, entity_id: str, as_of: str | None = None) -> JSONResponse:
        parser.check_entity_type(entity_type)
        cutoff = parse_as_of(as_of)
        active = need_scorer()

        def embed() -> dict[str, Any]:
            return active.embedding(entity_type, entity_id, store, as_of=cutoff, on_cache=count_cache)

        return JSONResponse(await to_thread.run_sync(embed, limiter=model_slots))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            await run_in_threadpool(store.ping)
        except Exception as err:  # report, do not crash: the orchestrator restarts us
            return JSONResponse(status_code=503, content={"status": "unavailable", "state": str(err)})
        return JSONResponse({"status": "ok", "model_version": model_version, "scoring": scorer is not None,
                             "state_backend": type(store).__name__})

    @app.get("/metrics")
    async def get_metrics() -> Response:
        body = await run_in_threadpool(metrics.render)
        return Response(content=body, media_type=CONTENT_TYPE)

    return app


def build_app(cfg: Any) -> FastAPI:
    """The app described by conf/serve.yaml: schema, state store, scorer (when a checkpoint is given), limits.

    Args:
        cfg: the composed `serve` config (DictConfig or dict).
    Returns:
        the FastAPI app (not started).
    """
    from omegaconf import OmegaConf

    from foundation.data.schema import DataSchema
    from foundation.serving.state import DEFAULT_MAX_EVENTS, build_state_store

    scorer = None
    if cfg.get("checkpoint"):
        from foundation.serving.scorer import Scorer

        scorer = Scorer.from_pretrained(
            cfg.checkpoint, finetune_run=cfg.get("finetune_run"), heads=_plain(cfg.get("heads")),
            fallback_data=cfg.get("data"), cache_size=int(cfg.scorer.cache_size),
            torch_threads=int(cfg.scorer.torch_threads),
        )
        schema = scorer.schema
    else:
        schema = DataSchema.from_config(cfg.data)
    state_cfg = OmegaConf.to_container(cfg.state, resolve=True) if OmegaConf.is_config(cfg.state) else dict(cfg.state)
    needed = scorer.max_events if scorer is not None else DEFAULT_MAX_EVENTS
    max_events = int(state_cfg.get("max_events") or needed)
    if max_events < needed:
        raise ValueError(f"state.max_events={max_events} is below the model's max_position + 1 = {needed}: "
                         "windows would be cut and online scores would differ from the batch path")
    buckets = {e.type: int(e.bucket_ms) for e in schema.entities.values() if e.representation == "aggregate"}
    store = build_state_store(state_cfg, max_events, buckets)
    token = os.environ.get(str(cfg.server.token_env)) or None
    settings = ServiceSettings(int(cfg.server.max_body_bytes), int(cfg.server.max_batch_events), token,
                               bool(cfg.scorer.warm_on_ingest), int(cfg.scorer.concurrency))
    return create_app(EventParser(schema), store, scorer, settings)


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def serve(cfg: Any) -> None:
    """Build the app from config and run it with uvicorn until interrupted (scripts/serve.py)."""
    import uvicorn

    app = build_app(cfg)
    logger.warning("serving on http://%s:%s (state: %s, model: %s)", cfg.server.host, cfg.server.port,
                   type(app.state.store).__name__, getattr(app.state.scorer, "model_version", None))
    uvicorn.run(app, host=str(cfg.server.host), port=int(cfg.server.port), log_level=str(cfg.server.log_level),
                access_log=False, timeout_graceful_shutdown=5)
