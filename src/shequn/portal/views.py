"""Members' own pages (server-rendered, mobile first). Every write goes through the same services as
the API and the console, acting as the signed-in member on their own id; every read is scoped to the
member, so another member's id answers 404."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from shequn.commerce import selectors as commerce_selectors
from shequn.commerce.models import Coupon, GroupBuyParticipant, Order, OrderStatus, Product, ProductKind, TierGrant
from shequn.commerce.services import (
    REFUNDABLE,
    SoldOut,
    do_claim_share_coupon,
    do_create_order,
    do_flash_buy,
    do_join_team,
    do_request_refund,
    do_sandbox_pay,
    do_start_payment,
    do_start_team,
)
from shequn.communities import selectors as community_selectors
from shequn.communities.models import ChatGroup, Community, CommunityRole
from shequn.connectors.models import QrConfig
from shequn.core.errors import NotFound, ShequnError
from shequn.core.models import Platform, Tenant
from shequn.engagement import selectors as engagement_selectors
from shequn.engagement.models import LotteryEntry, RedPacketClaim
from shequn.engagement.services import do_check_in, do_claim_red_packet, do_enter_lottery
from shequn.members.models import Member
from shequn.referrals import selectors as referral_selectors
from shequn.referrals.models import (
    BuyerStat,
    CommissionState,
    InviteLink,
    LinkKind,
    ReferralBinding,
    Withdrawal,
    WithdrawalStatus,
)
from shequn.referrals.posters import poster_png, qr_png
from shequn.referrals.services import do_get_or_create_link, do_record_click, do_request_withdrawal, get_policy

from . import auth, services
from .auth import member_page
from .models import JoinRequest, JoinWay, MemberSession

# --- helpers ---------------------------------------------------------------------------------------


def _principal(member: Member) -> Any:
    return services.member_principal(member)


def _next_url(request: HttpRequest, tenant: Tenant) -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if nxt and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}):
        return nxt
    return reverse("portal:home", args=[tenant.slug])


def _has_access(tenant_id: int, member: Member | None, community: Community) -> bool:
    if member is None:
        return False
    return community_selectors.memberships(tenant_id, community_id=community.pk, member_id=member.pk,
                                           current=True).exists()


def _member_count(tenant_id: int, community: Community) -> int:
    return (community_selectors.memberships(tenant_id, community_id=community.pk, current=True)
            .values("member_id").distinct().count())


def _owner_name(tenant_id: int, community: Community) -> str:
    row = (community_selectors.roles(tenant_id, community_id=community.pk).filter(role=CommunityRole.OWNER)
           .select_related("member").order_by("since").first())
    return row.member.display_name if row else ""


PRIVILEGES = {
    "courses": gettext_lazy("课程"), "free_courses": gettext_lazy("全部课程免费"),
    "may_create_groups": gettext_lazy("可自建群"), "member_price": gettext_lazy("会员价购物"),
}


def _tiers(tenant_id: int, community: Community) -> list[Product]:
    tiers = list(commerce_selectors.products(tenant_id).filter(kind=ProductKind.TIER, tier_community_id=community.pk)
                 .order_by("tier_rank", "pk"))
    for p in tiers:  # privileges in words: only those granted, known keys translated
        p.privilege_list = [  # type: ignore[attr-defined]
            str(PRIVILEGES.get(k, k)) + ("" if v is True else f": {v}") for k, v in (p.tier_privileges or {}).items()
            if v not in (False, None, "")]
    return tiers


def _active_tiers(tenant_id: int, member: Member) -> QuerySet[TierGrant]:
    now = timezone.now()
    return (commerce_selectors.tier_history(tenant_id, member.pk)
            .filter(status=TierGrant.Status.ACTIVE, starts_at__lte=now).select_related("product", "community"))


def _matrix_link(external_id: str) -> str:
    return f"https://matrix.to/#/{external_id}" if external_id[:1] in "!#" else ""


def join_ways(tenant_id: int, groups: list[ChatGroup]) -> list[dict[str, Any]]:
    """Per group, how to enter it on its platform: an operator-set join way first, then what the
    platform gives without one (Matrix room link, a WeCom 加入群聊 QR that includes the group)."""
    custom = {w.group_id: w for w in JoinWay.objects.filter(tenant_id=tenant_id, group__in=groups)}
    wecom_ids = [g.external_id for g in groups if g.platform == Platform.WECOM]
    qr_for: dict[str, str] = {}
    if wecom_ids:
        for qr in QrConfig.objects.filter(tenant_id=tenant_id, kind=QrConfig.Kind.JOIN_WAY).exclude(qr_code=""):
            for chat_id in qr.chat_ids or []:
                qr_for.setdefault(str(chat_id), qr.qr_code)
    out = []
    for g in groups:
        way = custom.get(g.pk)
        url = way.url if way else ""
        qr_image = way.qr_image_url if way else ""
        if not url and g.platform == Platform.MATRIX:
            url = _matrix_link(g.external_id)
        if not qr_image and g.platform == Platform.WECOM:
            qr_image = qr_for.get(g.external_id, "")
        out.append({"group": g, "platform": g.get_platform_display(), "url": url, "qr_image": qr_image,
                    "note": way.note if way else ""})
    return out


def _community_context(tenant: Tenant, member: Member | None, community: Community,
                       group: ChatGroup | None = None) -> dict[str, Any]:
    access = _has_access(tenant.pk, member, community)
    threshold = community.entry_threshold
    groups = [group] if group is not None else list(
        community_selectors.groups(tenant.pk, community.pk).filter(is_active=True))
    ways = join_ways(tenant.pk, groups) if (access or threshold == Community.EntryThreshold.FREE) else []
    pending = None
    if member is not None and threshold == Community.EntryThreshold.APPROVAL:
        pending = JoinRequest.objects.filter(member=member, community=community).order_by("-pk").first()
    return {
        "community": community, "member_count": _member_count(tenant.pk, community),
        "owner_name": _owner_name(tenant.pk, community), "tiers": _tiers(tenant.pk, community),
        "access": access, "ways": ways, "threshold": threshold, "join_request": pending,
        "token": secrets.token_urlsafe(12),
    }


def _err(request: HttpRequest, exc: ShequnError) -> None:
    messages.error(request, exc.message)


def _own_order(tenant: Tenant, member: Member, order_id: int) -> Order:
    order = commerce_selectors.orders(tenant.pk, member_id=member.pk).filter(pk=order_id).first()
    if order is None:
        raise Http404
    return order


def _yuan_to_fen(raw: str) -> int | None:
    try:
        value = Decimal(str(raw).strip().replace("¥", "").replace(",", ""))
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0:
        return None
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _default_community(tenant: Tenant, member: Member) -> Community | None:
    grant = _active_tiers(tenant.pk, member).order_by("-pk").first()
    if grant is not None:
        return grant.community
    ms = (community_selectors.memberships(tenant.pk, member_id=member.pk, current=True)
          .select_related("community").order_by("pk").first())
    if ms is not None:
        return ms.community
    return community_selectors.communities(tenant.pk).first()


# --- landing ---------------------------------------------------------------------------------------


def landing(request: HttpRequest, code: str) -> HttpResponse:
    """``/r/<code>``: an invite link, channel code or group live code. Records the click (with the
    signed-in member, which binds the referrer as the API's click does), remembers the code for the
    order's attribution, and shows the community, its threshold and the ways in."""
    link = InviteLink.objects.filter(code=code, is_active=True).select_related("community", "member").first()
    if link is None:
        raise Http404
    tenant = Tenant.objects.get(pk=link.tenant_id)
    member = auth.current_member(request, tenant)
    try:
        res = do_record_click(code, member_id=member.pk if member else None, ip=auth.client_ip(request),
                              device_id=auth.device_id(request))
    except NotFound as exc:
        raise Http404 from exc
    community = link.community
    if community is None:
        community = community_selectors.communities(tenant.pk).first()
    ctx: dict[str, Any] = {"tenant": tenant, "member": member, "link": link,
                           "referrer": link.member.display_name if link.member and link.kind == LinkKind.MEMBER
                           else "", "group_full": link.kind == LinkKind.GROUP_LIVE and res.group is None}
    if community is not None:
        ctx.update(_community_context(tenant, member, community, group=res.group))
    response = render(request, "portal/landing.html", ctx)
    auth.remember_ref(request, response, code)
    auth.ensure_device(request, response)
    return response


# --- sign-in ---------------------------------------------------------------------------------------


def login(request: HttpRequest, slug: str) -> HttpResponse:
    """Phone + one-time code. Step 1 sends the code (same answer for any number); step 2 checks it.
    With htmx the code step is swapped in place; without JavaScript the page reloads."""
    tenant = auth.tenant_or_404(slug)
    nxt = _next_url(request, tenant)
    ctx: dict[str, Any] = {"tenant": tenant, "next": nxt, "step": "phone", "phone": "", "error": "",
                           "wechat": services.wechat_configured(tenant)
                           and "MicroMessenger" in request.headers.get("User-Agent", "")}
    if request.method == "POST":
        action = request.POST.get("action", "send")
        phone = request.POST.get("phone", "").strip()[:32]
        ctx["phone"] = phone
        if action == "send":
            try:
                services.do_send_code(tenant, phone, ip=auth.client_ip(request))
                ctx["step"] = "code"
                ctx["sent"] = True
            except services.RateLimited as exc:
                ctx["step"] = "code" if "code" in request.POST else "phone"  # a resend stays on the code step
                ctx["error"] = exc.message
            except ShequnError as exc:
                ctx["error"] = exc.message
        else:
            ctx["step"] = "code"
            try:
                member = services.do_verify_code(tenant, phone, request.POST.get("code", ""),
                                                 ip=auth.client_ip(request))
            except ShequnError as exc:
                ctx["error"] = exc.message
            else:
                return _signed_in(request, tenant, member, "sms", nxt)
        if request.headers.get("HX-Request"):
            return render(request, "portal/_login_step.html", ctx)
    return render(request, "portal/login.html", ctx)


def _signed_in(request: HttpRequest, tenant: Tenant, member: Member, method: str, nxt: str) -> HttpResponse:
    response: HttpResponse
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = nxt
    else:
        response = HttpResponseRedirect(nxt)
    auth.sign_in(request, response, member, method)
    code = auth.ref_code(request)
    if code:  # the link that brought them: now a known member, so the click binds the referrer
        try:
            if referral_selectors.link_get(tenant.pk, code):
                do_record_click(code, member_id=member.pk, ip=auth.client_ip(request),
                                device_id=auth.device_id(request))
        except ShequnError:
            pass
    return response


def magic(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    """A signed one-time link from a bot or an operator. GET only shows a button (link previews in
    chat apps fetch URLs and must not use the link up); POST signs in."""
    tenant = auth.tenant_or_404(slug)
    if request.method == "POST":
        try:
            member = services.do_use_magic_token(tenant, token)
        except ShequnError as exc:
            return render(request, "portal/magic.html", {"tenant": tenant, "error": exc.message}, status=400)
        return _signed_in(request, tenant, member, MemberSession.Method.MAGIC,
                          reverse("portal:home", args=[tenant.slug]))
    return render(request, "portal/magic.html", {"tenant": tenant, "token": token})


WECHAT_STATE_SALT = "shequn.portal.wechat-state"


def wechat_start(request: HttpRequest, slug: str) -> HttpResponse:
    """Inside WeChat: off to WeChat's authorize page; ``state`` carries the signed return address."""
    from django.core import signing

    tenant = auth.tenant_or_404(slug)
    state = signing.dumps(_next_url(request, tenant), salt=WECHAT_STATE_SALT, compress=True)
    callback = request.build_absolute_uri(reverse("portal:wechat_callback", args=[tenant.slug]))
    try:
        return HttpResponseRedirect(services.wechat_authorize_url(tenant, callback, state))
    except ShequnError as exc:
        _err(request, exc)
        return HttpResponseRedirect(reverse("portal:login", args=[tenant.slug]))


def wechat_callback(request: HttpRequest, slug: str) -> HttpResponse:
    from django.core import signing

    tenant = auth.tenant_or_404(slug)
    try:
        nxt = signing.loads(request.GET.get("state", ""), salt=WECHAT_STATE_SALT, max_age=600)
    except signing.BadSignature:
        return render(request, "portal/magic.html", {"tenant": tenant, "error": _("登录链接无效或已过期")},
                      status=400)
    callback = request.build_absolute_uri(reverse("portal:wechat_callback", args=[tenant.slug]))
    try:
        member = services.do_wechat_sign_in(tenant, request.GET.get("code", ""), callback)
    except ShequnError as exc:
        return render(request, "portal/magic.html", {"tenant": tenant, "error": exc.message}, status=400)
    if not (isinstance(nxt, str) and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()})):
        nxt = reverse("portal:home", args=[tenant.slug])
    return _signed_in(request, tenant, member, MemberSession.Method.WECHAT, nxt)


