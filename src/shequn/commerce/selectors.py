"""Reads of commerce. Every read is scoped to a tenant; an id from another tenant is not found."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import Membership
from shequn.core.errors import NotFound
from shequn.members.models import Member

from .models import (
    Coupon,
    FlashSale,
    GroupBuy,
    GroupBuyTeam,
    LiveSession,
    MemberPrice,
    Order,
    OrderEvent,
    Product,
    Sku,
    TierGrant,
)

# --- member context and prices (who sees what, at which price) ----------------------------------


@dataclass
class MemberContext:
    member_id: int
    level: int
    tiers: frozenset[int] = frozenset()  # product ids of active tier grants
    communities: frozenset[int] = frozenset()  # open memberships


def member_context(tenant_id: int, member: Member, now: dt.datetime | None = None) -> MemberContext:
    now = now or timezone.now()
    tiers = frozenset(
        TierGrant.objects.filter(tenant_id=tenant_id, member_id=member.pk, status=TierGrant.Status.ACTIVE,
                                 starts_at__lte=now)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).values_list("product_id", flat=True)
    )
    communities = frozenset(
        Membership.objects.filter(tenant_id=tenant_id, member_id=member.pk, left_at__isnull=True)
        .values_list("community_id", flat=True)
    )
    return MemberContext(member.pk, int(member.relationship_level), tiers, communities)


def unit_price(sku: Sku, ctx: MemberContext | None, member_prices: Sequence[MemberPrice] | None = None) -> int:
    """The lowest price this member may pay for one unit: list price or an applicable 会员价."""
    price = sku.price_fen
    if ctx is None:
        return price
    rows = member_prices if member_prices is not None else list(sku.member_prices.all())
    for mp in rows:
        ok = (mp.min_relationship_level is None or ctx.level >= mp.min_relationship_level) and (
            mp.tier_product_id is None or mp.tier_product_id in ctx.tiers
        )
        if ok and mp.price_fen < price:
            price = mp.price_fen
    return price


def product_visible(product: Product, ctx: MemberContext | None, visible_ids: Iterable[int] | None = None) -> bool:
    ids = set(visible_ids if visible_ids is not None else product.visible_in.values_list("pk", flat=True))
    if not ids:
        return True
    return ctx is not None and bool(ids & ctx.communities)


# --- catalog and orders ---------------------------------------------------------------------------


def products(tenant_id: int, *, active_only: bool = True) -> QuerySet[Product]:
    qs = Product.objects.filter(tenant_id=tenant_id).prefetch_related("skus__member_prices", "visible_in")
    return qs.filter(is_active=True) if active_only else qs


def catalog_for_member(tenant_id: int, member_id: int | None) -> list[dict[str, Any]]:
    """Products this member may see, with the price they would pay per SKU (会员价 applied)."""
    ctx: MemberContext | None = None
    if member_id is not None:
        member = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
        if member is None:
            raise NotFound(_("会员不存在"), details={"field": "member_id"})
        ctx = member_context(tenant_id, member)
    out: list[dict[str, Any]] = []
    for p in products(tenant_id).order_by("pk"):
        if not product_visible(p, ctx, [c.pk for c in p.visible_in.all()]):
            continue
        out.append({
            "id": p.pk, "name": p.name, "description": p.description, "kind": p.kind, "images": p.images,
            "tier_privileges": p.tier_privileges if p.kind == "tier" else None,
            "skus": [
                {"id": s.pk, "code": s.code, "name": s.name, "price_fen": s.price_fen,
                 "your_price_fen": unit_price(s, ctx, list(s.member_prices.all())), "in_stock": s.stock > 0}
                for s in p.skus.all() if s.is_active
            ],
        })
    return out


def order(tenant_id: int, order_id: int) -> Order:
    o = Order.objects.filter(tenant_id=tenant_id, pk=order_id).prefetch_related("lines", "payments").first()
    if o is None:
        raise NotFound(_("订单不存在"), details={"field": "order_id"})
    return o


def orders(tenant_id: int, *, member_id: int | None = None, status: str | None = None) -> QuerySet[Order]:
    qs = Order.objects.filter(tenant_id=tenant_id)
    if member_id is not None:
        qs = qs.filter(member_id=member_id)
    if status:
        qs = qs.filter(status=status)
    return qs


def order_events(tenant_id: int, *, after_id: int = 0, kinds: list[str] | None = None) -> QuerySet[OrderEvent]:
    qs = OrderEvent.objects.filter(tenant_id=tenant_id, pk__gt=after_id).order_by("pk")
    return qs.filter(kind__in=kinds) if kinds else qs


def flash_sale(tenant_id: int, flash_sale_id: int) -> FlashSale:
    fs = FlashSale.objects.filter(tenant_id=tenant_id, pk=flash_sale_id).first()
    if fs is None:
        raise NotFound(_("秒杀不存在"), details={"field": "flash_sale_id"})
    return fs


def active_flash_sales(tenant_id: int) -> QuerySet[FlashSale]:
    now = timezone.now()
    return FlashSale.objects.filter(tenant_id=tenant_id, ends_at__gt=now).order_by("starts_at")


def group_buys(tenant_id: int) -> QuerySet[GroupBuy]:
    now = timezone.now()
    return GroupBuy.objects.filter(tenant_id=tenant_id, is_active=True, ends_at__gt=now)


def team_by_token(tenant_id: int, token: str) -> GroupBuyTeam:
    t = GroupBuyTeam.objects.filter(tenant_id=tenant_id, share_token=token).select_related("group_buy").first()
    if t is None:
        raise NotFound(_("拼团不存在"), details={"field": "share_token"})
    return t


def member_coupons(tenant_id: int, member_id: int) -> QuerySet[Coupon]:
    return Coupon.objects.filter(tenant_id=tenant_id, owner_id=member_id).select_related("template")


def tier_history(tenant_id: int, member_id: int) -> QuerySet[TierGrant]:
    return TierGrant.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("starts_at", "pk")


def _active_grants(tenant_id: int, member_id: int, community_id: int) -> QuerySet[TierGrant]:
    now = timezone.now()
    return TierGrant.objects.filter(tenant_id=tenant_id, member_id=member_id, community_id=community_id,
                                    status=TierGrant.Status.ACTIVE, starts_at__lte=now).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def holds_paid_tier(tenant_id: int, member_id: int, community_id: int) -> bool:
    """The paid entry threshold: the member holds an active tier of the community (communities'
    entitlement, declared in the wiring)."""
    return _active_grants(tenant_id, member_id, community_id).exists()


def has_tier_privilege(tenant_id: int, member_id: int, community_id: int, name: str) -> bool:
    """An active tier of the community carries the privilege ``name`` with a true value (e.g. the
    partner tier's ``may_create_groups``)."""
    return any(bool((g or {}).get(name)) for g in
               _active_grants(tenant_id, member_id, community_id).values_list("privileges", flat=True))


def live_session_stats(tenant_id: int) -> list[dict[str, Any]]:
    """Per live session: joins, paid orders and GMV (public-domain traffic converted)."""
    rows = LiveSession.objects.filter(tenant_id=tenant_id).annotate(
        join_count=Count("joins", distinct=True),
        paid_orders=Count("orders", filter=Q(orders__paid_at__isnull=False), distinct=True),
        gmv_fen=Sum("orders__paid_fen", filter=Q(orders__paid_at__isnull=False)),
    ).order_by("-starts_at")
    return [{"id": r.pk, "title": r.title, "platform": r.platform, "starts_at": r.starts_at, "joins": r.join_count,
             "paid_orders": r.paid_orders, "gmv_fen": r.gmv_fen or 0} for r in rows]


def member_orders_export(tenant_id: int, member_id: int) -> list[dict[str, Any]]:
    """One member's orders for their data export (members' data rights): amounts in fen."""
    rows = (Order.objects.filter(tenant_id=tenant_id, member_id=member_id).order_by("pk")
            .values("id", "status", "goods_fen", "discount_fen", "total_fen", "paid_fen", "refunded_fen",
                    "created_at"))
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]
