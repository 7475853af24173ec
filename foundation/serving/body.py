"""Reading a request body under the service's limits: size (413), time (408), then JSON (400).

A refused body is drained before the answer: a client still sending a 50 MB body to a server that answered
and closed gets a connection reset, not the 413. Draining is bounded (DRAIN_BYTES and the body timeout);
beyond that the connection is closed and the client sees the reset.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import Request

from foundation.serving.schemas import RequestError

DRAIN_BYTES = 64 * 1024 * 1024  # most bytes of a refused body read (and discarded) so the client sees the 413


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
    too_big = None
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"Content-Length header {declared!r} is not a number")
        if int(declared) > limit:
            too_big = (f"request body is {declared} bytes; the limit is {limit} bytes (server.max_body_bytes); "
                       "split the batch")
    stream = request.stream()
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout_s):
            if too_big is None:
                async for chunk in stream:
                    size += len(chunk)
                    if size > limit:
                        too_big = f"request body exceeds {limit} bytes (server.max_body_bytes); split the batch"
                        break
                    chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"request body not received within {timeout_s:g} s (server.body_timeout)") from None
    if too_big is not None:
        if declared is None or int(declared) <= DRAIN_BYTES:
            await _drain(stream, DRAIN_BYTES - size, timeout_s)
        raise RequestError(413, too_big)
    return b"".join(chunks)


async def _drain(stream: AsyncIterator[bytes], max_bytes: int, timeout_s: float) -> None:
    """Read and discard the rest of a refused body, at most `max_bytes` and `timeout_s`."""
    seen = 0
    with anyio.move_on_after(timeout_s):
        async for chunk in stream:
            seen += len(chunk)
            if seen > max_bytes:
                return


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
