"""Prometheus metrics of the online service (text exposition via prometheus_client).

HTTP request counts and latencies come from prometheus-fastapi-instrumentator; the domain metrics (events,
cache, model, state store sizes) are ours. Each app owns its own `CollectorRegistry`, so several apps in one
process (tests, two replicas) do not share counters. The `handler` label is the route *template*
(`/v1/entities/{entity_type}/{entity_id:path}/embedding`; "none" for unmatched paths), never the raw path,
so entity ids cannot blow up the label cardinality.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics

from foundation.serving.state import StoreStats

# The *_created series double the exposition size and no dashboard of ours reads them.
disable_created_metrics()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Scoring targets a few ms; the fine low buckets make p50/p99 readable from the histogram.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StateCollector(Collector):
    """Reads the store's sizes at scrape time (a scrape is rare; the store keeps them as counters)."""

    def __init__(self, stats: Callable[[], StoreStats]):
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            s = self._stats()
        except Exception:  # an unreachable store must not break the scrape; /healthz reports it
            return
        yield GaugeMetricFamily("foundation_state_entities", "Entities with at least one event", value=s.n_entities)
        yield GaugeMetricFamily(
            "foundation_state_events_applied", "Distinct events applied to the state", value=s.n_events_applied
        )
        yield GaugeMetricFamily(
            "foundation_state_events_retained", "Event rows retained across entity windows", value=s.n_events_retained
        )


class _ScorerCollector(Collector):
    """The scorer's stage profile (foundation.serving.profile) and its live-state counters, read at scrape time."""

    def __init__(self, scorer: Any):
        self._scorer = scorer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        seconds, requests = self._scorer.profile.snapshot()
        stages = CounterMetricFamily("foundation_score_stage_seconds", "Server-side seconds of scoring by stage "
                                     "(features, model, head)", labels=["stage"])
        for stage, value in seconds.items():
            stages.add_metric([stage], value)
        yield stages
        yield CounterMetricFamily("foundation_score_profiled_requests", "Score requests the stage seconds cover",
                                  value=requests)
        engines = [engine.live for engine in self._scorer.engines.values() if engine.live is not None]
        steps = CounterMetricFamily("foundation_live_state_updates", "Live-state updates by kind (step: one "
                                    "recurrent step per event; window: a window pass)", labels=["kind"])
        steps.add_metric(["step"], sum(live.steps for live in engines))
        steps.add_metric(["window"], sum(live.prefills for live in engines))
        yield steps
        yield GaugeMetricFamily("foundation_live_state_entities", "Entities with a live state in memory",
                                value=sum(len(live) for live in engines))
        yield GaugeMetricFamily("foundation_live_state_bytes", "Bytes of live-state carries in memory "
                                "(bounded by scorer.live_state_mb per engine)", value=sum(live.nbytes for live in engines))


class ServiceMetrics:
    """The service's counters, histograms and gauges.

    Args:
        stats: callable returning the store's current sizes (exported as gauges at scrape time).
        scorer: the Scorer (its model_version labels `foundation_model_info`; its profile and live states are
            exported), or None (ingest-only).
    """

    def __init__(self, stats: Callable[[], StoreStats], scorer: Any = None):
        model_version = getattr(scorer, "model_version", None)
        self.registry = CollectorRegistry(auto_describe=True)
        self._http: list[Callable[[Any], None]] = []  # the HTTP instrumentations, once `instrument` adds them
        self.events = Counter(
            "foundation_events", "Events received on /v1/events by result (applied, duplicate)",
            ["result"], registry=self.registry,
        )
        self.cache = Counter(
            "foundation_scorer_cache", "Hidden-state cache lookups by result (hit, miss)",
            ["result"], registry=self.registry,
        )
        self.score_batch = Histogram(
            "foundation_score_batch_size", "Score requests per forward pass (micro-batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry,
        )
        self.model_info = Gauge(
            "foundation_model_info", "The loaded model (1 = loaded)", ["version"], registry=self.registry
        )
        self.model_info.labels(version=model_version or "none").set(1 if model_version else 0)
        self.registry.register(_StateCollector(stats))
        if scorer is not None:
            self.registry.register(_ScorerCollector(scorer))

    def instrument(self, app: FastAPI) -> None:
        """Count and time every HTTP request of `app` into this registry: `foundation_http_requests_total`
        (handler, method, status) and `foundation_http_request_duration_seconds` (handler, method)."""
        instrumentator = Instrumentator(should_group_status_codes=False, registry=self.registry)
        self._http = [
            http_metrics.requests(metric_namespace="foundation", registry=self.registry),
            http_metrics.latency(metric_namespace="foundation", should_include_status=False,
                                 buckets=LATENCY_BUCKETS, registry=self.registry),
        ]
        instrumentator.add(*self._http)
        instrumentator.instrument(app)

    def observe_http(self, handler: str, method: str, status: int, seconds: float) -> None:
        """Count and time one request answered outside the instrumented app (foundation.serving.fastpath)
        into the same `foundation_http_*` series."""
        info = http_metrics.Info(None, None, method, handler, str(status), seconds)  # type: ignore[arg-type]
        for instrumentation in self._http:
            instrumentation(info)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
