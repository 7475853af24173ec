"""The state store contract, run against both backends (Redis when a redis-server binary exists)."""

from __future__ import annotations

import itertools
import random
import uuid

import pytest

from foundation.serving.state import StateStore
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.conftest import make_event


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def make_store(request, tmp_path):
    """A factory: make_store(max_events) -> a fresh, empty store of the parametrised backend."""
    opened: list[StateStore] = []

    def factory(max_events: int = 5, buckets: dict[str, int] | None = None) -> StateStore:
        if request.param == "sqlite":
            store = SqliteStateStore(tmp_path / f"{uuid.uuid4().hex}.sqlite", max_events=max_events, buckets=buckets)
        else:
            from foundation.serving.state.redis import RedisStateStore

            url = request.getfixturevalue("redis_url")
            store = RedisStateStore(url, max_events=max_events, buckets=buckets, prefix=f"t{uuid.uuid4().hex[:8]}")
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def ids(history) -> list[str]:
    return [e["event_id"] for e in history.events]


def test_apply_is_idempotent_on_event_id(make_store):
    store = make_store()
    assert store.apply([make_event("a", 10), make_event("b", 20), make_event("a", 10)]) == [True, True, False]
    assert store.apply([make_event("b", 20), make_event("c", 30)]) == [False, True]
    hist = store.history("customer", "c1")
    assert ids(hist) == ["a", "b", "c"] and hist.n_events == 3
    assert store.applied(["a", "c", "zz"]) == [True, True, False]
    stats = store.stats()
    assert (stats.n_entities, stats.n_events_applied, stats.n_events_retained) == (2, 3, 6)


def test_window_is_bounded_and_counts_every_event(make_store):
    store = make_store(max_events=5)
    store.apply([make_event(f"e{i:02d}", 1000 + i) for i in range(12)])
    hist = store.history("customer", "c1")
    assert ids(hist) == [f"e{i:02d}" for i in range(7, 12)]
    assert hist.n_events == 12 and hist.first_index == 7
    assert store.versions([("customer", "c1"), ("merchant", "m1"), ("customer", "nobody")]) == [12, 12, 0]
    assert store.stats().n_events_retained == 10
    empty = store.history("customer", "nobody")
    assert empty.events == [] and empty.n_events == 0


def test_order_is_event_time_then_event_id(make_store):
    store = make_store(max_events=10)
    # Same millisecond: event_id breaks the tie as a string ("10" < "9"), the order the batch path uses.
    store.apply([make_event("9", 5), make_event("10", 5), make_event("x", 1)])
    assert ids(store.history("customer", "c1")) == ["x", "10", "9"]


def test_late_events_give_the_in_order_state(make_store):
    """Any arrival order (late events included) ends in the state of the sorted arrival."""
    rng = random.Random(0)
    events = [make_event(f"e{i:03d}", 1000 + 7 * i, customer=f"c{i % 3}") for i in range(40)]
    in_order, shuffled = make_store(max_events=6), make_store(max_events=6)
    in_order.apply(events)
    late = events[:]
    rng.shuffle(late)
    for start in range(0, len(late), 7):
        shuffled.apply(late[start : start + 7])
    for cust in ("c0", "c1", "c2"):
        a, b = in_order.history("customer", cust), shuffled.history("customer", cust)
        assert ids(a) == ids(b) and a.n_events == b.n_events
    # A late event older than every retained event of a full window is counted but not retained.
    before = shuffled.history("customer", "c0")
    assert shuffled.apply([make_event("old", 1, customer="c0")]) == [True]
    after = shuffled.history("customer", "c0")
    assert ids(after) == ids(before) and after.n_events == before.n_events + 1


def test_count_before_is_strict(make_store):
    store = make_store(max_events=10)
    store.apply([make_event("a", 10), make_event("b", 20), make_event("c", 20)])
    hist = store.history("customer", "c1")
    assert hist.count_before(20, "c") == 2
    assert hist.count_before(20, None) == 1
    assert hist.count_before(21, None) == 3


def test_aggregate_entities_keep_whole_buckets_and_count_buckets(make_store):
    store = make_store(max_events=2, buckets={"issuer": 10})
    store.apply([make_event(e, t, issuer="i1") for e, t in [("a", 1), ("b", 2), ("c", 15), ("d", 25), ("e", 35)]])
    hist = store.history("issuer", "i1")
    # Buckets end at 10, 20, 30, 40: four positions; max_events + 1 = 3 buckets are kept, so the oldest
    # bucket (a, b) is evicted whole.
    assert hist.n_events == 4 and ids(hist) == ["c", "d", "e"]
    assert store.history("customer", "c1").n_events == 5  # raw-event entities count every event
    # A late event in an evicted bucket is acknowledged but not applied to the issuer; one in a retained
    # bucket joins it without opening a new position.
    assert store.apply([make_event("late-evicted", 5, issuer="i1"), make_event("late-kept", 17, issuer="i1")]) == [
        True, True]
    hist = store.history("issuer", "i1")
    assert hist.n_events == 4 and ids(hist) == ["c", "late-kept", "d", "e"]
    assert hist.version == 6 and store.versions([("issuer", "i1")]) == [6]  # the ignored late event: no change
    store.apply([make_event("f", 45, issuer="i1")])
    hist = store.history("issuer", "i1")
    assert hist.n_events == 5 and ids(hist) == ["d", "e", "f"]
    # Customer and merchant keep their newest 2 raw events; the issuer the 3 events of its 3 buckets.
    assert store.stats().n_events_retained == 2 + 2 + 3


