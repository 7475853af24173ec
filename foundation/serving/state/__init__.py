"""Per-entity live state for the online service: an interface and two backends (SQLite, Redis)."""

from __future__ import annotations

from typing import Any

from foundation.serving.state.base import (
    DEFAULT_MAX_EVENTS,
    EntityHistory,
    EventRecord,
    StateStore,
    StoreStats,
)


def build_state_store(cfg: dict[str, Any], max_events: int, buckets: dict[str, int] | None = None) -> StateStore:
    """Open the backend named by `cfg["backend"]`.

    Args:
        cfg: the `state` section of conf/serve.yaml: backend (sqlite | redis), path, synchronous,
            redis_url, key_prefix.
        max_events: events retained per entity (resolved by the caller from the model's max_position).
        buckets: aggregate entity type -> bucket width in ms (from the data schema).
    Returns:
        an open StateStore.
    """
    backend = cfg.get("backend", "sqlite")
    if backend == "sqlite":
        from foundation.serving.state.sqlite import SqliteStateStore

        return SqliteStateStore(cfg["path"], max_events=max_events, buckets=buckets,
                                synchronous=cfg.get("synchronous", "FULL"))
    if backend == "redis":
        from foundation.serving.state.redis import RedisStateStore

        return RedisStateStore(cfg["redis_url"], max_events=max_events, buckets=buckets,
                               prefix=cfg.get("key_prefix", "foundation"))
    raise ValueError(f"state.backend must be 'sqlite' or 'redis', got {backend!r}")


__all__ = [
    "DEFAULT_MAX_EVENTS",
    "EntityHistory",
    "EventRecord",
    "StateStore",
    "StoreStats",
    "build_state_store",
]
