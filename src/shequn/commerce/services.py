"""Writers of community commerce.

Locking rule (every money/stock function follows it, and says so in its docstring):

1. lock the ``Order`` row first (``select_for_update``), then the ``GroupBuyTeam`` row, then
   ``Payment`` / ``Refund`` rows — always in this order, so two writers never wait on each other in a
   cycle;
2. stock (``Sku.stock``, ``FlashSale.stock``), coupon issue counts and refund totals change only by
   conditional ``UPDATE ... SET x = x - n WHERE id = :id AND x >= n`` — never read-then-write — and a
   zero row count means "not enough", which rolls the whole transaction back;
3. the per-member flash-sale limit is a unique (flash sale, member) row inserted BEFORE the stock
   decrement, so a duplicate buyer never consumes stock (no undersell);
4. order events and their delivery task are written in the transaction of the transition.

Database CHECK constraints back these up: stock ≥ 0, refunded ≤ paid, total = goods − discount.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import Community, JoinSource, Membership
from shequn.core.errors import Conflict, Invalid, NotFound, ShequnError
from shequn.core.models import Tenant
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.models import Member

from . import batching, redis_gate
from .events import ATTRIBUTION_KEYS
from .gateways import Notification, SandboxGateway, gateway_for
from .models import (
    Coupon,
    CouponTemplate,
    FlashReservation,
    FlashSale,
    GroupBuy,
    GroupBuyParticipant,
    GroupBuyTeam,
    LiveJoin,
    LiveSession,
    MemberPrice,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    Payment,
    PaymentCallback,
    Product,
    ProductKind,
    Refund,
    Sku,
    TierGrant,
)

log = logging.getLogger(__name__)

DEFAULT_ORDER_TTL = dt.timedelta(minutes=30)
MAX_QUANTITY = 999
MAX_LINES = 50

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


class SoldOut(Conflict):
    code = "sold_out"


# --- helpers -------------------------------------------------------------------------------------


def _tenant_settings(tenant_id: int) -> dict[str, Any]:
    s = Tenant.objects.filter(pk=tenant_id).values_list("settings", flat=True).first()
    return dict(s or {})


def _member(tenant_id: int, member_id: Any, field_name: str = "member_id") -> Member:
    if not isinstance(member_id, int) or isinstance(member_id, bool):
        raise Invalid(_("会员 ID 必须是整数"), details={"field": field_name})
    m = Member.objects.filter(tenant_id=tenant_id, pk=member_id).first()
    if m is None:
        raise NotFound(_("会员不存在: %(id)s") % {"id": member_id}, details={"field": field_name})
    return m


def check_member(tenant_id: int, member_id: int) -> Member:
    """The tenant's member, or :class:`NotFound` (another tenant's member id is not found)."""
    return _member(tenant_id, member_id)


def _positive_int(value: Any, field_name: str, *, maximum: int | None = None, allow_zero: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(_("%(f)s 必须是整数") % {"f": field_name}, details={"field": field_name})
    if value < 0 or (value == 0 and not allow_zero):
        raise Invalid(_("%(f)s 必须大于 0") % {"f": field_name}, details={"field": field_name})
    if maximum is not None and value > maximum:
        raise Invalid(_("%(f)s 不能超过 %(m)d") % {"f": field_name, "m": maximum}, details={"field": field_name})
    return value


def _token() -> str:
    return secrets.token_urlsafe(12)


def _out_no(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:28]


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def clean_attribution(tenant_id: int, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep the attribution as given (raw), restricted to the known keys and sane types."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(ATTRIBUTION_KEYS))
    if unknown:
        raise Invalid(_("未知的归因字段: %(f)s") % {"f": ", ".join(unknown)},
                      details={"field": f"attribution.{unknown[0]}"})
    out: dict[str, Any] = {}
    for key in ("community_id", "group_id", "referrer_member_id", "live_session_id"):
        v = raw.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise Invalid(_("归因字段 %(f)s 必须是正整数") % {"f": key}, details={"field": f"attribution.{key}"})
        out[key] = v
    for key in ("invite_code", "campaign"):
        v = raw.get(key)
        if v is not None and not isinstance(v, str):
            raise Invalid(_("归因字段 %(f)s 必须是字符串") % {"f": key}, details={"field": f"attribution.{key}"})
        out[key] = v[:120] if isinstance(v, str) and v else None
    if out["live_session_id"] is not None and not LiveSession.objects.filter(
        tenant_id=tenant_id, pk=out["live_session_id"]
    ).exists():
        raise NotFound(_("直播场次不存在"), details={"field": "attribution.live_session_id"})
    return out


# --- member context and prices --------------------------------------------------------------------


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


# --- catalog ---------------------------------------------------------------------------------------


@transaction.atomic
def do_create_product(
    principal: Principal,
    *,
    name: str,
    skus: Sequence[Mapping[str, Any]],
    kind: str = ProductKind.GOODS,
    description: str = "",
    images: Sequence[str] = (),
    visible_in: Sequence[int] = (),
    tier_community_id: int | None = None,
    tier_code: str = "",
    tier_rank: int = 0,
    tier_privileges: Mapping[str, Any] | None = None,
    tier_duration_days: int | None = None,
) -> Product:
    """Create a product with its SKUs (code, name, price_fen, stock)."""
    tid = principal.tenant_id
    if not name or not name.strip():
        raise Invalid(_("商品名称不能为空"), details={"field": "name"})
    if kind not in ProductKind.values:
        raise Invalid(_("未知的商品类型: %(k)s") % {"k": kind}, details={"field": "kind"})
    if not skus:
        raise Invalid(_("至少需要一个 SKU"), details={"field": "skus"})
    if kind == ProductKind.TIER:
        if tier_community_id is None or not Community.objects.filter(tenant_id=tid, pk=tier_community_id).exists():
            raise Invalid(_("付费等级必须指定开通的社群"), details={"field": "tier_community_id"})
        if tier_duration_days is not None:
            _positive_int(tier_duration_days, "tier_duration_days")
    communities = list(Community.objects.filter(tenant_id=tid, pk__in=list(visible_in)))
    if len(communities) != len(set(visible_in)):
        raise NotFound(_("可见社群不存在"), details={"field": "visible_in"})
    product = Product.objects.create(
        tenant_id=tid, name=name.strip()[:200], kind=kind, description=description, images=list(images),
        tier_community_id=tier_community_id if kind == ProductKind.TIER else None, tier_code=tier_code,
        tier_rank=tier_rank, tier_privileges=dict(tier_privileges or {}), tier_duration_days=tier_duration_days,
    )
    product.visible_in.set(communities)
    codes: set[str] = set()
    for i, s in enumerate(skus):
        code = str(s.get("code") or "").strip()
        if not code or code in codes:
            raise Invalid(_("第 %(i)d 个 SKU 编码为空或重复") % {"i": i + 1}, details={"field": f"skus[{i}].code"})
        codes.add(code)
        price = _positive_int(s.get("price_fen"), f"skus[{i}].price_fen")
        stock = _positive_int(s.get("stock", 0), f"skus[{i}].stock", allow_zero=True)
        if Sku.objects.filter(tenant_id=tid, code=code).exists():
            raise Conflict(_("SKU 编码已存在: %(c)s") % {"c": code}, details={"field": f"skus[{i}].code"})
        Sku.objects.create(tenant_id=tid, product=product, code=code, name=str(s.get("name") or "")[:120],
                           price_fen=price, stock=stock)
    do_audit(principal, "commerce.product.create", "Product", product.pk, data={"name": product.name, "kind": kind})
    return product


@transaction.atomic
def do_set_member_price(
    principal: Principal, sku_id: int, *, price_fen: int, min_relationship_level: int | None = None,
    tier_product_id: int | None = None,
) -> MemberPrice:
    sku = Sku.objects.filter(tenant_id=principal.tenant_id, pk=sku_id).first()
    if sku is None:
        raise NotFound(_("SKU 不存在"), details={"field": "sku_id"})
    _positive_int(price_fen, "price_fen")
    if min_relationship_level is None and tier_product_id is None:
        raise Invalid(_("会员价需要关系等级或付费等级条件"), details={"field": "min_relationship_level"})
    if tier_product_id is not None and not Product.objects.filter(
        tenant_id=principal.tenant_id, pk=tier_product_id, kind=ProductKind.TIER
    ).exists():
        raise NotFound(_("付费等级不存在"), details={"field": "tier_product_id"})
    mp = MemberPrice.objects.create(tenant_id=principal.tenant_id, sku=sku, price_fen=price_fen,
                                    min_relationship_level=min_relationship_level, tier_product_id=tier_product_id)
    do_audit(principal, "commerce.member_price.set", "Sku", sku.pk, data={"price_fen": price_fen})
    return mp


@transaction.atomic
def do_adjust_stock(principal: Principal, sku_id: int, delta: int, *, reason: str = "") -> int:
    """Add (or, with a negative delta, remove) stock. Locking: one conditional UPDATE (stock + delta ≥ 0)."""
    if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0:
        raise Invalid(_("库存调整量必须是非零整数"), details={"field": "delta"})
    n = Sku.objects.filter(tenant_id=principal.tenant_id, pk=sku_id, stock__gte=-delta).update(
        stock=F("stock") + delta
    )
    if n == 0:
        if not Sku.objects.filter(tenant_id=principal.tenant_id, pk=sku_id).exists():
            raise NotFound(_("SKU 不存在"), details={"field": "sku_id"})
        raise Conflict(_("库存不足, 无法减少"), details={"field": "delta"})
    do_audit(principal, "commerce.stock.adjust", "Sku", sku_id, reason=reason, data={"delta": delta})
    return int(Sku.objects.values_list("stock", flat=True).get(pk=sku_id))


TIER_SEEDS = (
    {"code": "entry", "name": "入门社群", "price_fen": 1990, "rank": 1, "days": 365,
     "privileges": {"courses": "entry", "may_create_groups": False}},
    {"code": "partner", "name": "合伙人社群", "price_fen": 199900, "rank": 2, "days": 365,
     "privileges": {"free_courses": True, "may_create_groups": True, "member_price": True}},
)


@transaction.atomic
def do_seed_tiers(principal: Principal, community_id: int) -> list[Product]:
    """The seeds' two paid tiers: entry (19.9 yuan) and partner (1999 yuan). Idempotent."""
    out: list[Product] = []
    for seed in TIER_SEEDS:
        existing = Product.objects.filter(tenant_id=principal.tenant_id, kind=ProductKind.TIER,
                                          tier_community_id=community_id, tier_code=seed["code"]).first()
        if existing:
            out.append(existing)
            continue
        out.append(do_create_product(
            principal, name=str(seed["name"]), kind=ProductKind.TIER, tier_community_id=community_id,
            tier_code=str(seed["code"]), tier_rank=int(str(seed["rank"])),
            tier_privileges=dict(seed["privileges"]),  # type: ignore[call-overload]
            tier_duration_days=int(str(seed["days"])),
            skus=[{"code": f"tier-{community_id}-{seed['code']}", "name": str(seed["name"]),
                   "price_fen": seed["price_fen"], "stock": 1_000_000}],
        ))
    return out


# --- live sessions ---------------------------------------------------------------------------------


@transaction.atomic
def do_create_live_session(
    principal: Principal, *, title: str, starts_at: dt.datetime, platform: str = "wechat_channels",
    ends_at: dt.datetime | None = None, host_member_id: int | None = None, host_name: str = "",
    community_id: int | None = None,
) -> LiveSession:
    if not title.strip():
        raise Invalid(_("直播标题不能为空"), details={"field": "title"})
    if ends_at is not None and ends_at <= starts_at:
        raise Invalid(_("结束时间必须晚于开始时间"), details={"field": "ends_at"})
    if host_member_id is not None:
        _member(principal.tenant_id, host_member_id, "host_member_id")
    if community_id is not None and not Community.objects.filter(tenant_id=principal.tenant_id,
                                                                  pk=community_id).exists():
        raise NotFound(_("社群不存在"), details={"field": "community_id"})
    live = LiveSession.objects.create(
        tenant_id=principal.tenant_id, title=title.strip()[:200], platform=platform[:32], starts_at=starts_at,
        ends_at=ends_at, host_id=host_member_id, host_name=host_name[:120], community_id=community_id,
    )
    do_audit(principal, "commerce.live.create", "LiveSession", live.pk, data={"title": live.title})
    return live


