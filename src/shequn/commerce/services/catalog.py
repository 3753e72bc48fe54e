"""Catalog: products (goods and paid tiers) with their SKUs, 会员价, stock adjustments.

Stock moves only by one conditional UPDATE (``stock + delta >= 0``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils.translation import gettext as _

from shequn.communities.models import Community
from shequn.core.errors import Conflict, Invalid, NotFound
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import MemberPrice, Product, ProductKind, Sku
from ._common import _positive_int

#: the privileges a paid tier may carry, with their types (the console's and the API's fields)
TIER_PRIVILEGES: dict[str, type] = {
    "courses": str, "free_courses": bool, "may_create_groups": bool, "member_price": bool,
}


def check_tier_privileges(privileges: Mapping[str, Any] | None) -> dict[str, Any]:
    """Known keys with values of their type; an unknown key or a wrong type names the field."""
    out: dict[str, Any] = {}
    for key, value in (privileges or {}).items():
        kind = TIER_PRIVILEGES.get(key)
        if kind is None:
            raise Invalid(_("未知的等级权益: %(k)s") % {"k": key}, details={"field": f"tier_privileges.{key}"})
        if not isinstance(value, kind) or (isinstance(value, str) and len(value) > 64):
            raise Invalid(_("等级权益 %(k)s 的取值无效") % {"k": key}, details={"field": f"tier_privileges.{key}"})
        out[key] = value
    return out


def check_product_fields(
    tenant_id: int,
    *,
    name: str,
    kind: str = ProductKind.GOODS,
    description: str = "",
    images: Sequence[str] = (),
    visible_in: Sequence[int] = (),
    tier_community_id: int | None = None,
    tier_code: str = "",
    tier_rank: int = 0,
    tier_privileges: Mapping[str, Any] | None = None,
    tier_duration_days: int | None = None,
) -> None:
    """The product's own fields (everything but its SKUs): creation and changes."""
    if not name or not name.strip():
        raise Invalid(_("商品名称不能为空"), details={"field": "name"})
    if len(name.strip()) > 200:
        raise Invalid(_("商品名称最多 200 个字符"), details={"field": "name"})
    if kind not in ProductKind.values:
        raise Invalid(_("未知的商品类型: %(k)s") % {"k": kind}, details={"field": "kind"})
    if kind == ProductKind.TIER:
        if tier_community_id is None or not Community.objects.filter(tenant_id=tenant_id,
                                                                      pk=tier_community_id).exists():
            raise Invalid(_("付费等级必须指定开通的社群"), details={"field": "tier_community_id"})
        if not tier_code.strip():
            raise Invalid(_("付费等级必须填写等级代码"), details={"field": "tier_code"})
        if tier_duration_days is not None:
            _positive_int(tier_duration_days, "tier_duration_days")
        check_tier_privileges(tier_privileges)
    if len(set(visible_in)) != Community.objects.filter(tenant_id=tenant_id, pk__in=list(visible_in)).count():
        raise NotFound(_("可见社群不存在"), details={"field": "visible_in"})


def check_sku(tenant_id: int, *, code: str, price_fen: Any, field_prefix: str = "", sku_id: int | None = None,
              stock: Any = 0) -> None:
    """One SKU: a code unique in the tenant (``sku_id``: the SKU being changed), a positive price."""
    code = str(code or "").strip()
    if not code:
        raise Invalid(_("SKU 编码不能为空"), details={"field": f"{field_prefix}code"})
    _positive_int(price_fen, f"{field_prefix}price_fen")
    _positive_int(stock, f"{field_prefix}stock", allow_zero=True)
    others = Sku.objects.filter(tenant_id=tenant_id, code=code)
    if (others.exclude(pk=sku_id) if sku_id is not None else others).exists():
        raise Conflict(_("SKU 编码已存在: %(c)s") % {"c": code}, details={"field": f"{field_prefix}code"})


def check_product(
    tenant_id: int,
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
) -> None:
    """Every rule of :func:`do_create_product`, without writing."""
    check_product_fields(tenant_id, name=name, kind=kind, description=description, images=images,
                         visible_in=visible_in, tier_community_id=tier_community_id, tier_code=tier_code,
                         tier_rank=tier_rank, tier_privileges=tier_privileges, tier_duration_days=tier_duration_days)
    if not skus:
        raise Invalid(_("至少需要一个 SKU"), details={"field": "skus"})
    codes: set[str] = set()
    for i, s in enumerate(skus):
        code = str(s.get("code") or "").strip()
        if not code or code in codes:
            raise Invalid(_("第 %(i)d 个 SKU 编码为空或重复") % {"i": i + 1}, details={"field": f"skus[{i}].code"})
        codes.add(code)
        check_sku(tenant_id, code=code, price_fen=s.get("price_fen"), stock=s.get("stock", 0),
                  field_prefix=f"skus[{i}].")


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
    """Create a product (a good, or a paid tier with its privileges) with its SKUs (code, name,
    price_fen, stock). All rules are :func:`check_product`'s."""
    tid = principal.tenant_id
    check_product(tid, name=name, skus=skus, kind=kind, description=description, images=images,
                  visible_in=visible_in, tier_community_id=tier_community_id, tier_code=tier_code,
                  tier_rank=tier_rank, tier_privileges=tier_privileges, tier_duration_days=tier_duration_days)
    communities = list(Community.objects.filter(tenant_id=tid, pk__in=list(visible_in)))
    is_tier = kind == ProductKind.TIER
    product = Product.objects.create(
        tenant_id=tid, name=name.strip(), kind=kind, description=description, images=list(images),
        tier_community_id=tier_community_id if is_tier else None, tier_code=tier_code.strip() if is_tier else "",
        tier_rank=tier_rank if is_tier else 0,
        tier_privileges=check_tier_privileges(tier_privileges) if is_tier else {},
        tier_duration_days=tier_duration_days if is_tier else None,
    )
    product.visible_in.set(communities)
    for s in skus:
        Sku.objects.create(tenant_id=tid, product=product, code=str(s["code"]).strip(),
                           name=str(s.get("name") or "")[:120], price_fen=int(s["price_fen"]),
                           stock=int(s.get("stock", 0)))
    do_audit(principal, "commerce.product.create", "Product", product.pk, data={"name": product.name, "kind": kind})
    return product


@transaction.atomic
def do_add_sku(principal: Principal, product_id: int, *, code: str, price_fen: int, name: str = "",
               stock: int = 0) -> Sku:
    product = Product.objects.filter(tenant_id=principal.tenant_id, pk=product_id).first()
    if product is None:
        raise NotFound(_("商品不存在"), details={"field": "product_id"})
    check_sku(principal.tenant_id, code=code, price_fen=price_fen, stock=stock)
    code = (code or "").strip()
    sku = Sku.objects.create(tenant_id=principal.tenant_id, product=product, code=code, name=name[:120],
                             price_fen=price_fen, stock=stock)
    do_audit(principal, "commerce.sku.create", "Sku", sku.pk, data={"price_fen": price_fen})
    return sku


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
