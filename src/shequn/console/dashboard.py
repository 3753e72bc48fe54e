"""Unfold's index-page callback (``DASHBOARD_CALLBACK``): the tenant's headline figures and a link to
each community's dashboard; plus the sidebar's permission callbacks."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent, EventKind
from shequn.communities import selectors as community_selectors
from shequn.core import streams, webhooks
from shequn.core.admin_base import can, request_tenant_id
from shequn.members import selectors as member_selectors


def headline_figures(tenant_id: int, tz: str = "Asia/Shanghai") -> dict[str, int]:
    zone = ZoneInfo(tz)
    now = timezone.now()
    today = dt.datetime.combine(now.astimezone(zone).date(), dt.time.min, tzinfo=zone)
    members = member_selectors.members(tenant_id)
    return {
        "members": members.count(),
        "active_7d": members.filter(last_active_at__gte=now - dt.timedelta(days=7)).count(),
        "communities": community_selectors.communities(tenant_id).count(),
        "messages_today": ActivityEvent.objects.filter(
            tenant_id=tenant_id, kind__in=(EventKind.MESSAGE, EventKind.REPLY), occurred_at__gte=today,
        ).count(),
    }


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    tenant_id = request_tenant_id(request)
    if tenant_id is None:
        context["shequn_no_tenant"] = True
        return context
    tz = getattr(request.tenant, "time_zone", None) or "Asia/Shanghai"  # type: ignore[attr-defined]
    figures = headline_figures(tenant_id, tz)
    context["title"] = _("概览")
    context["shequn_kpis"] = [
        {"label": _("会员"), "value": figures["members"], "icon": "group",
         "href": reverse("admin:members_member_changelist") if can(request, "members.read") else ""},
        {"label": _("近 7 天活跃"), "value": figures["active_7d"], "icon": "bolt", "href": ""},
        {"label": _("社群"), "value": figures["communities"], "icon": "diversity_3",
         "href": reverse("admin:communities_community_changelist") if can(request, "communities.read") else ""},
        {"label": _("今日消息"), "value": figures["messages_today"], "icon": "forum", "href": ""},
    ]
    if can(request, "settings.read"):
        failures = streams.open_failure_counts(tenant_id)
        if failures["dead"] or failures["pending"]:
            context["shequn_kpis"].append({
                "label": _("事件投递失败 (死信 / 待重试)"), "value": f'{failures["dead"]} / {failures["pending"]}',
                "icon": "report", "href": reverse("admin:core_deliveryfailure_changelist")})
        disabled = webhooks.disabled_endpoints(tenant_id)
        if disabled:  # endpoints the platform disabled after persistent failure (issue 14)
            context["shequn_kpis"].append({
                "label": _("Webhook 端点因持续失败已停用"), "value": len(disabled), "icon": "webhook",
                "href": reverse("admin:core_webhookendpoint_changelist")})
    context["shequn_tenant"] = request.tenant  # type: ignore[attr-defined]
    if can(request, "communities.read"):
        context["shequn_communities"] = [
            {"community": c, "href": reverse("console:community_dashboard", args=[c.pk])}
            for c in community_selectors.communities(tenant_id)
        ]
    context["shequn_can_import"] = can(request, "members.write")
    return context


# -- sidebar permission callbacks (UNFOLD["SIDEBAR"]["navigation"][...]["permission"]) -------------

def can_members_read(request: HttpRequest) -> bool:
    return can(request, "members.read")


def can_members_write(request: HttpRequest) -> bool:
    return can(request, "members.write")


def can_communities_read(request: HttpRequest) -> bool:
    return can(request, "communities.read")


def can_activity_read(request: HttpRequest) -> bool:
    return can(request, "activity.read")


def can_audit_read(request: HttpRequest) -> bool:
    return can(request, "audit.read")


def can_settings_read(request: HttpRequest) -> bool:
    return can(request, "settings.read")


def can_staff_write(request: HttpRequest) -> bool:
    return can(request, "staff.write")


def can_engagement_read(request: HttpRequest) -> bool:
    return can(request, "engagement.read")


def can_referrals_read(request: HttpRequest) -> bool:
    return can(request, "referrals.read")
