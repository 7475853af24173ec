"""Micro-batching: concurrent score requests share one forward pass.

Requests enter a bounded queue (full: 503, retry); one worker thread takes the first waiting request plus
every request already queued, up to `max_size`, and scores them together (`Scorer.score_many`: one event
encoder pass, one call per head). While a batch runs, the next one fills, so the batch grows with the number
of clients and throughput with it.

Waiting for company costs latency, so after taking what is queued the worker waits (at most `max_wait_s`,
about a millisecond) only for as many requests as the previous pass held: the clients it answered are the
ones likely to come back. A lone client is never delayed, and N steady clients wait for each other at most
max_wait_s, not for a batch size they cannot reach.

`?commit=true` requests are scored and applied one at a time in the same worker, after the batch's plain
requests: a committed attempt is in the state before the next attempt of its entities is scored, as when
requests were scored one at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from foundation.serving.schemas import RequestError

logger = logging.getLogger(__name__)


def scoring_run(scorer: Any, store: Any, on_cache: Callable[[int, int], None] | None,
                commit: Callable[[Any, dict[str, Any], bool], dict[str, Any]],
                parse: Callable[[Sequence[tuple[Any, bool]]], list[Any]] | None = None,
                ) -> Callable[[Sequence[tuple[Any, bool]]], list[Any]]:
    """The batcher's work over (attempt, commit) items: plain attempts in one `Scorer.score_many` pass, then
    each commit attempt scored and applied in order (`commit(attempt, result, applies)` adds `committed`).
    A failure of one item (a 4xx, a 409, a store error while applying) is that item's result.

    Args:
        parse: when given, items are (request body, commit) and this turns them into attempts first, one
            Attempt or RequestError per item (`EventParser.parse_attempts`: one validator pass per batch).
    """

    def finish(attempt: Any, result: Any, applies: bool) -> Any:
        if isinstance(result, Exception):
            return result
        try:
            return commit(attempt, result, applies)
        except Exception as err:  # noqa: BLE001 - the caller's error, the batch goes on
            return err

    def score(items: Sequence[tuple[Any, bool]]) -> list[Any]:
        results: list[Any] = [None] * len(items)
        plain = [k for k, (_, applies) in enumerate(items) if not applies]
        if plain:
            for k, result in zip(plain, scorer.score_many([items[k][0] for k in plain], store, on_cache)):
                results[k] = finish(items[k][0], result, False)
        for k, (attempt, applies) in enumerate(items):
            if applies:
                results[k] = finish(attempt, scorer.score_many([attempt], store, on_cache)[0], True)
        return results

    def run(items: Sequence[tuple[Any, bool]]) -> list[Any]:
        if parse is None:
            return score(items)
        results = parse(items)  # an Attempt, or the request's RequestError
        valid = [k for k, attempt in enumerate(results) if not isinstance(attempt, Exception)]
        if valid:
            for k, result in zip(valid, score([(results[k], items[k][1]) for k in valid])):
                results[k] = result
        return results

    return run


class MicroBatcher:
    """A bounded queue and one worker running `run` over batches of queued items.

    Args:
        run: items -> one result per item (a result may be an exception instance: it is raised to its caller).
        max_size: most items per batch.
        max_wait_s: longest wait for more items after the first (only under concurrent load, see above).
        queue_size: items waiting at most; `submit` beyond it answers 503.
        on_batch: optional callback(batch size) (metrics).
    """

    def __init__(self, run: Callable[[Sequence[Any]], Sequence[Any]], max_size: int = 64, max_wait_s: float = 0.001,
                 queue_size: int = 1024, on_batch: Callable[[int], None] | None = None):
        if max_size < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError(f"micro-batching needs max_size >= 1, queue_size >= 1, max_wait >= 0; got {max_size}, "
                             f"{queue_size}, {max_wait_s}")
        self.run, self.max_size, self.max_wait_s, self.on_batch = run, max_size, max_wait_s, on_batch
        self._queue: queue.Queue[tuple[Any, Future] | None] = queue.Queue(maxsize=queue_size)
        self.batches = self.items = self.largest = 0  # counters (tests, /metrics)
        self._last_size = 1
        self._thread = threading.Thread(target=self._loop, name="score-batcher", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        """Queue one item; the future resolves to its result.

        Raises:
            RequestError 503: the queue is full.
        """
        future: Future = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise RequestError(503, f"scoring queue full ({self._queue.maxsize} waiting requests); retry") from None
        return future

    def _take(self) -> tuple[list[tuple[Any, Future]], bool]:
        """The next batch (blocks for its first item) and whether the batcher was stopped."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        target = min(self._last_size, self.max_size)  # wait for as many as the last pass held, no more
        deadline = time.monotonic() + (self.max_wait_s if target > 1 else 0.0)
        while len(batch) < self.max_size:
            remaining = deadline - time.monotonic() if len(batch) < target else 0.0
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _loop(self) -> None:
        stopped = False
        while not stopped:
            batch, stopped = self._take()
            if batch:
                self._process(batch)

    def _process(self, batch: list[tuple[Any, Future]]) -> None:
        self._last_size = len(batch)
        self.batches += 1
        self.items += len(batch)
        self.largest = max(self.largest, len(batch))
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            results = list(self.run([item for item, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as err:  # noqa: BLE001 - every waiting caller gets the error, the worker lives on
            results = [err] * len(batch)
        for (_, future), result in zip(batch, results):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued items, then end the worker."""
        self._queue.put(None)
        self._thread.join(timeout=timeout)
