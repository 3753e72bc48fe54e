"""The micro-batcher hands every caller its own result, batches what waits, and never strands an item."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shequn.core import microbatch


def _factory(calls, handle=None, **kw):
    def handle_default(items):
        calls.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    def factory(on_idle):
        return microbatch.MicroBatcher("t", handle or handle_default, on_idle=on_idle, **kw)

    return factory


def test_each_caller_gets_its_own_result_and_waiting_items_share_a_batch():
    calls: list[list[int]] = []
    gate = threading.Event()

    def slow(items):
        gate.wait(5)  # hold the first batch so the others queue up behind it
        calls.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    factory = _factory(calls, slow, max_wait=0.0)
    try:
        with ThreadPoolExecutor(20) as pool:
            futs = [pool.submit(microbatch.submit, "k1", factory, i) for i in range(1, 20)]
            bad = pool.submit(microbatch.submit, "k1", factory, -1)
            time.sleep(0.2)
            gate.set()
            assert [f.result() for f in futs] == [i * 10 for i in range(1, 20)]
            with pytest.raises(ValueError, match="bad -1"):
                bad.result()
        assert sum(len(c) for c in calls) == 20
        assert len(calls) < 20  # the ones that waited were handled together
    finally:
        microbatch.close_all()


def test_a_failing_handler_fails_every_item_of_its_batch_and_the_batcher_goes_on():
    def boom(items):
        if 0 in items:
            raise RuntimeError("down")
        return list(items)

    factory = _factory([], boom)
    try:
        with pytest.raises(RuntimeError, match="down"):
            microbatch.submit("k2", factory, 0)
        assert microbatch.submit("k2", factory, 7) == 7
    finally:
        microbatch.close_all()


def test_an_idle_batcher_exits_and_the_next_item_gets_a_new_one():
    factory = _factory([], idle_exit=0.05)
    assert microbatch.submit("k3", factory, 1) == 10
    first = microbatch._REGISTRY["k3"]
    first.thread.join(2)
    assert not first.thread.is_alive() and "k3" not in microbatch._REGISTRY
    assert microbatch.submit("k3", factory, 2) == 20
    assert microbatch._REGISTRY["k3"] is not first
    microbatch.close_all()
    assert "k3" not in microbatch._REGISTRY


def test_a_stuck_handler_times_the_caller_out():
    release = threading.Event()
    factory = _factory([], lambda items: (release.wait(5), list(items))[1])
    try:
        with pytest.raises(microbatch.BatchTimeout):
            microbatch.submit("k4", factory, 1, timeout=0.05)
    finally:
        release.set()
        microbatch.close_all()
