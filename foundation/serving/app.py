"""The HTTP service: ingest events into the live state, score charge attempts, serve embeddings.

Routes (JSON in and out; errors are `{"error": {"status", "message", "problems": [...]}}`):
- `POST /v1/events`      one raw event (object) or a batch (array); raw column names of the data schema.
- `POST /v1/score`       one charge attempt -> fraud / approval probabilities; `?commit=true` also applies it.
- `GET  /v1/entities/{entity_type}/{entity_id}`            the entity's retained state (ids, count).
- `GET  /v1/entities/{entity_type}/{entity_id}/embedding`  point-in-time embedding (`?as_of=` optional).
- `GET  /v1/entities/{entity_type}/{entity_id}/scores`     entity task scores (foundation.serving.entity_scores).
  An entity id may hold "/" (the route takes the rest of the path); one ending in "/embedding" cannot be read.
- `GET  /healthz`, `GET /metrics` (Prometheus text); never behind the token.
- `GET  /docs`, `/redoc`, `/openapi.json`: behind the token when one is set (the API is not public either).

Bad input never reaches the state: a request is parsed and validated completely before anything is
applied, and `apply` is one atomic transaction. The body limits (size, time) are enforced while reading the
body, before any parsing (`foundation.serving.body`).
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from foundation.serving.body import parse_json, read_body
from foundation.serving.entity_scores import add_entity_scores_route, load_entity_heads
from foundation.serving.errors import STORE_OUTAGES, as_request_error, check_bearer, error_headers
from foundation.serving.fastpath import ScoreFastPath
from foundation.serving.metrics import CONTENT_TYPE, ServiceMetrics
from foundation.serving.openapi import add_docs, json_body
from foundation.serving.schemas import EventParser, RequestError, parse_as_of, request_models
from foundation.serving.state import StateStore

logger = logging.getLogger(__name__)
TOKEN_ENV = "FOUNDATION_API_TOKEN"
MIN_EVENT_MS = 631_152_000_000  # 1990-01-01T00:00:00Z: the default plausible lower bound of event times


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
        body_timeout_s: a request body must arrive within this many seconds (408 otherwise).
        min_event_ms: events dated before this epoch-ms instant are refused (422); None = no bound.
        max_future_skew_ms: events dated further ahead of the service clock are refused (422); None = no bound.
        batch_max_size: concurrent score requests scored in one forward pass at most (micro-batching,
            foundation.serving.batching); 0 scores each request on its own (through `model_concurrency`).
        batch_max_wait_s, batch_queue_size: longest wait for more requests (under load only); most waiting (503).
    """

    max_body_bytes: int = 1_048_576
    max_batch_events: int = 1000
    api_token: str | None = None
    warm_on_ingest: bool = True
    model_concurrency: int = 1
    body_timeout_s: float = 30.0
    min_event_ms: int | None = MIN_EVENT_MS
    max_future_skew_ms: int | None = 300_000
    batch_max_size: int = 64
    batch_max_wait_s: float = 0.001
    batch_queue_size: int = 1024


def error_response(err: RequestError) -> JSONResponse:
    return JSONResponse(status_code=err.status, content={"error": err.to_dict()}, headers=error_headers(err))


def bearer_guard(api_token: str | None) -> Callable[[Request], Awaitable[None]]:
    """The dependency guarding /v1/* and the docs: `Authorization: Bearer <api_token>`, or open when None.

    A coroutine: FastAPI runs a plain-function dependency in its thread pool, a thread hop (and a wait for
    the interpreter lock behind the scoring thread) on every request for a header comparison.
    """

    async def authorize(request: Request) -> None:
        check_bearer(request.headers.get("authorization", ""), api_token)

    return authorize


def add_error_handlers(app: FastAPI) -> None:
    """Every error as `{"error": {...}}`: bad input 4xx, store outage 503, a bug 500 without internals."""

    async def _error(_request: Request, err: Exception) -> JSONResponse:
        return error_response(as_request_error(err))

    for kind in (RequestError, *STORE_OUTAGES, Exception):
        app.add_exception_handler(kind, _error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]) or None, "reason": e.get("msg")}
                    for e in err.errors()]
        return error_response(RequestError(422, "invalid request parameters", problems))