@transaction.atomic
def do_record_live_join(principal: Principal, live_session_id: int, member_id: int,
                        community_id: int | None = None) -> LiveJoin:
    """A viewer joined the community through this live stream: open a membership (join_source live)."""
    live = LiveSession.objects.filter(tenant_id=principal.tenant_id, pk=live_session_id).first()
    if live is None:
        raise NotFound(_("直播场次不存在"), details={"field": "live_session_id"})
    member = _member(principal.tenant_id, member_id)
    cid = community_id or live.community_id
    if cid is None or not Community.objects.filter(tenant_id=principal.tenant_id, pk=cid).exists():
        raise Invalid(_("需要指定社群"), details={"field": "community_id"})
    now = timezone.now()
    join, created = LiveJoin.objects.get_or_create(
        tenant_id=principal.tenant_id, session=live, member=member, community_id=cid, defaults={"joined_at": now}
    )
    if created and not Membership.objects.filter(member=member, community_id=cid, group__isnull=True,
                                                 left_at__isnull=True).exists():
        Membership.objects.create(tenant_id=principal.tenant_id, member=member, community_id=cid, joined_at=now,
                                  join_source=JoinSource.LIVE)
    return join


# --- orders ----------------------------------------------------------------------------------------


@dataclass
class _Line:
    sku: Sku
    quantity: int
    list_price: int
    unit_price: int
    discount: int = 0

    @property
    def gross(self) -> int:
        return self.unit_price * self.quantity


@dataclass
class _Priced:
    lines: list[_Line]
    coupons: list[Coupon] = field(default_factory=list)
    discount: int = 0


def _clean_lines(tenant_id: int, raw: Any, ctx: MemberContext, *, price_override: int | None = None) -> list[_Line]:
    if not isinstance(raw, list | tuple) or not raw:
        raise Invalid(_("订单至少需要一行商品"), details={"field": "lines"})
    if len(raw) > MAX_LINES:
        raise Invalid(_("一个订单最多 %(n)d 行") % {"n": MAX_LINES}, details={"field": "lines"})
    wanted: list[tuple[int, int]] = []
    seen: set[int] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise Invalid(_("第 %(i)d 行格式错误") % {"i": i + 1}, details={"field": f"lines[{i}]"})
        sku_id = item.get("sku_id")
        if not isinstance(sku_id, int) or isinstance(sku_id, bool):
            raise Invalid(_("第 %(i)d 行: sku_id 必须是整数") % {"i": i + 1}, details={"field": f"lines[{i}].sku_id"})
        qty = item.get("quantity")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
            raise Invalid(_("第 %(i)d 行: 数量必须是正整数") % {"i": i + 1},
                          details={"field": f"lines[{i}].quantity"})
        if qty > MAX_QUANTITY:
            raise Invalid(_("第 %(i)d 行: 数量不能超过 %(m)d") % {"i": i + 1, "m": MAX_QUANTITY},
                          details={"field": f"lines[{i}].quantity"})
        if sku_id in seen:
            raise Invalid(_("第 %(i)d 行: SKU 重复") % {"i": i + 1}, details={"field": f"lines[{i}].sku_id"})
        seen.add(sku_id)
        wanted.append((sku_id, qty))
    skus = {
        s.pk: s for s in Sku.objects.filter(tenant_id=tenant_id, pk__in=list(seen)).select_related("product")
        .prefetch_related("member_prices", "product__visible_in")
    }
    out: list[_Line] = []
    for i, (sku_id, qty) in enumerate(wanted):
        sku = skus.get(sku_id)
        if sku is None or not sku.is_active or not sku.product.is_active:
            raise NotFound(_("第 %(i)d 行: SKU 不存在或已下架: %(s)s") % {"i": i + 1, "s": sku_id},
                           details={"field": f"lines[{i}].sku_id"})
        if not product_visible(sku.product, ctx, [c.pk for c in sku.product.visible_in.all()]):
            raise NotFound(_("第 %(i)d 行: 商品对该会员不可见") % {"i": i + 1}, details={"field": f"lines[{i}].sku_id"})
        price = price_override if price_override is not None else unit_price(sku, ctx, list(sku.member_prices.all()))
        out.append(_Line(sku=sku, quantity=qty, list_price=sku.price_fen, unit_price=price))
    return out


def _coupon_discount(template: CouponTemplate, eligible: int) -> int:
    if template.kind == CouponTemplate.Kind.FIXED:
        return min(template.amount_fen, eligible) if eligible >= template.threshold_fen else 0
    if template.kind == CouponTemplate.Kind.PERCENT:
        return eligible * template.percent_off // 100 if eligible >= template.threshold_fen else 0
    if template.kind == CouponTemplate.Kind.THRESHOLD:
        return min(template.amount_fen, eligible) if eligible >= template.threshold_fen else 0
    return 0


def _has_paid_before(tenant_id: int, member_id: int) -> bool:
    return Order.objects.filter(tenant_id=tenant_id, member_id=member_id, paid_at__isnull=False).exists()


def _apply_coupons(tenant_id: int, member: Member, lines: list[_Line], coupon_ids: Sequence[int],
                   now: dt.datetime) -> _Priced:
    priced = _Priced(lines=lines)
    if not coupon_ids:
        return priced
    if len(set(coupon_ids)) != len(coupon_ids):
        raise Invalid(_("优惠券重复"), details={"field": "coupon_ids"})
    coupons = list(Coupon.objects.filter(tenant_id=tenant_id, pk__in=list(coupon_ids)).select_related("template"))
    by_id = {c.pk: c for c in coupons}
    ordered: list[Coupon] = []
    for i, cid in enumerate(coupon_ids):
        c = by_id.get(cid)
        if c is None or c.owner_id != member.pk:
            raise NotFound(_("优惠券不存在: %(id)s") % {"id": cid}, details={"field": f"coupon_ids[{i}]"})
        if c.status != Coupon.Status.AVAILABLE:
            raise Conflict(_("优惠券不可用(已使用或已作废)"), details={"field": f"coupon_ids[{i}]"})
        t = c.template
        if not (t.valid_from <= now < t.valid_until):
            raise Invalid(_("优惠券不在有效期内"), details={"field": f"coupon_ids[{i}]"})
        if t.new_customers_only and _has_paid_before(tenant_id, member.pk):
            raise Invalid(_("该优惠券仅限新客使用"), details={"field": f"coupon_ids[{i}]"})
        ordered.append(c)
    if len(ordered) > 1 and not all(c.template.stackable for c in ordered):
        raise Invalid(_("所选优惠券不可叠加使用"), details={"field": "coupon_ids"})
    for i, c in enumerate(ordered):
        t = c.template
        eligible_lines = [ln for ln in lines if t.product_id is None or ln.sku.product_id == t.product_id]
        eligible = sum(ln.gross - ln.discount for ln in eligible_lines)
        if not eligible_lines:
            raise Invalid(_("优惠券不适用于订单中的商品"), details={"field": f"coupon_ids[{i}]"})
        amount = _coupon_discount(t, eligible)
        if amount <= 0:
            raise Invalid(_("订单金额未达到优惠券门槛"), details={"field": f"coupon_ids[{i}]"})
        _allocate(eligible_lines, amount)
        priced.discount += amount
        priced.coupons.append(c)
    return priced


