"""The order state machine: allowed transitions, locking an order row, and order events.

Every transition that matters to other engines appends an :class:`OrderEvent` and enqueues
:func:`deliver_order_event` in the transaction of the transition (see :mod:`shequn.commerce.events`).

Locking follows the package rule (see :mod:`shequn.commerce.services`): order row first, then team, then
payment/refund rows; stock and counters move only by conditional UPDATE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.tasks import task
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from .. import events
from ..events import ATTRIBUTION_KEYS
from ..models import Order, OrderEvent, OrderLine, OrderStatus

# allowed transitions of the order state machine
TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.CREATED: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.FULFILLED, OrderStatus.REFUND_REQUESTED}),
    OrderStatus.FULFILLED: frozenset({OrderStatus.COMPLETED, OrderStatus.REFUND_REQUESTED}),
    OrderStatus.COMPLETED: frozenset({OrderStatus.REFUND_REQUESTED}),
    OrderStatus.REFUND_REQUESTED: frozenset(
        {OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.PAID, OrderStatus.FULFILLED,
         OrderStatus.COMPLETED}
    ),
    OrderStatus.PARTIALLY_REFUNDED: frozenset(
        {OrderStatus.REFUND_REQUESTED, OrderStatus.FULFILLED, OrderStatus.COMPLETED}
    ),
    # a cancelled (expired) order revived by a late payment while stock is still there
    OrderStatus.CANCELLED: frozenset({OrderStatus.PAID}),
    OrderStatus.REFUNDED: frozenset(),
}


REFUNDABLE = frozenset({OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.COMPLETED,
                        OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUND_REQUESTED})


def _lock_order(tenant_id: int | None, order_id: int) -> Order:
    qs = Order.objects.select_for_update().filter(pk=order_id)
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    order = qs.first()
    if order is None:
        raise NotFound(_("订单不存在"), details={"field": "order_id"})
    return order


def _transition(principal: Principal, order: Order, to: str, *, reason: str = "", data: dict[str, Any] | None = None,
                fields: Sequence[str] = ()) -> None:
    frm = order.status
    if to not in TRANSITIONS.get(frm, frozenset()):
        raise Conflict(
            _("订单状态 %(a)s 不能变为 %(b)s") % {"a": OrderStatus(frm).label, "b": OrderStatus(to).label},
            code="bad_transition", details={"from": frm, "to": to},
        )
    order.status = to
    order.save(update_fields=["status", *fields])
    do_audit(principal, f"commerce.order.{to}", "Order", order.pk, reason=reason,
             data={"from": frm, "to": to, **(data or {})})


def _line_dicts(order: Order, amounts: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
    out = []
    for ln in OrderLine.objects.filter(order_id=order.pk).order_by("pk"):
        out.append({
            "order_line_id": ln.pk, "product_id": ln.product_id, "sku_id": ln.sku_id, "product_kind": ln.product_kind,
            "quantity": ln.quantity, "amount_fen": amounts.get(ln.pk, 0) if amounts is not None else ln.amount_fen,
        })
    return out


def _record_event(order: Order, kind: str, amount_fen: int, *, lines: list[dict[str, Any]] | None = None,
                  extra: dict[str, Any] | None = None) -> OrderEvent:
    """Append the order event and enqueue its delivery, in the caller's transaction."""
    attribution = {k: (order.attribution or {}).get(k) for k in ATTRIBUTION_KEYS}
    event = OrderEvent.objects.create(
        tenant_id=order.tenant_id, kind=kind, order=order, amount_fen=amount_fen,
        data={"member_id": order.member_id, "lines": lines if lines is not None else _line_dicts(order),
              "attribution": attribution, **(extra or {})},
    )
    deliver_order_event.enqueue(event.pk)
    return event


@task(queue_name="engines")
def deliver_order_event(event_id: int) -> dict[str, str]:
    """Call every order listener for one event (each in its own transaction)."""
    return events.deliver(event_id)
