"""Changing existing campaign objects: products (and paid tiers), SKUs, flash sales, group buys,
coupon templates, live sessions. The console's change forms and ``PATCH /api/v1/commerce/…`` call
these; creation is in the topic modules.

Each ``do_update_<object>(principal, id, **changes)`` takes only the fields that change (the names
of the create service's keywords), merges them with the stored values and holds the result to the
**same** ``check_*`` as creation, then to the state rules below; ``check_update_<object>`` runs the
same checks without writing (the console form's ``clean()``). Changes are audited
(``commerce.<object>.update`` with the changed field names).

State rules (what may change once a campaign is live):

* **Product**: the kind (goods / tier) never changes; a tier's community never changes once a member
  holds the tier. Taking a product off sale is ``is_active`` false (下架).
* **SKU**: code (unique in the tenant), name, price and on/off sale. A price change applies to orders
  created afterwards (orders keep the price they were created with). Stock is never set by an edit:
  it moves by ``do_adjust_stock`` (conditional UPDATE), so a stale form cannot undo a sale.
* **Flash sale**: the SKU never changes (its stock was carved out of that SKU). Once the sale has
  started or has any reservation, the price, the start and the gate mode are fixed (buyers must all
  pay one price); a sale that has ended is not reopened. The stock (``stock``, the sale's
  ``initial_stock``) may grow — taken from the SKU by conditional UPDATE, refused when the SKU has
  too little — or shrink down to what is sold — given back to the SKU; the sale's remaining stock
  moves by conditional UPDATE (``stock >= n``), so a concurrent buyer is never oversold. A sale on the
  Redis gate keeps its stock (the gate holds its own count).
* **Group buy**: once a team was opened, the SKU, price and team size are fixed (teams fill at the
  terms they were opened with). Pause/resume is ``is_active``.
* **Coupon template**: once a coupon was issued, its terms (kind, amounts, percent, threshold, share,
  product, start) are fixed — issued coupons read them; the total may not go below what was issued
  (conditional UPDATE ``issued <= total``).
* **Live session**: its community is fixed once joins were recorded from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.communities.models import Community
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from .. import batching
from ..models import (
    Coupon,
    CouponTemplate,
    FlashReservation,
    FlashSale,
    GroupBuy,
    GroupBuyTeam,
    LiveJoin,
    LiveSession,
    Product,
    ProductKind,
    Sku,
    TierGrant,
)
from .catalog import check_product_fields, check_sku, check_tier_privileges
from .coupons import check_coupon_template
from .flash import check_flash_sale
from .group_buy import check_group_buy, do_set_group_buy_active
from .live import check_live_session


def merge(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The stored values with ``changes`` applied; a name that is not a field is refused."""
    for name in changes:
        if name not in current:
            raise Invalid(_("不能修改的字段: %(f)s") % {"f": name}, details={"field": name})
    return {**current, **changes}


