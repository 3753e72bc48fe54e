"""Order listeners shipped with commerce (``on_order_event(data)``)."""

from __future__ import annotations

from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.core.errors import Invalid

from ..events import OrderEventData


def on_order_event(event: OrderEventData) -> None:
    """Order listener: a paid order becomes a ``purchase`` event in the activity stream."""
    if event.kind != "paid":
        return
    attr = event.attribution or {}
    result = do_ingest(event.tenant_id, [{
        "platform": "portal", "event_id": f"order-paid-{event.order_id}", "kind": "purchase",
        "occurred_at": (event.occurred_at or timezone.now()).isoformat(), "member_id": event.member_id,
        "payload": {"order_id": event.order_id, "amount_fen": event.amount_fen,
                    "community_id": attr.get("community_id"), "live_session_id": attr.get("live_session_id")},
    }], create_members=False)
    if result.errors:
        raise Invalid(result.errors[0].message, details={"field": result.errors[0].field})
