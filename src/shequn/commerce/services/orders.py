"""Creating orders: price on the server, take stock, claim coupons, write the order and its lines.

Locking: SKU stock by conditional UPDATE in SKU-id order, coupons by conditional UPDATE on their
status, all in one transaction, so a shortage on any line writes nothing. Idempotent per member on
the idempotency key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member

from ..models import Coupon, FlashSale, GroupBuyTeam, Order, OrderLine, ProductKind, Sku
from ..selectors import member_context
from ._common import SoldOut, _hash, _member, clean_attribution
from .paid import _mark_paid
from .pricing import _apply_coupons, _clean_lines, _Line, _Priced

DEFAULT_ORDER_TTL = dt.timedelta(minutes=30)


def _take_stock(lines: Sequence[_Line]) -> None:
    """Conditional decrement in SKU-id order; raises SoldOut (rolling back the caller) when short."""
    for i, ln in sorted(enumerate(lines), key=lambda p: p[1].sku.pk):
        n = Sku.objects.filter(pk=ln.sku.pk, stock__gte=ln.quantity).update(stock=F("stock") - ln.quantity)
        if n == 0:
            raise SoldOut(_("第 %(i)d 行: 库存不足") % {"i": i + 1}, details={"field": f"lines[{i}].quantity"})


def _claim_coupons(coupons: Sequence[Coupon], order: Order) -> None:
    for c in coupons:
        n = Coupon.objects.filter(pk=c.pk, status=Coupon.Status.AVAILABLE).update(
            status=Coupon.Status.USED, used_order=order
        )
        if n == 0:
            raise Conflict(_("优惠券已被使用"), details={"field": "coupon_ids"})


def _write_order(
    principal: Principal, member: Member, priced: _Priced, attribution: dict[str, Any], *,
    idempotency_key: str | None, request_hash: str, ttl: dt.timedelta, flash_sale: FlashSale | None = None,
    team: GroupBuyTeam | None = None,
) -> Order:
    goods = sum(ln.gross for ln in priced.lines)
    discount = sum(ln.discount for ln in priced.lines)
    # share coupons attribute the friend to the giver
    if attribution.get("referrer_member_id") is None:
        giver = next((c.giver_id for c in priced.coupons if c.giver_id and c.giver_id != member.pk), None)
        if giver:
            attribution = {**attribution, "referrer_member_id": giver}
    order = Order.objects.create(
        tenant_id=principal.tenant_id, member=member, goods_fen=goods, discount_fen=discount,
        total_fen=goods - discount, attribution=attribution, live_session_id=attribution.get("live_session_id"),
        idempotency_key=idempotency_key, request_hash=request_hash, expires_at=timezone.now() + ttl,
        flash_sale=flash_sale, team=team,
    )
    OrderLine.objects.bulk_create([
        OrderLine(
            tenant_id=principal.tenant_id, order=order, product_id=ln.sku.product_id, sku=ln.sku,
            product_kind=ln.sku.product.kind, name=f"{ln.sku.product.name} {ln.sku.name}".strip()[:240],
            quantity=ln.quantity, list_price_fen=ln.list_price, unit_price_fen=ln.unit_price,
            discount_fen=ln.discount, amount_fen=ln.gross - ln.discount,
        )
        for ln in priced.lines
    ])
    _claim_coupons(priced.coupons, order)
    do_audit(principal, "commerce.order.create", "Order", order.pk,
             data={"total_fen": order.total_fen, "member_id": member.pk})
    if order.total_fen == 0:
        _mark_paid(principal, order, None)
    return order


def _existing_by_key(tenant_id: int, member_id: int, key: str | None, request_hash: str) -> Order | None:
    if not key:
        return None
    if len(key) > 128:
        raise Invalid(_("幂等键过长"), details={"field": "idempotency_key"})
    existing = Order.objects.filter(tenant_id=tenant_id, member_id=member_id, idempotency_key=key).first()
    if existing is not None and existing.request_hash != request_hash:
        raise Conflict(_("同一个幂等键用于了不同的订单"), code="idempotency_mismatch")
    return existing


def do_create_order(
    principal: Principal,
    *,
    member_id: int,
    lines: Sequence[Mapping[str, Any]],
    coupon_ids: Sequence[int] = (),
    attribution: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    ttl: dt.timedelta = DEFAULT_ORDER_TTL,
) -> Order:
    """Create an order priced on the server (list price, 会员价, coupons — never the client's figures).

    Locking: SKU stock by conditional UPDATE in SKU-id order, coupons by conditional UPDATE on their
    status; one transaction, so a shortage on any line writes nothing. The same idempotency key (per
    member) returns the first order; with a different request it is a conflict."""
    tid = principal.tenant_id
    member = _member(tid, member_id)
    attr = clean_attribution(tid, attribution)
    req_hash = _hash({"lines": list(lines), "coupons": list(coupon_ids), "attribution": attr})
    existing = _existing_by_key(tid, member.pk, idempotency_key, req_hash)
    if existing is not None:
        return existing
    now = timezone.now()
    ctx = member_context(tid, member, now)
    clean = _clean_lines(tid, list(lines), ctx)
    if any(ln.sku.product.kind == ProductKind.TIER for ln in clean) and len(clean) > 1:
        raise Invalid(_("付费等级需要单独下单"), details={"field": "lines"})
    try:
        with transaction.atomic():
            priced = _apply_coupons(tid, member, clean, list(coupon_ids), now)
            _take_stock(priced.lines)
            return _write_order(principal, member, priced, attr, idempotency_key=idempotency_key,
                                request_hash=req_hash, ttl=ttl)
    except IntegrityError:
        again = _existing_by_key(tid, member.pk, idempotency_key, req_hash)
        if again is None:
            raise
        return again
