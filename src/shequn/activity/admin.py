# mypy: disable-error-code="untyped-decorator,no-any-return"
"""Console page of the activity stream: read-only (the table is append-only)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter

from shequn.communities.models import Community
from shequn.core.admin_base import TenantScopedAdmin, tenant_related_filter

from .models import ActivityEvent


@admin.register(ActivityEvent)
class ActivityEventAdmin(TenantScopedAdmin):
    permission_area = "activity"
    read_only_model = True
    list_display = ("occurred_at", "kind", "platform", "member", "community", "group", "platform_event_id")
    list_filter = (
        ("kind", ChoicesDropdownFilter),
        ("platform", ChoicesDropdownFilter),
        tenant_related_filter("community", Community, _("社群")),
        ("occurred_at", RangeDateTimeFilter),
    )
    list_filter_submit = True
    search_fields = ("=platform_event_id", "member__display_name")
    # no date_hierarchy: its DISTINCT-over-dates query scans the tenant's whole stream (1.2 s at 62k
    # events on SQLite, growing with the table); the range filter uses the (tenant, …, occurred_at) indexes
    list_select_related = ("member", "community", "group")
    list_per_page = 50
    show_full_result_count = False
    ordering = ("-occurred_at",)
    fields = ("occurred_at", "received_at", "kind", "platform", "platform_event_id", "member", "community", "group",
              "payload")
    readonly_fields = fields
