"""Embedded default state store: one SQLite file in WAL mode on local disk.

Durability: every `apply` is one transaction (`BEGIN IMMEDIATE ... COMMIT`) and returns, so the service
acknowledges, only after COMMIT. In WAL mode:
- `synchronous=FULL` (the default here) fsyncs the WAL on every commit: an acknowledged event survives a
  process crash (kill -9) *and* a power loss or kernel panic.
- `synchronous=NORMAL` fsyncs only at checkpoints: a commit is in the OS page cache when acknowledged,
  so it survives a process crash but the last transactions may be lost on power loss (the database
  stays consistent). Choose it only when the event source can re-send (replay is idempotent) and the
  fsync per request is the bottleneck.
One request = one transaction, so a batch of events costs one fsync.

Concurrency: one writer connection behind a lock; readers use a connection per thread, so reads
proceed during a write (WAL). Several processes may share the file (busy_timeout), but for several
replicas use the Redis backend.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from foundation.serving.state.base import (
    DEFAULT_MAX_EVENTS,
    EntityHistory,
    EventRecord,
    StateStore,
    StoreStats,
    bucket_end,
    check_buckets,
    check_max_events,
    dedupe_batch,
    group_by_entity,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS applied_events (
    event_id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    n_events INTEGER NOT NULL,
    version INTEGER NOT NULL,
    horizon INTEGER,
    PRIMARY KEY (entity_type, entity_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entity_buckets (
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    bucket_end INTEGER NOT NULL,
    PRIMARY KEY (entity_type, entity_id, bucket_end)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entity_events (
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (entity_type, entity_id, event_time, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_stats (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    n_entities INTEGER NOT NULL,
    n_events_applied INTEGER NOT NULL,
    n_events_retained INTEGER NOT NULL
);
INSERT OR IGNORE INTO store_stats VALUES (0, 0, 0, 0);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

# Rows older than the max_events-th newest of one entity. Row values compare lexicographically, i.e.
# in (event_time, event_id) order, the same order the batch path sorts by.
TRIM = """
DELETE FROM entity_events
WHERE entity_type = ?1 AND entity_id = ?2 AND (event_time, event_id) < (
    SELECT event_time, event_id FROM entity_events
    WHERE entity_type = ?1 AND entity_id = ?2
    ORDER BY event_time DESC, event_id DESC LIMIT 1 OFFSET ?3 - 1
)
"""


class SqliteStateStore(StateStore):
    """State store in a local SQLite file.

    Args:
        path: database file (parent folders are created); must be on local disk (WAL needs shared memory).
        max_events: events retained per entity (buckets for aggregate entities).
        buckets: aggregate entity type -> bucket width in ms (others keep raw events).
        synchronous: "FULL" (durable on power loss) or "NORMAL" (durable on process crash only).
        busy_timeout_ms: how long a writer waits for another process's write lock.
    """

    def __init__(
        self,
        path: str | Path,
        max_events: int = DEFAULT_MAX_EVENTS,
        buckets: dict[str, int] | None = None,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
    ):
        self.path = Path(path)
        self.max_events = check_max_events(max_events)
        self.buckets = check_buckets(buckets)
        sync = str(synchronous).upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"state.synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.synchronous = sync
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer = self._connect()
        mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); use a local disk")
        self._writer.executescript(SCHEMA)
        self._check_max_events_unchanged()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE / COMMIT) so we know exactly
        # when the commit, and hence the acknowledgement, happens.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _check_max_events_unchanged(self) -> None:
        # Shrinking the bound later would silently lose the predecessor events window_start needs;
        # growing it cannot recover evicted events; other buckets would mix two aggregations. Either way
        # the state would no longer match the config.
        layout = {"max_events": str(self.max_events), "buckets": json.dumps(self.buckets, sort_keys=True)}
        for key, value in layout.items():
            row = self._writer.execute("SELECT value FROM store_meta WHERE key = ?", (key,)).fetchone()
            if row is None:
                self._writer.execute("INSERT INTO store_meta VALUES (?, ?)", (key, value))
            elif row[0] != value:
                raise ValueError(
                    f"{self.path} was created with {key}={row[0]}, config says {value}; "
                    "use a new state path (and replay) to change it"
                )

    def apply(self, events: Sequence[EventRecord]) -> list[bool]:
        if not events:
            return []
        first, flags = dedupe_batch(events)
        candidates = [events[i] for i in first]
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                applied_ids = self._already_applied(conn, [e.event_id for e in candidates])
                new = [e for e in candidates if e.event_id not in applied_ids]
                if new:
                    self._insert(conn, new)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        new_ids = {e.event_id for e in new}
        return [flag and ev.event_id in new_ids for ev, flag in zip(events, flags)]

    @staticmethod
    def _already_applied(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
        found: set[str] = set()
        # SQLite's default bound-parameter limit is 32766; stay well below it.
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT event_id FROM applied_events WHERE event_id IN ({marks})", chunk)
            found.update(r[0] for r in rows)
        return found

    def _insert(self, conn: sqlite3.Connection, new: list[EventRecord]) -> None:
        conn.executemany("INSERT INTO applied_events VALUES (?)", [(e.event_id,) for e in new])
        # Every entity's rows in one executemany (an event joins several entities: its JSON is built once),
        # then each entity's count, version and trim, which read its rows.
        payloads = {e.event_id: e.payload_json() for e in new}
        rows, entities = [], []
        for (etype, eid), evs in group_by_entity(new).items():
            width = self.buckets.get(etype)
            kept, increment = (evs, len(evs)) if width is None else self._add_buckets(conn, etype, eid, evs, width)
            if kept:
                rows += [(etype, eid, e.event_time, e.event_id, payloads[e.event_id]) for e in kept]
                entities.append((etype, eid, width, kept, increment))
        conn.executemany("INSERT INTO entity_events VALUES (?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO entities (entity_type, entity_id, n_events, version) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (entity_type, entity_id) DO UPDATE SET n_events = n_events + excluded.n_events, "
            "version = version + excluded.version",
            [(etype, eid, increment, len(kept)) for etype, eid, _, kept, increment in entities],
        )
        totals = self._event_counts(conn, [(etype, eid) for etype, eid, *_ in entities])
        n_new_entities = n_retained = 0
        for etype, eid, width, kept, increment in entities:
            n_total = totals[(etype, eid)]
            n_new_entities += increment > 0 and n_total == increment
            n_retained += len(kept) - (self._trim(conn, etype, eid, n_total) if width is None
                                       else self._trim_buckets(conn, etype, eid))
        conn.execute(
            "UPDATE store_stats SET n_entities = n_entities + ?, n_events_applied = n_events_applied + ?, "
            "n_events_retained = n_events_retained + ? WHERE id = 0",
            (n_new_entities, len(new), n_retained),
        )

    @staticmethod
    def _event_counts(conn: sqlite3.Connection, refs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """n_events of the entities (inside the write transaction, after their upsert)."""
        by_type: dict[str, list[str]] = {}
        for etype, eid in refs:
            by_type.setdefault(etype, []).append(eid)
        found: dict[tuple[str, str], int] = {}
        for etype, ids in by_type.items():
            for start in range(0, len(ids), 900):  # under SQLite's bound-parameter limit
                chunk = ids[start : start + 900]
                marks = ",".join("?" * len(chunk))
                for eid, n in conn.execute(f"SELECT entity_id, n_events FROM entities WHERE entity_type = ? AND "
                                           f"entity_id IN ({marks})", [etype, *chunk]):
                    found[(etype, eid)] = n
        return found

    def _trim(self, conn: sqlite3.Connection, etype: str, eid: str, n_total: int) -> int:
        if n_total <= self.max_events:
            return 0
        return conn.execute(TRIM, (etype, eid, self.max_events)).rowcount

    @staticmethod
    def _add_buckets(
        conn: sqlite3.Connection, etype: str, eid: str, evs: list[EventRecord], width: int
    ) -> tuple[list[EventRecord], int]:
        """Events of an aggregate entity that enter its state, and how many new buckets they open."""
        row = conn.execute(
            "SELECT horizon FROM entities WHERE entity_type = ? AND entity_id = ?", (etype, eid)
        ).fetchone()
        horizon = None if row is None else row[0]
        kept = [e for e in evs if horizon is None or bucket_end(e.event_time, width) > horizon]
        ends = sorted({bucket_end(e.event_time, width) for e in kept})
        cur = conn.executemany("INSERT OR IGNORE INTO entity_buckets VALUES (?, ?, ?)", [(etype, eid, t) for t in ends])
        return kept, max(cur.rowcount, 0)

    def _trim_buckets(self, conn: sqlite3.Connection, etype: str, eid: str) -> int:
        """Evict the raw events of all but the newest max_events + 1 buckets; move the horizon."""
        row = conn.execute(
            "SELECT bucket_end FROM entity_buckets WHERE entity_type = ? AND entity_id = ? "
            "ORDER BY bucket_end DESC LIMIT 1 OFFSET ?",
            (etype, eid, self.max_events + 1),
        ).fetchone()
        if row is None:
            return 0
        cut = int(row[0])  # the newest evicted bucket
        conn.execute(
            "DELETE FROM entity_buckets WHERE entity_type = ? AND entity_id = ? AND bucket_end <= ?", (etype, eid, cut)
        )
        conn.execute("UPDATE entities SET horizon = ? WHERE entity_type = ? AND entity_id = ?", (cut, etype, eid))
        return conn.execute(
            "DELETE FROM entity_events WHERE entity_type = ? AND entity_id = ? AND event_time < ?", (etype, eid, cut)
        ).rowcount

    def histories(self, refs: Sequence[tuple[str, str]]) -> list[EntityHistory]:
        return self._read(refs, None)

    def tails(self, refs: Sequence[tuple[str, str]], after: Sequence[tuple[int, str]]) -> list[EntityHistory]:
        return self._read(refs, after)

    def _read(self, refs: Sequence[tuple[str, str]], after: Sequence[tuple[int, str]] | None) -> list[EntityHistory]:
        conn = self._reader()
        out = []
        # One read transaction so the events and the count of an entity come from the same snapshot.
        conn.execute("BEGIN")
        try:
            for k, (etype, eid) in enumerate(refs):
                row = conn.execute(
                    "SELECT n_events, version FROM entities WHERE entity_type = ? AND entity_id = ?", (etype, eid)
                ).fetchone()
                if row is None:
                    out.append(EntityHistory(etype, eid, [], 0, 0))
                    continue
                if after is None:
                    payloads = conn.execute(
                        "SELECT payload FROM entity_events WHERE entity_type = ? AND entity_id = ? "
                        "ORDER BY event_time, event_id", (etype, eid)).fetchall()
                else:  # row values compare in (event_time, event_id) order, as the batch path sorts
                    payloads = conn.execute(
                        "SELECT payload FROM entity_events WHERE entity_type = ? AND entity_id = ? "
                        "AND (event_time, event_id) > (?, ?) ORDER BY event_time, event_id",
                        (etype, eid, int(after[k][0]), str(after[k][1]))).fetchall()
                out.append(EntityHistory(etype, eid, [json.loads(p[0]) for p in payloads], int(row[0]), int(row[1])))
        finally:
            conn.execute("COMMIT")
        return out

    def versions(self, refs: Sequence[tuple[str, str]]) -> list[int]:
        conn = self._reader()
        out = []
        for etype, eid in refs:
            row = conn.execute(
                "SELECT version FROM entities WHERE entity_type = ? AND entity_id = ?", (etype, eid)
            ).fetchone()
            out.append(0 if row is None else int(row[0]))
        return out

    def applied(self, event_ids: Sequence[str]) -> list[bool]:
        found = self._already_applied(self._reader(), list(event_ids))
        return [i in found for i in event_ids]

    def stats(self) -> StoreStats:
        row = self._reader().execute(
            "SELECT n_entities, n_events_applied, n_events_retained FROM store_stats WHERE id = 0"
        ).fetchone()
        return StoreStats(int(row[0]), int(row[1]), int(row[2]))

    def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
