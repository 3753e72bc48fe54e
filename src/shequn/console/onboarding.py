"""The onboarding checklist a fresh tenant sees on the console home: connect a platform, create a
community, import the seed users, set up paid tiers and a commission plan. Each step is done when
its rows exist; the list disappears once every step is done."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext as _

from shequn.commerce.models import Product, ProductKind
from shequn.communities import selectors as community_selectors
from shequn.connectors.models import Connection
from shequn.members import selectors as member_selectors
from shequn.referrals.models import CommissionPlan


def onboarding_steps(tenant_id: int) -> list[dict[str, Any]]:
    """The steps in order with ``done`` flags (no links: those depend on the viewer's permissions)."""
    return [
        {"key": "connect", "label": _("连接一个平台 (企业微信 / Telegram / Matrix)"),
         "done": Connection.objects.filter(tenant_id=tenant_id).exists(), "permission": "connectors.write",
         "url": "admin:connectors_connection_add"},
        {"key": "community", "label": _("创建社群 (群规、角色)"),
         "done": community_selectors.communities(tenant_id).exists(), "permission": "communities.write",
         "url": "admin:communities_community_add"},
        {"key": "import", "label": _("导入种子用户"), "done": member_selectors.members(tenant_id).exists(),
         "permission": "members.write", "url": "console:member_import"},
        {"key": "tiers", "label": _("设置付费等级 (如 19.9 元入门 / 1999 元合伙人)"),
         "done": Product.objects.filter(tenant_id=tenant_id, kind=ProductKind.TIER).exists(),
         "permission": "commerce.write", "url": "admin:commerce_product_add"},
        {"key": "commission", "label": _("设置佣金方案"),
         "done": CommissionPlan.objects.filter(tenant_id=tenant_id).exists(), "permission": "referrals.write",
         "url": "admin:referrals_commissionplan_add"},
    ]


def onboarding_checklist(request: HttpRequest) -> dict[str, Any] | None:
    """The checklist for the console home, or None when the tenant is set up (or there is none)."""
    # (no import of core.admin_base here: the template library loads before the admin modules)
    tenant = getattr(request, "tenant", None)
    principal = getattr(request, "principal", None)
    if tenant is None:
        return None
    tenant_id = int(tenant.pk)
    steps = onboarding_steps(tenant_id)
    if all(s["done"] for s in steps):
        return None
    for s in steps:
        allowed = principal is not None and principal.can(s["permission"])
        s["href"] = reverse(s["url"]) if allowed and not s["done"] else ""
    return {"steps": steps, "done": sum(1 for s in steps if s["done"]), "total": len(steps)}
