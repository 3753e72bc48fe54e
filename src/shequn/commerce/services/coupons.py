"""Coupons: templates, issuing (the issue count by conditional UPDATE, never above the total),
claiming, share (buy-one-give-one) coupons, and the referrals fission reward.

Locking: the template row while a member's count is checked; a share link is claimed once by a
conditional UPDATE on the coupon's status."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Conflict, Invalid, NotFound, ShequnError
from shequn.core.permissions import Principal
from shequn.core.services import do_audit

from ..models import Coupon, CouponTemplate, Order, OrderLine, Product
from ._common import _member, _positive_int, _token
from .pricing import _has_paid_before

log = logging.getLogger(__name__)


def check_coupon_template(
    tenant_id: int, *, name: str, kind: str, valid_from: dt.datetime, valid_until: dt.datetime,
    amount_fen: int = 0, percent_off: int = 0, threshold_fen: int = 0, per_member_limit: int = 1,
    total_quantity: int | None = None, stackable: bool = False, is_share: bool = False,
    new_customers_only: bool = False, product_id: int | None = None,
) -> None:
    """Every rule of :func:`do_create_coupon_template`, without writing."""
    if not name or not name.strip() or len(name) > 120:
        raise Invalid(_("请填写名称 (最多 120 个字符)"), details={"field": "name"})
    if kind not in CouponTemplate.Kind.values:
        raise Invalid(_("未知的优惠券类型: %(k)s") % {"k": kind}, details={"field": "kind"})
    if valid_until <= valid_from:
        raise Invalid(_("失效时间必须晚于生效时间"), details={"field": "valid_until"})
    if kind in (CouponTemplate.Kind.FIXED, CouponTemplate.Kind.THRESHOLD):
        _positive_int(amount_fen, "amount_fen")
    if kind == CouponTemplate.Kind.THRESHOLD:
        _positive_int(threshold_fen, "threshold_fen")
        if amount_fen >= threshold_fen:
            raise Invalid(_("满减的减免金额必须小于门槛"), details={"field": "amount_fen"})
    if kind == CouponTemplate.Kind.PERCENT and not (isinstance(percent_off, int) and 0 < percent_off < 100):
        raise Invalid(_("折扣必须在 1 到 99 之间"), details={"field": "percent_off"})
    _positive_int(per_member_limit, "per_member_limit")
    if total_quantity is not None:
        _positive_int(total_quantity, "total_quantity")
    if product_id is not None and not Product.objects.filter(tenant_id=tenant_id, pk=product_id).exists():
        raise NotFound(_("商品不存在"), details={"field": "product_id"})


@transaction.atomic
def do_create_coupon_template(
    principal: Principal, *, name: str, kind: str, valid_from: dt.datetime, valid_until: dt.datetime,
    amount_fen: int = 0, percent_off: int = 0, threshold_fen: int = 0, per_member_limit: int = 1,
    total_quantity: int | None = None, stackable: bool = False, is_share: bool = False,
    new_customers_only: bool = False, product_id: int | None = None,
) -> CouponTemplate:
    check_coupon_template(principal.tenant_id, name=name, kind=kind, valid_from=valid_from, valid_until=valid_until,
                          amount_fen=amount_fen, percent_off=percent_off, threshold_fen=threshold_fen,
                          per_member_limit=per_member_limit, total_quantity=total_quantity, stackable=stackable,
                          is_share=is_share, new_customers_only=new_customers_only, product_id=product_id)
    t = CouponTemplate.objects.create(
        tenant_id=principal.tenant_id, name=name.strip(), kind=kind, amount_fen=amount_fen, percent_off=percent_off,
        threshold_fen=threshold_fen, valid_from=valid_from, valid_until=valid_until,
        per_member_limit=per_member_limit, total_quantity=total_quantity, stackable=stackable, is_share=is_share,
        new_customers_only=new_customers_only, product_id=product_id,
    )
    do_audit(principal, "commerce.coupon_template.create", "CouponTemplate", t.pk, data={"kind": kind})
    return t


@transaction.atomic
def do_end_coupon_template(principal: Principal, template_id: int, *, now: dt.datetime | None = None) -> CouponTemplate:
    """Stop issuing a template now (coupons already claimed stay usable until their own end)."""
    now = now or timezone.now()
    t = CouponTemplate.objects.select_for_update().filter(tenant_id=principal.tenant_id, pk=template_id).first()
    if t is None:
        raise NotFound(_("优惠券模板不存在"), details={"field": "template_id"})
    if t.valid_until > now:
        t.valid_until = max(now, t.valid_from)
        t.save(update_fields=["valid_until"])
        do_audit(principal, "commerce.coupon_template.end", "CouponTemplate", t.pk)
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