@dataclass
class Service:
    """What the routes act on: the parser, the live state, the scorer and their limits."""

    parser: EventParser
    store: StateStore
    scorer: Any | None
    settings: ServiceSettings
    metrics: ServiceMetrics
    warmer: Any | None = None
    batcher: Any | None = None

    def count_cache(self, hits: int, misses: int) -> None:
        self.metrics.cache.labels(result="hit").inc(hits)
        self.metrics.cache.labels(result="miss").inc(misses)

    def need_scorer(self) -> Any:
        if self.scorer is None:
            raise RequestError(503, "no model loaded (service started without a checkpoint): scoring and "
                                    "embeddings are unavailable, ingestion works")
        return self.scorer

    async def read_json(self, request: Request) -> Any:
        return parse_json(await read_body(request, self.settings.max_body_bytes, self.settings.body_timeout_s))

    def changed(self, refs: list[tuple[str, str]]) -> None:
        """Entities whose history moved on: drop their cached states and recompute them in the background."""
        if self.scorer is not None:
            self.scorer.invalidate(refs)
            if self.warmer is not None:
                self.warmer.submit(refs)

    def ingest(self, payload: Any) -> dict[str, Any]:
        events = self.parser.parse_batch(payload, self.settings.max_batch_events)
        applied = self.store.apply(events)
        self.changed(list(dict.fromkeys(ref for ev, ok in zip(events, applied) if ok for ref in ev.entities)))
        return {"received": len(events), "applied": sum(applied), "duplicates": len(events) - sum(applied),
                "results": [{"event_id": ev.event_id, "status": "applied" if ok else "duplicate"}
                            for ev, ok in zip(events, applied)]}

    def score(self, payload: Any, commit: bool) -> dict[str, Any]:
        active = self.need_scorer()
        attempt = self.parser.parse_attempt(payload, commit=commit)
        return self.committed(attempt, active.score(attempt, self.store, on_cache=self.count_cache), commit)

    def committed(self, attempt: Any, result: dict[str, Any], commit: bool) -> dict[str, Any]:
        """Scored first, then applied (`?commit=true`): the attempt's own score never sees the attempt."""
        result["committed"] = bool(commit) and self.store.apply([attempt.record])[0]
        if commit:
            self.changed(list(attempt.record.entities))
        return result

    async def score_batched(self, payload: Any, commit: bool) -> dict[str, Any]:
        """`score` through the micro-batcher (Scorer.score_many): concurrent requests share the model calls,
        and their bodies one validator pass (EventParser.parse_attempts), off the event loop."""
        self.need_scorer()
        return await asyncio.wrap_future(self.batcher.submit((payload, commit)))


