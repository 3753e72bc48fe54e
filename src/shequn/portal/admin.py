"""Console pages of the members' pages: the sandbox SMS log (where an operator reads a sign-in code
in development), join ways per group, join requests to approve or reject, and the 公众号 for WeChat
sign-in (secret write-only, encrypted at rest)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from shequn.core.admin_base import TenantScopedAdmin, request_principal
from shequn.core.errors import ShequnError

from .models import JoinRequest, JoinWay, SandboxSms, WeChatLogin
from .services import do_configure_wechat_login, do_decide_join


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


class WeChatLoginForm(forms.ModelForm):  # type: ignore[type-arg]
    secret = forms.CharField(label="AppSecret", required=False, widget=forms.PasswordInput)

    class Meta:
        model = WeChatLogin
        fields = ("app_id", "scope", "api_base")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hint = self.instance.secret_hint if self.instance.pk else ""
        self.fields["secret"].help_text = (_("已保存 %(hint)s; 留空则不修改") % {"hint": hint} if hint
                                           else _("加密保存, 不再完整显示"))


@admin.register(WeChatLogin)
class WeChatLoginAdmin(TenantScopedAdmin):
    """One row per tenant; saved through :func:`do_configure_wechat_login` (which encrypts the secret
    and audits), so the console and any other writer share the same checks."""

    permission_area = "connectors"
    form = WeChatLoginForm
    audit_writes = False  # the service audits
    list_display = ("app_id", "scope", "secret_hint", "updated_at")
    fields = ("app_id", "secret", "scope", "api_base", "secret_hint")
    readonly_fields = ("secret_hint",)

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        tenant = getattr(request, "tenant", None)
        if tenant is not None and WeChatLogin.objects.filter(tenant_id=tenant.pk).exists():
            return False
        return super().has_add_permission(request, *args)

    def save_model(self, request: HttpRequest, obj: WeChatLogin, form: Any, change: bool) -> None:
        principal = request_principal(request)
        assert principal is not None
        cd = form.cleaned_data
        try:
            row = do_configure_wechat_login(principal, app_id=cd.get("app_id", ""), secret=cd.get("secret", ""),
                                            scope=cd.get("scope") or "snsapi_base", api_base=cd.get("api_base", ""))
        except ShequnError as exc:
            messages.error(request, exc.message)
            raise
        obj.pk = row.pk
