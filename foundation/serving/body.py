"""Reading a request body under the service's limits: size (413), time (408), then JSON (400).

An oversized body is refused before it is read (Content-Length) or as soon as it passes the limit (chunked);
uvicorn's h11 protocol then discards the rest of the body the client is still sending, so the client reads
the 413 instead of a connection reset (tests/serving/test_api_http.py checks it with a 50 MB body).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import Request

from foundation.serving.schemas import RequestError


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refusing more than `limit` bytes (413) or a body slower than `timeout_s` (408).

    Args:
        request: the incoming request.
        limit: largest body accepted (server.max_body_bytes); a larger Content-Length is refused unread.
        timeout_s: the whole body must arrive within this many seconds (server.body_timeout): a stalled
            upload does not hold a connection and a worker slot forever.
    Returns:
        the body bytes.
    Raises:
        RequestError: 400 (bad Content-Length), 408 (too slow), 413 (too large).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"Content-Length header {declared!r} is not a number")
        if int(declared) > limit:
            raise RequestError(413, f"request body is {declared} bytes; the limit is {limit} bytes "
                                    "(server.max_body_bytes); split the batch")
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"request body exceeds {limit} bytes (server.max_body_bytes); "
                                            "split the batch")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"request body not received within {timeout_s:g} s (server.body_timeout)") from None
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """The JSON document of a body; 400 naming what is wrong (empty, not UTF-8, not JSON, too deep)."""
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