def create_app(
    parser: EventParser,
    store: StateStore,
    scorer: Any | None = None,
    settings: ServiceSettings | None = None,
) -> FastAPI:
    """Build the FastAPI app around its components.

    Args:
        parser: validates raw events against the data schema (its event time bounds are set from `settings`).
        store: the live per-entity state (closed on shutdown).
        scorer: `foundation.serving.scorer.Scorer`, or None for an ingest-only service (scoring and
            embeddings answer 503).
        settings: limits and auth.
    Returns:
        the app; run it with uvicorn.
    """
    settings = settings or ServiceSettings()
    parser = replace(parser, min_event_ms=settings.min_event_ms, max_future_skew_ms=settings.max_future_skew_ms)
    svc = Service(parser, store, scorer, settings, ServiceMetrics(store.stats, scorer))
    if scorer is not None and settings.warm_on_ingest:
        from foundation.serving.engine import StateWarmer

        svc.warmer = StateWarmer(list(scorer.engines.values()), store)
    if scorer is not None and settings.batch_max_size > 0:
        from foundation.serving.batching import MicroBatcher, scoring_run

        svc.batcher = MicroBatcher(scoring_run(scorer, store, svc.count_cache, svc.committed, parser.parse_attempts),
                                   settings.batch_max_size,
                                   settings.batch_max_wait_s, settings.batch_queue_size, svc.metrics.score_batch.observe)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        for worker in (svc.batcher, svc.warmer):
            if worker is not None:
                worker.stop()
        store.close()

    # The docs routes are added by add_docs, so that a token, when set, guards them like the API.
    app = FastAPI(title="payment-foundation scoring", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.parser, app.state.store, app.state.scorer, app.state.metrics = parser, store, scorer, svc.metrics
    app.state.warmer, app.state.settings, app.state.batcher = svc.warmer, settings, svc.batcher
    svc.metrics.instrument(app)
    app.add_middleware(ScoreFastPath, service=svc)  # added last, so outermost: ahead of the metrics middleware
    add_error_handlers(app)
    authorize = bearer_guard(settings.api_token)
    models = request_models(parser.schema)
    add_routes(app, svc, authorize, models)
    add_docs(app, list(models), authorize)
    return app


def add_routes(app: FastAPI, svc: Service, authorize: Callable[[Request], Awaitable[None]],
               models: tuple[type, type]) -> None:
    """The API (/v1/*, behind `authorize`) and the probes (/healthz, /metrics, always open).

    Args:
        models: (event, score request) models from `request_models`, documenting the two bodies.
    """
    guard = [Depends(authorize)]
    model_slots = CapacityLimiter(max(1, svc.settings.model_concurrency))
    event_model, attempt_model = models

    @app.post("/v1/events", dependencies=guard, openapi_extra=json_body(event_model, many=True))
    async def post_events(request: Request) -> JSONResponse:
        payload = await svc.read_json(request)
        result = await run_in_threadpool(svc.ingest, payload)
        svc.metrics.events.labels(result="applied").inc(result["applied"])
        svc.metrics.events.labels(result="duplicate").inc(result["duplicates"])
        return JSONResponse(result)

    @app.post("/v1/score", dependencies=guard, openapi_extra=json_body(attempt_model))
    async def post_score(request: Request, commit: bool = False) -> JSONResponse:
        svc.need_scorer()
        payload = await svc.read_json(request)
        if svc.batcher is not None:
            return JSONResponse(await svc.score_batched(payload, commit))
        return JSONResponse(await to_thread.run_sync(svc.score, payload, commit, limiter=model_slots))

    # Embedding first: `{entity_id:path}` of the entity route would also match ".../embedding".
    @app.get("/v1/entities/{entity_type}/{entity_id:path}/embedding", dependencies=guard)
    async def get_embedding(entity_type: str, entity_id: str, as_of: str | None = None) -> JSONResponse:
        svc.parser.check_entity_type(entity_type)
        cutoff = parse_as_of(as_of)
        active = svc.need_scorer()

        def embed() -> dict[str, Any]:
            return active.embedding(entity_type, entity_id, svc.store, as_of=cutoff, on_cache=svc.count_cache)

        return JSONResponse(await to_thread.run_sync(embed, limiter=model_slots))

    add_entity_scores_route(app, svc, guard, model_slots)  # before the entity route, whose path would match it

    @app.get("/v1/entities/{entity_type}/{entity_id:path}", dependencies=guard)
    async def get_entity(entity_type: str, entity_id: str) -> JSONResponse:
        svc.parser.check_entity_type(entity_type)
        hist = await run_in_threadpool(svc.store.history, entity_type, entity_id)
        return JSONResponse({
            "entity_type": entity_type, "entity_id": entity_id, "n_events": hist.n_events,
            "n_retained": len(hist.events), "event_ids": [e["event_id"] for e in hist.events],
            "last_event_time": svc.parser.format_time(hist.events[-1]["event_time"]) if hist.events else None,
        })

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            await run_in_threadpool(svc.store.ping)
        except Exception as err:  # report, do not crash: the orchestrator restarts us
            return JSONResponse(status_code=503, content={"status": "unavailable", "state": str(err)})
        return JSONResponse({"status": "ok", "model_version": getattr(svc.scorer, "model_version", None),
                             "scoring": svc.scorer is not None, "state_backend": type(svc.store).__name__})

    @app.get("/metrics")
    async def get_metrics() -> Response:
        body = await run_in_threadpool(svc.metrics.render)
        return Response(content=body, media_type=CONTENT_TYPE)


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
        from foundation.serving.scorer import Scorer, live_options

        scorer = Scorer.from_pretrained(
            cfg.checkpoint, finetune_run=cfg.get("finetune_run"), heads=_plain(cfg.get("heads")),
            fallback_data=cfg.get("data"), cache_size=int(cfg.scorer.cache_size),
            torch_threads=int(cfg.scorer.torch_threads), **live_options(cfg.scorer),
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
    app = create_app(EventParser(schema), build_state_store(state_cfg, max_events, buckets), scorer, service_settings(cfg))
    app.state.entity_heads = load_entity_heads(cfg.get("entity_tasks"), cfg.get("finetune_run")) if scorer else []
    return app


def service_settings(cfg: Any) -> ServiceSettings:
    """ServiceSettings from the `server` and `scorer` sections of conf/serve.yaml (token from the environment)."""
    from foundation.data.schema import parse_duration

    server = cfg.server
    skew, earliest = server.get("max_future_skew"), server.get("min_event_time")
    batching = cfg.scorer.get("batching") or {}
    return ServiceSettings(
        max_body_bytes=int(server.max_body_bytes), max_batch_events=int(server.max_batch_events),
        api_token=os.environ.get(str(server.token_env)) or None, warm_on_ingest=bool(cfg.scorer.warm_on_ingest),
        model_concurrency=int(cfg.scorer.concurrency),
        body_timeout_s=parse_duration(server.body_timeout, "server.body_timeout") / 1000,
        min_event_ms=None if earliest is None else parse_as_of(str(earliest), "server.min_event_time"),
        max_future_skew_ms=None if skew is None else parse_duration(skew, "server.max_future_skew"),
        batch_max_size=int(batching.get("max_size", 64)), batch_max_wait_s=float(batching.get("max_wait_ms", 1.0)) / 1000,
        batch_queue_size=int(batching.get("queue_size", 1024)),
    )


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def serve(cfg: Any) -> None:
    """Build the app from config and run it with uvicorn until interrupted (scripts/serve.py)."""
    import uvicorn

    from foundation.data.schema import parse_duration

    app = build_app(cfg)
    warning = exposure_warning(str(cfg.server.host), app.state.settings.api_token, str(cfg.server.token_env))
    if warning:
        logger.warning(warning)
    logger.warning("serving on http://%s:%s (state: %s, model: %s)", cfg.server.host, cfg.server.port,
                   type(app.state.store).__name__, getattr(app.state.scorer, "model_version", None))
    keep_alive = parse_duration(cfg.server.keep_alive_timeout, "server.keep_alive_timeout") / 1000
    gc.collect()
    gc.freeze()  # the model, vocabularies and config built so far never die: keep them out of every collection
    uvicorn.run(app, host=str(cfg.server.host), port=int(cfg.server.port), log_level=str(cfg.server.log_level),
                access_log=False, timeout_graceful_shutdown=5, timeout_keep_alive=max(1, round(keep_alive)),
                http=str(cfg.server.http), loop=str(cfg.server.loop))


def exposure_warning(host: str, token: str | None, token_env: str = TOKEN_ENV) -> str | None:
    """A warning when the service would answer anyone on the network without a token, else None."""
    if token:
        return None
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (f"serving on {host} without a token: anyone who can reach it can ingest events and read entities; "
            f"set {token_env} (clients then send 'Authorization: Bearer <token>') or bind 127.0.0.1")
