"""Unfold's index-page callback (``DASHBOARD_CALLBACK``): the tenant's headline figures, the sales
formula panel, GMV/orders/buyers trends, health alerts and top movers (all from
``analytics.selectors``), a link to each community's dashboard; plus the sidebar's permission
callbacks."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from shequn.analytics import health as analytics_health
from shequn.analytics import selectors as analytics
from shequn.communities import selectors as community_selectors
from shequn.core import streams, webhooks
from shequn.core.admin_base import can, request_tenant_id
from shequn.core.dbrouting import replica_reads

HOME_TTL = 300  # seconds: the rollups are refreshed every minute, the home page may lag a little more


def home_analytics(tenant_id: int) -> dict[str, Any]:
    """The analytics part of the home page, cached for HOME_TTL per tenant and language (the formula
    panel's labels and the alerts' messages are translated when built)."""
    key = f"shequn:console:home:{tenant_id}:{get_language() or ''}"
    data: dict[str, Any] | None = cache.get(key)
    if data is None:
        with replica_reads():
            data = {
                "formula": analytics.formula_panel(tenant_id, days=30),
                "trend": analytics.sales_trend(tenant_id, days=90),
                "alerts": [a.__dict__ for a in analytics.health_alerts(tenant_id)],
                "movers": analytics.breakdown(tenant_id, "community", days=30)[:5]
                + analytics.breakdown(tenant_id, "campaign", days=30)[:5],
            }
        cache.set(key, data, HOME_TTL)
    return data


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    tenant_id = request_tenant_id(request)
    if tenant_id is None:
        context["shequn_no_tenant"] = True
        return context
    tz = getattr(request.tenant, "time_zone", None) or "Asia/Shanghai"  # type: ignore[attr-defined]
    figures = analytics.headline_figures(tenant_id, tz)
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
    if can(request, "analytics.read"):
        home = home_analytics(tenant_id)
        context["shequn_formula"] = home["formula"]
        context["shequn_trend"] = {k: home["trend"][k] for k in ("dates", "gmv_fen", "orders", "buyers")}
        context["shequn_trend_labels"] = {"gmv": _("成交额 (元)"), "orders": _("订单数"), "buyers": _("买家数")}
        context["shequn_alerts"] = home["alerts"]
        context["shequn_movers"] = home["movers"]
        if analytics_health.get_settings(tenant_id).notify_console:
            context["shequn_kpis"].append({
                "label": _("健康提醒 (未恢复)"), "value": analytics_health.open_count(tenant_id),
                "icon": "health_and_safety", "href": reverse("console:health")})
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


def can_analytics_read(request: HttpRequest) -> bool:
    return can(request, "analytics.read")


def health_badge(request: HttpRequest) -> str:
    """The sidebar badge of 健康提醒: open notices (empty when none, or when the tenant turned the
    console channel off)."""
    tenant_id = request_tenant_id(request)
    if tenant_id is None or not can(request, "analytics.read"):
        return ""
    n = analytics_health.open_count(tenant_id)
    return str(n) if n else ""
