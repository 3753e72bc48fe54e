# mypy: disable-error-code="untyped-decorator,no-any-return"
"""Console page of failed stream deliveries (:mod:`shequn.core.streams`): the dead letters.

Staff see every subscriber that failed on some items, with the reason; dead rows (no more automatic
retries) first. "Retry now" re-runs only that subscriber for only those items; "mark resolved" closes
a row handled by hand. Both are audited. Viewing needs ``settings.read``, acting ``settings.write``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import ChoicesDropdownFilter
from unfold.decorators import action, display

from . import streams
from .admin_base import TenantScopedAdmin, can, confirm_first, post_redirect_back, request_principal
from .models import DeliveryFailure

STREAM_LABELS = {"activity": _("活动流"), "order_events": _("订单事件")}


def _retry(request: HttpRequest, rows: list[DeliveryFailure]) -> tuple[int, int]:
    principal = request_principal(request)
    assert principal is not None
    ok = failed = 0
    for row in rows:
        if row.state == DeliveryFailure.State.RESOLVED:
            continue
        if streams.do_retry_failure(principal, row):
            ok += 1
        else:
            failed += 1
    return ok, failed


def _resolve(request: HttpRequest, rows: list[DeliveryFailure]) -> int:
    principal = request_principal(request)
    assert principal is not None
    n = 0
    for row in rows:
        if row.state != DeliveryFailure.State.RESOLVED:
            streams.do_resolve_failure(principal, row, reason=gettext("员工在控制台标记为已解决"))
            n += 1
    return n


@admin.register(DeliveryFailure)
class DeliveryFailureAdmin(TenantScopedAdmin):
    permission_area = "settings"
    read_only_model = True
    audit_writes = False  # the services audit
    list_display = ("id", "state_badge", "stream_label", "subscriber", "refs_summary", "short_error", "attempts",
                    "next_attempt_at", "updated_at")
    list_display_links = ("id", "state_badge")
    list_filter = (("state", ChoicesDropdownFilter), "stream", "subscriber")
    search_fields = ("subscriber", "error")
    ordering = ("state", "-updated_at")  # dead, pending, resolved
    actions = ["retry_selected", "resolve_selected"]
    actions_row = ["retry_row"]
    actions_detail = ["retry_row", "resolve_row"]
    fields = ("state", "stream", "subscriber", "refs", "error_block", "attempts", "next_attempt_at", "created_at",
              "updated_at", "resolved_at", "resolved_by")
    readonly_fields = fields

    @display(description=_("状态"), label={"dead": "danger", "pending": "warning", "resolved": "success"})
    def state_badge(self, obj: DeliveryFailure) -> Any:
        return obj.state, obj.get_state_display()

    @display(description=_("事件流"))
    def stream_label(self, obj: DeliveryFailure) -> str:
        return str(STREAM_LABELS.get(obj.stream, obj.stream))

    @display(description=_("事件"))
    def refs_summary(self, obj: DeliveryFailure) -> str:
        refs = list(obj.refs or [])
        if len(refs) <= 3:
            return ", ".join(f"#{r}" for r in refs)
        return gettext("%(n)d 个 (#%(a)s … #%(b)s)") % {"n": len(refs), "a": refs[0], "b": refs[-1]}

    @display(description=_("原因"))
    def short_error(self, obj: DeliveryFailure) -> str:
        return obj.error[:120]

    @display(description=_("原因"))
    def error_block(self, obj: DeliveryFailure) -> Any:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.error)

    def has_retry_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can(request, "settings.write")

    @admin.action(description=_("立即重试所选"), permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[DeliveryFailure]) -> None:
        ok, failed = _retry(request, list(queryset))
        self.message_user(request, gettext("重试成功 %(ok)d 条, 仍失败 %(failed)d 条") % {"ok": ok, "failed": failed},
                          messages.SUCCESS if not failed else messages.WARNING)

    @admin.action(description=_("标记所选为已解决"), permissions=["retry"])
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet[DeliveryFailure]) -> None:
        n = _resolve(request, list(queryset))
        self.message_user(request, gettext("已标记 %(n)d 条为已解决") % {"n": n})

    def _back(self, request: HttpRequest) -> HttpResponse:
        return post_redirect_back(request, reverse("admin:core_deliveryfailure_changelist"))

    def _row(self, request: HttpRequest, object_id: Any) -> DeliveryFailure | None:
        return self.get_queryset(request).filter(pk=int(object_id)).first()

    @action(description=_("立即重试"), url_path="retry", permissions=["retry"])
    @confirm_first
    def retry_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        row = self._row(request, object_id)
        if row is not None:
            ok, failed = _retry(request, [row])
            if ok:
                self.message_user(request, gettext("重试成功, 已解决"))
            elif failed:
                row.refresh_from_db()
                self.message_user(request, gettext("重试仍失败: %(e)s") % {"e": row.error[:300]}, messages.WARNING)
        return self._back(request)

    @action(description=_("标记为已解决"), url_path="resolve", permissions=["retry"])
    @confirm_first
    def resolve_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        row = self._row(request, object_id)
        if row is not None and _resolve(request, [row]):
            self.message_user(request, gettext("已标记为已解决"))
        return self._back(request)
