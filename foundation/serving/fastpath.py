"""POST /v1/score without the web framework's per-request machinery.

A score is the service's hot path: at one client, FastAPI's layers (middleware stack, routing, dependency
solving, the Request and Response objects, the metrics middleware's route matching) cost more CPU than the
model. `ScoreFastPath` is a pure ASGI middleware placed outside them: it answers POST /v1/score itself, with the
same steps and answers as the FastAPI route it shadows (bearer check, `commit` flag, body limits, JSON, the
micro-batcher, errors as `{"error": {...}}`) and records the same HTTP metrics (`foundation_http_*` with
handler "/v1/score"); every other request goes on to FastAPI unchanged. Without a micro-batcher (batching
off, or no model) it steps aside and the FastAPI route answers. That both answer alike is tested
(tests/serving/test_scores.py::test_score_fast_path_answers_as_the_framework_route).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from foundation.serving.body import parse_json, read_body
from foundation.serving.errors import as_request_error, check_bearer, error_headers
from foundation.serving.schemas import RequestError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

ROUTE = "/v1/score"
TRUE, FALSE = {"1", "on", "t", "true", "y", "yes"}, {"0", "off", "f", "false", "n", "no"}  # as FastAPI's bool


def commit_flag(query_string: bytes) -> bool:
    """The `commit` query parameter read as FastAPI reads a bool (absent: False).

    Raises:
        RequestError 422: a value that is not a boolean, naming the field.
    """
    values = [v for k, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if k == "commit"]
    if not values:
        return False
    value = values[-1].strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise RequestError(422, "invalid request parameters",
                       [{"field": "commit", "reason": "Input should be a valid boolean, unable to interpret input"}])


def json_bytes(content: Any) -> bytes:
    """JSON as Starlette's JSONResponse writes it (UTF-8, compact, NaN refused)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class ScoreFastPath:
    """ASGI middleware answering POST /v1/score through the service's micro-batcher (see the module doc).

    Args:
        app: the FastAPI app (everything else goes there).
        service: `foundation.serving.app.Service` (settings, batcher, metrics).
    """

    def __init__(self, app: ASGIApp, service: Any):
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        svc = self.service
        if scope["type"] != "http" or scope["path"] != ROUTE or scope["method"] != "POST" or svc.batcher is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, body, headers = await self.answer(scope, receive)
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})
        svc.metrics.observe_http(ROUTE, "POST", status, time.perf_counter() - start)

    async def answer(self, scope: Scope, receive: Callable[[], Awaitable[Message]]
                     ) -> tuple[int, bytes, dict[str, str] | None]:
        """(status, JSON body, extra headers) of one score request."""
        svc, settings = self.service, self.service.settings
        try:
            check_bearer(_header(scope, b"authorization"), settings.api_token)
            commit = commit_flag(scope.get("query_string", b""))
            payload = parse_json(await read_body(Request(scope, receive), settings.max_body_bytes,
                                                 settings.body_timeout_s))
            return 200, json_bytes(await svc.score_batched(payload, commit)), None
        except Exception as err:  # noqa: BLE001 - every failure becomes its answer, as in the FastAPI handlers
            error = as_request_error(err)
            return error.status, json_bytes({"error": error.to_dict()}), error_headers(error)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""
