# mypy: disable-error-code="untyped-decorator,no-any-return"
"""Console pages of the core app: the operator's own organisation, staff logins, API keys, audit log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateFilter
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget

from . import (
    admin_delivery,  # noqa: F401  (registers the failed-deliveries / dead-letter page)
    admin_webhooks,  # noqa: F401  (registers the webhook endpoints and delivery log pages)
)
from .admin_base import TenantScopedAdmin, can, request_principal, request_tenant_id
from .models import ApiKey, AuditLog, StaffMembership, Tenant
from .permissions import AREAS
from .services import do_audit, do_create_api_key, do_create_operator, do_revoke_api_key


@admin.register(Tenant)
class TenantAdmin(ModelAdmin):  # type: ignore[misc]
    """Only the operator's own organisation; created from the CLI (``shequn createoperator``)."""

    list_display = ("name", "slug", "kind", "time_zone", "is_active", "created_at")
    fields = ("name", "slug", "kind", "time_zone", "is_active", "created_at")
    readonly_fields = ("slug", "is_active", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        tenant_id = request_tenant_id(request)
        qs = super().get_queryset(request)
        return qs.none() if tenant_id is None else qs.filter(pk=tenant_id)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can(request, "settings.read")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can(request, "settings.read")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can(request, "settings.write")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        principal = request_principal(request)
        if principal is not None:
            do_audit(principal, "tenant.update", "Tenant", obj.pk, data={"fields": sorted(form.changed_data)})


class StaffCreateForm(forms.ModelForm):  # type: ignore[type-arg]
    username = forms.CharField(label=_("登录名"), max_length=150)
    password = forms.CharField(label=_("初始密码"), widget=forms.PasswordInput, min_length=8,
                               help_text=_("至少 8 位; 请让员工登录后自行修改"))

    class Meta:
        model = StaffMembership
        fields = ("role", "display_name")

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        if get_user_model().objects.filter(username=username).exists():
            # never attach (and re-password) an existing login, which may belong to another tenant
            raise forms.ValidationError(gettext("该登录名已被使用"))
        return username


@admin.register(StaffMembership)
class StaffMembershipAdmin(TenantScopedAdmin):
    """Staff logins of the organisation — the owner only."""

    permission_area = "staff"
    list_display = ("display_name", "username", "role", "is_active", "created_at")
    list_filter = (("role", ChoicesDropdownFilter), "is_active")
    search_fields = ("display_name", "user__username")
    fields = ("display_name", "role", "is_active")
    audit_writes = True

    @display(description=_("登录名"))
    def username(self, obj: StaffMembership) -> str:
        return obj.user.get_username()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = StaffCreateForm
            kwargs["fields"] = ("username", "password", "role", "display_name")
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("username", "password", "role", "display_name")
        return self.fields

    def save_model(self, request: HttpRequest, obj: StaffMembership, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return

        staff = do_create_operator(
            tenant=request.tenant,  # type: ignore[attr-defined]
            username=form.cleaned_data["username"], password=form.cleaned_data["password"],
            role=form.cleaned_data["role"], display_name=form.cleaned_data.get("display_name", ""),
        )
        obj.__dict__.update(staff.__dict__)
        principal = request_principal(request)
        if principal is not None:
            do_audit(principal, "staff.create", "StaffMembership", staff.pk, data={"role": staff.role})

    # owner only: operators and finance may read other areas but never the staff list
    def has_module_permission(self, request: HttpRequest) -> bool:
        return can(request, "staff.write")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can(request, "staff.write")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate instead: the audit trail keeps pointing at the login


SCOPE_CHOICES = [("*", _("全部权限"))] + [
    (f"{a}.{v}", f"{a}.{v}") for a in AREAS for v in ("read", "write")
]


class ApiKeyForm(forms.ModelForm):  # type: ignore[type-arg]
    scopes = forms.MultipleChoiceField(label=_("权限范围"), choices=SCOPE_CHOICES,
                                       widget=UnfoldAdminCheckboxSelectMultipleWidget,
                                       help_text=_("write 包含 read; 只授予集成真正需要的范围"))

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expires_at")

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError(gettext("过期时间必须晚于现在"))
        return value


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    """Integration keys. The secret is shown once, at creation; the hash is never shown."""

    permission_area = "settings"
    form = ApiKeyForm
    list_display = ("name", "prefix", "scopes", "status", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    actions = ["revoke_keys"]
    audit_writes = False  # the services audit

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("name", "scopes", "expires_at")
        return ("name", "prefix", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("name", "prefix", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at")

    @display(description=_("状态"), label={"revoked": "danger", "expired": "warning", "active": "success"})
    def status(self, obj: ApiKey) -> Any:
        if obj.revoked_at:
            return ("revoked", gettext("已吊销"))
        if obj.expires_at and obj.expires_at <= timezone.now():
            return ("expired", gettext("已过期"))
        return ("active", gettext("有效"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are immutable: create a new one and revoke the old

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead (keeps the audit trail)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        principal = request_principal(request)
        assert principal is not None
        key, secret = do_create_api_key(principal, name=form.cleaned_data["name"],
                                        scopes=list(form.cleaned_data["scopes"]), created_by_id=request.user.pk,
                                        expires_at=form.cleaned_data.get("expires_at"))
        obj.__dict__.update(key.__dict__)
        messages.warning(request, gettext("新密钥 (只显示这一次, 请立即保存): %(secret)s") % {"secret": secret})

    @action(description=_("吊销所选密钥"), permissions=["revoke"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        principal = request_principal(request)
        assert principal is not None
        n = 0
        for key in queryset.filter(revoked_at__isnull=True):
            do_revoke_api_key(principal, key)
            n += 1
        messages.success(request, gettext("已吊销 %(n)d 个密钥") % {"n": n})

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return can(request, "settings.write")


@admin.register(AuditLog)
class AuditLogAdmin(TenantScopedAdmin):
    permission_area = "audit"
    read_only_model = True
    list_display = ("created_at", "actor_type", "actor_label", "action", "object_type", "object_id", "short_reason")
    list_filter = (("actor_type", ChoicesDropdownFilter), "object_type", ("created_at", RangeDateFilter))
    list_filter_submit = True
    search_fields = ("action", "object_id", "actor_label", "reason")
    readonly_fields = ("created_at", "actor_type", "actor_id", "actor_label", "action", "object_type", "object_id",
                       "reason", "data")

    @display(description=_("原因"))
    def short_reason(self, obj: AuditLog) -> str:
        return obj.reason[:60]
