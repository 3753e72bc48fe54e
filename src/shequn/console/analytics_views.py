"""Console pages of analytics beyond the home dashboard: 健康提醒 (the open and recent health notices,
the health figures per group and community, the tenant's alert settings) and 裂变传播 (the reach of
fission: K-factor per campaign, members per invite generation drawn with ECharts, top referrers by
network reach). The figures are the rows the 5-minute refresh stored, with the time of the oldest
shown. Views are thin: reads from ``analytics.health`` / ``analytics.reach``, the settings
form calls ``health.do_save_settings``."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from shequn.analytics import health, reach
from shequn.communities import selectors as community_selectors
from shequn.core.errors import Invalid

from .views import _context, _require

INT_FIELDS = tuple(health.SETTING_BOUNDS)


def _settings_from_post(request: HttpRequest) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in (*INT_FIELDS, "staff_group_id"):
        raw = request.POST.get(name, "").strip()
        try:
            values[name] = int(raw or "0")
        except ValueError as exc:
            raise Invalid(_("请输入整数"), details={"field": name}) from exc
    for name in health.SETTING_FLAGS:
        values[name] = request.POST.get(name) == "on"
    return values


def health_page(request: HttpRequest) -> HttpResponse:
    tenant_id, _p = _require(request, "analytics.read")
    if request.method == "POST":
        _require(request, "analytics.write")
        try:
            health.do_save_settings(tenant_id, _settings_from_post(request))
        except Invalid as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("已保存"))
        return HttpResponseRedirect(reverse("console:health"))
    by = "community" if request.GET.get("by") == "community" else "group"
    open_rows = list(health.open_notices(tenant_id).order_by("-opened_at")[:200])
    resolved = list(health.notices(tenant_id, state="resolved").order_by("-resolved_at")[:50])
    for n in open_rows + resolved:
        n.rule_label = health.RULE_LABELS.get(n.rule, n.rule)  # type: ignore[attr-defined]
    days = int(request.GET["days"]) if request.GET.get("days") in {str(d) for d in health.STORED_WINDOWS} else 7
    figures = health.health_figures(tenant_id, by=by, days=days)  # stored by the 5-minute refresh
    return render(request, "console/health.html", _context(
        request, _("健康提醒"), open_notices=open_rows, resolved_notices=resolved, by=by, days=days,
        windows=health.STORED_WINDOWS,
        figures=figures, figures_as_of=min((r["computed_at"] for r in figures), default=None),
        settings=health.get_settings(tenant_id),
        groups=list(community_selectors.groups(tenant_id).filter(is_active=True)),
        can_write=_p.can("analytics.write")))


def reach_page(request: HttpRequest) -> HttpResponse:
    tenant_id, _p = _require(request, "analytics.read")
    summary = reach.summary(tenant_id)
    return render(request, "console/reach.html", _context(
        request, _("裂变传播"), summary=summary, campaigns=reach.kfactor_by_campaign(tenant_id)[:50],
        referrers=reach.top_referrers(tenant_id, limit=20),
        chart={"depths": [g["depth"] for g in summary["generations"]],
               "members": [g["members"] for g in summary["generations"]],
               "label": _("第 N 代被邀请人数")}))