def test_failed_batch_changes_nothing(make_store):
    store = make_store()
    store.apply([make_event("a", 10)])
    bad = make_event("b", 20)
    bad.payload["not_json"] = {1, 2}  # a set cannot be serialised: the store fails mid-batch
    with pytest.raises(TypeError):
        store.apply([make_event("z", 15), bad])
    hist = store.history("customer", "c1")
    assert ids(hist) == ["a"] and hist.n_events == 1
    assert store.applied(["z", "b"]) == [False, False]
    assert store.stats().n_events_applied == 1


def test_sqlite_state_survives_reopen_and_refuses_a_new_bound(tmp_path):
    path = tmp_path / "state.sqlite"
    store = SqliteStateStore(path, max_events=4)
    store.apply([make_event(f"e{i}", i) for i in range(6)])
    store.close()
    reopened = SqliteStateStore(path, max_events=4)
    hist = reopened.history("merchant", "m1")
    assert ids(hist) == ["e2", "e3", "e4", "e5"] and hist.n_events == 6
    assert reopened.apply([make_event("e5", 5)]) == [False]
    reopened.close()
    with pytest.raises(ValueError, match="max_events=4"):
        SqliteStateStore(path, max_events=8)
    conn_mode = SqliteStateStore(tmp_path / "other.sqlite")._writer.execute("PRAGMA journal_mode").fetchone()
    assert conn_mode[0] == "wal"


def test_many_entities_in_one_batch(make_store):
    store = make_store(max_events=3)
    events = [make_event(f"e{c}{m}", 10 * c + m, customer=f"c{c}", merchant=f"m{m}")
              for c, m in itertools.product(range(4), range(4))]
    assert all(store.apply(events))
    for c in range(4):
        hist = store.history("customer", f"c{c}")
        assert hist.n_events == 4 and ids(hist) == [f"e{c}{m}" for m in (1, 2, 3)]
    assert store.stats().n_entities == 8


def test_one_batch_equals_one_event_at_a_time(make_store):
    """A batch over many entities (new ones, ones over their bound, bucketed issuers) leaves the state, the
    versions and the counters that applying its events one by one leaves (in time order: a late event may
    fall behind a bucket horizon one at a time and not in a batch)."""
    rng = random.Random(3)
    events = [make_event(f"e{k}", 1_000 * t, customer=f"c{rng.randrange(6)}", merchant=f"m{rng.randrange(3)}",
                         issuer=f"i{rng.randrange(2)}") for k, t in enumerate(sorted(rng.sample(range(500), 120)))]
    buckets = {"issuer": 10_000}
    batched, single = make_store(max_events=7, buckets=buckets), make_store(max_events=7, buckets=buckets)
    assert all(batched.apply(events[:20]) + batched.apply(events[20:]))  # a warm store, then a big batch
    assert all(flag for event in events for flag in single.apply([event]))
    refs = [(t, f"{t[0]}{i}") for t in ("customer", "merchant", "issuer") for i in range(6)]
    assert batched.versions(refs) == single.versions(refs)
    for etype, eid in refs:
        got, want = batched.history(etype, eid), single.history(etype, eid)
        assert (got.n_events, ids(got)) == (want.n_events, ids(want)), (etype, eid)
    assert batched.stats() == single.stats()


def test_tails_are_the_events_after_a_key(make_store):
    """`tails`: the retained events strictly after each (event_time, event_id) key, in order, with the whole
    history's counts; equal to filtering `histories` (the base implementation)."""
    store = make_store(max_events=6)
    store.apply([make_event(f"e{i}", 10 * (i // 2), merchant=f"m{i % 2}") for i in range(9)])  # equal times too
    refs = [("customer", "c1"), ("merchant", "m0"), ("merchant", "nobody")]
    after = [(30, "e6"), (20, "e4"), (0, "")]
    tails = store.tails(refs, after)
    expected = StateStore.tails(store, refs, after)  # the default: histories filtered
    assert [ids(t) for t in tails] == [ids(t) for t in expected] == [["e7", "e8"], ["e6", "e8"], []]
    assert [(t.n_events, t.version) for t in tails] == [(9, 9), (5, 5), (0, 0)]
    assert ids(store.tails([("customer", "c1")], [(30, "e5")])[0]) == ["e6", "e7", "e8"]  # same time, later id
