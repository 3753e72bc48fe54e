"""Engines subscribe to the activity stream here (called by the wiring module).

Data flows one way: the activity app never imports an engine; an engine registers a consumer, and
the dispatch task hands it each committed batch of new events. This is a thin adapter over the
shared delivery mechanism (:mod:`shequn.core.streams`, stream :data:`STREAM`): each consumer runs in
its own transaction, a failure is retried with backoff and dead-lettered for staff after too many
attempts. Consumers must be idempotent: a failed batch is retried."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shequn.core import streams

from .models import ActivityEvent

STREAM = "activity"

Handler = Callable[[int, Sequence[ActivityEvent]], None]


@dataclass(frozen=True)
class Consumer:
    name: str
    handler: Handler
    kinds: frozenset[str] | None = None  # None: every kind


def _load(tenant_id: int, refs: Sequence[int]) -> list[Any]:
    return list(ActivityEvent.objects.filter(tenant_id=tenant_id, pk__in=list(refs)).order_by("pk"))


streams.define_stream(STREAM, _load)


def register_consumer(name: str, handler: Handler, kinds: Sequence[str] | None = None) -> None:
    consumer = Consumer(name, handler, frozenset(kinds) if kinds else None)
    wanted = consumer.kinds
    streams.subscribe(STREAM, name, handler,
                      accepts=None if wanted is None else (lambda e: e.kind in wanted), info=consumer)


def consumers() -> list[Consumer]:
    return [s.info for s in streams.subscribers(STREAM) if isinstance(s.info, Consumer)]


def unregister_consumer(name: str) -> None:
    streams.unsubscribe(STREAM, name)
