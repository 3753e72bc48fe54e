"""The adapter registry: the outbound half of a connector, as the delivery engine sees it.

An adapter turns a claimed outbox action into platform API calls. It runs inside one asyncio event
loop per delivery round, sees only plain snapshots (:class:`ActionItem`, :class:`ConnInfo`) — never the
ORM — and answers each action with a result dict or raises :class:`DeliveryError`, whose ``kind``
tells the worker what to do: ``retry`` (transient: backoff), ``rate_limited`` (wait ``retry_after``),
``permanent`` (mark failed with the reason) or ``delegate`` (hand to a person as a human task).

Other apps may plug in an adapter for their own platform with :func:`register_adapter` (the portal
app for member pages, for example); actions of a platform without an adapter stay pending. The
built-in adapters live in :mod:`shequn.connectors.platforms` (``<name>/outbound.py``). This module
imports nothing of shequn: the platform modules and the services both build on it."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol


class DeliveryError(Exception):
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    PERMANENT = "permanent"
    DELEGATE = "delegate"

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None, scope: str = "group"):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.scope = scope  # which rate-limit scope a 429 applies to: "group" or "connection"


@dataclass
class ConnInfo:
    id: int
    tenant_id: int
    platform: str
    config: dict[str, Any]
    secrets: dict[str, str]


@dataclass
class ActionItem:
    id: int
    tenant_id: int
    kind: str
    platform: str
    connection_id: int | None
    group_id: int | None
    room: str  # the platform's room / chat id ("" when the action has no group)
    target: str  # the platform's user id
    message: str  # the platform's message id
    payload: dict[str, Any]
    attempts: int
    created_at: dt.datetime
    lease_token: str = ""
    reason: str = ""
    message_sent_at: dt.datetime | None = None
    room_secrets: dict[str, str] = field(default_factory=dict)


class Adapter(Protocol):
    platform: str

    async def deliver_batch(self, conn: ConnInfo, items: list[ActionItem]) -> list[dict[str, Any] | DeliveryError]:
        """Deliver ``items`` (in order) through ``conn``; one result or error per item."""
        ...


#: set by the delivery engine for one round (the adapters' tasks inherit it): see :func:`may_send`
SEND_GATE: ContextVar[Callable[[ActionItem], Awaitable[bool]] | None] = ContextVar("shequn_send_gate", default=None)


async def may_send(item: ActionItem) -> bool:
    """Ask right before the platform call that acts for ``item``. The engine commits, for an action
    the platform cannot de-duplicate, that its call begins — so after a crash it knows which actions
    may have reached the platform. False: do not call the platform (answer :func:`not_sent`)."""
    gate = SEND_GATE.get()
    return True if gate is None else await gate(item)


def not_sent() -> DeliveryError:
    """The answer for an action :func:`may_send` refused: retried by whoever holds its lease now."""
    return DeliveryError(DeliveryError.RETRY, "not sent: the claim is no longer this round's")


_ADAPTERS: dict[str, Adapter] = {}
#: built-in adapters (``shequn.connectors.platforms.<name>.outbound``), imported on first use: aiogram
#: and matrix-nio alone take seconds to import, and a process that never delivers never pays for them
_BUILTIN = {"matrix": "MatrixAdapter", "telegram": "TelegramAdapter", "wecom": "WecomAdapter"}
_PLATFORMS = "shequn.connectors.platforms"


def register_adapter(adapter: Adapter) -> None:
    _ADAPTERS[adapter.platform] = adapter


def get_adapter(platform: str) -> Adapter | None:
    if platform not in _ADAPTERS and platform in _BUILTIN:
        module = importlib.import_module(f"{_PLATFORMS}.{platform}.outbound")
        _ADAPTERS[platform] = getattr(module, _BUILTIN[platform])()
    return _ADAPTERS.get(platform)


def adapter_platforms() -> list[str]:
    return sorted(set(_ADAPTERS) | set(_BUILTIN))


def _load_builtin() -> None:
    for platform in _BUILTIN:
        get_adapter(platform)


def load_adapters() -> None:
    """Import every built-in platform module now (aiogram and matrix-nio take seconds — tens of
    seconds on a loaded host): a long-running process does it once at start, so the first bot
    connected later is served at once instead of after the import."""
    _load_builtin()


async def per_room(items: list[ActionItem], one: Any, *, concurrency: int = 8) -> list[Any]:
    """Run ``one(item)`` for every item: in order within a room, rooms concurrently (bounded)."""
    results: dict[int, Any] = {}
    rooms: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        rooms.setdefault(item.room, []).append(i)
    gate = asyncio.Semaphore(concurrency)

    async def run_room(indexes: list[int]) -> None:
        async with gate:
            for i in indexes:
                results[i] = await one(items[i])

    await asyncio.gather(*(run_room(ix) for ix in rooms.values()))
    return [results[i] for i in range(len(items))]


def text_of(payload: dict[str, Any]) -> str:
    """The text of a send/warn/announce payload: ``text`` (or ``markdown``)."""
    return str(payload.get("text") or payload.get("markdown") or payload.get("content") or "")
