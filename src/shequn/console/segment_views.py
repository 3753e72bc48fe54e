"""Console pages of the analytics app beyond the home dashboard: the funnel (invite click → join →
first message → first order → second order, by channel / campaign / live session / inviter, with
drop-off and member export), cohorts (retention and revenue per member by join week/month), and the
segment builder (structured fields, live count through htmx, export, coupon grant, tier invitation).
The views are thin: every figure comes from ``analytics.selectors`` / ``analytics.segments``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shequn.analytics import segments, selectors
from shequn.analytics.api import render_file
from shequn.analytics.api_segments import export_members
from shequn.commerce.models import CouponTemplate, Product, ProductKind
from shequn.communities.models import ChatGroup, CommunityRole
from shequn.core.errors import NotFound, ShequnError
from shequn.members.models import LifecycleStage, Tag

from .views import _context, _require

FUNNEL_BY = [("", gettext_lazy("不拆分")), ("channel", gettext_lazy("渠道")), ("campaign", gettext_lazy("活动")),
             ("live_session_id", gettext_lazy("直播场次")), ("inviter_id", gettext_lazy("邀请人")),
             ("community_id", gettext_lazy("社群"))]


def _date(raw: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _funnel_params(request: HttpRequest) -> tuple[str | None, dt.date | None, dt.date | None]:
    by = request.GET.get("by") or None
    if by not in dict(FUNNEL_BY):
        by = None
    return by, _date(request.GET.get("start")), _date(request.GET.get("end"))


def funnel(request: HttpRequest) -> HttpResponse:
    tenant_id, _p = _require(request, "analytics.read")
    by, start, end = _funnel_params(request)
    groups = selectors.funnel(tenant_id, by=by, start=start, end=end)[:20]
    for g in groups:
        for s in g["steps"]:
            s["rate_display"] = f"{s['rate'] * 100:.0f}%" if s["rate"] is not None else "—"
    chart = [{"name": g["name"], "steps": [{"name": s["label"], "value": s["members"]} for s in g["steps"]]}
             for g in groups[:4]]
    return render(request, "console/analytics_funnel.html", _context(
        request, _("转化漏斗"), groups=groups, chart=chart, by=by or "", by_choices=FUNNEL_BY,
        start=start.isoformat() if start else "", end=end.isoformat() if end else ""))


def funnel_members_export(request: HttpRequest, fmt: str) -> HttpResponse:
    tenant_id, _p = _require(request, "analytics.read")
    if fmt not in ("csv", "xlsx"):
        raise Http404
    by, start, end = _funnel_params(request)
    step = request.GET.get("step", "joined")
    if step not in selectors.FUNNEL_STEPS:
        step = "joined"
    raw_key = request.GET.get("key", "")
    key: Any = (int(raw_key) if raw_key.isdigit() else 0) if by in ("inviter_id", "live_session_id",
                                                                     "community_id") else raw_key
    rows = selectors.funnel_members(tenant_id, step, by=by, key=key if by else None, start=start, end=end)
    header = [_("会员 ID"), _("昵称"), _("到达的最后一步"), _("入群时间"), _("首单时间")]
    return render_file(f"funnel-{step}", header, [
        [m["member_id"], m["display_name"], m["last_step"],
         m["joined_at"].strftime("%Y-%m-%d %H:%M") if m["joined_at"] else "",
         m["first_order_at"].strftime("%Y-%m-%d %H:%M") if m["first_order_at"] else ""] for m in rows], fmt)


def cohorts(request: HttpRequest) -> HttpResponse:
    tenant_id, _p = _require(request, "analytics.read")
    grain = request.GET.get("grain", "month")
    if grain not in ("week", "month"):
        grain = "month"
    periods = 12 if grain == "week" else 6
    rows = selectors.cohorts(tenant_id, grain=grain, periods=periods)
    for r in rows:
        r["cells"] = [{"retention": f"{x * 100:.0f}%", "alpha": f"{x * 0.6:.2f}",
                       "revenue": f"{v / 100:,.2f}"} for x, v in zip(r["retention"], r["revenue_per_member_fen"],
                                                                     strict=True)]
    label = _("第 %(k)s 周") if grain == "week" else _("第 %(k)s 月")
    chart = {"periods": [label % {"k": k} for k in range(periods)],
             "series": [{"name": r["cohort"], "retention": [round(x * 100, 1) for x in r["retention"]],
                         "revenue": [round(v / 100, 2) for v in r["revenue_per_member_fen"]]} for r in rows[-8:]]}
    return render(request, "console/analytics_cohorts.html", _context(
        request, _("同期群留存"), rows=rows, chart=chart, grain=grain, periods=range(periods)))


# -- segments -------------------------------------------------------------------------------------

def _choices(tenant_id: int) -> dict[str, Any]:
    return {
        "stages": LifecycleStage.choices, "roles": CommunityRole.choices,
        "tags": list(Tag.objects.filter(tenant_id=tenant_id).order_by("name").values_list("pk", "name")),
        "groups": list(ChatGroup.objects.filter(tenant_id=tenant_id).order_by("name").values_list("pk", "name")),
        "products": list(Product.objects.filter(tenant_id=tenant_id).order_by("name").values_list("pk", "name")),
        "tiers": list(Product.objects.filter(tenant_id=tenant_id, kind=ProductKind.TIER).order_by("tier_rank", "pk")
                      .values_list("pk", "name")),
        "coupons": list(CouponTemplate.objects.filter(tenant_id=tenant_id, is_share=False).order_by("-pk")
                        .values_list("pk", "name")),
        "scores": range(1, 6), "hours": range(24),
    }


def _rule_data(request: HttpRequest) -> dict[str, Any]:
    return {k: request.POST.get(k, "").strip() for k in segments.RULE_FIELDS}


def segment_list(request: HttpRequest) -> HttpResponse:
    tenant_id, principal = _require(request, "analytics.read")
    rows = list(segments.segments(tenant_id))
    counts = segments.count_by_segment(tenant_id, [s.pk for s in rows])
    return render(request, "console/segments.html", _context(
        request, _("人群"), rows=[{"segment": s, "count": counts.get(s.pk, 0)} for s in rows],
        can_write=principal.can("analytics.write"), can_grant=principal.can("commerce.write"), **_choices(tenant_id)))


def segment_edit(request: HttpRequest, segment_id: int | None = None) -> HttpResponse:
    tenant_id, principal = _require(request, "analytics.read")
    try:
        seg = segments.get_segment(tenant_id, segment_id) if segment_id else None
    except NotFound as exc:
        raise Http404(exc.message) from exc
    error = None
    values: dict[str, Any] = ({k: getattr(seg, k) for k in segments.RULE_FIELDS} | {"name": seg.name}) if seg else {}
    if request.method == "POST":
        _tid, principal = _require(request, "analytics.write")
        values = {**_rule_data(request), "name": request.POST.get("name", "")}
        try:
            saved = segments.do_save_segment(principal, values["name"], _rule_data(request),
                                             segment_id=seg.pk if seg else None)
        except ShequnError as exc:
            error = exc.message
        else:
            messages.success(request, _("已保存人群 %(name)s") % {"name": saved.name})
            return HttpResponseRedirect(reverse("console:segments"))
    count = segments.segment_count(tenant_id, segments.Rule.of(seg)) if seg and not error else None
    rfm_fields = [{"field": f, "label": label, "value": _as_int(values.get(f))} for f, label in (
        ("min_recency", _("最近购买 R ≥")), ("min_frequency", _("购买频次 F ≥")), ("min_monetary", _("消费金额 M ≥")))]
    return render(request, "console/segment_edit.html", _context(
        request, _("编辑人群") if seg else _("新建人群"), segment=seg, values=values, error=error, count=count,
        rfm_fields=rfm_fields, **_choices(tenant_id)))


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def segment_count(request: HttpRequest) -> HttpResponse:
    """htmx: the live count of the rule being edited (no save)."""
    tenant_id, _p = _require(request, "analytics.read")
    try:
        rule = segments.check_rule(tenant_id, _rule_data(request))
    except ShequnError as exc:
        return render(request, "console/_segment_count.html", {"error": exc.message})
    return render(request, "console/_segment_count.html",
                  {"count": segments.segment_count(tenant_id, rule)})


def segment_export(request: HttpRequest, segment_id: int, fmt: str) -> HttpResponse:
    tenant_id, _p = _require(request, "analytics.read")
    if fmt not in ("csv", "xlsx"):
        raise Http404
    try:
        return export_members(tenant_id, segment_id, fmt)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def segment_action(request: HttpRequest, segment_id: int) -> HttpResponse:
    """POST: grant a coupon to the segment, invite it to a tier, or delete it."""
    if request.method != "POST":
        return HttpResponseRedirect(reverse("console:segments"))
    op = request.POST.get("op", "")
    _tid, principal = _require(request, "analytics.write")
    try:
        if op == "delete":
            segments.do_delete_segment(principal, segment_id)
            messages.success(request, _("已删除人群"))
        elif op in ("coupon", "tier"):
            _tid, principal = _require(request, "commerce.write")
            raw = request.POST.get("target_id", "")
            target = int(raw) if raw.isdigit() else 0
            if op == "coupon":
                r = segments.do_grant_coupon_to_segment(principal, segment_id, target)
                messages.success(request, _("已发券 %(granted)d 张, %(already)d 人已有此券, %(refused)d 人未发放") % {
                    "granted": r.granted, "already": r.already, "refused": sum((r.refused or {}).values())})
            else:
                n = segments.do_invite_segment_to_tier(principal, segment_id, target)
                messages.success(request, _("已邀请 %(n)d 人 (已邀请过或已在该等级的不重复邀请)") % {"n": n})
    except ShequnError as exc:
        messages.error(request, exc.message)
    return HttpResponseRedirect(reverse("console:segments"))
