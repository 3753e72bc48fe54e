"""How an order is priced on the server: cleaning the requested lines (visibility, list price or
会员价), applying coupons (validity, stacking, thresholds, new-customer rules) and spreading discounts
over lines (largest remainder). Nothing here writes; the client's figures are never used."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.members.models import Member

from ..models import Coupon, CouponTemplate, Order, Sku
from ..selectors import MemberContext, product_visible, unit_price

MAX_QUANTITY = 999  # per order line
MAX_LINES = 50  # per order


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
