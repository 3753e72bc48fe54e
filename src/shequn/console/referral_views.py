"""Console pages for fission beyond the model lists: the referral report (K-factor per campaign, top
referrers by valid referrals and by commission) and the merchant alliance page (alliances, listings,
settlement statements with the ledger postings behind every line).

Alliance rows are shared between tenants, so this page, not a tenant-scoped model admin, shows them:
only alliances the operator's tenant belongs to, only statements it pays or receives."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.core.errors import Invalid, ShequnError
from shequn.core.models import Tenant
from shequn.referrals import selectors, services
from shequn.referrals.models import (
    Alliance,
    AllianceInvitation,
    AllianceListing,
    AllianceMember,
    AllianceStatement,
    RateMode,
)

from .views import _context, _require


def referral_report(request: HttpRequest) -> HttpResponse:
    tenant_id, _p = _require(request, "referrals.read")
    period = request.GET.get("period", "all")
    if period not in ("all", "day", "week", "month"):
        period = "all"
    kfactor = selectors.kfactor_report(tenant_id)
    for row in kfactor:
        row["revenue_yuan"] = f"{row['revenue_fen'] / 100:,.2f}"
    by_referrals = selectors.top_referrers(tenant_id, 20, metric="referrals", period=period)
    by_commission = selectors.top_referrers(tenant_id, 20, metric="commission", period=period)
    for row in by_commission:
        row["value"] = f"{row['value'] / 100:,.2f}"
    return render(request, "console/referral_report.html", _context(
        request, _("裂变报表"), kfactor=kfactor, by_referrals=by_referrals, by_commission=by_commission,
        period=period, periods=[("all", _("全部")), ("day", _("今日")), ("week", _("本周")), ("month", _("本月"))]))


def _last_month(tz: str) -> tuple[dt.datetime, dt.datetime]:
    now = timezone.now().astimezone(ZoneInfo(tz))
    end = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (end - dt.timedelta(days=1)).replace(day=1)
    return start, end


def _post(request: HttpRequest, tenant_id: int) -> None:
    op = request.POST.get("op", "")
    write = "finance.write" if op in ("build", "settle") else "referrals.write"
    _tid, principal = _require(request, write)
    if op == "create":
        a = services.do_create_alliance(principal, name=request.POST.get("name", ""))
        messages.success(request, _("已创建联盟 %(name)s, 用组织代码邀请其他商家加入") % {"name": a.name})
    elif op == "invite":
        slug = request.POST.get("tenant_slug", "").strip()
        if not slug:
            raise Invalid(_("请输入对方的组织代码"), details={"field": "tenant_slug"})
        services.do_invite_to_alliance(principal, int(request.POST.get("alliance_id") or 0), tenant_slug=slug)
        messages.success(request, _("已发出邀请, 等待对方接受"))
    elif op in ("accept", "decline"):
        raw = request.POST.get("invitation_id", "").strip()
        services.do_respond_to_alliance_invitation(principal, int(raw) if raw.isdigit() else 0,
                                                   accept=op == "accept")
        messages.success(request, _("已加入联盟") if op == "accept" else _("已拒绝邀请"))
    elif op == "list":
        try:
            rate = round(float(request.POST.get("rate_percent", "")) * 100)
        except ValueError:
            raise Invalid(_("佣金比例必须是数字"), details={"field": "rate_percent"}) from None
        product_id = request.POST.get("product_id", "").strip()
        if not product_id:
            raise Invalid(_("请填写商品编号"), details={"field": "product_id"})
        services.do_list_product(principal, int(request.POST.get("alliance_id") or 0), product_id=product_id,
                                 title=request.POST.get("title", "").strip(), mode=RateMode.PERCENT, rate_bps=rate)
        messages.success(request, _("商品已上架到联盟"))
    elif op == "build":
        tz = getattr(Tenant.objects.filter(pk=tenant_id).first(), "time_zone", None) or "Asia/Shanghai"
        start, end = _last_month(tz)
        out = services.do_build_my_statements(principal, int(request.POST.get("alliance_id") or 0),
                                              start=start, end=end)
        messages.success(request, _("已生成 %(n)s 张结算单 (%(start)s 至 %(end)s)") % {
            "n": len(out), "start": start.date(), "end": (end - dt.timedelta(days=1)).date()})
    elif op == "settle":
        st = services.do_settle_my_statement(principal, int(request.POST.get("statement_id") or 0))
        messages.success(request, _("结算单 %(id)s 已结清") % {"id": st.pk})
    else:
        raise Invalid(_("未知操作"), details={"field": "op"})


def alliances(request: HttpRequest) -> HttpResponse:
    tenant_id, principal = _require(request, "referrals.read")
    if request.method == "POST":
        try:
            _post(request, tenant_id)
        except ShequnError as exc:
            messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("console:alliances"))
    mine = AllianceMember.objects.filter(tenant_id=tenant_id, is_active=True).values_list("alliance_id", flat=True)
    rows = []
    for a in Alliance.objects.filter(pk__in=list(mine)).select_related("owner_tenant").order_by("pk"):
        rows.append({
            "alliance": a,
            "members": [m.tenant.name for m in a.members.filter(is_active=True).select_related("tenant")],
            "listings": list(AllianceListing.objects.filter(alliance=a, is_active=True).select_related("tenant")
                             .order_by("tenant_id", "product_id")),
        })
    statements = []
    shown = principal.can("finance.read")  # money owed between merchants is finance data
    mine_q = Q(payer_id=tenant_id) | Q(payee_id=tenant_id)
    qs = AllianceStatement.objects.filter(mine_q).select_related("alliance", "payer", "payee")
    for st in qs.order_by("-period_start", "pk")[:100] if shown else []:
        statements.append({"st": st, "we_pay": st.payer_id == tenant_id, "total_yuan": f"{st.total_fen / 100:,.2f}",
                           "lines": st.lines.count()})
    invitations = list(AllianceInvitation.objects.filter(invitee_id=tenant_id,
                                                         status=AllianceInvitation.Status.PENDING)
                       .select_related("alliance", "inviter").order_by("pk"))
    return render(request, "console/alliances.html", _context(
        request, _("商家联盟"), rows=rows, statements=statements, invitations=invitations,
        my_slug=getattr(Tenant.objects.filter(pk=tenant_id).first(), "slug", ""),
        can_write=principal.can("referrals.write"), can_settle=principal.can("finance.write"),
        show_statements=shown))

