"""MicroBatcher: requests queued while a batch runs form the next batch; results reach their own callers;
errors stay with their request; a full queue answers 503."""

from __future__ import annotations

import threading
import time

import pytest

from foundation.serving.batching import MicroBatcher
from foundation.serving.schemas import RequestError


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_requests_queued_during_a_batch_share_the_next_one():
    release, calls = threading.Event(), []

    def run(items):
        calls.append(list(items))
        release.wait(10)
        return [item * 10 if item != 3 else RequestError(409, "three") for item in items]

    batcher = MicroBatcher(run, max_size=8, max_wait_s=0.0, queue_size=64)
    first = batcher.submit(0)
    wait_until(lambda: calls)  # the worker is busy with [0]
    futures = [batcher.submit(i) for i in range(1, 6)]
    release.set()
    assert first.result(10) == 0 and [f.result(10) for f in futures if f is not futures[2]] == [10, 20, 40, 50]
    with pytest.raises(RequestError, match="three"):
        futures[2].result(10)  # an error reaches only its own caller
    assert calls == [[0], [1, 2, 3, 4, 5]]
    assert (batcher.batches, batcher.items, batcher.largest) == (2, 6, 5)
    batcher.stop()


def test_max_size_splits_batches_and_a_full_queue_is_503():
    release, sizes = threading.Event(), []

    def run(items):
        sizes.append(len(items))
        release.wait(10)
        return list(items)

    batcher = MicroBatcher(run, max_size=3, max_wait_s=0.0, queue_size=4)
    futures = [batcher.submit(0)]
    wait_until(lambda: sizes)
    futures += [batcher.submit(i) for i in range(1, 5)]  # fills the queue (4)
    with pytest.raises(RequestError) as err:
        batcher.submit(99)
    assert err.value.status == 503 and "queue full" in err.value.message
    release.set()
    assert [f.result(10) for f in futures] == [0, 1, 2, 3, 4]
    assert sizes == [1, 3, 1]
    batcher.stop()


def test_a_failing_batch_fails_its_requests_only():
    def run(items):
        if 0 in items:
            raise RuntimeError("boom")
        return list(items)

    batcher = MicroBatcher(run, max_size=4, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(0).result(10)
    assert batcher.submit(7).result(10) == 7  # the worker lives on
    batcher.stop()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(list, max_size=0)


def test_waits_only_for_as_many_as_the_last_batch_held():
    """After a pass of 3 the worker waits (up to max_wait_s) for 3 requests, then goes at once: it does not sit
    out max_wait_s hoping for a max_size batch."""
    release, sizes = threading.Event(), []

    def run(items):
        sizes.append(len(items))
        release.wait(10)
        return list(items)

    batcher = MicroBatcher(run, max_size=64, max_wait_s=5.0)
    first = batcher.submit(0)
    wait_until(lambda: sizes)
    batch = [batcher.submit(i) for i in (1, 2, 3)]
    release.set()
    assert [f.result(10) for f in [first, *batch]] == [0, 1, 2, 3] and sizes == [1, 3]
    started = time.monotonic()
    later = [batcher.submit(10)]
    time.sleep(0.05)  # the worker now waits for company: 2 more arrive
    later += [batcher.submit(11), batcher.submit(12)]
    assert [f.result(10) for f in later] == [10, 11, 12]
    assert sizes == [1, 3, 3] and time.monotonic() - started < 4.0  # went with 3, not after max_wait_s
    batcher.stop()
