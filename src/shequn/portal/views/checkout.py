"""Tiers and checkout: create the order, pay it, my orders and refund requests."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from shequn.commerce import selectors as commerce_selectors
from shequn.commerce.models import Order, OrderStatus, Payment, TierGrant
from shequn.commerce.services import (
    REFUNDABLE,
    do_create_order,
    do_request_refund,
    do_sandbox_pay,
    do_start_payment,
)
from shequn.core.errors import NotFound, ShequnError
from shequn.core.models import Tenant
from shequn.members.models import Member
from shequn.referrals import selectors as referral_selectors
from shequn.referrals.selectors import public_base_url

from .. import auth, services
from ..auth import member_page
from ._common import (
    _err,
    _own_order,
    _principal,
    _ref_link,
    active_groups,
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


def _provider(tenant: Tenant) -> str:
    return str(((tenant.settings or {}).get("payments") or {}).get("provider") or "sandbox")


@require_POST
@member_page
def pay(request: HttpRequest, tenant: Tenant, member: Member, order_id: int) -> HttpResponse:
    """Pay the order through the tenant's payment gateway.

    * sandbox (the demo): the simulated payer pays at once; its signed notification goes through the
      same handler as a real provider's;
    * WeChat Pay inside WeChat (user agent ``MicroMessenger``): JSAPI with the member's openid from
      WeChat sign-in (a member without one goes through WeChat OAuth first, which binds the openid to
      them); the page hands the signed prepay parameters to ``WeixinJSBridge``;
    * WeChat Pay in any other browser: H5, off to WeChat's cashier, which comes back to the order.

    The order is paid when the provider's notification arrives (``SHEQUN_PUBLIC_BASE_URL`` + the
    callback path); the order page shows it."""
    order = _own_order(tenant, member, order_id)
    back = reverse("portal:order", args=[tenant.slug, order.pk])
    provider = _provider(tenant)
    try:
        if provider != "wechatpay":
            payment = do_start_payment(_principal(member), order.pk, channel="h5",
                                       client_ip=auth.client_ip(request) or "",
                                       idempotency_key=f"portal-pay:{order.pk}")
            if payment.provider == "sandbox":
                do_sandbox_pay(payment.out_trade_no)
                messages.success(request, _("支付成功"))
            return HttpResponseRedirect(back)
        if auth.in_wechat(request):
            openid = services.wechat_openid(member)
            if not openid:
                if not services.wechat_configured(tenant):
                    messages.error(request, _("未配置微信登录, 无法在微信内支付"))
                    return HttpResponseRedirect(back)
                return HttpResponseRedirect(reverse("portal:wechat", args=[tenant.slug]) + "?"
                                            + urlencode({"next": back}))
            payment = do_start_payment(_principal(member), order.pk, channel="jsapi", payer_openid=openid,
                                       client_ip=auth.client_ip(request) or "",
                                       idempotency_key=f"portal-pay:{order.pk}:jsapi:{openid}"[:64])
            bridge = {k: payment.prepay.get(k, "") for k in ("appId", "timeStamp", "nonceStr", "package", "signType",
                                                             "paySign")}
            return render(request, "portal/pay_wechat.html", {"tenant": tenant, "member": member, "order": order,
                                                              "bridge": bridge, "back": back})
        payment = do_start_payment(_principal(member), order.pk, channel="h5", client_ip=auth.client_ip(request) or "",
                                   idempotency_key=f"portal-pay:{order.pk}:h5")
        h5_url = str(payment.prepay.get("h5_url") or "")
        if not h5_url.startswith("https://"):
            messages.error(request, _("微信支付暂不可用, 请稍后再试"))
            return HttpResponseRedirect(back)
        # WeChat's cashier returns to redirect_url when the payer is done (or gives up)
        sep = "&" if "?" in h5_url else "?"
        return HttpResponseRedirect(h5_url + sep + urlencode({"redirect_url": public_base_url() + back}))
    except ShequnError as exc:
        _err(request, exc)
    return HttpResponseRedirect(back)


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
    ref = _ref_link(request, tenant) if any(g.status == TierGrant.Status.ACTIVE for g in grants) else None
    for g in grants:
        if g.status == TierGrant.Status.ACTIVE:
            ways += join_ways(tenant.pk, active_groups(tenant.pk, g.community_id), ref)
    return render(request, "portal/order.html", {
        "tenant": tenant, "member": member, "order": order, "lines": list(order.lines.all()), "grants": grants,
        "ways": ways, "refundable": _refundable(tenant, order), "refund_days": _refund_days(tenant),
        "refunds": list(order.refunds.order_by("pk")),
        "awaiting_wechat": order.status == OrderStatus.CREATED
        and order.payments.filter(provider="wechatpay", status=Payment.Status.PENDING).exists(),
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


