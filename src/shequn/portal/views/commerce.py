"""Flash sales, group buys and coupons."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from shequn.commerce import selectors as commerce_selectors
from shequn.commerce.models import Coupon, GroupBuyParticipant, OrderStatus
from shequn.commerce.services import (
    SoldOut,
    do_claim_share_coupon,
    do_flash_buy,
    do_join_team,
    do_start_team,
)
from shequn.core.errors import NotFound, ShequnError
from shequn.core.models import Tenant
from shequn.members.models import Member
from shequn.referrals.selectors import public_base_url

from ..auth import member_page
from ._common import (
    _err,
    _principal,
)

# --- flash sales -----------------------------------------------------------------------------------


def _flash_or_404(tenant: Tenant, flash_id: int) -> Any:
    try:
        return commerce_selectors.flash_sale(tenant.pk, flash_id)
    except NotFound as exc:
        raise Http404 from exc


@member_page
def flash_list(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    sales = list(commerce_selectors.active_flash_sales(tenant.pk).select_related("sku__product"))
    return render(request, "portal/flash_list.html", {"tenant": tenant, "member": member, "sales": sales})


@member_page
def flash_detail(request: HttpRequest, tenant: Tenant, member: Member, flash_id: int) -> HttpResponse:
    fs = _flash_or_404(tenant, flash_id)
    mine = commerce_selectors.orders(tenant.pk, member_id=member.pk).filter(flash_sale_id=fs.pk).order_by("-pk").first()
    ctx = {"tenant": tenant, "member": member, "fs": fs, "now": timezone.now(), "mine": mine}
    if request.headers.get("HX-Request") and request.GET.get("part") == "stock":
        return render(request, "portal/_flash_stock.html", ctx)
    return render(request, "portal/flash.html", ctx)


@require_POST
@member_page
def flash_buy(request: HttpRequest, tenant: Tenant, member: Member, flash_id: int) -> HttpResponse:
    """One unit at the flash price through the same service as the API (never oversells); sold out,
    over the limit, not started and ended come back as clear messages."""
    fs = _flash_or_404(tenant, flash_id)
    back = reverse("portal:flash", args=[tenant.slug, fs.pk])
    try:
        res = do_flash_buy(_principal(member), fs.pk, member_id=member.pk, quantity=1)
    except SoldOut:
        messages.error(request, _("已售罄, 下次早点来"))
        return HttpResponseRedirect(back)
    except ShequnError as exc:
        _err(request, exc)
        return HttpResponseRedirect(back)
    if res.order is None:  # the Redis gate took it; the worker writes the order in a moment
        messages.success(request, _("抢到了! 订单生成中, 稍后在“我的订单”中支付"))
        return HttpResponseRedirect(back)
    messages.success(request, _("抢到了! 请在时限内支付"))
    return HttpResponseRedirect(reverse("portal:order", args=[tenant.slug, res.order.pk]))


# --- group buys ------------------------------------------------------------------------------------


@member_page
def group_buy(request: HttpRequest, tenant: Tenant, member: Member, group_buy_id: int) -> HttpResponse:
    """A group buy: start a team (开团), or see my open teams."""
    gb = commerce_selectors.group_buys(tenant.pk).filter(pk=group_buy_id).select_related("sku").first()
    if gb is None:
        raise Http404
    if request.method == "POST":
        try:
            new_team, _order = do_start_team(_principal(member), gb.pk, member_id=member.pk)
        except ShequnError as exc:
            _err(request, exc)
            return HttpResponseRedirect(reverse("portal:group_buy", args=[tenant.slug, gb.pk]))
        return HttpResponseRedirect(reverse("portal:team", args=[tenant.slug, new_team.share_token]))
    mine = GroupBuyParticipant.objects.filter(member=member, team__group_buy=gb).select_related("team")
    return render(request, "portal/group_buy.html", {"tenant": tenant, "member": member, "gb": gb,
                                                     "teams": [p.team for p in mine]})


@member_page
def team(request: HttpRequest, tenant: Tenant, member: Member, token: str) -> HttpResponse:
    """The team page everyone with the share link sees: seats, deadline, the auto-refund promise; join."""
    try:
        t = commerce_selectors.team_by_token(tenant.pk, token)
    except NotFound as exc:
        raise Http404 from exc
    if request.method == "POST":
        try:
            order = do_join_team(_principal(member), token, member_id=member.pk)
        except ShequnError as exc:
            _err(request, exc)
            return HttpResponseRedirect(reverse("portal:team", args=[tenant.slug, token]))
        return HttpResponseRedirect(reverse("portal:order", args=[tenant.slug, order.pk]))
    parts = list(GroupBuyParticipant.objects.filter(team=t).select_related("member", "order").order_by("pk"))
    me = next((p for p in parts if p.member_id == member.pk), None)

    return render(request, "portal/team.html", {
        "tenant": tenant, "member": member, "t": t, "gb": t.group_buy,
        "seats": [{"name": p.member.display_name, "paid": p.order.paid_at is not None, "leader": p.is_leader}
                  for p in parts if p.order.status != OrderStatus.CANCELLED],
        "me": me, "now": timezone.now(),
        "share_url": public_base_url() + reverse("portal:team", args=[tenant.slug, token]),
    })


# --- coupons ---------------------------------------------------------------------------------------


@member_page
def coupons(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    """My coupons, and the buy-one-give-one coupons I can give: each has a share link a friend opens."""

    mine = list(commerce_selectors.member_coupons(tenant.pk, member.pk).exclude(status=Coupon.Status.UNCLAIMED)
                .order_by("-pk")[:100])
    to_give = list(Coupon.objects.filter(tenant_id=tenant.pk, giver_id=member.pk, status=Coupon.Status.UNCLAIMED)
                   .select_related("template").order_by("-pk")[:50])
    base = public_base_url()
    gifts = [{"coupon": c, "url": base + reverse("portal:share_coupon", args=[tenant.slug, c.share_token])}
             for c in to_give if c.share_token]
    return render(request, "portal/coupons.html", {"tenant": tenant, "member": member, "mine": mine,
                                                   "gifts": gifts})


@member_page
def share_coupon(request: HttpRequest, tenant: Tenant, member: Member, token: str) -> HttpResponse:
    c = Coupon.objects.filter(tenant_id=tenant.pk, share_token=token).select_related("template", "giver").first()
    if c is None:
        raise Http404
    if request.method == "POST":
        try:
            do_claim_share_coupon(_principal(member), token, member_id=member.pk)
            messages.success(request, _("领取成功, 已放入我的优惠券"))
            return HttpResponseRedirect(reverse("portal:coupons", args=[tenant.slug]))
        except ShequnError as exc:
            _err(request, exc)
    return render(request, "portal/share_coupon.html", {"tenant": tenant, "member": member, "c": c})
