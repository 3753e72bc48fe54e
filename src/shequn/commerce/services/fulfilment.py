"""Fulfilment, completion, cancellation and expiry of orders; giving stock, flash seats and coupons
back exactly once (``stock_released`` flips in the same transaction).

Locking: the order row, then conditional stock increments."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict
from shequn.core.permissions import Principal

from .. import batching, redis_gate
from ..models import (
    Coupon,
    FlashReservation,
    FlashSale,
    GroupBuyParticipant,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    Sku,
)
from .transitions import _lock_order, _record_event, _transition


@transaction.atomic
def do_fulfil_order(principal: Principal, order_id: int, *, note: str = "") -> Order:
    """Mark shipped/delivered. Locking: the order row."""
    order = _lock_order(principal.tenant_id, order_id)
    order.fulfilled_at = timezone.now()
    _transition(principal, order, OrderStatus.FULFILLED, reason=note, fields=["fulfilled_at"])
    return order


@transaction.atomic
def do_complete_order(principal: Principal, order_id: int) -> Order:
    """Close a fulfilled order (after the return window). Locking: the order row."""
    order = _lock_order(principal.tenant_id, order_id)
    order.completed_at = timezone.now()
    _transition(principal, order, OrderStatus.COMPLETED, fields=["completed_at"])
    _record_event(order, OrderEvent.Kind.COMPLETED, order.paid_fen - order.refunded_fen)
    return order


def do_cancel_order(principal: Principal, order_id: int, *, reason: str = "") -> Order:
    """Cancel an unpaid order and give back its stock, flash-sale seat and coupons.
    Locking: the order row, then conditional stock increments."""
    with transaction.atomic():
        order = _lock_order(principal.tenant_id, order_id)
        order.cancelled_at = timezone.now()
        order.cancel_reason = reason[:200]
        _transition(principal, order, OrderStatus.CANCELLED, reason=reason, fields=["cancelled_at", "cancel_reason"])
        _release_stock(order)
        Coupon.objects.filter(used_order=order, status=Coupon.Status.USED).update(status=Coupon.Status.AVAILABLE)
        GroupBuyParticipant.objects.filter(order=order, is_leader=False).delete()
        _record_event(order, OrderEvent.Kind.CANCELLED, order.total_fen, extra={"reason": reason[:200]})
        return order


def _release_stock(order: Order) -> None:
    """Give back stock once (``stock_released`` flips in the same transaction)."""
    if Order.objects.filter(pk=order.pk, stock_released=False).update(stock_released=True) == 0:
        return
    order.stock_released = True
    lines = list(OrderLine.objects.filter(order=order))
    if order.flash_sale_id:
        qty = sum(ln.quantity for ln in lines)
        FlashSale.objects.filter(pk=order.flash_sale_id).update(stock=F("stock") + qty)
        FlashReservation.objects.filter(flash_sale_id=order.flash_sale_id, member_id=order.member_id,
                                        order=order).update(status=FlashReservation.Status.RELEASED)
        g = redis_gate.gate()
        fs, mid = order.flash_sale_id, order.member_id
        if g is not None and FlashSale.objects.filter(pk=fs, use_redis_gate=True).exists():
            transaction.on_commit(lambda: g.release(fs, mid, qty))
        # this process sells the unit again at once (others after batching.CACHE_SECONDS)
        transaction.on_commit(lambda: batching.forget(fs))
    else:
        for ln in sorted(lines, key=lambda x: x.sku_id):
            Sku.objects.filter(pk=ln.sku_id).update(stock=F("stock") + ln.quantity)


def do_expire_orders(now: dt.datetime | None = None, limit: int = 500) -> int:
    """Cancel unpaid orders past their deadline (scheduled). Each in its own transaction."""
    now = now or timezone.now()
    done = 0
    for oid, tid in Order.objects.filter(status=OrderStatus.CREATED, expires_at__lte=now).values_list(
        "pk", "tenant_id"
    )[:limit]:
        try:
            do_cancel_order(Principal.system(tid, "expiry"), oid, reason=_("超时未支付"))
            done += 1
        except Conflict:
            continue  # paid meanwhile
    return done
