"""Console pages of the members' pages: the sandbox SMS log (where an operator reads a sign-in code
in development), join ways per group, and join requests to approve or reject."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from shequn.core.admin_base import TenantScopedAdmin, request_principal
from shequn.core.errors import ShequnError

from .models import JoinRequest, JoinWay, SandboxSms
from .services import do_decide_join


@admin.register(SandboxSms)
class SandboxSmsAdmin(TenantScopedAdmin):
    permission_area = "members"
    read_only_model = True
    list_display = ("created_at", "to_masked", "body")
    ordering = ("-pk",)


@admin.register(JoinWay)
class JoinWayAdmin(TenantScopedAdmin):
    permission_area = "communities"
    list_display = ("group", "url", "qr_image_url", "note")
    fields = ("group", "url", "qr_image_url", "note")


@admin.register(JoinRequest)
class JoinRequestAdmin(TenantScopedAdmin):
    permission_area = "communities"
    list_display = ("created_at", "member", "community", "message", "status", "decided_by", "decision_note")
    list_filter = ("status",)
    ordering = ("-pk",)
    actions = ("approve", "reject")

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def _decide(self, request: HttpRequest, queryset: QuerySet[JoinRequest], approve: bool) -> None:
        principal = request_principal(request)
        if principal is None:
            return
        done = 0
        for req in queryset.filter(status=JoinRequest.Status.PENDING):
            try:
                do_decide_join(principal, req.pk, approve=approve)
                done += 1
            except ShequnError as exc:
                self.message_user(request, exc.message, messages.ERROR)
        self.message_user(request, _("已处理 %(n)d 个申请") % {"n": done})

    @admin.action(description=_("通过"), permissions=["view"])
    def approve(self, request: HttpRequest, queryset: QuerySet[JoinRequest]) -> None:
        self._decide(request, queryset, True)

    @admin.action(description=_("拒绝"), permissions=["view"])
    def reject(self, request: HttpRequest, queryset: QuerySet[JoinRequest]) -> None:
        self._decide(request, queryset, False)