def _changed(current: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    return [k for k, v in values.items() if current.get(k) != v]


def _fixed(name: str, message: str) -> Conflict:
    return Conflict(message, code="locked", details={"field": name})


# -- products and SKUs -----------------------------------------------------------------------------


def _product_values(product: Product) -> dict[str, Any]:
    return {
        "name": product.name, "kind": product.kind, "description": product.description,
        "images": list(product.images or []), "is_active": product.is_active,
        "visible_in": sorted(product.visible_in.values_list("pk", flat=True)),
        "tier_community_id": product.tier_community_id, "tier_code": product.tier_code,
        "tier_rank": product.tier_rank, "tier_privileges": dict(product.tier_privileges or {}),
        "tier_duration_days": product.tier_duration_days,
    }


def _product(tenant_id: int, product_id: int, *, lock: bool = False) -> Product:
    q = Product.objects.filter(tenant_id=tenant_id, pk=product_id)
    product = (q.select_for_update() if lock else q).first()
    if product is None:
        raise NotFound(_("商品不存在"), details={"field": "product_id"})
    return product


def _check_product(product: Product, changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    current = _product_values(product)
    values = merge(current, changes)
    values["visible_in"] = sorted(set(values["visible_in"] or []))
    values["images"] = [str(x).strip() for x in values["images"] or [] if str(x).strip()]
    if values["kind"] == ProductKind.TIER:
        values["tier_privileges"] = check_tier_privileges(values["tier_privileges"])
    fields = {k: v for k, v in values.items() if k != "is_active"}
    check_product_fields(product.tenant_id, **fields)
    if not isinstance(values["is_active"], bool):
        raise Invalid(_("上架状态必须是 true 或 false"), details={"field": "is_active"})
    changed = _changed(current, values)
    if "kind" in changed:
        raise _fixed("kind", _("商品类型创建后不能更改"))
    if "tier_privileges" in changed and product.kind != ProductKind.TIER:
        raise Invalid(_("只有付费等级有权益"), details={"field": "tier_privileges"})
    if "tier_community_id" in changed and TierGrant.objects.filter(product=product).exists():
        raise _fixed("tier_community_id", _("已有会员开通该等级, 不能更换开通的社群"))
    return values, changed


def check_update_product(tenant_id: int, product_id: int, **changes: Any) -> None:
    """Every rule of :func:`do_update_product`, without writing."""
    _check_product(_product(tenant_id, product_id), changes)


@transaction.atomic
def do_update_product(principal: Principal, product_id: int, **changes: Any) -> Product:
    """Change a product or paid tier (name, description, images, visibility, on/off sale, the tier's
    code, rank, community, privileges, duration); ``is_active`` False takes it off sale (下架)."""
    product = _product(principal.tenant_id, product_id, lock=True)
    values, changed = _check_product(product, changes)
    if not changed:
        return product
    is_tier = product.kind == ProductKind.TIER
    columns = [c for c in changed if c != "visible_in"]
    for name in columns:
        value = values[name]
        if name in ("name", "tier_code"):
            value = str(value).strip()
        if name.startswith("tier_") and not is_tier:
            continue
        setattr(product, name, value)
    columns = [c for c in columns if is_tier or not c.startswith("tier_")]
    if columns:
        product.save(update_fields=columns)
    if "visible_in" in changed:
        product.visible_in.set(list(Community.objects.filter(tenant_id=principal.tenant_id,
                                                             pk__in=values["visible_in"])))
    do_audit(principal, "commerce.product.update", "Product", product.pk, data={"fields": changed})
    return product


def _sku(tenant_id: int, sku_id: int, *, lock: bool = False) -> Sku:
    q = Sku.objects.filter(tenant_id=tenant_id, pk=sku_id)
    sku = (q.select_for_update() if lock else q).first()
    if sku is None:
        raise NotFound(_("SKU 不存在"), details={"field": "sku_id"})
    return sku


def _check_sku(sku: Sku, changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    current = {"code": sku.code, "name": sku.name, "price_fen": sku.price_fen, "is_active": sku.is_active}
    values = merge(current, changes)
    check_sku(sku.tenant_id, code=values["code"], price_fen=values["price_fen"], sku_id=sku.pk)
    if len(str(values["name"] or "")) > 120:
        raise Invalid(_("规格名称最多 120 个字符"), details={"field": "name"})
    if not isinstance(values["is_active"], bool):
        raise Invalid(_("上架状态必须是 true 或 false"), details={"field": "is_active"})
    values["code"] = str(values["code"]).strip()
    return values, _changed(current, values)


def check_update_sku(tenant_id: int, sku_id: int, **changes: Any) -> None:
    _check_sku(_sku(tenant_id, sku_id), changes)


@transaction.atomic
def do_update_sku(principal: Principal, sku_id: int, **changes: Any) -> Sku:
    """Change a SKU's code, name, price or on/off sale. Never its stock (``do_adjust_stock``): the
    row is written with ``update_fields`` of the changed columns only."""
    sku = _sku(principal.tenant_id, sku_id, lock=True)
    values, changed = _check_sku(sku, changes)
    if changed:
        for name in changed:
            setattr(sku, name, values[name])
        sku.save(update_fields=changed)
        do_audit(principal, "commerce.sku.update", "Sku", sku.pk,
                 data={"fields": changed, **({"price_fen": sku.price_fen} if "price_fen" in changed else {})})
    return sku


# -- flash sales -----------------------------------------------------------------------------------


def _flash_values(fs: FlashSale) -> dict[str, Any]:
    return {
        "name": fs.name, "sku_id": fs.sku_id, "price_fen": fs.price_fen, "stock": fs.initial_stock,
        "starts_at": fs.starts_at, "ends_at": fs.ends_at, "per_member_limit": fs.per_member_limit,
        "reservation_ttl_seconds": fs.reservation_ttl_seconds, "eligible_community_id": fs.eligible_community_id,
        "eligible_tier_id": fs.eligible_tier_id, "min_relationship_level": fs.min_relationship_level,
        "use_redis_gate": fs.use_redis_gate,
    }


def _flash(tenant_id: int, flash_sale_id: int, *, lock: bool = False) -> FlashSale:
    q = FlashSale.objects.filter(tenant_id=tenant_id, pk=flash_sale_id)
    fs = (q.select_for_update() if lock else q).first()
    if fs is None:
        raise NotFound(_("秒杀活动不存在"), details={"field": "flash_sale_id"})
    return fs


def _check_flash(fs: FlashSale, changes: Mapping[str, Any], now: dt.datetime) -> tuple[dict[str, Any], list[str]]:
    current = _flash_values(fs)
    values = merge(current, changes)
    check_flash_sale(fs.tenant_id, **values)
    changed = _changed(current, values)
    if "sku_id" in changed:
        raise _fixed("sku_id", _("秒杀的 SKU 创建后不能更改"))
    live = fs.starts_at <= now or FlashReservation.objects.filter(flash_sale=fs).exists()
    if live:
        for name, message in (("price_fen", _("秒杀已开始, 不能改价")),
                              ("starts_at", _("秒杀已开始, 不能更改开始时间")),
                              ("use_redis_gate", _("秒杀已开始, 不能切换 Redis 闸门"))):
            if name in changed:
                raise _fixed(name, message)
    if "ends_at" in changed and fs.ends_at <= now:
        raise _fixed("ends_at", _("已结束的秒杀不能重新开始"))
    if "stock" in changed:
        sold = fs.initial_stock - fs.stock
        if fs.use_redis_gate:
            raise _fixed("stock", _("使用 Redis 闸门的秒杀不能调整库存"))
        if values["stock"] < sold:
            raise Conflict(_("秒杀库存不能少于已售出的 %(n)d 件") % {"n": sold}, code="below_sold",
                           details={"field": "stock", "sold": sold})
    return values, changed


def check_update_flash_sale(tenant_id: int, flash_sale_id: int, *, now: dt.datetime | None = None,
                            **changes: Any) -> None:
    """Every rule of :func:`do_update_flash_sale` except the SKU's stock (taken at write time)."""
    _check_flash(_flash(tenant_id, flash_sale_id), changes, now or timezone.now())


@transaction.atomic
def do_update_flash_sale(principal: Principal, flash_sale_id: int, *, now: dt.datetime | None = None,
                         **changes: Any) -> FlashSale:
    """Change a flash sale under the state rules of this module. Locking: the sale row
    (``select_for_update``) for the checks; its stock and the SKU's move by conditional UPDATEs."""
    tid = principal.tenant_id
    fs = _flash(tid, flash_sale_id, lock=True)
    values, changed = _check_flash(fs, changes, now or timezone.now())
    if not changed:
        return fs
    if "stock" in changed:
        delta = int(values["stock"]) - fs.initial_stock
        if delta > 0:
            if Sku.objects.filter(tenant_id=tid, pk=fs.sku_id, stock__gte=delta).update(stock=F("stock") - delta) == 0:
                raise Conflict(_("SKU 库存不足以分配给秒杀"), details={"field": "stock"})
            FlashSale.objects.filter(pk=fs.pk).update(stock=F("stock") + delta,
                                                      initial_stock=F("initial_stock") + delta)
        elif FlashSale.objects.filter(pk=fs.pk, stock__gte=-delta).update(
                stock=F("stock") + delta, initial_stock=F("initial_stock") + delta) == 0:
            raise Conflict(_("秒杀库存不能少于已售出的 %(n)d 件") % {"n": fs.initial_stock - fs.stock},
                           code="below_sold", details={"field": "stock"})
        else:
            Sku.objects.filter(tenant_id=tid, pk=fs.sku_id).update(stock=F("stock") - delta)
    attnames = {"eligible_community_id": "eligible_community_id", "eligible_tier_id": "eligible_tier_id"}
    columns = [attnames.get(c, c) for c in changed if c != "stock"]
    for name in columns:
        setattr(fs, name, values[name])
    if columns:
        fs.save(update_fields=columns)
    fs.refresh_from_db()
    do_audit(principal, "commerce.flash.update", "FlashSale", fs.pk,
             data={"fields": changed, "stock": fs.initial_stock, "price_fen": fs.price_fen})
    transaction.on_commit(lambda: batching.forget(fs.pk))
    return fs


# -- group buys ------------------------------------------------------------------------------------


def _group_buy_values(gb: GroupBuy) -> dict[str, Any]:
    return {"name": gb.name, "sku_id": gb.sku_id, "price_fen": gb.price_fen, "team_size": gb.team_size,
            "starts_at": gb.starts_at, "ends_at": gb.ends_at, "time_limit_minutes": gb.time_limit_minutes,
            "leader_reward_template_id": gb.leader_reward_template_id}


def _group_buy(tenant_id: int, group_buy_id: int, *, lock: bool = False) -> GroupBuy:
    q = GroupBuy.objects.filter(tenant_id=tenant_id, pk=group_buy_id)
    gb = (q.select_for_update() if lock else q).first()
    if gb is None:
        raise NotFound(_("拼团活动不存在"), details={"field": "group_buy_id"})
    return gb


def _check_group_buy(gb: GroupBuy, changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], bool | None]:
    changes = dict(changes)
    active = changes.pop("is_active", None)
    if active is not None and not isinstance(active, bool):
        raise Invalid(_("状态必须是 true 或 false"), details={"field": "is_active"})
    current = _group_buy_values(gb)
    values = merge(current, changes)
    check_group_buy(gb.tenant_id, **values)
    changed = _changed(current, values)
    if GroupBuyTeam.objects.filter(group_buy=gb).exists():
        for name in ("sku_id", "price_fen", "team_size"):
            if name in changed:
                raise _fixed(name, _("已有人开团, 不能更改 SKU、拼团价或成团人数"))
    return values, changed, active


def check_update_group_buy(tenant_id: int, group_buy_id: int, **changes: Any) -> None:
    _check_group_buy(_group_buy(tenant_id, group_buy_id), changes)


@transaction.atomic
def do_update_group_buy(principal: Principal, group_buy_id: int, **changes: Any) -> GroupBuy:
    """Change a group buy; ``is_active`` pauses (no new teams) or resumes it."""
    gb = _group_buy(principal.tenant_id, group_buy_id, lock=True)
    values, changed, active = _check_group_buy(gb, changes)
    if changed:
        for name in changed:
            setattr(gb, name, values[name])
        gb.save(update_fields=changed)
        do_audit(principal, "commerce.group_buy.update", "GroupBuy", gb.pk, data={"fields": changed})
    if active is not None:
        gb = do_set_group_buy_active(principal, gb.pk, active=active)
    return gb


# -- coupon templates ------------------------------------------------------------------------------

_COUPON_TERMS = ("kind", "amount_fen", "percent_off", "threshold_fen", "is_share", "product_id", "valid_from")


def _coupon_values(t: CouponTemplate) -> dict[str, Any]:
    return {"name": t.name, "kind": t.kind, "valid_from": t.valid_from, "valid_until": t.valid_until,
            "amount_fen": t.amount_fen, "percent_off": t.percent_off, "threshold_fen": t.threshold_fen,
            "per_member_limit": t.per_member_limit, "total_quantity": t.total_quantity, "stackable": t.stackable,
            "is_share": t.is_share, "new_customers_only": t.new_customers_only, "product_id": t.product_id}


def _template(tenant_id: int, template_id: int, *, lock: bool = False) -> CouponTemplate:
    q = CouponTemplate.objects.filter(tenant_id=tenant_id, pk=template_id)
    t = (q.select_for_update() if lock else q).first()
    if t is None:
        raise NotFound(_("优惠券模板不存在"), details={"field": "template_id"})
    return t


def _check_coupon(t: CouponTemplate, changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    current = _coupon_values(t)
    values = merge(current, changes)
    check_coupon_template(t.tenant_id, **values)
    changed = _changed(current, values)
    issued = t.issued or Coupon.objects.filter(template=t).exists()
    if issued:
        for name in _COUPON_TERMS:
            if name in changed:
                raise _fixed(name, _("优惠券已发出, 不能更改券面规则"))
    if "total_quantity" in changed and values["total_quantity"] is not None and values["total_quantity"] < t.issued:
        raise Conflict(_("发放总量不能少于已发出的 %(n)d 张") % {"n": t.issued}, code="below_issued",
                       details={"field": "total_quantity"})
    return values, changed


def check_update_coupon_template(tenant_id: int, template_id: int, **changes: Any) -> None:
    _check_coupon(_template(tenant_id, template_id), changes)


@transaction.atomic
def do_update_coupon_template(principal: Principal, template_id: int, **changes: Any) -> CouponTemplate:
    """Change a coupon template under the state rules of this module. The total moves by a
    conditional UPDATE (``issued <= total``), so a concurrent claim is never cut off below its count."""
    t = _template(principal.tenant_id, template_id, lock=True)
    values, changed = _check_coupon(t, changes)
    if not changed:
        return t
    columns = [c for c in changed if c != "total_quantity"]
    if "total_quantity" in changed:
        total = values["total_quantity"]
        q = CouponTemplate.objects.filter(pk=t.pk)
        if total is not None:
            q = q.filter(issued__lte=total)
        if q.update(total_quantity=total) == 0:
            raise Conflict(_("发放总量不能少于已发出的 %(n)d 张") % {"n": t.issued}, code="below_issued",
                           details={"field": "total_quantity"})
    for name in columns:
        setattr(t, name, values[name].strip() if name == "name" else values[name])
    if columns:
        t.save(update_fields=columns)
    t.refresh_from_db()
    do_audit(principal, "commerce.coupon_template.update", "CouponTemplate", t.pk, data={"fields": changed})
    return t


# -- live sessions ---------------------------------------------------------------------------------


def _live_values(live: LiveSession) -> dict[str, Any]:
    return {"title": live.title, "starts_at": live.starts_at, "ends_at": live.ends_at, "platform": live.platform,
            "host_member_id": live.host_id, "host_name": live.host_name, "community_id": live.community_id}


def _live(tenant_id: int, live_session_id: int, *, lock: bool = False) -> LiveSession:
    q = LiveSession.objects.filter(tenant_id=tenant_id, pk=live_session_id)
    live = (q.select_for_update() if lock else q).first()
    if live is None:
        raise NotFound(_("直播场次不存在"), details={"field": "live_session_id"})
    return live


def _check_live(live: LiveSession, changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    current = _live_values(live)
    values = merge(current, changes)
    check_live_session(live.tenant_id, **values)
    changed = _changed(current, values)
    if "community_id" in changed and LiveJoin.objects.filter(session=live).exists():
        raise _fixed("community_id", _("已有会员从这场直播入群, 不能更换社群"))
    return values, changed


def check_update_live_session(tenant_id: int, live_session_id: int, **changes: Any) -> None:
    _check_live(_live(tenant_id, live_session_id), changes)


@transaction.atomic
def do_update_live_session(principal: Principal, live_session_id: int, **changes: Any) -> LiveSession:
    live = _live(principal.tenant_id, live_session_id, lock=True)
    values, changed = _check_live(live, changes)
    if changed:
        attnames = {"host_member_id": "host_id"}
        for name in changed:
            value = values[name]
            setattr(live, attnames.get(name, name), value.strip() if name == "title" else value)
        live.save(update_fields=[attnames.get(c, c) for c in changed])
        do_audit(principal, "commerce.live.update", "LiveSession", live.pk, data={"fields": changed})
    return live


__all__ = [
    "check_update_coupon_template", "check_update_flash_sale", "check_update_group_buy",
    "check_update_live_session", "check_update_product", "check_update_sku", "do_update_coupon_template",
    "do_update_flash_sale", "do_update_group_buy", "do_update_live_session", "do_update_product", "do_update_sku",
    "merge",
]
