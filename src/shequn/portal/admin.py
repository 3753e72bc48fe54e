"""Console pages of the members' pages: the sandbox SMS log (where an operator reads a sign-in code
in development), join ways per group (the join-request queue is communities'), and the 公众号 for WeChat
sign-in (secret write-only, encrypted at rest)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from shequn.core.admin_base import TenantScopedAdmin, request_principal
from shequn.core.errors import ShequnError

from .models import JoinWay, SandboxSms, WeChatLogin
from .services import do_configure_wechat_login


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
