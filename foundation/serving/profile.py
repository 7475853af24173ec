"""Where a score's server-side time goes: feature building, model passes, heads.

`ScoreProfile` accumulates wall seconds per stage of `Scorer.score_many` and the requests they served;
/metrics exports them (`foundation_score_stage_seconds_total{stage}`, `foundation_score_profiled_requests_total`)
and the load test turns two scrapes into the share of a request spent in each stage (the rest of the client's
latency is HTTP, JSON parsing and the micro-batch queue). A batch's stage time is shared by its requests.

Stages:
- features: entity states (cache lookups, incremental steps, store reads), the attempt's tokenization, the
  task feature rows (and the raw-field block of GBDT heads);
- model: the event encoder and surprise passes over the attempts;
- head: `predict_proba` of every served head.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("features", "model", "head")


class ScoreProfile:
    """Thread-safe seconds per stage and the number of requests scored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.requests = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block into stage `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[name] += elapsed

    def count(self, requests: int) -> None:
        with self._lock:
            self.requests += requests

    def snapshot(self) -> tuple[dict[str, float], int]:
        with self._lock:
            return dict(self.seconds), self.requests