def telegram_callback(request: HttpRequest, slug: str) -> HttpResponse:
    """The Telegram Login Widget's ``data-auth-url``: the signed fields arrive as query parameters and
    are checked against the tenant's Telegram bot token."""
    from shequn.connectors.models import Connection
    from shequn.connectors.services import connection_secrets

    tenant = auth.tenant_or_404(slug)
    conn = Connection.objects.filter(tenant_id=tenant.pk, platform="telegram").order_by("pk").first()
    token = connection_secrets(conn).get("bot_token", "") if conn is not None else ""
    data = {k: v for k, v in request.GET.items() if k != "next"}
    try:
        member = services.do_telegram_sign_in(tenant, data, token)
    except ShequnError as exc:
        return render(request, "portal/magic.html", {"tenant": tenant, "error": exc.message}, status=400)
    return _signed_in(request, tenant, member, MemberSession.Method.TELEGRAM, _next_url(request, tenant))


@require_POST
def logout(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = auth.tenant_or_404(slug)
    response = HttpResponseRedirect(reverse("portal:home", args=[tenant.slug]))
    auth.sign_out(request, response)
    return response


# --- home and community ----------------------------------------------------------------------------


def home(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = auth.tenant_or_404(slug)
    member = auth.current_member(request, tenant)
    mine: list[Community] = []
    decided: list[JoinRequest] = []
    tiers: list[TierGrant] = []
    if member is not None:
        mine = [m.community for m in community_selectors.memberships(tenant.pk, member_id=member.pk, current=True)
                .select_related("community").order_by("pk")]
        tiers = list(_active_tiers(tenant.pk, member))
        decided = list(JoinRequest.objects.filter(member=member).exclude(status=JoinRequest.Status.PENDING)
                       .select_related("community").order_by("-pk")[:3])
    communities = list(community_selectors.communities(tenant.pk).exclude(stage=Community.Stage.ARCHIVED))
    return render(request, "portal/home.html", {"tenant": tenant, "member": member, "mine": mine,
                                                "communities": communities, "tiers": tiers, "decided": decided,
                                                "tab": "home"})


def community(request: HttpRequest, slug: str, community_id: int) -> HttpResponse:
    tenant = auth.tenant_or_404(slug)
    member = auth.current_member(request, tenant)
    try:
        comm = community_selectors.get_community(tenant.pk, community_id)
    except NotFound as exc:
        raise Http404 from exc
    ctx = {"tenant": tenant, "member": member, **_community_context(tenant, member, comm)}
    return render(request, "portal/community.html", ctx)


@require_POST
@member_page
def request_join(request: HttpRequest, tenant: Tenant, member: Member, community_id: int) -> HttpResponse:
    try:
        comm = community_selectors.get_community(tenant.pk, community_id)
        services.do_request_join(member, comm, invite_code=auth.ref_code(request),
                                 message=request.POST.get("message", ""))
        messages.success(request, _("申请已提交, 审核结果会显示在这里"))
    except NotFound as exc:
        raise Http404 from exc
    except ShequnError as exc:
        _err(request, exc)
    return HttpResponseRedirect(reverse("portal:community", args=[tenant.slug, community_id]))


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


# --- invite ----------------------------------------------------------------------------------------


def _my_link(tenant: Tenant, member: Member, community_id: int | None) -> InviteLink:
    return do_get_or_create_link(_principal(member), kind=LinkKind.MEMBER, member_id=member.pk,
                                 community_id=community_id)


@member_page
def invite(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    comm = _default_community(tenant, member)
    link = _my_link(tenant, member, comm.pk if comm else None)
    brought = list(ReferralBinding.objects.filter(tenant_id=tenant.pk, referrer_id=member.pk)
                   .select_related("member").order_by("-bound_at")[:200])
    paid = set(BuyerStat.objects.filter(tenant_id=tenant.pk, member_id__in=[b.member_id for b in brought],
                                        paid_orders__gt=0).values_list("member_id", flat=True))
    now = timezone.now()
    people = [{"name": b.member.display_name, "bound_at": b.bound_at, "paid": b.member_id in paid,
               "active": b.expires_at is None or b.expires_at > now} for b in brought]
    return render(request, "portal/invite.html", {
        "tenant": tenant, "member": member, "link": link, "url": referral_selectors.link_url(link),
        "community": comm, "people": people, "stats": referral_selectors.link_stats(tenant.pk, link.pk),
        "tab": "invite",
    })


def _own_link(tenant: Tenant, member: Member, code: str) -> InviteLink:
    link = referral_selectors.links_for(tenant.pk, member.pk).filter(code=code).select_related("community").first()
    if link is None:
        raise Http404
    return link


@member_page
def invite_qr(request: HttpRequest, tenant: Tenant, member: Member, code: str) -> HttpResponse:
    link = _own_link(tenant, member, code)
    return HttpResponse(qr_png(referral_selectors.link_url(link)), content_type="image/png")


@member_page
def invite_poster(request: HttpRequest, tenant: Tenant, member: Member, code: str) -> HttpResponse:
    link = _own_link(tenant, member, code)
    png = poster_png(url=referral_selectors.link_url(link), member_name=member.display_name,
                     community_name=link.community.name if link.community else tenant.name)
    response = HttpResponse(png, content_type="image/png")
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="invite-{link.code}.png"'
    return response


# --- earnings and withdrawals ------------------------------------------------------------------------


@member_page
def earnings(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    st = referral_selectors.member_statement(tenant.pk, member.pk)
    policy = get_policy(tenant.pk)
    for ln in st.lines:
        ln["state_label"] = CommissionState(ln["state"]).label if ln["state"] in CommissionState.values else ln["state"]
    for w in st.withdrawals:
        w["status_label"] = (WithdrawalStatus(w["status"]).label if w["status"] in WithdrawalStatus.values
                             else w["status"])
    return render(request, "portal/earnings.html", {
        "tenant": tenant, "member": member, "st": st, "policy": policy, "token": secrets.token_urlsafe(12),
        "fee_pct": Decimal(policy.withdrawal_fee_bps) / 100, "tab": "earnings",
        "available_yuan": f"{st.available_fen / 100:.2f}" if st.available_fen > 0 else "",
    })


@require_POST
@member_page
def withdraw(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    amount = _yuan_to_fen(request.POST.get("amount", ""))
    if amount is None:
        messages.error(request, _("请输入正确的提现金额"))
        return HttpResponseRedirect(reverse("portal:earnings", args=[tenant.slug]))
    token = request.POST.get("token", "")[:64] or secrets.token_urlsafe(12)
    wecom = member.identities.filter(platform=Platform.WECOM).values_list("external_id", flat=True).first()
    payee = wecom or f"member:{member.pk}"
    try:
        w = do_request_withdrawal(_principal(member), member_id=member.pk, amount_fen=amount,
                                  idempotency_key=f"portal:{member.pk}:{token}", payee=payee)
    except ShequnError as exc:
        _err(request, exc)
        return HttpResponseRedirect(reverse("portal:earnings", args=[tenant.slug]))
    messages.success(request, _("提现申请已提交"))
    return HttpResponseRedirect(reverse("portal:withdrawal", args=[tenant.slug, w.pk]))


@member_page
def withdrawal_detail(request: HttpRequest, tenant: Tenant, member: Member, withdrawal_id: int) -> HttpResponse:
    w = Withdrawal.objects.filter(tenant_id=tenant.pk, member_id=member.pk, pk=withdrawal_id).first()
    if w is None:
        raise Http404
    trail = [{"at": e.at, "note": e.note,
              "status": WithdrawalStatus(e.to_status).label if e.to_status in WithdrawalStatus.values else e.to_status}
             for e in w.trail.order_by("pk")]
    return render(request, "portal/withdrawal.html", {"tenant": tenant, "member": member, "w": w, "trail": trail,
                                                      "net_fen": w.amount_fen - w.fee_fen, "tab": "earnings"})


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


# --- check-in, lotteries, red packets -------------------------------------------------------------------


@member_page
def checkin(request: HttpRequest, tenant: Tenant, member: Member) -> HttpResponse:
    """Daily check-in (one per local day, engagement's rule) with streak and points."""
    result = None
    if request.method == "POST":
        try:
            result = do_check_in(tenant.pk, member.pk, source="portal")
        except ShequnError as exc:
            _err(request, exc)
    ctx = {"tenant": tenant, "member": member, "result": result,
           "stats": engagement_selectors.checkin_stats(tenant.pk, member.pk),
           "points": engagement_selectors.points_balance(tenant.pk, member.pk),
           "today": timezone.localdate()}
    if request.headers.get("HX-Request"):
        return render(request, "portal/_checkin.html", ctx)
    return render(request, "portal/checkin.html", ctx)


def _lottery_or_404(tenant: Tenant, lottery_id: int) -> Any:
    try:
        return engagement_selectors.get_lottery(tenant.pk, lottery_id)
    except NotFound as exc:
        raise Http404 from exc


@member_page
def lottery(request: HttpRequest, tenant: Tenant, member: Member, lottery_id: int) -> HttpResponse:
    """Enter; see the seed commitment before the draw, the snapshot commitment after the close and the
    seed, winners and the verify command after the draw."""
    lot = _lottery_or_404(tenant, lottery_id)
    if request.method == "POST":
        try:
            do_enter_lottery(tenant.pk, lot.pk, member.pk, tickets=1)
            messages.success(request, _("报名成功, 开奖后在这里查看结果"))
        except ShequnError as exc:
            _err(request, exc)
        return HttpResponseRedirect(reverse("portal:lottery", args=[tenant.slug, lot.pk]))
    record = engagement_selectors.lottery_public_record(lot)
    me = f"m{member.pk}"
    names = {p["id"]: p["name"] for p in (record.get("snapshot") or {}).get("prizes", [])}
    won = [{**w, "prize_name": names.get(w.get("prize"), "")} for w in record.get("winners", [])
           if w.get("entrant") == me]
    entered = LotteryEntry.objects.filter(lottery=lot, member_id=member.pk).exists()
    return render(request, "portal/lottery.html", {
        "tenant": tenant, "member": member, "lot": lot, "record": record, "entered": entered, "won": won,
        "now": timezone.now(), "n_entries": LotteryEntry.objects.filter(lottery=lot).count(),
    })


@member_page
def lottery_record(request: HttpRequest, tenant: Tenant, member: Member, lottery_id: int) -> HttpResponse:
    """The public record as JSON, the input of ``shequn lottery verify FILE``."""
    import json

    lot = _lottery_or_404(tenant, lottery_id)
    body = json.dumps(engagement_selectors.lottery_public_record(lot), ensure_ascii=False, indent=2, default=str)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="lottery-{lot.pk}.json"'
    return response


@member_page
def red_packet(request: HttpRequest, tenant: Tenant, member: Member, packet_id: int) -> HttpResponse:
    try:
        packet = engagement_selectors.get_red_packet(tenant.pk, packet_id)
    except NotFound as exc:
        raise Http404 from exc
    if request.method == "POST":
        try:
            do_claim_red_packet(tenant.pk, packet.pk, member.pk)
        except ShequnError as exc:
            _err(request, exc)
        return HttpResponseRedirect(reverse("portal:red_packet", args=[tenant.slug, packet.pk]))
    claim = RedPacketClaim.objects.filter(packet=packet, member_id=member.pk).first()
    return render(request, "portal/red_packet.html", {"tenant": tenant, "member": member, "p": packet,
                                                      "claim": claim, "now": timezone.now()})


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
    from shequn.referrals.selectors import public_base_url

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
    from shequn.referrals.selectors import public_base_url

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
