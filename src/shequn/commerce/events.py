"""Order events for other engines (referrals, analytics, engagement).

Contract:

* every order transition that matters to others (``paid``, ``refunded``, ``completed``, ``cancelled``)
  appends one :class:`~shequn.commerce.models.OrderEvent` row in the same transaction as the
  transition, and enqueues (in that transaction) a task that delivers it;
* the task calls each registered listener with an :class:`OrderEventData`, each listener in its own
  transaction, through the shared delivery mechanism (:mod:`shequn.core.streams`, stream
  :data:`STREAM`): a listener that raises is rolled back alone and recorded as a
  :class:`~shequn.core.models.DeliveryFailure`, retried with backoff by
  ``core.tasks.retry_stream_deliveries`` without holding back the others, and dead-lettered (shown
  to staff with the reason in the console) after too many attempts — never retried silently forever;
* listeners must be idempotent on ``event_id`` (a retry, or a replay after a crash, may call them
  again).

Register from the wiring module::

    from shequn.commerce.events import register_order_listener
    register_order_listener("referrals", on_order_event)
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shequn.core import streams

from .models import OrderEvent

log = logging.getLogger(__name__)

STREAM = "order_events"

KINDS = ("paid", "refunded", "completed", "cancelled")
ATTRIBUTION_KEYS = ("community_id", "group_id", "invite_code", "referrer_member_id", "live_session_id", "campaign")
#: the longest text attribution values listeners must be able to store (referrals keeps ``campaign`` in
#: 64-character columns and invite codes are 16 characters): the order's entry rejects longer values,
#: so a listener never receives an event it cannot apply (issue 12, bug 3)
ATTRIBUTION_MAX_LENGTH = {"campaign": 64, "invite_code": 16}


@dataclass(frozen=True)
class OrderEventData:
    """What a listener receives.

    ``lines``: one dict per order line — ``order_line_id``, ``product_id``, ``sku_id``,
    ``product_kind`` ("goods" | "tier"), ``quantity``, ``amount_fen`` (after discounts; for a
    ``refunded`` event, the part of this refund allocated to the line).
    ``attribution``: ``community_id``, ``group_id``, ``invite_code``, ``referrer_member_id``,
    ``live_session_id``, ``campaign`` (None when absent), as captured when the order was created.
    ``amount_fen``: paid amount (paid), this refund's amount (refunded), order total (completed,
    cancelled)."""

    tenant_id: int
    event_id: int
    kind: str
    order_id: int
    member_id: int
    amount_fen: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    attribution: dict[str, Any] = field(default_factory=dict)
    occurred_at: dt.datetime | None = None


Listener = Callable[[OrderEventData], None]


def _handler(callback: Listener) -> streams.Handler:
    def handle(tenant_id: int, items: Sequence[OrderEventData]) -> None:
        for data in items:
            callback(data)

    return handle


def register_order_listener(name: str, callback: Listener) -> None:
    """Subscribe ``callback`` to every order event. Re-registering a name replaces it."""
    if len(name) > streams.MAX_NAME:
        raise ValueError("listener name longer than 64 characters")
    streams.subscribe(STREAM, name, _handler(callback), info=callback)


def unregister_order_listener(name: str) -> None:
    streams.unsubscribe(STREAM, name)


def listeners() -> dict[str, Listener]:
    return {s.name: s.info for s in streams.subscribers(STREAM)}


def event_data(event: Any) -> OrderEventData:
    """Build the listener payload from a stored :class:`OrderEvent` row."""
    data = event.data or {}
    return OrderEventData(
        tenant_id=event.tenant_id,
        event_id=event.pk,
        kind=event.kind,
        order_id=event.order_id,
        member_id=int(data.get("member_id") or 0),
        amount_fen=event.amount_fen,
        lines=[dict(line) for line in data.get("lines", [])],
        attribution={k: data.get("attribution", {}).get(k) for k in ATTRIBUTION_KEYS},
        occurred_at=event.created_at,
    )


def _load(tenant_id: int, refs: Sequence[int]) -> list[OrderEventData]:
    return [event_data(e) for e in OrderEvent.objects.filter(tenant_id=tenant_id, pk__in=list(refs)).order_by("pk")]


streams.define_stream(STREAM, _load, ref=lambda data: data.event_id)


def deliver(event_id: int, *, only: str | None = None) -> dict[str, str]:
    """Call every listener (or only ``only``) for this event, each in its own transaction.

    Returns ``{listener: "ok" | error type}``. A failure is recorded as a
    :class:`~shequn.core.models.DeliveryFailure` (stream ``order_events``, refs ``[event_id]``) for
    the retry task; delivering the same event again is harmless (listeners are idempotent) and
    resolves that failure when the listener now succeeds."""
    event = OrderEvent.objects.filter(pk=event_id).first()
    if event is None:
        return {}
    return streams.deliver(STREAM, event.tenant_id, [event.pk], only=only, items=[event_data(event)])


def retry_failed(limit: int = 100, *, now: dt.datetime | None = None) -> int:
    """Retry the order-event deliveries that failed and are due; returns how many now succeeded."""
    return streams.retry_due(limit=limit, now=now, stream=STREAM)
