"""Engines subscribe to the activity stream here (from their ``AppConfig.ready``).

Data flows one way: the activity app never imports an engine; an engine registers a consumer, and
the dispatch task hands it each committed batch of new events. Consumers must be idempotent: a
failed batch is retried."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import ActivityEvent

Handler = Callable[[int, Sequence["ActivityEvent"]], None]


@dataclass(frozen=True)
class Consumer:
    name: str
    handler: Handler
    kinds: frozenset[str] | None = None  # None: every kind


_CONSUMERS: dict[str, Consumer] = {}


def register_consumer(name: str, handler: Handler, kinds: Sequence[str] | None = None) -> None:
    _CONSUMERS[name] = Consumer(name, handler, frozenset(kinds) if kinds else None)


def consumers() -> list[Consumer]:
    return list(_CONSUMERS.values())


def unregister_consumer(name: str) -> None:
    _CONSUMERS.pop(name, None)
