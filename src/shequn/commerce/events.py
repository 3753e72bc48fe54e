"""Order events for other engines (referrals, analytics, engagement).

Contract:

* every order transition that matters to others (``paid``, ``refunded``, ``completed``, ``cancelled``)
  appends one :class:`~shequn.commerce.models.OrderEvent` row in the same transaction as the
  transition, and enqueues (in that transaction) a task that delivers it;
* the task calls each registered listener with an :class:`OrderEventData`, each listener in its own
  transaction; a listener that raises is rolled back alone, recorded, and retried by a scheduled task
  (``commerce.tasks.retry_order_event_deliveries``) without holding back the others;
* listeners must be idempotent on ``event_id`` (a retry after a crash may call them again).

Register from your ``AppConfig.ready()``::

    from shequn.commerce.events import register_order_listener
    register_order_listener("referrals", on_order_event)
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

log = logging.getLogger(__name__)

KINDS = ("paid", "refunded", "completed", "cancelled")
ATTRIBUTION_KEYS = ("community_id", "group_id", "invite_code", "referrer_member_id", "live_session_id", "campaign")


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
_LISTENERS: dict[str, Listener] = {}


def register_order_listener(name: str, callback: Listener) -> None:
    """Subscribe ``callback`` to every order event. Re-registering a name replaces it."""
    if len(name) > 64:
        raise ValueError("listener name longer than 64 characters")
    _LISTENERS[name] = callback


def unregister_order_listener(name: str) -> None:
    _LISTENERS.pop(name, None)


def listeners() -> dict[str, Listener]:
    return dict(_LISTENERS)


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


def deliver(event_id: int, *, only: str | None = None) -> dict[str, str]:
    """Call every listener that has not yet succeeded for this event, each in its own transaction.

    Returns ``{listener: "ok" | "skipped" | error}``. Failures are recorded on
    :class:`OrderEventDelivery` (attempts, error) for the retry task."""
    from .models import OrderEvent, OrderEventDelivery

    event = OrderEvent.objects.filter(pk=event_id).first()
    if event is None:
        return {}
    payload = event_data(event)
    done = set(OrderEventDelivery.objects.filter(event_id=event_id, ok=True).values_list("listener", flat=True))
    outcome: dict[str, str] = {}
    for name, callback in listeners().items():
        if only and name != only:
            continue
        if name in done:
            outcome[name] = "skipped"
            continue
        try:
            with transaction.atomic():
                callback(payload)
                row, _created = OrderEventDelivery.objects.get_or_create(event_id=event_id, listener=name)
                row.ok = True
                row.attempts += 1
                row.error = ""
                row.save()
            outcome[name] = "ok"
        except Exception as exc:
            log.exception("order listener %s failed on event %s", name, event_id)
            with transaction.atomic():
                row, _created = OrderEventDelivery.objects.get_or_create(event_id=event_id, listener=name)
                row.attempts += 1
                row.error = f"{type(exc).__name__}: {exc}"[:2000]
                row.save()
            outcome[name] = type(exc).__name__
    return outcome


def retry_failed(limit: int = 100) -> int:
    """Re-deliver events whose listeners failed; returns how many listener deliveries now succeeded."""
    from .models import OrderEventDelivery

    fixed = 0
    rows = list(OrderEventDelivery.objects.filter(ok=False, attempts__lt=50).order_by("updated_at")[:limit])
    for row in rows:
        if row.listener not in _LISTENERS:
            continue
        if deliver(row.event_id, only=row.listener).get(row.listener) == "ok":
            fixed += 1
    return fixed
