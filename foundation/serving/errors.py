"""What the service answers when a request goes wrong, shared by the FastAPI routes and the score fast path
(foundation.serving.fastpath): the bearer check, and every exception mapped to one `{"error": {...}}` answer
(bad input its 4xx, a state-store outage 503, a bug 500 without internals)."""

from __future__ import annotations

import hmac
import logging
import sqlite3

import redis

from foundation.serving.schemas import RequestError

logger = logging.getLogger("foundation.serving.app")  # the service log, where these were logged before
STORE_OUTAGES = (sqlite3.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def check_bearer(header: str, api_token: str | None) -> None:
    """Refuse (401) an `Authorization` header that is not `Bearer <api_token>`; open when api_token is None."""
    if api_token is None:
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise RequestError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode(), api_token.encode()):
        raise RequestError(401, "invalid bearer token")


def as_request_error(err: Exception) -> RequestError:
    """The answer an exception gets: itself when bad input, 503 on a store outage, 500 (logged whole) on a bug."""
    if isinstance(err, RequestError):
        return err
    if isinstance(err, STORE_OUTAGES):
        # The transaction did not commit, so nothing was acknowledged: the client may retry (idempotent).
        logger.warning("state store unavailable: %s", err)
        return RequestError(503, f"state store unavailable ({type(err).__name__}); retry")
    # A bug, not bad input (bad input is a RequestError): log it whole, answer without internals.
    logger.error("unhandled error: %s", err, exc_info=err)
    return RequestError(500, f"internal error ({type(err).__name__}); see the service log")


def error_headers(err: RequestError) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
