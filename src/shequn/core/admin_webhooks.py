# mypy: disable-error-code="untyped-decorator,no-any-return"
"""Console pages of outgoing webhooks (:mod:`shequn.core.webhooks`): endpoints (real fields; the
signing secret shown once at creation or rotation), the delivery log with a replay button, and a
notice for endpoints the platform disabled. Forms call the same services as the API and show the
same errors. Viewing needs ``settings.read``, changing ``settings.write``."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import ChoicesDropdownFilter
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget

from . import webhooks
from .admin_base import (
    TenantScopedAdmin,
    can,
    confirm_first,
    post_redirect_back,
    request_principal,
    request_tenant_id,
)
from .errors import ShequnError
from .models import WebhookDelivery, WebhookEndpoint, WebhookEventType

EVENT_LABELS = dict(WebhookEventType.choices)


class WebhookEndpointForm(forms.ModelForm):  # type: ignore[type-arg]
    # a plain text field: the service's check (the same as the API's) names what is wrong
    url = forms.CharField(label=_("接收地址"), max_length=500,
                          help_text=_("接收 POST 的网址, 每个请求带 Shequn-Signature 签名头 (见文档)"))
    event_types = forms.MultipleChoiceField(label=_("订阅的事件"), choices=WebhookEventType.choices,
                                            widget=UnfoldAdminCheckboxSelectMultipleWidget)

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "event_types", "is_active")


def _principal(request: HttpRequest) -> Any:
    principal = request_principal(request)
    assert principal is not None
    return principal


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantScopedAdmin):
    permission_area = "settings"
    audit_writes = False  # the services audit
    form = WebhookEndpointForm
    list_display = ("__str__", "url", "events_summary", "status_badge", "consecutive_failures", "last_success_at",
                    "secret_hint")
    search_fields = ("url", "description")
    actions_detail = ["rotate_secret", "show_deliveries"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        base = ("url", "description", "event_types", "is_active")
        if obj is None:
            return base
        return (*base, "secret_hint", "disabled_at", "disabled_reason", "consecutive_failures", "last_success_at",
                "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("secret_hint", "disabled_at", "disabled_reason", "consecutive_failures", "last_success_at",
                "created_at")

    @display(description=_("订阅的事件"))
    def events_summary(self, obj: WebhookEndpoint) -> str:
        return "、".join(str(EVENT_LABELS.get(t, t)) for t in obj.event_types)

    @display(description=_("状态"), label={"on": "success", "off": "danger", "paused": "warning"})
    def status_badge(self, obj: WebhookEndpoint) -> Any:
        if obj.is_active:
            return "on", gettext("启用")
        if obj.disabled_reason and obj.disabled_reason != gettext("员工手动停用"):
            return "off", gettext("因持续失败已停用")
        return "paused", gettext("已停用")

    def check_form(self, request: HttpRequest, form: Any) -> None:
        data = form.cleaned_data
        webhooks.check_url(data.get("url", ""))
        webhooks.check_event_types(data.get("event_types") or [])
        webhooks.check_description(data.get("description", ""))

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            stored = WebhookEndpoint.objects.get(pk=obj.pk)
            updated = webhooks.do_update_endpoint(
                _principal(request), stored, url=data["url"], event_types=data["event_types"],
                description=data.get("description", ""), is_active=data.get("is_active", True))
            obj.__dict__.update(updated.__dict__)
            return
        endpoint, secret = webhooks.do_create_endpoint(
            _principal(request), url=data["url"], event_types=data["event_types"],
            description=data.get("description", ""), is_active=data.get("is_active", True))
        obj.__dict__.update(endpoint.__dict__)
        messages.warning(request, gettext("签名密钥 (只显示这一次, 请立即保存到接收端): %(secret)s")
                         % {"secret": secret})

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        webhooks.do_delete_endpoint(_principal(request), obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for obj in list(queryset):
            webhooks.do_delete_endpoint(_principal(request), obj)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        tenant_id = request_tenant_id(request)
        if tenant_id is not None and request.method == "GET":
            for e in webhooks.disabled_endpoints(tenant_id):
                messages.warning(request, gettext("端点「%(e)s」已被自动停用: %(r)s")
                                 % {"e": e, "r": e.disabled_reason})
        return super().changelist_view(request, extra_context)

    def has_rotate_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can(request, "settings.write")

    @action(description=_("更换签名密钥"), url_path="rotate-secret", permissions=["rotate"])
    @confirm_first
    def rotate_secret(self, request: HttpRequest, object_id: int) -> HttpResponse:
        endpoint = self.get_queryset(request).filter(pk=int(object_id)).first()
        if endpoint is not None:
            secret = webhooks.do_rotate_secret(_principal(request), endpoint)
            messages.warning(request, gettext("新的签名密钥 (只显示这一次, 旧密钥已失效): %(secret)s")
                             % {"secret": secret})
        return HttpResponseRedirect(reverse("admin:core_webhookendpoint_change", args=[object_id]))

    @action(description=_("投递记录"), url_path="deliveries")
    def show_deliveries(self, request: HttpRequest, object_id: int) -> HttpResponse:
        url = reverse("admin:core_webhookdelivery_changelist")
        return HttpResponseRedirect(f"{url}?endpoint__id__exact={int(object_id)}")


def _replay(request: HttpRequest, rows: list[WebhookDelivery]) -> int:
    n = 0
    for row in rows:
        try:
            webhooks.do_replay(_principal(request), row)
        except ShequnError as exc:
            messages.error(request, gettext("投递 #%(d)s 无法重放: %(e)s") % {"d": row.pk, "e": exc.message})
            continue
        n += 1
    return n


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(TenantScopedAdmin):
    permission_area = "settings"
    read_only_model = True
    audit_writes = False
    list_display = ("id", "state_badge", "event_label", "endpoint", "attempts", "last_status_code", "short_error",
                    "next_attempt_at", "delivered_at", "created_at")
    list_display_links = ("id", "state_badge")
    list_filter = (("state", ChoicesDropdownFilter), "endpoint", ("event__type", ChoicesDropdownFilter))
    ordering = ("-pk",)
    actions = ["replay_selected"]
    actions_row = ["replay_row"]
    actions_detail = ["replay_row"]
    fields = ("state", "endpoint", "event_label", "event_ref", "replay_of", "attempts", "next_attempt_at",
              "last_status_code", "last_error", "response_excerpt", "duration_ms", "delivered_at", "created_at",
              "payload_block")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        return super().get_queryset(request).select_related("endpoint", "event")

    @display(description=_("状态"), label={"pending": "warning", "succeeded": "success", "failed": "danger"})
    def state_badge(self, obj: WebhookDelivery) -> Any:
        return obj.state, obj.get_state_display()

    @display(description=_("事件"))
    def event_label(self, obj: WebhookDelivery) -> str:
        return str(EVENT_LABELS.get(obj.event.type, obj.event.type))

    @display(description=_("事件编号"))
    def event_ref(self, obj: WebhookDelivery) -> str:
        return f"evt_{obj.event_id}"

    @display(description=_("失败原因"))
    def short_error(self, obj: WebhookDelivery) -> str:
        return obj.last_error[:80]

    @display(description=_("事件内容"))
    def payload_block(self, obj: WebhookDelivery) -> Any:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>',
                           json.dumps(obj.event.data, ensure_ascii=False, indent=2))

    def has_replay_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can(request, "settings.write")

    @admin.action(description=_("重放所选"), permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        n = _replay(request, list(queryset))
        if n:
            self.message_user(request, gettext("已重放 %(n)d 条, 稍后在列表中查看结果") % {"n": n})

    @action(description=_("重放"), url_path="replay", permissions=["replay"])
    @confirm_first
    def replay_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        row = self.get_queryset(request).filter(pk=int(object_id)).first()
        if row is not None and _replay(request, [row]):
            self.message_user(request, gettext("已重放, 新的投递记录在列表顶部"))
        return post_redirect_back(request, reverse("admin:core_webhookdelivery_changelist"))
