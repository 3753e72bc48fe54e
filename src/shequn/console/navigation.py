"""The sidebar's permission callbacks: ``UNFOLD["SIDEBAR"]`` (built by ``settings._nav``) names
``can_<area>_<action>`` here for a link shown only to staff whose role has ``<area>.<action>``."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest

from shequn.core.admin_base import can


def _gate(permission: str) -> Callable[[HttpRequest], bool]:
    def allowed(request: HttpRequest) -> bool:
        return can(request, permission)

    allowed.__name__ = allowed.__qualname__ = "can_" + permission.replace(".", "_")
    allowed.__doc__ = f"The signed-in staff member's role has {permission!r}."
    return allowed


can_members_read = _gate("members.read")
can_members_write = _gate("members.write")
can_communities_read = _gate("communities.read")
can_activity_read = _gate("activity.read")
can_engagement_read = _gate("engagement.read")
can_referrals_read = _gate("referrals.read")
can_commerce_read = _gate("commerce.read")
can_moderation_read = _gate("moderation.read")
can_finance_read = _gate("finance.read")
can_connectors_read = _gate("connectors.read")
can_settings_read = _gate("settings.read")
can_staff_write = _gate("staff.write")
can_audit_read = _gate("audit.read")
can_analytics_read = _gate("analytics.read")
