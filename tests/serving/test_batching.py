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