def _allocate(lines: list[_Line], amount: int) -> None:
    """Spread a discount over lines in proportion to what is still payable (largest remainder)."""
    base = [ln.gross - ln.discount for ln in lines]
    total = sum(base)
    if total <= 0:
        return
    amount = min(amount, total)
    shares = [amount * b // total for b in base]
    rest = amount - sum(shares)
    order = sorted(range(len(lines)), key=lambda k: (amount * base[k]) % total, reverse=True)
    for k in order:
        if rest <= 0:
            break
        if shares[k] < base[k]:
            shares[k] += 1
            rest -= 1
    for ln, s in zip(lines, shares, strict=True):
        ln.discount += s


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
    from .tasks import deliver_order_event

    deliver_order_event.enqueue(event.pk)
    return event


def _mark_paid(principal: Principal, order: Order, payment: Payment | None) -> None:
    """Order (already locked by the caller) becomes paid: money applied, side effects, event."""
    amount = payment.amount_fen if payment is not None else 0
    now = timezone.now()
    order.paid_fen = order.paid_fen + amount
    order.paid_at = now
    order.expires_at = None
    _transition(principal, order, OrderStatus.PAID, data={"amount_fen": amount},
                fields=["paid_fen", "paid_at", "expires_at"])
    if payment is not None:
        Payment.objects.filter(pk=payment.pk).update(applied=True)
        payment.applied = True
    if order.flash_sale_id:
        FlashReservation.objects.filter(flash_sale_id=order.flash_sale_id, member_id=order.member_id,
                                        order=order).update(status=FlashReservation.Status.PAID)
    _grant_tiers(order, now)
    _grant_gift_coupons(order)
    _record_event(order, OrderEvent.Kind.PAID, order.paid_fen)
    if order.team_id:
        _team_paid(principal, order)


# --- payments --------------------------------------------------------------------------------------


def do_start_payment(
    principal: Principal, order_id: int, *, provider: str | None = None, channel: str = "",
    payer_openid: str = "", client_ip: str = "", idempotency_key: str | None = None,
) -> Payment:
    """Open a payment for the order's server-computed total and ask the provider for prepay data.

    Idempotent per (order, key): the same key returns the same payment. Locking: the order row."""
    tid = principal.tenant_id
    with transaction.atomic():
        order = _lock_order(tid, order_id)
        if idempotency_key:
            existing = Payment.objects.filter(tenant_id=tid, order=order, idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing
        if order.status != OrderStatus.CREATED:
            raise Conflict(_("订单当前状态不能支付: %(s)s") % {"s": order.get_status_display()},
                           code="bad_transition", details={"status": order.status})
        if order.expires_at is not None and order.expires_at <= timezone.now():
            raise Conflict(_("订单已超过支付时限"), code="order_expired")
        gw = gateway_for(_tenant_settings(tid), provider)
        payment = Payment.objects.create(
            tenant_id=tid, order=order, provider=gw.name, channel=channel[:16], out_trade_no=_out_no("P"),
            amount_fen=order.total_fen, idempotency_key=idempotency_key,
        )
        names = list(OrderLine.objects.filter(order=order).values_list("name", flat=True)[:3])
        payment.prepay = gw.prepay(out_trade_no=payment.out_trade_no, amount_fen=payment.amount_fen,
                                   description="、".join(names), channel=channel or "native",
                                   payer_openid=payer_openid, client_ip=client_ip)
        payment.save(update_fields=["prepay"])
        do_audit(principal, "commerce.payment.start", "Order", order.pk,
                 data={"payment_id": payment.pk, "provider": gw.name, "amount_fen": payment.amount_fen})
        return payment


def do_sandbox_pay(out_trade_no: str, *, status: str = "succeeded") -> dict[str, Any]:
    """The sandbox payer pays ``out_trade_no`` and its signed notification is delivered to us."""
    payment = Payment.objects.filter(out_trade_no=out_trade_no, provider="sandbox").first()
    if payment is None:
        raise NotFound(_("支付单不存在"), details={"field": "out_trade_no"})
    headers, body = SandboxGateway().pay(out_trade_no, payment.amount_fen, status=status)
    return do_handle_notification("sandbox", headers, body, tenant_id=payment.tenant_id)


def _log_callback(provider: str, body: bytes, outcome: str, *, tenant_id: int | None = None, note: Notification | None
                  = None, detail: str = "") -> None:
    PaymentCallback.objects.create(
        provider=provider[:16], tenant_id=tenant_id, out_trade_no=(note.out_trade_no if note else "")[:64],
        kind=note.kind if note else "", body_sha256=hashlib.sha256(body).hexdigest(), outcome=outcome[:32],
        detail=detail[:300],
    )


def do_handle_notification(provider: str, headers: Mapping[str, str], body: bytes, *,
                           tenant_id: int | None = None) -> dict[str, Any]:
    """Verify and apply one provider notification (payment or refund).

    Verifies the signature (raises ``BadSignature``), the payment exists (and belongs to
    ``tenant_id`` when given) and the amount equals what we asked for (raises ``Invalid``); then
    applies it idempotently — duplicates and out-of-order deliveries (a failure notice after a success,
    a refund notice for a refund we already booked) change nothing. Every notification is logged."""
    settings_ = _tenant_settings(tenant_id) if tenant_id else {}
    try:
        note = gateway_for(settings_, provider).parse_notification(headers, body)
    except Invalid as exc:
        _log_callback(provider, body, exc.code, tenant_id=tenant_id, detail=exc.message)
        raise
    payment = Payment.objects.filter(out_trade_no=note.out_trade_no).first()
    if payment is None or (tenant_id is not None and payment.tenant_id != tenant_id) or payment.provider != provider:
        _log_callback(provider, body, "unknown_payment", tenant_id=tenant_id, note=note)
        raise NotFound(_("支付单不存在: %(n)s") % {"n": note.out_trade_no}, details={"field": "out_trade_no"})
    if note.kind == "refund":
        refund = Refund.objects.filter(out_refund_no=note.out_refund_no, payment=payment).first()
        if refund is None:
            _log_callback(provider, body, "unknown_refund", tenant_id=payment.tenant_id, note=note)
            raise NotFound(_("退款单不存在"), details={"field": "out_refund_no"})
        if note.amount_fen != refund.amount_fen:
            _log_callback(provider, body, "amount_mismatch", tenant_id=payment.tenant_id, note=note)
            raise Invalid(_("退款回调金额与退款单不符"), code="amount_mismatch", details={"field": "amount"})
        outcome = do_complete_refund(refund.pk, status=note.status, provider_refund_id=note.provider_id)
        _log_callback(provider, body, outcome, tenant_id=payment.tenant_id, note=note)
        return {"outcome": outcome, "refund_id": refund.pk}
    if note.amount_fen != payment.amount_fen:
        _log_callback(provider, body, "amount_mismatch", tenant_id=payment.tenant_id, note=note,
                      detail=f"expected {payment.amount_fen} got {note.amount_fen}")
        raise Invalid(_("支付回调金额与订单不符: 应为 %(a)d 分, 实为 %(b)d 分")
                      % {"a": payment.amount_fen, "b": note.amount_fen}, code="amount_mismatch",
                      details={"field": "amount", "expected": payment.amount_fen, "got": note.amount_fen})
    if note.status == "succeeded":
        outcome = _settle_payment(payment.pk, note.provider_id)
    elif note.status in ("failed", "closed"):
        n = Payment.objects.filter(pk=payment.pk, status=Payment.Status.PENDING).update(status=note.status)
        outcome = note.status if n else "ignored"
    else:
        outcome = "pending"
    _log_callback(provider, body, outcome, tenant_id=payment.tenant_id, note=note)
    return {"outcome": outcome, "order_id": payment.order_id, "payment_id": payment.pk}


def _settle_payment(payment_id: int, provider_id: str) -> str:
    """A confirmed payment. Locking: the order row first, then the payment row.

    Returns ``paid``, ``duplicate`` (already booked), ``revived`` (an expired order whose stock was
    still there), or ``refunding`` (money we cannot use — order gone or already paid — is refunded
    in full automatically)."""
    refund_payment: Payment | None = None
    with transaction.atomic():
        order_id = Payment.objects.values_list("order_id", flat=True).get(pk=payment_id)
        order = _lock_order(None, order_id)
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status == Payment.Status.SUCCEEDED:
            return "duplicate"
        payment.status = Payment.Status.SUCCEEDED
        payment.provider_txn_id = provider_id[:64]
        payment.paid_at = timezone.now()
        payment.save(update_fields=["status", "provider_txn_id", "paid_at"])
        system = Principal.system(order.tenant_id, label="payments")
        outcome = "paid"
        if order.status == OrderStatus.CANCELLED and order.stock_released:
            if _retake_stock(order):
                outcome = "revived"
                do_audit(system, "commerce.order.revived", "Order", order.pk, data={"payment_id": payment.pk})
                _mark_paid(system, order, payment)
            else:
                outcome = "refunding"
                refund_payment = payment
        elif order.status == OrderStatus.CREATED and payment.amount_fen == order.total_fen:
            _mark_paid(system, order, payment)
        else:
            outcome = "refunding"
            refund_payment = payment
        if refund_payment is not None:
            payment.note = _("无法入账, 自动全额退款")
            payment.save(update_fields=["note"])
            do_audit(system, "commerce.payment.unusable", "Order", order.pk,
                     data={"payment_id": payment.pk, "order_status": order.status})
    if refund_payment is not None:
        _refund_unapplied(refund_payment)
    return outcome


def _retake_stock(order: Order) -> bool:
    """Try to take an expired order's stock (and coupons) again; all or nothing (savepoint)."""
    try:
        with transaction.atomic():
            lines = list(OrderLine.objects.filter(order=order))
            if order.flash_sale_id:
                qty = sum(ln.quantity for ln in lines)
                n = FlashReservation.objects.filter(
                    flash_sale_id=order.flash_sale_id, member_id=order.member_id, order=order,
                    status=FlashReservation.Status.RELEASED,
                ).update(status=FlashReservation.Status.RESERVED)
                if n == 0:
                    return False
                if FlashSale.objects.filter(pk=order.flash_sale_id, stock__gte=qty).update(
                    stock=F("stock") - qty
                ) == 0:
                    raise SoldOut("flash")
                _redis_retake(order.flash_sale_id, order.member_id, qty)
            else:
                for ln in sorted(lines, key=lambda x: x.sku_id):
                    if Sku.objects.filter(pk=ln.sku_id, stock__gte=ln.quantity).update(
                        stock=F("stock") - ln.quantity
                    ) == 0:
                        raise SoldOut("sku")
            for c in Coupon.objects.filter(used_order=order, status=Coupon.Status.AVAILABLE):
                if Coupon.objects.filter(pk=c.pk, status=Coupon.Status.AVAILABLE).update(
                    status=Coupon.Status.USED
                ) == 0:
                    raise SoldOut("coupon")
            if order.team_id:
                raise SoldOut("team")  # a group-buy seat is not re-taken after expiry
            order.stock_released = False
            order.save(update_fields=["stock_released"])
            return True
    except SoldOut:
        return False


def _redis_retake(flash_sale_id: int, member_id: int, qty: int) -> None:
    g = redis_gate.gate()
    if g is None or not FlashSale.objects.filter(pk=flash_sale_id, use_redis_gate=True).exists():
        return
    fs, mid = flash_sale_id, member_id

    def _go() -> None:
        # mirror the database: take the unit back out of the gate's count and re-mark the buyer
        g.conn.decrby(redis_gate.keys(fs)[0], qty)
        g.conn.sadd(redis_gate.keys(fs)[1], mid)

    transaction.on_commit(_go)


def _refund_unapplied(payment: Payment) -> None:
    """Refund in full a succeeded payment that was not applied to its order (exactly once per payment)."""
    with transaction.atomic():
        order = _lock_order(None, payment.order_id)
        key = f"unapplied-{payment.pk}"
        refund = Refund.objects.filter(tenant_id=order.tenant_id, idempotency_key=key).first()
        if refund is None:
            refund = Refund.objects.create(
                tenant_id=order.tenant_id, order=order, payment=payment, out_refund_no=_out_no("R"),
                amount_fen=payment.amount_fen, reason=_("订单已关闭或已支付, 自动退款"), idempotency_key=key,
                prior_status=order.status,
            )
            do_audit(Principal.system(order.tenant_id, "payments"), "commerce.refund.auto", "Order", order.pk,
                     data={"refund_id": refund.pk, "amount_fen": refund.amount_fen})
    _submit_refund(refund.pk)


# --- refunds ---------------------------------------------------------------------------------------


def _committed_refunds(order: Order, *, line_id: int | None = None) -> int:
    qs = Refund.objects.filter(order=order, payment__applied=True,
                               status__in=[Refund.Status.PENDING, Refund.Status.SUCCEEDED])
    if line_id is not None:
        qs = qs.filter(order_line_id=line_id)
    return int(qs.aggregate(s=Sum("amount_fen"))["s"] or 0)


def do_request_refund(
    principal: Principal, order_id: int, *, amount_fen: int, idempotency_key: str, reason: str = "",
    order_line_id: int | None = None,
) -> Refund:
    """Refund part or all of what was paid.

    Refused when ``amount_fen`` exceeds what is still refundable (paid − refunded − refunds in
    flight), for the order or for the named line. Idempotent on ``idempotency_key`` (per tenant).
    Locking: the order row (select_for_update), then refund rows; the provider is called after the
    refund row is written, and its answer applied by :func:`do_complete_refund`."""
    tid = principal.tenant_id
    if not idempotency_key or len(idempotency_key) > 128:
        raise Invalid(_("退款需要幂等键(不超过 128 个字符)"), details={"field": "idempotency_key"})
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise Invalid(_("退款金额必须是正整数(分)"), details={"field": "amount_fen"})
    with transaction.atomic():
        order = _lock_order(tid, order_id)
        existing = Refund.objects.filter(tenant_id=tid, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.order_id != order.pk or existing.amount_fen != amount_fen:
                raise Conflict(_("同一个幂等键用于了不同的退款"), code="idempotency_mismatch")
            return existing
        if order.status not in REFUNDABLE:
            raise Conflict(_("订单当前状态不能退款: %(s)s") % {"s": order.get_status_display()},
                           code="bad_transition", details={"status": order.status})
        refundable = order.paid_fen - _committed_refunds(order)
        if amount_fen > refundable:
            raise Invalid(_("退款金额 %(a)d 分超过可退金额 %(b)d 分") % {"a": amount_fen, "b": refundable},
                          code="refund_exceeds_paid", details={"field": "amount_fen", "refundable": refundable})
        line: OrderLine | None = None
        if order_line_id is not None:
            line = OrderLine.objects.filter(order=order, pk=order_line_id).first()
            if line is None:
                raise NotFound(_("订单明细不存在"), details={"field": "order_line_id"})
            line_left = line.amount_fen - _committed_refunds(order, line_id=line.pk)
            if amount_fen > line_left:
                raise Invalid(_("退款金额超过该明细可退金额 %(b)d 分") % {"b": line_left},
                              code="refund_exceeds_paid", details={"field": "amount_fen", "refundable": line_left})
        payment = Payment.objects.filter(order=order, applied=True, status=Payment.Status.SUCCEEDED).first()
        if payment is None:
            raise Conflict(_("订单没有可退款的支付"), details={"field": "order_id"})
        prior = order.status
        refund = Refund.objects.create(
            tenant_id=tid, order=order, payment=payment, order_line=line, out_refund_no=_out_no("R"),
            amount_fen=amount_fen, reason=reason[:200], idempotency_key=idempotency_key,
            prior_status=prior if prior != OrderStatus.REFUND_REQUESTED else "",
        )
        if prior != OrderStatus.REFUND_REQUESTED:
            _transition(principal, order, OrderStatus.REFUND_REQUESTED, reason=reason,
                        data={"refund_id": refund.pk, "amount_fen": amount_fen})
        else:
            do_audit(principal, "commerce.refund.request", "Order", order.pk, reason=reason,
                     data={"refund_id": refund.pk, "amount_fen": amount_fen})
    _submit_refund(refund.pk)
    refund.refresh_from_db()
    return refund


def _submit_refund(refund_id: int) -> None:
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return
    gw = gateway_for(_tenant_settings(refund.tenant_id), refund.payment.provider)
    try:
        status, provider_id = gw.refund(out_trade_no=refund.payment.out_trade_no, out_refund_no=refund.out_refund_no,
                                        amount_fen=refund.amount_fen, total_fen=refund.payment.amount_fen,
                                        reason=refund.reason)
    except Invalid:
        log.warning("refund %s: provider call failed; will be retried", refund.pk)
        return
    if status in ("succeeded", "failed"):
        do_complete_refund(refund.pk, status=status, provider_refund_id=provider_id)


def do_complete_refund(refund_id: int, *, status: str, provider_refund_id: str = "") -> str:
    """Apply the provider's answer to a refund, once. Locking: order row, then refund row; the order's
    ``refunded_fen`` moves by a conditional UPDATE (``refunded + x <= paid``)."""
    with transaction.atomic():
        order_id = Refund.objects.values_list("order_id", flat=True).get(pk=refund_id)
        order = _lock_order(None, order_id)
        refund = Refund.objects.select_for_update().select_related("payment").get(pk=refund_id)
        if refund.status != Refund.Status.PENDING:
            return "duplicate"
        system = Principal.system(order.tenant_id, "payments")
        refund.completed_at = timezone.now()
        refund.provider_refund_id = provider_refund_id[:64]
        if status != "succeeded":
            if status == "pending":
                return "pending"
            refund.status = Refund.Status.FAILED
            refund.save(update_fields=["status", "completed_at", "provider_refund_id"])
            do_audit(system, "commerce.refund.failed", "Order", order.pk, data={"refund_id": refund.pk})
            if refund.payment.applied:
                _settle_order_refund_status(system, order, refund)
            return "failed"
        refund.status = Refund.Status.SUCCEEDED
        refund.save(update_fields=["status", "completed_at", "provider_refund_id"])
        if not refund.payment.applied:
            do_audit(system, "commerce.refund.succeeded", "Order", order.pk,
                     data={"refund_id": refund.pk, "unapplied_payment": refund.payment_id})
            return "refunded"
        n = Order.objects.filter(pk=order.pk, refunded_fen__lte=F("paid_fen") - refund.amount_fen).update(
            refunded_fen=F("refunded_fen") + refund.amount_fen
        )
        if n == 0:
            raise Conflict(_("退款金额超过已付金额"), code="refund_exceeds_paid")
        order.refresh_from_db()
        _settle_order_refund_status(system, order, refund)
        allocation = _refund_allocation(order, refund)
        _revoke_tiers_for_refund(order, allocation)
        if OrderEvent.objects.filter(order=order, kind=OrderEvent.Kind.PAID).exists():
            _record_event(order, OrderEvent.Kind.REFUNDED, refund.amount_fen,
                          lines=_line_dicts(order, allocation), extra={"refund_id": refund.pk})
        if order.refunded_fen == order.paid_fen and order.fulfilled_at is None:
            _release_stock(order)
        return "refunded"


def _settle_order_refund_status(principal: Principal, order: Order, refund: Refund) -> None:
    if order.status != OrderStatus.REFUND_REQUESTED:
        return
    if Refund.objects.filter(order=order, status=Refund.Status.PENDING, payment__applied=True).exists():
        return
    to: str
    if order.refunded_fen >= order.paid_fen and order.paid_fen > 0:
        to = OrderStatus.REFUNDED
    elif order.refunded_fen > 0:
        to = OrderStatus.PARTIALLY_REFUNDED
    else:
        prior = (Refund.objects.filter(order=order).exclude(prior_status="").order_by("-pk")
                 .values_list("prior_status", flat=True).first())
        to = prior or OrderStatus.PAID
    _transition(principal, order, to, data={"refund_id": refund.pk, "refunded_fen": order.refunded_fen})


def _refund_allocation(order: Order, refund: Refund) -> dict[int, int]:
    lines = list(OrderLine.objects.filter(order=order).order_by("pk"))
    if refund.order_line_id:
        return {refund.order_line_id: refund.amount_fen}
    total = sum(ln.amount_fen for ln in lines)
    if total <= 0:
        return {}
    shares = {ln.pk: refund.amount_fen * ln.amount_fen // total for ln in lines}
    rest = refund.amount_fen - sum(shares.values())
    for ln in sorted(lines, key=lambda x: -x.amount_fen):
        if rest <= 0:
            break
        shares[ln.pk] += 1
        rest -= 1
    return shares


# --- fulfilment, completion, cancellation, expiry --------------------------------------------------


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
        if g is not None and FlashSale.objects.filter(pk=order.flash_sale_id, use_redis_gate=True).exists():
            fs, mid = order.flash_sale_id, order.member_id
            transaction.on_commit(lambda: g.release(fs, mid, qty))
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


def do_retry_pending_refunds(limit: int = 100) -> int:
    """Re-submit refunds the provider did not answer (scheduled)."""
    n = 0
    for rid in Refund.objects.filter(status=Refund.Status.PENDING).values_list("pk", flat=True)[:limit]:
        _submit_refund(rid)
        n += 1
    return n


# --- flash sales -----------------------------------------------------------------------------------


@transaction.atomic
def do_create_flash_sale(
    principal: Principal, *, name: str, sku_id: int, price_fen: int, stock: int, starts_at: dt.datetime,
    ends_at: dt.datetime, per_member_limit: int = 1, reservation_ttl_seconds: int = 900,
    eligible_community_id: int | None = None, eligible_tier_id: int | None = None,
    min_relationship_level: int | None = None, use_redis_gate: bool = False,
) -> FlashSale:
    """Create a flash sale whose stock is carved out of the SKU's stock (conditional UPDATE)."""
    tid = principal.tenant_id
    _positive_int(price_fen, "price_fen")
    _positive_int(stock, "stock")
    _positive_int(per_member_limit, "per_member_limit")
    _positive_int(reservation_ttl_seconds, "reservation_ttl_seconds")
    if ends_at <= starts_at:
        raise Invalid(_("结束时间必须晚于开始时间"), details={"field": "ends_at"})
    if not Sku.objects.filter(tenant_id=tid, pk=sku_id).exists():
        raise NotFound(_("SKU 不存在"), details={"field": "sku_id"})
    if Sku.objects.filter(tenant_id=tid, pk=sku_id, stock__gte=stock).update(stock=F("stock") - stock) == 0:
        raise Conflict(_("SKU 库存不足以分配给秒杀"), details={"field": "stock"})
    fs = FlashSale.objects.create(
        tenant_id=tid, name=name[:120], sku_id=sku_id, price_fen=price_fen, initial_stock=stock, stock=stock,
        per_member_limit=per_member_limit, starts_at=starts_at, ends_at=ends_at,
        reservation_ttl_seconds=reservation_ttl_seconds, eligible_community_id=eligible_community_id,
        eligible_tier_id=eligible_tier_id, min_relationship_level=min_relationship_level,
        use_redis_gate=use_redis_gate,
    )
    do_audit(principal, "commerce.flash.create", "FlashSale", fs.pk, data={"stock": stock, "price_fen": price_fen})
    return fs


def check_flash_eligible(fs: FlashSale, ctx: MemberContext | None, quantity: int, now: dt.datetime) -> None:
    """Raise a clear error unless this member may buy ``quantity`` now (``ctx=None``: the sale's own
    rules only; the caller's statement checks the member's)."""
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise Invalid(_("数量必须是正整数"), details={"field": "quantity"})
    if quantity > fs.per_member_limit:
        raise Invalid(_("每人限购 %(n)d 件") % {"n": fs.per_member_limit}, code="over_limit",
                      details={"field": "quantity"})
    if now < fs.starts_at:
        raise Invalid(_("秒杀尚未开始"), code="not_started", details={"field": "flash_sale_id"})
    if now >= fs.ends_at:
        raise Invalid(_("秒杀已结束"), code="ended", details={"field": "flash_sale_id"})
    if ctx is None:
        return
    if fs.eligible_community_id and fs.eligible_community_id not in ctx.communities:
        raise Invalid(_("仅限社群成员参与"), code="ineligible", details={"field": "member_id"})
    if fs.eligible_tier_id and fs.eligible_tier_id not in ctx.tiers:
        raise Invalid(_("仅限付费等级会员参与"), code="ineligible", details={"field": "member_id"})
    if fs.min_relationship_level is not None and ctx.level < fs.min_relationship_level:
        raise Invalid(_("关系等级不足"), code="ineligible", details={"field": "member_id"})


@dataclass
class FlashResult:
    status: str  # "ordered" | "queued"
    order: Order | None = None
    gate_result: int | None = None


def do_flash_buy(
    principal: Principal, flash_sale_id: int, *, member_id: int, quantity: int = 1,
    attribution: Mapping[str, Any] | None = None, idempotency_key: str | None = None,
    now: dt.datetime | None = None, batched: bool | None = None,
) -> FlashResult:
    """Buy in a flash sale: one short transaction.

    Locking: (1) INSERT the unique (flash sale, member) reservation row — a second attempt by the same
    member fails here, BEFORE any stock moves; (2) ``UPDATE flash SET stock = stock - n WHERE id = :id
    AND stock >= n`` — zero rows means sold out and the reservation insert rolls back with it;
    (3) the order and its line. With ``use_redis_gate`` and Redis configured, the Lua gate decides
    first and the order is written by :func:`do_consume_flash_gate`."""
    tid = principal.tenant_id
    now = now or timezone.now()
    use_batch = (batched if batched is not None else batching.enabled()) and not idempotency_key
    if use_batch:  # the group-commit hot path: the sale from the per-process cache, no query here
        fs = batching.flash_sale(tid, flash_sale_id)
    else:
        fs = FlashSale.objects.filter(tenant_id=tid, pk=flash_sale_id).select_related("sku__product").first()
    if fs is None:
        raise NotFound(_("秒杀不存在"), details={"field": "flash_sale_id"})
    member_rules = bool(fs.eligible_community_id or fs.eligible_tier_id)
    if (not member_rules and not fs.use_redis_gate and isinstance(member_id, int)
            and not isinstance(member_id, bool) and (use_batch or (
                connection.vendor == "postgresql" and not idempotency_key
                and fs.min_relationship_level is None))):
        # the hot paths: no member read (the statement checks the member belongs to the tenant, and
        # the batch statement checks the relationship level)
        check_flash_eligible(fs, None, quantity, now)
        if fs.stock <= 0 or (use_batch and batching.sold_out(fs.pk)):
            raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
        attr = clean_attribution(tid, attribution)
        if use_batch:
            return FlashResult("ordered", batching.submit(principal, fs.pk, member_id, quantity, attr))
        with transaction.atomic():
            return FlashResult("ordered", _flash_order_pg(principal, fs, member_id, quantity, attr, now=now))
    member = _member(tid, member_id)
    if fs.eligible_community_id or fs.eligible_tier_id:
        ctx = member_context(tid, member, now)
    else:  # the hot path: only the level is needed, already on the member row
        ctx = MemberContext(member.pk, int(member.relationship_level))
    check_flash_eligible(fs, ctx, quantity, now)
    if fs.stock <= 0:  # fast reject; the conditional UPDATE below is what actually decides
        raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
    attr = clean_attribution(tid, attribution)
    if fs.use_redis_gate:
        g = redis_gate.gate()
        if g is not None:
            attempt = g.attempt_batched if use_batch else g.attempt
            res = attempt(fs.pk, member.pk, quantity, json.dumps(attr))
            if res == redis_gate.NOT_PREPARED:
                do_prepare_flash_gate(fs.pk)
                res = attempt(fs.pk, member.pk, quantity, json.dumps(attr))
            if res == redis_gate.SOLD_OUT:
                raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
            if res == redis_gate.DUPLICATE:
                raise Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought",
                               details={"field": "member_id"})
            from .tasks import consume_flash_gate

            consume_flash_gate.enqueue(fs.pk)
            return FlashResult("queued", gate_result=res)
    req_hash = _hash({"flash": fs.pk, "quantity": quantity, "attribution": attr})
    existing = _existing_by_key(tid, member.pk, idempotency_key, req_hash)
    if existing is not None:
        return FlashResult("ordered", existing)
    if use_batch:
        return FlashResult("ordered", batching.submit(principal, fs.pk, member.pk, quantity, attr))
    if connection.vendor == "postgresql" and not idempotency_key:
        with transaction.atomic():
            return FlashResult("ordered", _flash_order_pg(principal, fs, member.pk, quantity, attr, now=now))
    with transaction.atomic():
        order = _flash_order(principal, fs, member, quantity, attr, now=now, idempotency_key=idempotency_key,
                             request_hash=req_hash)
    return FlashResult("ordered", order)


def _flash_order(principal: Principal, fs: FlashSale, member: Member, quantity: int, attr: dict[str, Any], *,
                 now: dt.datetime, idempotency_key: str | None = None, request_hash: str = "",
                 gate_id: str = "") -> Order:
    """Write one flash-sale order; the caller holds the transaction.

    Order of statements (each a single round trip): the order and its line; the unique
    (flash sale, member) reservation ``INSERT ... ON CONFLICT DO NOTHING`` — the duplicate check,
    before any stock moves; last, the conditional stock decrement, so the hot row is locked only from
    that UPDATE to COMMIT."""
    ttl = dt.timedelta(seconds=fs.reservation_ttl_seconds)
    line = _Line(sku=fs.sku, quantity=quantity, list_price=fs.sku.price_fen, unit_price=fs.price_fen)
    order = _write_order(principal, member, _Priced(lines=[line]), attr, idempotency_key=idempotency_key,
                         request_hash=request_hash, ttl=ttl, flash_sale=fs)
    # the member has a row already: only a released one (expired, cancelled) may be taken again
    if not _insert_reservation(fs, member.pk, quantity, expires_at=now + ttl, order_id=order.pk, gate_id=gate_id) \
            and FlashReservation.objects.filter(flash_sale=fs, member=member, status=FlashReservation.Status.RELEASED) \
            .update(status=FlashReservation.Status.RESERVED, quantity=quantity, expires_at=now + ttl,
                    order=order) == 0:
        raise Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought", details={"field": "member_id"})
    if FlashSale.objects.filter(pk=fs.pk, stock__gte=quantity).update(stock=F("stock") - quantity) == 0:
        raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
    return order


_PG_FLASH_SQL = """
WITH oid AS (SELECT nextval(pg_get_serial_sequence('commerce_order', 'id')) AS id),
res AS (
  INSERT INTO commerce_flashreservation (tenant_id, flash_sale_id, member_id, quantity, status, order_id, gate_id,
                                         expires_at, created_at)
  SELECT %(tenant)s, %(fs)s, %(member)s, %(qty)s, 'reserved', oid.id, '', %(expires)s, %(now)s FROM oid
  WHERE EXISTS (SELECT 1 FROM members_member m WHERE m.id = %(member)s AND m.tenant_id = %(tenant)s)
  ON CONFLICT (flash_sale_id, member_id) DO NOTHING RETURNING id),
stock AS (
  UPDATE commerce_flashsale SET stock = stock - %(qty)s
  WHERE id = %(fs)s AND stock >= %(qty)s AND EXISTS (SELECT 1 FROM res) RETURNING id),
ord AS (
  INSERT INTO commerce_order (id, tenant_id, member_id, status, goods_fen, discount_fen, total_fen, paid_fen,
                              refunded_fen, attribution, request_hash, expires_at, created_at, cancel_reason,
                              stock_released, flash_sale_id, live_session_id)
  SELECT oid.id, %(tenant)s, %(member)s, 'created', %(total)s, 0, %(total)s, 0, 0, %(attr)s::jsonb, '',
         %(expires)s, %(now)s, '', false, %(fs)s, %(live)s FROM oid, stock RETURNING id),
line AS (
  INSERT INTO commerce_orderline (tenant_id, order_id, product_id, sku_id, product_kind, name, quantity,
                                  list_price_fen, unit_price_fen, discount_fen, amount_fen)
  SELECT %(tenant)s, ord.id, %(product)s, %(sku)s, %(kind)s, %(name)s, %(qty)s, %(list)s, %(price)s, 0, %(total)s
  FROM ord),
aud AS (
  INSERT INTO core_auditlog (tenant_id, actor_type, actor_id, actor_label, action, object_type, object_id, reason,
                             data, created_at)
  SELECT %(tenant)s, %(actor_type)s, %(actor_id)s, %(actor_label)s, 'commerce.order.create', 'Order', ord.id::text,
         '', jsonb_build_object('total_fen', %(total)s, 'member_id', %(member)s, 'flash_sale_id', %(fs)s), %(now)s
  FROM ord)
SELECT (SELECT id FROM res), (SELECT id FROM stock), (SELECT id FROM ord)
"""


def _flash_order_pg(principal: Principal, fs: FlashSale, member_id: int, quantity: int, attr: dict[str, Any], *,
                    now: dt.datetime) -> Order:
    """PostgreSQL: the whole flash order in ONE statement (one round trip), same rules as
    :func:`_flash_order` — the unique reservation insert first, the conditional decrement only if it
    inserted, then order, line and audit rows. When nothing was inserted (the member already has a
    row, or is not a member of this tenant) it falls back to :func:`_flash_order`, which re-takes a
    released seat or raises the clear error; raises
    SoldOut (rolling back the reservation) when the conditional decrement found too little."""
    ttl = dt.timedelta(seconds=fs.reservation_ttl_seconds)
    expires = now + ttl
    total = fs.price_fen * quantity
    with connection.cursor() as cur:
        cur.execute(_PG_FLASH_SQL, {
            "tenant": fs.tenant_id, "fs": fs.pk, "member": member_id, "qty": quantity, "expires": expires,
            "now": now, "total": total, "attr": json.dumps(attr), "live": attr.get("live_session_id"),
            "product": fs.sku.product_id, "sku": fs.sku_id, "kind": fs.sku.product.kind,
            "name": f"{fs.sku.product.name} {fs.sku.name}".strip()[:240], "list": fs.sku.price_fen,
            "price": fs.price_fen, "actor_type": principal.kind, "actor_id": principal.actor_id,
            "actor_label": principal.label,
        })
        row = cur.fetchone()
    res_id, stock_id, order_id = row if row else (None, None, None)
    if res_id is None:
        return _flash_order(principal, fs, _member(fs.tenant_id, member_id), quantity, attr, now=now)
    if stock_id is None or order_id is None:
        raise SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
    return _written_flash_order(order_id, tenant_id=fs.tenant_id, flash_sale_id=fs.pk, member_id=member_id,
                                total=total, attr=attr, expires=expires, now=now)


def _written_flash_order(order_id: int, *, tenant_id: int, flash_sale_id: int, member_id: int, total: int,
                         attr: dict[str, Any], expires: dt.datetime, now: dt.datetime) -> Order:
    """The in-memory order a flash-sale statement just inserted (no read back)."""
    return Order(pk=order_id, tenant_id=tenant_id, member_id=member_id, status=OrderStatus.CREATED,
                 goods_fen=total, discount_fen=0, total_fen=total, attribution=attr, expires_at=expires,
                 created_at=now, flash_sale_id=flash_sale_id, live_session_id=attr.get("live_session_id"))


def _insert_reservation(fs: FlashSale, member_id: int, quantity: int, *, expires_at: dt.datetime, order_id: int,
                        gate_id: str) -> bool:
    """``INSERT ... ON CONFLICT (flash_sale, member) DO NOTHING RETURNING id``; True when inserted."""
    ops = connection.ops
    table = connection.ops.quote_name(FlashReservation._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (tenant_id, flash_sale_id, member_id, quantity, status, order_id, gate_id, "  # noqa: S608
            "expires_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (flash_sale_id, member_id) DO NOTHING RETURNING id",
            [fs.tenant_id, fs.pk, member_id, quantity, FlashReservation.Status.RESERVED, order_id, gate_id,
             ops.adapt_datetimefield_value(expires_at), ops.adapt_datetimefield_value(timezone.now())],
        )
        return cur.fetchone() is not None


def do_prepare_flash_gate(flash_sale_id: int) -> None:
    """Load the flash sale's remaining stock and current buyers into Redis (no-op without Redis)."""
    g = redis_gate.gate()
    if g is None:
        return
    fs = FlashSale.objects.get(pk=flash_sale_id)
    buyers = list(FlashReservation.objects.filter(flash_sale=fs).exclude(status=FlashReservation.Status.RELEASED)
                  .values_list("member_id", flat=True))
    g.prepare(fs.pk, fs.stock, buyers)


def do_consume_flash_gate(flash_sale_id: int, *, consumer: str = "worker", batch: int = 500) -> int:
    """Turn accepted gate attempts into reservations and orders; returns orders written.

    Idempotent: a stream entry is acknowledged only after its batch committed, and a replayed entry
    meets the unique (flash sale, member) row and is skipped. Each read is written by
    :func:`do_write_flash_batch` (one transaction, one stock decrement for the batch). The database
    stays the source of truth: an entry it refuses (sold out there, not a member, already bought) is
    acknowledged without an order, and one refused for who the member is (not found, not eligible)
    gives its unit back to the gate."""
    g = redis_gate.gate()
    if g is None:
        return 0
    tenant_id = FlashSale.objects.filter(pk=flash_sale_id).values_list("tenant_id", flat=True).first()
    if tenant_id is None:
        return 0
    system = Principal.system(tenant_id, "flash")
    written = 0
    while True:
        entries = g.read(flash_sale_id, consumer, count=batch)
        if not entries:
            return written
        rows: list[FlashRow] = []
        for entry_id, f in entries:
            try:
                attr = json.loads(f.get("attr") or "{}")
                attr = clean_attribution(tenant_id, attr if isinstance(attr, dict) else {})
            except (ValueError, ShequnError):
                attr = dict.fromkeys(ATTRIBUTION_KEYS)
            rows.append(FlashRow(system, int(f["member"]), int(f["qty"]), attr, gate_id=entry_id))
        outcome = do_write_flash_batch(flash_sale_id, rows)
        written += sum(1 for o in outcome.results if isinstance(o, Order))
        for row, res in zip(rows, outcome.results, strict=True):
            # refused for who the member is (not found, not eligible): the gate gives the unit back
            if isinstance(res, NotFound | Invalid):
                g.release(flash_sale_id, row.member_id, row.quantity)
        g.ack(flash_sale_id, [e[0] for e in entries])


@dataclass
class FlashRow:
    """One validated flash-sale attempt waiting to be written in a batch."""

    principal: Principal
    member_id: int
    quantity: int
    attr: dict[str, Any]
    gate_id: str = ""


@dataclass
class FlashBatchOutcome:
    results: list[Order | ShequnError]  # one per row, in order
    remaining: int | None  # the sale's stock after the batch (None when not read)


_PG_FLASH_HEAD_SQL = """
SELECT f.tenant_id, f.stock, f.price_fen, f.starts_at, f.ends_at, f.per_member_limit, f.min_relationship_level,
       f.reservation_ttl_seconds, f.sku_id, s.product_id, s.price_fen, s.name, p.name, p.kind
FROM commerce_flashsale f JOIN commerce_sku s ON s.id = f.sku_id JOIN commerce_product p ON p.id = s.product_id
WHERE f.id = %s
"""

_PG_FLASH_BATCH_SQL = """
WITH inp AS (
  SELECT * FROM unnest(%(members)s::bigint[], %(qtys)s::int[], %(attrs)s::jsonb[], %(gates)s::text[],
                       %(lives)s::bigint[], %(atypes)s::text[], %(aids)s::text[], %(alabels)s::text[])
         WITH ORDINALITY AS t(member, qty, attr, gate, live, atype, aid, alabel, ord)),
mem AS (
  SELECT inp.*, (SELECT m.relationship_level FROM members_member m
                 WHERE m.id = inp.member AND m.tenant_id = %(tenant)s) AS level,
         (SELECT r.status FROM commerce_flashreservation r
          WHERE r.flash_sale_id = %(fs)s AND r.member_id = inp.member) AS taken
  FROM inp),
chk AS (
  SELECT mem.*, level IS NOT NULL AS known,
         level IS NOT NULL AND (%(min_level)s::int IS NULL OR level >= %(min_level)s::int) AS eligible FROM mem),
cand AS (
  SELECT chk.*, sum(chk.qty) OVER (ORDER BY chk.ord) AS cum FROM chk WHERE chk.eligible AND chk.taken IS NULL),
chosen AS MATERIALIZED (
  SELECT cand.*, nextval(pg_get_serial_sequence('commerce_order', 'id')) AS oid
  FROM cand WHERE cand.cum <= %(stock)s ORDER BY cand.ord),
res AS (
  INSERT INTO commerce_flashreservation (tenant_id, flash_sale_id, member_id, quantity, status, order_id, gate_id,
                                         expires_at, created_at)
  SELECT %(tenant)s, %(fs)s, c.member, c.qty, 'reserved', c.oid, c.gate, %(expires)s, %(now)s
  FROM chosen c ORDER BY c.ord
  ON CONFLICT (flash_sale_id, member_id) DO NOTHING RETURNING order_id),
ord AS (
  INSERT INTO commerce_order (id, tenant_id, member_id, status, goods_fen, discount_fen, total_fen, paid_fen,
                              refunded_fen, attribution, request_hash, expires_at, created_at, cancel_reason,
                              stock_released, flash_sale_id, live_session_id)
  SELECT c.oid, %(tenant)s, c.member, 'created', %(price)s * c.qty, 0, %(price)s * c.qty, 0, 0, c.attr, '',
         %(expires)s, %(now)s, '', false, %(fs)s, c.live
  FROM chosen c JOIN res ON res.order_id = c.oid RETURNING id),
line AS (
  INSERT INTO commerce_orderline (tenant_id, order_id, product_id, sku_id, product_kind, name, quantity,
                                  list_price_fen, unit_price_fen, discount_fen, amount_fen)
  SELECT %(tenant)s, ord.id, %(product)s, %(sku)s, %(kind)s, %(name)s, c.qty, %(list)s, %(price)s, 0,
         %(price)s * c.qty
  FROM ord JOIN chosen c ON c.oid = ord.id),
aud AS (
  INSERT INTO core_auditlog (tenant_id, actor_type, actor_id, actor_label, action, object_type, object_id, reason,
                             data, created_at)
  SELECT %(tenant)s, c.atype, c.aid, c.alabel, 'commerce.order.create', 'Order', ord.id::text, '',
         jsonb_build_object('total_fen', %(price)s * c.qty, 'member_id', c.member, 'flash_sale_id', %(fs)s), %(now)s
  FROM ord JOIN chosen c ON c.oid = ord.id)
SELECT chk.known, chk.eligible, chk.taken, chosen.oid, res.order_id
FROM chk LEFT JOIN chosen ON chosen.ord = chk.ord LEFT JOIN res ON res.order_id = chosen.oid ORDER BY chk.ord
"""

_PG_FLASH_TAKE_SQL = """
UPDATE commerce_flashsale SET stock = stock - %(n)s WHERE id = %(fs)s AND stock >= %(n)s RETURNING stock
"""


class _StockMoved(Exception):
    """The optimistic batch read more stock than was left when it came to decrement: roll it back."""


_RETRY = object()  # a row the batch could not decide; written alone after the batch committed


def do_write_flash_batch(flash_sale_id: int, rows: Sequence[FlashRow],
                         now: dt.datetime | None = None) -> FlashBatchOutcome:
    """Write many buyers' flash-sale attempts at once (group commit); returns one outcome per row,
    exactly what :func:`do_flash_buy` would have given each buyer alone.

    Locking (PostgreSQL), optimistic first: read the sale's stock without a lock; ONE statement
    inserts the reservations of the eligible rows whose running total fits that stock
    (``INSERT ... ON CONFLICT (flash sale, member) DO NOTHING`` — the duplicate check) and the
    orders, lines and audit rows of the reservations actually inserted; LAST, ``UPDATE ... SET
    stock = stock - :taken WHERE stock >= :taken`` — the hot row is locked only from here to COMMIT.
    If another batch took the units meanwhile the UPDATE matches nothing: the whole batch rolls back
    and runs again with ``SELECT ... FOR UPDATE`` of the sale first (the lock held to COMMIT, so the
    stock it reads is exact). Oversell is impossible (the decrement is conditional and covers every
    inserted reservation); undersell too (a row is refused as sold out only when the stock left
    after the decrement is below its quantity). A row the batch cannot decide exactly (the same
    member twice in one batch, a released seat to re-take, a reservation that raced in, a row a
    larger earlier request pushed past the stock while units remain) is written afterwards by the
    one-buyer path in its own transaction. Must not be called inside another transaction.
    Other databases: the ORM batch of :func:`_consume_batch`, or one transaction per row."""
    now = now or timezone.now()
    results: list[Any] = [_RETRY] * len(rows)
    remaining: int | None = None
    seen: set[int] = set()
    first: list[int] = []  # indexes of the rows the batch decides (first occurrence of each member)
    for i, r in enumerate(rows):
        if r.member_id not in seen:
            seen.add(r.member_id)
            first.append(i)
    fs: FlashSale | None = None  # read once, for the ORM batch and for any row written alone
    if connection.vendor == "postgresql" and first:
        for locked in (False, True):
            try:
                with transaction.atomic():
                    remaining = _pg_flash_batch(flash_sale_id, rows, first, results, now, locked=locked)
                break
            except _StockMoved:
                results = [_RETRY] * len(rows)
            except IntegrityError:
                log.warning("flash batch of %d fell back to one transaction per buyer", len(rows))
                results = [_RETRY] * len(rows)
                remaining = None
                break
    elif first:
        fs = FlashSale.objects.select_related("sku__product").get(pk=flash_sale_id)
        fits: list[int] = []
        for i in first:
            try:
                check_flash_eligible(fs, None, rows[i].quantity, now)  # window and per-member limit
                fits.append(i)
            except ShequnError as exc:
                results[i] = exc
        if fs.min_relationship_level is not None:
            fits = []  # the one-buyer path checks each member's level
        try:
            with transaction.atomic():
                orders = _consume_batch(fs, [(rows[i].gate_id, rows[i].member_id, rows[i].quantity,
                                              rows[i].attr) for i in fits]) if fits else []
            by_member = {o.member_id: o for o in orders}  # rows of unknown members stay undecided
            for i in fits:
                if rows[i].member_id in by_member:
                    results[i] = by_member[rows[i].member_id]
        except (Conflict, IntegrityError):
            pass
    for i, r in enumerate(rows):
        if results[i] is not _RETRY:
            continue
        if fs is None:
            fs = FlashSale.objects.select_related("sku__product").get(pk=flash_sale_id)
        results[i] = _flash_one(fs, r, now)
    if fs is not None:  # the stock moved outside the PostgreSQL batch statement: read what is left
        remaining = FlashSale.objects.filter(pk=flash_sale_id).values_list("stock", flat=True).first()
    return FlashBatchOutcome(results, remaining)


def _flash_one(fs: FlashSale, r: FlashRow, now: dt.datetime) -> Order | ShequnError:
    """The one-buyer path for a row the batch left undecided: its own transaction, its own outcome."""
    try:
        member = _member(fs.tenant_id, r.member_id)
        check_flash_eligible(fs, MemberContext(member.pk, int(member.relationship_level)), r.quantity, now)
        with transaction.atomic():
            return _flash_order(r.principal, fs, member, r.quantity, r.attr, now=now, gate_id=r.gate_id)
    except ShequnError as exc:
        return exc
    except IntegrityError:
        return Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought", details={"field": "member_id"})


def _flash_head(cur: Any, flash_sale_id: int, *, locked: bool) -> tuple[Any, ...] | None:
    """The sale's row (stock, price, window, limits) and its SKU's; ``locked``: ``FOR UPDATE``."""
    cur.execute(_PG_FLASH_HEAD_SQL + (" FOR UPDATE OF f" if locked else ""), [flash_sale_id])
    row = cur.fetchone()
    return tuple(row) if row is not None else None


def _pg_flash_batch(flash_sale_id: int, rows: Sequence[FlashRow], first: Sequence[int], results: list[Any],
                    now: dt.datetime, *, locked: bool) -> int | None:
    """The PostgreSQL batch (see :func:`do_write_flash_batch`); fills ``results``, returns the stock left.

    ``locked=False`` (tried first): the stock is read without a lock, the rows that fit are written,
    and the conditional decrement comes LAST, so the hot row is locked only from that UPDATE to
    COMMIT and the next batch's inserts overlap this batch's commit. If another batch took the units
    meanwhile, the decrement finds too little and raises :class:`_StockMoved` (the caller rolls back
    and retries with ``locked=True``: ``SELECT ... FOR UPDATE`` first, so the read stock is exact)."""
    with connection.cursor() as cur:
        head = _flash_head(cur, flash_sale_id, locked=locked)
        if head is None:
            for i in first:
                results[i] = NotFound(_("秒杀不存在"), details={"field": "flash_sale_id"})
            return None
        (tenant, stock, price, starts_at, ends_at, limit, min_level, ttl_s, sku_id, product_id, list_price,
         sku_name, product_name, kind) = head
        # the sale's own rules (quantity, per-member limit, window) as the one-buyer path checks them
        rules = FlashSale(per_member_limit=limit, starts_at=starts_at, ends_at=ends_at)
        todo = []
        for i in first:
            try:
                check_flash_eligible(rules, None, rows[i].quantity, now)
                todo.append(i)
            except ShequnError as exc:
                results[i] = exc
        if not todo:
            return int(stock)
        expires = now + dt.timedelta(seconds=ttl_s)
        # the CTEs' row counts are unknown to the planner, which then nests loops over them (quadratic
        # in the batch size); hash joins keep the statement linear. The penalty cost of a disabled plan
        # would switch JIT compilation on (~1 s): off too. Both local to this transaction.
        cur.execute("SET LOCAL enable_nestloop = off; SET LOCAL jit = off")
        cur.execute(_PG_FLASH_BATCH_SQL, {
            "members": [rows[i].member_id for i in todo], "qtys": [rows[i].quantity for i in todo],
            "attrs": [json.dumps(rows[i].attr) for i in todo], "gates": [rows[i].gate_id for i in todo],
            "lives": [rows[i].attr.get("live_session_id") for i in todo],
            "atypes": [rows[i].principal.kind for i in todo], "aids": [rows[i].principal.actor_id for i in todo],
            "alabels": [rows[i].principal.label for i in todo],
            "tenant": tenant, "fs": flash_sale_id, "min_level": min_level, "stock": max(0, stock),
            "expires": expires, "now": now, "price": price, "product": product_id, "sku": sku_id, "kind": kind,
            "name": f"{product_name} {sku_name}".strip()[:240], "list": list_price,
        })
        out = cur.fetchall()
        taken = sum(rows[i].quantity for i, row in zip(todo, out, strict=True) if row[4] is not None)
        cur.execute(_PG_FLASH_TAKE_SQL, {"n": taken, "fs": flash_sale_id})
        moved = cur.fetchone()
    if moved is None:
        if locked:  # cannot happen: the stock was read under the lock
            raise IntegrityError("flash batch: stock changed under the row lock")
        raise _StockMoved
    left = int(moved[0])
    for i, (known, eligible, status, chosen_id, order_id) in zip(todo, out, strict=True):
        r = rows[i]
        if order_id is not None:
            results[i] = _written_flash_order(order_id, tenant_id=tenant, flash_sale_id=flash_sale_id,
                                              member_id=r.member_id, total=price * r.quantity, attr=r.attr,
                                              expires=expires, now=now)
        elif not known:
            results[i] = NotFound(_("会员不存在: %(id)s") % {"id": r.member_id}, details={"field": "member_id"})
        elif not eligible:
            results[i] = Invalid(_("关系等级不足"), code="ineligible", details={"field": "member_id"})
        elif status is not None and status != FlashReservation.Status.RELEASED:
            results[i] = Conflict(_("每人限购, 你已参与过本次秒杀"), code="already_bought",
                                  details={"field": "member_id"})
        elif status is None and chosen_id is None and left < r.quantity:
            results[i] = SoldOut(_("已售罄"), details={"field": "flash_sale_id"})
        # else _RETRY: a released seat to re-take, a reservation that raced in, or units left that this
        # row may fit although an earlier, larger request did not
    return left


def _consume_batch(fs: FlashSale, parsed: Sequence[tuple[str, int, int, dict[str, Any]]]) -> list[Order]:
    """Write a whole batch: one stock UPDATE, bulk inserts. Raises Conflict to fall back."""
    from shequn.core.models import AuditLog

    members = Member.objects.filter(tenant_id=fs.tenant_id, pk__in=[p[1] for p in parsed]).in_bulk()
    if FlashReservation.objects.filter(flash_sale=fs, member_id__in=list(members)).exists():
        raise Conflict("replayed or re-taken entries in batch")
    rows = [p for p in parsed if p[1] in members]
    if len({p[1] for p in rows}) != len(rows):
        raise Conflict("duplicate member in batch")
    total = sum(p[2] for p in rows)
    if not rows:
        return []
    if FlashSale.objects.filter(pk=fs.pk, stock__gte=total).update(stock=F("stock") - total) == 0:
        raise SoldOut("batch")
    now = timezone.now()
    ttl = dt.timedelta(seconds=fs.reservation_ttl_seconds)
    orders = Order.objects.bulk_create([
        Order(tenant_id=fs.tenant_id, member_id=mid, goods_fen=fs.price_fen * qty, discount_fen=0,
              total_fen=fs.price_fen * qty, attribution=clean_attribution(fs.tenant_id, attr) if attr else
              dict.fromkeys(ATTRIBUTION_KEYS), expires_at=now + ttl, flash_sale=fs)
        for _e, mid, qty, attr in rows
    ])
    name = f"{fs.sku.product.name} {fs.sku.name}".strip()[:240]
    OrderLine.objects.bulk_create([
        OrderLine(tenant_id=fs.tenant_id, order=o, product_id=fs.sku.product_id, sku_id=fs.sku_id,
                  product_kind=fs.sku.product.kind, name=name, quantity=qty, list_price_fen=fs.sku.price_fen,
                  unit_price_fen=fs.price_fen, amount_fen=fs.price_fen * qty)
        for o, (_e, _m, qty, _a) in zip(orders, rows, strict=True)
    ])
    FlashReservation.objects.bulk_create([
        FlashReservation(tenant_id=fs.tenant_id, flash_sale=fs, member_id=mid, quantity=qty, order=o,
                         gate_id=entry_id, expires_at=now + ttl)
        for o, (entry_id, mid, qty, _a) in zip(orders, rows, strict=True)
    ])
    AuditLog.objects.bulk_create([
        AuditLog(tenant_id=fs.tenant_id, actor_type="system", actor_id="", actor_label="flash",
                 action="commerce.order.create", object_type="Order", object_id=str(o.pk),
                 data={"total_fen": o.total_fen, "member_id": o.member_id, "flash_sale_id": fs.pk})
        for o in orders
    ])
    return orders


# --- group buys ------------------------------------------------------------------------------------


@transaction.atomic
def do_create_group_buy(
    principal: Principal, *, name: str, sku_id: int, price_fen: int, team_size: int, starts_at: dt.datetime,
    ends_at: dt.datetime, time_limit_minutes: int = 1440, leader_reward_template_id: int | None = None,
) -> GroupBuy:
    tid = principal.tenant_id
    _positive_int(price_fen, "price_fen")
    if not isinstance(team_size, int) or team_size < 2:
        raise Invalid(_("成团人数至少为 2"), details={"field": "team_size"})
    _positive_int(time_limit_minutes, "time_limit_minutes")
    if ends_at <= starts_at:
        raise Invalid(_("结束时间必须晚于开始时间"), details={"field": "ends_at"})
    if not Sku.objects.filter(tenant_id=tid, pk=sku_id).exists():
        raise NotFound(_("SKU 不存在"), details={"field": "sku_id"})
    gb = GroupBuy.objects.create(tenant_id=tid, name=name[:120], sku_id=sku_id, price_fen=price_fen,
                                 team_size=team_size, starts_at=starts_at, ends_at=ends_at,
                                 time_limit_minutes=time_limit_minutes,
                                 leader_reward_template_id=leader_reward_template_id)
    do_audit(principal, "commerce.group_buy.create", "GroupBuy", gb.pk, data={"team_size": team_size})
    return gb


def _group_buy_order(principal: Principal, gb: GroupBuy, team: GroupBuyTeam, member: Member, attr: dict[str, Any],
                     *, is_leader: bool) -> Order:
    ctx = member_context(gb.tenant_id, member)
    lines = _clean_lines(gb.tenant_id, [{"sku_id": gb.sku_id, "quantity": 1}], ctx, price_override=gb.price_fen)
    _take_stock(lines)
    ttl = min(DEFAULT_ORDER_TTL, max(team.expires_at - timezone.now(), dt.timedelta(seconds=1)))
    order = _write_order(principal, member, _Priced(lines=lines), attr, idempotency_key=None, request_hash="",
                         ttl=ttl, team=team)
    try:
        with transaction.atomic():
            GroupBuyParticipant.objects.create(tenant_id=gb.tenant_id, team=team, member=member, order=order,
                                               is_leader=is_leader)
    except IntegrityError:
        raise Conflict(_("你已在这个团里"), code="already_joined", details={"field": "member_id"}) from None
    return order


def do_start_team(principal: Principal, group_buy_id: int, *, member_id: int,
                  attribution: Mapping[str, Any] | None = None) -> tuple[GroupBuyTeam, Order]:
    """Open a team (开团) as its leader; returns the team (with its share token) and the leader's order."""
    tid = principal.tenant_id
    gb = GroupBuy.objects.filter(tenant_id=tid, pk=group_buy_id, is_active=True).first()
    if gb is None:
        raise NotFound(_("拼团活动不存在"), details={"field": "group_buy_id"})
    member = _member(tid, member_id)
    now = timezone.now()
    if not (gb.starts_at <= now < gb.ends_at):
        raise Invalid(_("拼团活动不在进行中"), code="ended", details={"field": "group_buy_id"})
    attr = clean_attribution(tid, attribution)
    with transaction.atomic():
        team = GroupBuyTeam.objects.create(
            tenant_id=tid, group_buy=gb, leader=member, share_token=_token(),
            expires_at=min(now + dt.timedelta(minutes=gb.time_limit_minutes), gb.ends_at),
        )
        order = _group_buy_order(principal, gb, team, member, attr, is_leader=True)
        do_audit(principal, "commerce.team.start", "GroupBuyTeam", team.pk, data={"order_id": order.pk})
    return team, order


def do_join_team(principal: Principal, share_token: str, *, member_id: int,
                 attribution: Mapping[str, Any] | None = None) -> Order:
    """Join a team by its share link. Locking: the team row (select_for_update) so seats are counted
    under the lock; then stock by conditional UPDATE."""
    tid = principal.tenant_id
    member = _member(tid, member_id)
    attr = clean_attribution(tid, attribution)
    with transaction.atomic():
        team = GroupBuyTeam.objects.select_for_update().filter(tenant_id=tid, share_token=share_token).first()
        if team is None:
            raise NotFound(_("拼团不存在"), details={"field": "share_token"})
        if team.status != GroupBuyTeam.Status.OPEN or team.expires_at <= timezone.now():
            raise Conflict(_("这个团已结束"), code="team_closed", details={"field": "share_token"})
        seats = GroupBuyParticipant.objects.filter(team=team).exclude(order__status=OrderStatus.CANCELLED).count()
        gb = GroupBuy.objects.get(pk=team.group_buy_id)
        if seats >= gb.team_size:
            raise Conflict(_("这个团已满"), code="team_full", details={"field": "share_token"})
        if attr.get("referrer_member_id") is None:
            attr["referrer_member_id"] = team.leader_id if team.leader_id != member.pk else None
        order = _group_buy_order(principal, gb, team, member, attr, is_leader=False)
        do_audit(principal, "commerce.team.join", "GroupBuyTeam", team.pk, data={"order_id": order.pk})
        return order


def _team_paid(principal: Principal, order: Order) -> None:
    """After a team order is paid (order row locked by the caller): lock the team; succeed it when full;
    a payment for a team that already failed is refunded."""
    assert order.team_id is not None
    team = GroupBuyTeam.objects.select_for_update().get(pk=order.team_id)
    if team.status == GroupBuyTeam.Status.FAILED:
        transaction.on_commit(lambda: _refund_failed_team_order(team.tenant_id, order.pk))
        return
    if team.status != GroupBuyTeam.Status.OPEN:
        return
    gb = GroupBuy.objects.get(pk=team.group_buy_id)
    paid = Order.objects.filter(team=team, paid_at__isnull=False).exclude(status=OrderStatus.CANCELLED).count()
    if paid >= gb.team_size:
        team.status = GroupBuyTeam.Status.SUCCEEDED
        team.closed_at = timezone.now()
        team.save(update_fields=["status", "closed_at"])
        do_audit(principal, "commerce.team.succeeded", "GroupBuyTeam", team.pk, data={"paid": paid})
        if gb.leader_reward_template_id and not team.leader_rewarded:
            _issue_coupon(gb.leader_reward_template_id, team.leader_id, source_order_id=None)
            GroupBuyTeam.objects.filter(pk=team.pk).update(leader_rewarded=True)


def _refund_failed_team_order(tenant_id: int, order_id: int) -> None:
    order = Order.objects.get(pk=order_id)
    left = order.paid_fen - order.refunded_fen
    if left > 0 and order.status in REFUNDABLE:
        do_request_refund(Principal.system(tenant_id, "group_buy"), order_id, amount_fen=left,
                          idempotency_key=f"groupbuy-fail-{order_id}", reason=_("拼团失败自动退款"))


def do_fail_expired_teams(now: dt.datetime | None = None, limit: int = 200) -> int:
    """Close teams that did not fill in time and refund every paid member exactly once.

    Exactly once: the team flips open → failed by a conditional UPDATE (only one caller wins), and each
    refund carries the idempotency key ``groupbuy-fail-<order id>``; unpaid orders are cancelled."""
    now = now or timezone.now()
    failed = 0
    for team_id, tid in GroupBuyTeam.objects.filter(status=GroupBuyTeam.Status.OPEN, expires_at__lte=now) \
            .values_list("pk", "tenant_id")[:limit]:
        with transaction.atomic():
            won = GroupBuyTeam.objects.filter(pk=team_id, status=GroupBuyTeam.Status.OPEN).update(
                status=GroupBuyTeam.Status.FAILED, closed_at=now
            )
            if won:
                do_audit(Principal.system(tid, "group_buy"), "commerce.team.failed", "GroupBuyTeam", team_id)
        if not won:
            continue
        failed += 1
        for oid in Order.objects.filter(team_id=team_id).values_list("pk", flat=True).order_by("pk"):
            status = Order.objects.values_list("status", flat=True).get(pk=oid)
            if status == OrderStatus.CREATED:
                try:
                    do_cancel_order(Principal.system(tid, "group_buy"), oid, reason=_("拼团失败"))
                except Conflict:
                    status = Order.objects.values_list("status", flat=True).get(pk=oid)
            if status in REFUNDABLE:
                _refund_failed_team_order(tid, oid)
    return failed


# --- coupons ---------------------------------------------------------------------------------------


@transaction.atomic
def do_create_coupon_template(
    principal: Principal, *, name: str, kind: str, valid_from: dt.datetime, valid_until: dt.datetime,
    amount_fen: int = 0, percent_off: int = 0, threshold_fen: int = 0, per_member_limit: int = 1,
    total_quantity: int | None = None, stackable: bool = False, is_share: bool = False,
    new_customers_only: bool = False, product_id: int | None = None,
) -> CouponTemplate:
    if kind not in CouponTemplate.Kind.values:
        raise Invalid(_("未知的优惠券类型: %(k)s") % {"k": kind}, details={"field": "kind"})
    if valid_until <= valid_from:
        raise Invalid(_("失效时间必须晚于生效时间"), details={"field": "valid_until"})
    if kind in (CouponTemplate.Kind.FIXED, CouponTemplate.Kind.THRESHOLD):
        _positive_int(amount_fen, "amount_fen")
    if kind == CouponTemplate.Kind.THRESHOLD:
        _positive_int(threshold_fen, "threshold_fen")
    if kind == CouponTemplate.Kind.PERCENT and not (isinstance(percent_off, int) and 0 < percent_off <= 100):
        raise Invalid(_("折扣必须在 1 到 100 之间"), details={"field": "percent_off"})
    _positive_int(per_member_limit, "per_member_limit")
    if product_id is not None and not Product.objects.filter(tenant_id=principal.tenant_id, pk=product_id).exists():
        raise NotFound(_("商品不存在"), details={"field": "product_id"})
    t = CouponTemplate.objects.create(
        tenant_id=principal.tenant_id, name=name[:120], kind=kind, amount_fen=amount_fen, percent_off=percent_off,
        threshold_fen=threshold_fen, valid_from=valid_from, valid_until=valid_until,
        per_member_limit=per_member_limit, total_quantity=total_quantity, stackable=stackable, is_share=is_share,
        new_customers_only=new_customers_only, product_id=product_id,
    )
    do_audit(principal, "commerce.coupon_template.create", "CouponTemplate", t.pk, data={"kind": kind})
    return t


def _issue_coupon(template_id: int, owner_id: int | None, *, source_order_id: int | None,
                  giver_id: int | None = None) -> Coupon:
    """Issue one coupon. Locking: the template's issue count by conditional UPDATE (≤ total)."""
    t = CouponTemplate.objects.get(pk=template_id)
    q = CouponTemplate.objects.filter(pk=t.pk)
    if t.total_quantity is not None:
        q = q.filter(issued__lt=F("total_quantity"))
    if q.update(issued=F("issued") + 1) == 0:
        raise Conflict(_("优惠券已发完"), code="sold_out", details={"field": "template_id"})
    return Coupon.objects.create(
        tenant_id=t.tenant_id, template=t, owner_id=owner_id, giver_id=giver_id, source_order_id=source_order_id,
        share_token=_token() if owner_id is None else None,
        status=Coupon.Status.AVAILABLE if owner_id is not None else Coupon.Status.UNCLAIMED,
        claimed_at=timezone.now() if owner_id is not None else None,
    )


def do_claim_coupon(principal: Principal, template_id: int, *, member_id: int) -> Coupon:
    """A member claims a coupon. Locking: the template row (select_for_update) serialises the
    per-member count; the issue count moves by conditional UPDATE."""
    tid = principal.tenant_id
    member = _member(tid, member_id)
    with transaction.atomic():
        t = CouponTemplate.objects.select_for_update().filter(tenant_id=tid, pk=template_id, is_share=False).first()
        if t is None:
            raise NotFound(_("优惠券不存在"), details={"field": "template_id"})
        now = timezone.now()
        if not (t.valid_from <= now < t.valid_until):
            raise Invalid(_("优惠券不在领取期内"), details={"field": "template_id"})
        if t.new_customers_only and _has_paid_before(tid, member.pk):
            raise Invalid(_("该优惠券仅限新客领取"), code="not_new_customer", details={"field": "member_id"})
        held = Coupon.objects.filter(template=t, owner=member).count()
        if held >= t.per_member_limit:
            raise Conflict(_("每人限领 %(n)d 张") % {"n": t.per_member_limit}, code="over_limit",
                           details={"field": "member_id"})
        c = _issue_coupon(t.pk, member.pk, source_order_id=None)
        do_audit(principal, "commerce.coupon.claim", "Coupon", c.pk, data={"member_id": member.pk})
        return c


def grant_fission_coupon(tenant_id: int, member_id: int, task: Any) -> None:
    """Referrals' ``coupon`` fission reward (registered with ``register_reward_hook`` in
    ``CommerceConfig.ready``): issues one coupon of template ``task.reward_value``. Runs in a
    savepoint inside the transaction that records the reward; a template that cannot be issued
    (expired, sold out, over the member's limit) is logged and skipped — it must never fail the
    payment event that triggered the reward."""
    try:
        with transaction.atomic():
            do_claim_coupon(Principal.system(tenant_id, label="referrals"), int(task.reward_value),
                            member_id=member_id)
    except ShequnError as exc:
        log.warning("fission coupon (task %s, template %s) not issued: %s", task.pk, task.reward_value, exc.code)


def _grant_gift_coupons(order: Order) -> None:
    """Buy one, give one: each paid line whose product carries a gift template yields one share coupon."""
    seen: set[int] = set()
    for ln in OrderLine.objects.filter(order=order).select_related("product"):
        tpl = ln.product.gift_coupon_template_id
        if tpl and tpl not in seen:
            seen.add(tpl)
            try:
                with transaction.atomic():
                    _issue_coupon(tpl, None, source_order_id=order.pk, giver_id=order.member_id)
            except (Conflict, IntegrityError):
                log.info("gift coupon for order %s not issued (sold out or already issued)", order.pk)


def do_claim_share_coupon(principal: Principal, share_token: str, *, member_id: int) -> Coupon:
    """A friend claims a buy-one-give-one coupon from its link. The giver is kept on the coupon and
    becomes ``referrer_member_id`` of the order it is redeemed on. Locking: conditional UPDATE on the
    coupon's status (unclaimed → available), so a link is claimed once."""
    tid = principal.tenant_id
    member = _member(tid, member_id)
    with transaction.atomic():
        c = Coupon.objects.filter(tenant_id=tid, share_token=share_token).select_related("template").first()
        if c is None:
            raise NotFound(_("分享券不存在"), details={"field": "share_token"})
        if c.giver_id == member.pk:
            raise Invalid(_("不能领取自己分享的券"), code="self_claim", details={"field": "member_id"})
        t = c.template
        now = timezone.now()
        if now >= t.valid_until:
            raise Invalid(_("分享券已过期"), code="expired", details={"field": "share_token"})
        if t.new_customers_only and _has_paid_before(tid, member.pk):
            raise Invalid(_("该分享券仅限新客领取"), code="not_new_customer", details={"field": "member_id"})
        held = Coupon.objects.filter(template=t, owner=member).count()
        if held >= t.per_member_limit:
            raise Conflict(_("每人限领 %(n)d 张") % {"n": t.per_member_limit}, code="over_limit",
                           details={"field": "member_id"})
        if Coupon.objects.filter(pk=c.pk, status=Coupon.Status.UNCLAIMED).update(
            status=Coupon.Status.AVAILABLE, owner=member, claimed_at=now
        ) == 0:
            raise Conflict(_("分享券已被领取"), code="already_claimed", details={"field": "share_token"})
        c.refresh_from_db()
        do_audit(principal, "commerce.coupon.share_claim", "Coupon", c.pk,
                 data={"member_id": member.pk, "giver_id": c.giver_id})
        return c


# --- paid community tiers --------------------------------------------------------------------------


def _grant_tiers(order: Order, now: dt.datetime) -> None:
    """Each paid tier line opens (or renews) the member's tier: a new TierGrant row starting when the
    current one ends, and an open community membership with join_source "purchase"."""
    for ln in OrderLine.objects.filter(order=order, product_kind=ProductKind.TIER).select_related("product"):
        p = ln.product
        if p.tier_community_id is None:
            continue
        current = (TierGrant.objects.filter(member_id=order.member_id, product=p, status=TierGrant.Status.ACTIVE)
                   .order_by("-expires_at").first())
        starts = now
        if current is not None and current.expires_at is not None and current.expires_at > now:
            starts = current.expires_at
        expires = starts + dt.timedelta(days=p.tier_duration_days * ln.quantity) if p.tier_duration_days else None
        TierGrant.objects.create(
            tenant_id=order.tenant_id, member_id=order.member_id, product=p, community_id=p.tier_community_id,
            order=order, order_line=ln, privileges=p.tier_privileges, starts_at=starts, expires_at=expires,
        )
        if not Membership.objects.filter(member_id=order.member_id, community_id=p.tier_community_id,
                                         group__isnull=True, left_at__isnull=True).exists():
            Membership.objects.create(tenant_id=order.tenant_id, member_id=order.member_id,
                                      community_id=p.tier_community_id, joined_at=now,
                                      join_source=JoinSource.PURCHASE)


def _close_tier_membership(tenant_id: int, member_id: int, community_id: int, now: dt.datetime, reason: str) -> None:
    still = TierGrant.objects.filter(member_id=member_id, community_id=community_id, status=TierGrant.Status.ACTIVE)
    if still.exists():
        return
    Membership.objects.filter(tenant_id=tenant_id, member_id=member_id, community_id=community_id,
                              group__isnull=True, left_at__isnull=True,
                              join_source=JoinSource.PURCHASE).update(left_at=now, exit_reason=reason[:200])


def _revoke_tiers_for_refund(order: Order, allocation: Mapping[int, int]) -> None:
    """A refund that covers a tier line in full revokes that grant (and the membership, when no other
    grant keeps it)."""
    now = timezone.now()
    for ln in OrderLine.objects.filter(order=order, product_kind=ProductKind.TIER):
        refunded = int(Refund.objects.filter(order=order, order_line=ln, status=Refund.Status.SUCCEEDED)
                       .aggregate(s=Sum("amount_fen"))["s"] or 0)
        whole = order.refunded_fen >= order.paid_fen
        if not whole and refunded < ln.amount_fen:
            continue
        for g in TierGrant.objects.filter(order_line=ln, status=TierGrant.Status.ACTIVE):
            g.status = TierGrant.Status.REVOKED
            g.ended_at = now
            g.save(update_fields=["status", "ended_at"])
            do_audit(Principal.system(order.tenant_id, "tiers"), "commerce.tier.revoked", "TierGrant", g.pk,
                     data={"order_id": order.pk})
            _close_tier_membership(order.tenant_id, g.member_id, g.community_id, now, _("付费等级退款"))


def do_expire_tiers(now: dt.datetime | None = None) -> int:
    """Expire grants past their end; close memberships no grant keeps open (scheduled)."""
    now = now or timezone.now()
    n = 0
    for g in TierGrant.objects.filter(status=TierGrant.Status.ACTIVE, expires_at__lte=now):
        with transaction.atomic():
            if TierGrant.objects.filter(pk=g.pk, status=TierGrant.Status.ACTIVE).update(
                status=TierGrant.Status.EXPIRED, ended_at=now
            ):
                n += 1
                _close_tier_membership(g.tenant_id, g.member_id, g.community_id, now, _("付费等级到期"))
    return n


# --- order listeners shipped with commerce ---------------------------------------------------------


def ingest_purchase_activity(event: Any) -> None:
    """Order listener: a paid order becomes a ``purchase`` event in the activity stream."""
    if event.kind != "paid":
        return
    from shequn.activity.services import do_ingest

    attr = event.attribution or {}
    result = do_ingest(event.tenant_id, [{
        "platform": "portal", "event_id": f"order-paid-{event.order_id}", "kind": "purchase",
        "occurred_at": (event.occurred_at or timezone.now()).isoformat(), "member_id": event.member_id,
        "payload": {"order_id": event.order_id, "amount_fen": event.amount_fen,
                    "community_id": attr.get("community_id"), "live_session_id": attr.get("live_session_id")},
    }], create_members=False)
    if result.errors:
        raise Invalid(result.errors[0].message, details={"field": result.errors[0].field})


# --- reconciliation --------------------------------------------------------------------------------


@dataclass
class Difference:
    kind: str
    out_no: str
    ours: str
    theirs: str


def reconcile(tenant_id: int, *, since: dt.datetime | None = None) -> list[Difference]:
    """Compare the provider's records with ours: missing on either side, amount or status mismatches,
    and refunds. Read-only; returns the differences."""
    payments = Payment.objects.filter(tenant_id=tenant_id)
    if since is not None:
        payments = payments.filter(created_at__gte=since)
    diffs: list[Difference] = []
    by_provider: dict[str, list[Payment]] = {}
    for p in payments:
        by_provider.setdefault(p.provider, []).append(p)
    settings_ = _tenant_settings(tenant_id)
    for provider, rows in by_provider.items():
        gw = gateway_for(settings_, provider)
        refund_nos = list(Refund.objects.filter(payment__in=rows).order_by("pk")
                          .values_list("out_refund_no", flat=True))
        theirs = {(r.kind, r.out_no): r for r in gw.records([p.out_trade_no for p in rows], refund_nos)}
        for p in rows:
            r = theirs.pop(("pay", p.out_trade_no), None)
            if r is None:
                if p.status == Payment.Status.SUCCEEDED:
                    diffs.append(Difference("missing_at_provider", p.out_trade_no, f"{p.status} {p.amount_fen}", "-"))
                continue
            if r.status == "succeeded" and p.status != Payment.Status.SUCCEEDED:
                diffs.append(Difference("not_booked", p.out_trade_no, p.status, f"{r.status} {r.amount_fen}"))
            elif r.status != "succeeded" and p.status == Payment.Status.SUCCEEDED:
                diffs.append(Difference("status_mismatch", p.out_trade_no, p.status, r.status))
            if r.amount_fen != p.amount_fen:
                diffs.append(Difference("amount_mismatch", p.out_trade_no, str(p.amount_fen), str(r.amount_fen)))
        refunds = {r.out_refund_no: r for r in Refund.objects.filter(payment__in=rows)}
        for (kind, out_no), r in theirs.items():
            if kind != "refund":
                diffs.append(Difference("unknown_at_ours", out_no, "-", f"{r.status} {r.amount_fen}"))
                continue
            ours = refunds.pop(out_no, None)
            if ours is None:
                diffs.append(Difference("refund_unknown_at_ours", out_no, "-", f"{r.status} {r.amount_fen}"))
            elif ours.amount_fen != r.amount_fen or (r.status == "succeeded") != (ours.status == "succeeded"):
                diffs.append(Difference("refund_mismatch", out_no, f"{ours.status} {ours.amount_fen}",
                                        f"{r.status} {r.amount_fen}"))
        for out_no, ours in refunds.items():
            if ours.status == Refund.Status.SUCCEEDED:
                diffs.append(Difference("refund_missing_at_provider", out_no, f"{ours.status} {ours.amount_fen}", "-"))
    return diffs


# --- demo ------------------------------------------------------------------------------------------


def do_seed_demo_commerce(principal: Principal, *, community_id: int, member_ids: Sequence[int],
                          orders: int = 40) -> dict[str, int]:
    """Demo catalog for a tenant: goods with 会员价, the two paid tiers, a running flash sale, a group
    buy, coupons with a buy-one-give-one gift, a live session, and ``orders`` paid sandbox orders
    (some from the live session, a few refunded). Idempotent per tenant (skips when products exist)."""
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
        p = do_create_product(principal, name=name, skus=[{"code": code, "name": "标准", "price_fen": price,
                                                           "stock": stock}],
                              images=[f"/static/demo/{code.lower()}.jpg"])
        do_set_member_price(principal, p.skus.get().pk, price_fen=price * 85 // 100, min_relationship_level=2)
        products.append(p)
    products[0].gift_coupon_template = gift
    products[0].save(update_fields=["gift_coupon_template"])
    do_seed_tiers(principal, community_id)
    do_create_flash_sale(principal, name="面膜限时秒杀", sku_id=products[0].skus.get().pk, price_fen=5900, stock=50,
                         starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(days=2))
    do_create_group_buy(principal, name="洁面三人团", sku_id=products[1].skus.get().pk, price_fen=5900, team_size=3,
                        starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(days=7))
    live = do_create_live_session(principal, title="周五护肤直播间", starts_at=now - dt.timedelta(days=2),
                                  ends_at=now - dt.timedelta(days=2) + dt.timedelta(hours=2),
                                  community_id=community_id, host_name="主播小美")
    paid = 0
    for i, mid in enumerate(list(member_ids)[:orders]):
        p = products[i % len(products)]
        attr: dict[str, Any] = {"community_id": community_id, "campaign": "demo"}
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
