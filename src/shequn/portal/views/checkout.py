"""Tiers and checkout: create the order, pay it, my orders and refund requests."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from shequn.commerce import selectors as commerce_selectors
from shequn.commerce.models import Order, OrderStatus, TierGrant
from shequn.commerce.services import (
    REFUNDABLE,
    do_create_order,
    do_request_refund,
    do_sandbox_pay,
    do_start_payment,
)
from shequn.communities import selectors as community_selectors
from shequn.core.errors import NotFound, ShequnError
from shequn.core.models import Tenant
from shequn.members.models import Member
from shequn.referrals import selectors as referral_selectors

from .. import auth
from ..auth import member_page
from ._common import (
    _err,
    _own_order,
    _principal,
    join_ways,
)

# --- checkout --------------------------------------------------------------------------------------


@require_POST
@member_page
def buy(request: HttpRequest, tenant: Tenant, member: Member, sku_id: int) -> HttpResponse:
    """Create the order (priced on the server) with the attribution of the link that brought the
    member, then go to its page to pay."""
    token = request.POST.get("token", "")[:64] or secrets.token_urlsafe(12)
    attribution: dict[str, Any] = {}
    code = auth.ref_code(request)
    if code:
        try:
            link = referral_selectors.link_get(tenant.pk, code)
            attribution = {"invite_code": code}
            if link.community_id:
                attribution["community_id"] = link.community_id
        except NotFound:
            pass
    try:
        order = do_create_order(_principal(member), member_id=member.pk, lines=[{"sku_id": sku_id, "quantity": 1}],
                                attribution=attribution, idempotency_key=f"portal:{token}")
    except ShequnError as exc:
        _err(request, exc)
        return HttpResponseRedirect(request.META.get("HTTP_REFERER") or reverse("portal:home", args=[tenant.slug]))
    return HttpResponseRedirect(reverse("portal:order", args=[tenant.slug, order.pk]))


@require_POST
@member_page
def pay(request: HttpRequest, tenant: Tenant, member: Member, order_id: int) -> HttpResponse:
    """Pay the order. The sandbox payer pays at once (its signed notification goes through the same
    handler as a real provider's); WeChat Pay answers with what the phone needs (JSAPI / H5)."""
    order = _own_order(tenant, member, order_id)
    try:
        payment = do_start_payment(_principal(member), order.pk, channel="h5", client_ip=auth.client_ip(request) or "",
                                   idempotency_key=f"portal-pay:{order.pk}")
        if payment.provider == "sandbox":
            do_sandbox_pay(payment.out_trade_no)
            messages.success(request, _("支付成功"))
        else:
            messages.info(request, _("请在微信中完成支付"))
    except ShequnError as exc:
        _err(request, exc)
    return HttpResponseRedirect(reverse("portal:order", args=[tenant.slug, order.pk]))


def _refund_days(tenant: Tenant) -> int:
    return int(((tenant.settings or {}).get("portal") or {}).get("refund_days", 7))


def _refundable(tenant: Tenant, order: Order) -> bool:
    if order.status not in REFUNDABLE or order.status == OrderStatus.REFUND_REQUESTED:
        return False
    if order.paid_at is None or order.paid_fen - order.refunded_fen <= 0:
        return False
    return timezone.now() - order.paid_at <= dt.timedelta(days=_refund_days(tenant))


@member_page
def orders(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    rows = commerce_selectors.orders(tenant.pk, member_id=member.pk).prefetch_related("lines").order_by("-pk")[:100]
    return render(request, "portal/orders.html", {"tenant": tenant, "member": member, "orders": rows})


@member_page
def order_detail(request: HttpRequest, tenant: Tenant, member: Member, order_id: int) -> HttpResponse:
    order = _own_order(tenant, member, order_id)
    grants = list(TierGrant.objects.filter(order=order).select_related("community", "product"))
    ways: list[dict[str, Any]] = []
    for g in grants:
        if g.status == TierGrant.Status.ACTIVE:
            ways += join_ways(tenant.pk, list(community_selectors.groups(tenant.pk, g.community_id)
                                              .filter(is_active=True)))
    return render(request, "portal/order.html", {
        "tenant": tenant, "member": member, "order": order, "lines": list(order.lines.all()), "grants": grants,
        "ways": ways, "refundable": _refundable(tenant, order), "refund_days": _refund_days(tenant),
        "refunds": list(order.refunds.order_by("pk")),
        "token": secrets.token_urlsafe(12),
    })


@require_POST
@member_page
def refund(request: HttpRequest, tenant: Tenant, member: Member, order_id: int) -> HttpResponse:
    order = _own_order(tenant, member, order_id)
    if not _refundable(tenant, order):
        messages.error(request, _("该订单已超出 %(d)d 天退款期限或不可退款") % {"d": _refund_days(tenant)})
    else:
        try:
            do_request_refund(_principal(member), order.pk, amount_fen=order.paid_fen - order.refunded_fen,
                              idempotency_key=f"portal-refund:{order.pk}:{request.POST.get('token', '')[:40]}",
                              reason=request.POST.get("reason", "")[:200] or _("会员申请退款"))
            messages.success(request, _("退款申请已提交"))
        except ShequnError as exc:
            _err(request, exc)
    return HttpResponseRedirect(reverse("portal:order", args=[tenant.slug, order.pk]))


