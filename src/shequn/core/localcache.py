"""Small per-process caches with a time to live, for the request hot paths (API keys, throttle
verdicts, flash sales): a read in one process may be up to ``ttl`` seconds stale, which each caller
states and documents. Every cache registers itself so that tests (and a process that changed what
is cached) can drop them all at once with :func:`clear_all`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

_ALL: list[TTLCache[object]] = []
_CLEARERS: list[Callable[[], None]] = []


def register_clear(clear: Callable[[], None]) -> None:
    """Another per-process cache (its own shape) that :func:`clear_all` drops too."""
    _CLEARERS.append(clear)


class TTLCache(Generic[V]):
    """A dict whose entries expire ``ttl`` seconds after they were put; at ``max_size`` entries it
    is emptied (simple and bounded; the hot keys come back at once)."""

    def __init__(self, name: str, ttl: float, max_size: int = 10_000) -> None:
        self.name, self.ttl, self.max_size = name, ttl, max_size
        self._data: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        _ALL.append(self)  # type: ignore[arg-type]

    def get(self, key: Hashable) -> V | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self._data.pop(key, None)
            return None
        return hit[1]

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._data) >= self.max_size:
                self._data.clear()
            self._data[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


def clear_all() -> None:
    for cache in _ALL:
        cache.clear()
    for clear in _CLEARERS:
        clear()
