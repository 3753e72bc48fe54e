"""Micro-batching: many threads hand items to one background thread, which handles everything that is
waiting in ONE call (one transaction, one Redis round trip) and gives each caller its own result.

Used for group commit of hot flash sales (``commerce.batching``) and for the Redis flash-sale gate
(``commerce.redis_gate``). A batcher's thread exits after ``idle_exit`` seconds without work;
:func:`submit` makes a new one on the next call. Latency added at low load: at most ``max_wait`` (the
thread waits that long only while the batch is still small); under load, the batch is what queued up
while the previous one was being handled."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchTimeout(Exception):
    """The batch thread did not answer in time."""


@dataclass
class _Item(Generic[T]):
    value: T
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None


class MicroBatcher(Generic[T, R]):
    def __init__(self, name: str, handle: Callable[[list[T]], Sequence[R | BaseException]], *,
                 max_batch: int = 256, max_wait: float = 0.002, small: int = 8, idle_exit: float = 5.0,
                 on_exit: Callable[[], None] | None = None, on_idle: Callable[[MicroBatcher[T, R]], bool]
                 | None = None) -> None:
        self.handle = handle
        self.max_batch, self.max_wait, self.small, self.idle_exit = max_batch, max_wait, small, idle_exit
        self.on_exit, self.on_idle = on_exit, on_idle
        self.q: queue.Queue[_Item[T] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def wait(self, item: _Item[T], timeout: float) -> R:
        """Wait for a queued item's result; an exception result is raised here."""
        if not item.done.wait(timeout):
            raise BatchTimeout
        if isinstance(item.result, BaseException):
            raise item.result
        return item.result  # type: ignore[no-any-return]

    def _run(self) -> None:
        try:
            while True:
                try:
                    first = self.q.get(timeout=self.idle_exit)
                except queue.Empty:
                    # exit only once nobody can hand us more: unregistered while the queue is empty
                    if self.on_idle is None or self.on_idle(self):
                        return
                    continue
                if first is None:
                    return
                batch = [first]
                deadline = time.monotonic() + self.max_wait
                stop = False
                while len(batch) < self.max_batch:
                    try:
                        nxt = self.q.get_nowait() if len(batch) >= self.small else \
                            self.q.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._handle(batch)
                if stop:
                    return
        finally:
            if self.on_exit is not None:
                self.on_exit()

    def _handle(self, batch: list[_Item[T]]) -> None:
        try:
            results = self.handle([i.value for i in batch])
            for item, res in zip(batch, results, strict=True):
                item.result = res
        except BaseException as exc:  # never leave a caller waiting
            for item in batch:
                item.result = exc
        finally:
            for item in batch:
                item.done.set()


_REGISTRY: dict[Hashable, MicroBatcher[Any, Any]] = {}
_LOCK = threading.Lock()


def submit[T, R](key: Hashable, factory: Callable[[Callable[[MicroBatcher[Any, Any]], bool]], MicroBatcher[T, R]],
           value: T, timeout: float = 30.0) -> R:
    """Hand ``value`` to the live batcher for ``key`` (made by ``factory(on_idle)`` when there is
    none) and wait for its result. Registration and the hand-over happen under one lock, and a
    batcher leaves the registry (``on_idle``) only with an empty queue under that lock, so no item is
    ever handed to a thread that is exiting."""

    def on_idle(b: MicroBatcher[Any, Any]) -> bool:
        with _LOCK:
            if not b.q.empty():
                return False
            if _REGISTRY.get(key) is b:
                del _REGISTRY[key]
            return True

    item: _Item[T] = _Item(value)
    with _LOCK:
        b = _REGISTRY.get(key)
        if b is None or not b.thread.is_alive():
            b = _REGISTRY[key] = factory(on_idle)
        b.q.put(item)
    return b.wait(item, timeout)


def close_all(prefix: Any = None, timeout: float = 10.0) -> None:
    """Stop every registered batcher (or those whose key is a tuple starting with ``prefix``) after
    the items already queued."""
    with _LOCK:
        keys = [k for k in _REGISTRY if prefix is None or (isinstance(k, tuple) and k and k[0] == prefix)]
        batchers = [_REGISTRY.pop(k) for k in keys]
    for b in batchers:
        b.q.put(None)
    for b in batchers:
        b.thread.join(timeout)
