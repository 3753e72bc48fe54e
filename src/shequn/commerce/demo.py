"""Demo data for commerce (the ``demo`` command): a catalog, promotions and paid sandbox orders.
Not used by the product itself."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal

from .models import CouponTemplate, Order, OrderEvent, Payment, Product, ProductKind, Refund
from .services import (
    NewProduct,
    do_create_coupon_template,
    do_create_flash_sale,
    do_create_group_buy,
    do_create_live_session,
    do_create_order,
    do_create_product,
    do_flash_buy,
    do_request_refund,
    do_sandbox_pay,
    do_seed_tiers,
    do_set_member_price,
    do_start_payment,
)


def do_seed_demo_commerce(principal: Principal, *, community_id: int, member_ids: Sequence[int],
                          orders: int = 240) -> dict[str, int]:
    """Demo catalog for a tenant: goods with 会员价, the two paid tiers, a running flash sale, a group
    buy, coupons with a buy-one-give-one gift, a live session, and ``orders`` paid sandbox orders
    (some from the live session, a few refunded; members buy again, so there is repurchase).
    Idempotent per tenant (skips when products exist). :func:`do_spread_demo_orders` then spreads
    them over the last 90 days."""
    tid = principal.tenant_id
    if Product.objects.filter(tenant_id=tid, kind=ProductKind.GOODS).exists():
        return {"skipped": 1}
    now = timezone.now()
    gift = do_create_coupon_template(
        principal, name="好友专享 ¥20 券", kind=CouponTemplate.Kind.FIXED, amount_fen=2000, valid_from=now,
        valid_until=now + dt.timedelta(days=60), is_share=True, new_customers_only=True,
    )
    do_create_coupon_template(principal, name="满 199 减 30", kind=CouponTemplate.Kind.THRESHOLD, amount_fen=3000,
                              threshold_fen=19900, valid_from=now, valid_until=now + dt.timedelta(days=30),
                              per_member_limit=2, total_quantity=500)
    goods = [
        ("玻尿酸补水面膜 (10 片)", "MASK-10", 12900, 500),
        ("温和氨基酸洁面乳", "CLEANSER", 8900, 300),
        ("车载香薰 (木质调)", "CAR-SCENT", 6900, 200),
        ("汽车精洗套餐券", "CAR-WASH", 19900, 100),
    ]
    products = []
    for name, code, price, stock in goods:
        p = do_create_product(principal, NewProduct(
            name=name, skus=[{"code": code, "name": "标准", "price_fen": price, "stock": stock}],
            images=[f"/static/demo/{code.lower()}.jpg"]))
        do_set_member_price(principal, p.skus.get().pk, price_fen=price * 85 // 100, min_relationship_level=2)
        products.append(p)
    products[0].gift_coupon_template = gift
    products[0].save(update_fields=["gift_coupon_template"])
    do_seed_tiers(principal, community_id)
    flash = do_create_flash_sale(principal, name="面膜限时秒杀", sku_id=products[0].skus.get().pk, price_fen=5900,
                                 stock=50, starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(days=2))
    # the sale has sold: a dozen members bought (and paid) in its first hour
    for mid in list(member_ids)[-12:]:
        try:
            result = do_flash_buy(principal, flash.pk, member_id=mid, idempotency_key=f"demo-flash-{mid}",
                                  batched=False)
            if result.order is not None:
                do_sandbox_pay(do_start_payment(principal, result.order.pk).out_trade_no)
        except (Invalid, Conflict, NotFound):
            continue
    do_create_group_buy(principal, name="洁面三人团", sku_id=products[1].skus.get().pk, price_fen=5900, team_size=3,
                        starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(days=7))
    live = do_create_live_session(principal, title="周五护肤直播间", starts_at=now - dt.timedelta(days=2),
                                  ends_at=now - dt.timedelta(days=2) + dt.timedelta(hours=2),
                                  community_id=community_id, host_name="主播小美")
    paid = 0
    buyers = list(member_ids)
    for i in range(orders if buyers else 0):
        # the first pass gives every buyer a first order; later passes favour the first third (repeat buyers)
        mid = buyers[i % len(buyers)] if i < len(buyers) else buyers[(i * 7) % max(1, len(buyers) // 3)]
        p = products[i % len(products)]
        attr: dict[str, Any] = {"community_id": community_id, "campaign": ("双11预热", "新人福利", "demo")[i % 3]}
        if i % 3 == 0:
            attr["live_session_id"] = live.pk
        try:
            order = do_create_order(principal, member_id=mid, lines=[{"sku_id": p.skus.get().pk, "quantity": 1}],
                                    attribution=attr)
            payment = do_start_payment(principal, order.pk)
            do_sandbox_pay(payment.out_trade_no)
            paid += 1
            if i % 10 == 9:
                do_request_refund(principal, order.pk, amount_fen=order.total_fen, reason="演示退款",
                                  idempotency_key=f"demo-refund-{order.pk}")
        except (Invalid, Conflict, NotFound):
            continue
    return {"products": len(products) + 2, "paid_orders": paid}


def do_spread_demo_orders(tenant_id: int, *, days: int = 90, seed: int = 7, now: dt.datetime | None = None) -> int:
    """Demo only: spread the tenant's paid demo orders over the last ``days`` days (growing towards
    today, quieter at weekends), moving with each order its payments, refunds and order events, so
    the dashboards have history. Run before the order events are delivered (listeners then see the
    spread times). Orders already spread (paid more than an hour ago) are left alone; returns how
    many were moved."""
    rng = random.Random(seed)
    now = now or timezone.now()
    moved = 0
    orders = list(Order.objects.filter(tenant_id=tenant_id, paid_at__gte=now - dt.timedelta(hours=1))
                  .order_by("pk"))
    n = len(orders)
    for i, order in enumerate(orders):
        # later orders land later: a rising trend with noise
        back = days * (1 - ((i + rng.random()) / max(n, 1)) ** 0.8)
        when = now - dt.timedelta(days=back, hours=rng.uniform(0, 6))
        if when.weekday() >= 5 and rng.random() < 0.4:
            when -= dt.timedelta(days=2)
        when = min(when, now - dt.timedelta(minutes=5))
        shift = when - (order.paid_at or order.created_at)
        with transaction.atomic():
            Order.objects.filter(pk=order.pk).update(
                created_at=order.created_at + shift, paid_at=when,
                fulfilled_at=order.fulfilled_at + shift if order.fulfilled_at else None,
                completed_at=order.completed_at + shift if order.completed_at else None)
            for pay in Payment.objects.filter(order=order):
                Payment.objects.filter(pk=pay.pk).update(created_at=pay.created_at + shift,
                                                         paid_at=pay.paid_at + shift if pay.paid_at else None)
            refund_at = min(when + dt.timedelta(days=rng.uniform(0.5, 3)), now - dt.timedelta(minutes=1))
            Refund.objects.filter(order=order).update(created_at=refund_at, completed_at=refund_at)
            for event in OrderEvent.objects.filter(order=order):
                at = refund_at if event.kind == OrderEvent.Kind.REFUNDED else event.created_at + shift
                OrderEvent.objects.filter(pk=event.pk).update(created_at=at)
        moved += 1
    return moved
