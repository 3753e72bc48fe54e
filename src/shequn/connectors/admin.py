"""Console pages of the connectors: connect a platform (secrets write-only), health, discovered rooms
→ communities, the outbox with dead letters to retry, human tasks to mark done, raw callbacks."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from shequn.communities.models import Community
from shequn.core.admin_base import TenantScopedAdmin, request_principal
from shequn.core.errors import ShequnError

from . import selectors, services
from .models import Connection, HumanTask, InboundEvent, OutboxAction, QrConfig, Room

SECRET_FIELDS = ("bot_token", "webhook_secret", "access_token", "hs_token", "corp_secret", "callback_token",
                 "encoding_aes_key")
CONFIG_FIELDS = ("homeserver", "user_id", "device_id", "corp_id", "api_base", "mode")


class ConnectionForm(forms.ModelForm):  # type: ignore[type-arg]
    homeserver = forms.CharField(label="Matrix homeserver", required=False, help_text="https://matrix.example.com")
    user_id = forms.CharField(label=_l("Matrix 机器人账号"), required=False, help_text="@bot:example.com")
    device_id = forms.CharField(label="Matrix device_id", required=False)
    corp_id = forms.CharField(label=_l("企业微信 CorpID"), required=False)
    api_base = forms.CharField(label=_l("API 地址 (可选)"), required=False)
    mode = forms.ChoiceField(label=_l("Telegram 接收方式"), required=False,
                             choices=[("", "webhook"), ("polling", _l("轮询 (getUpdates, 由 worker 执行)"))])
    bot_token = forms.CharField(label="Telegram bot token", required=False, widget=forms.PasswordInput)
    webhook_secret = forms.CharField(label=_l("Telegram webhook 密钥"), required=False, widget=forms.PasswordInput)
    access_token = forms.CharField(label="Matrix access token", required=False, widget=forms.PasswordInput)
    hs_token = forms.CharField(label=_l("Matrix appservice hs_token (可选)"), required=False,
                               widget=forms.PasswordInput)
    corp_secret = forms.CharField(label=_l("企业微信 Secret"), required=False, widget=forms.PasswordInput)
    callback_token = forms.CharField(label=_l("回调 Token"), required=False, widget=forms.PasswordInput)
    encoding_aes_key = forms.CharField(label="EncodingAESKey", required=False, widget=forms.PasswordInput)

    class Meta:
        model = Connection
        fields = ("platform", "name", "is_active", "default_community")

    class Media:
        js = ("console/connection_form.js",)  # shows the chosen platform's fields only

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for key in CONFIG_FIELDS:
                self.fields[key].initial = (self.instance.config or {}).get(key, "")
            self.fields["platform"].disabled = True
            for key in SECRET_FIELDS:
                hint = (self.instance.secret_hints or {}).get(key)
                self.fields[key].help_text = _("已保存 %(hint)s; 留空则不修改") % {"hint": hint} if hint else ""

    def clean(self) -> dict[str, Any]:
        """A new connection's credentials are checked with the platform (Matrix ``whoami``, Telegram
        ``getMe``, WeCom ``gettoken`` + the 客户联系 permission): a bogus
        token or an unreachable homeserver is refused here, with the reason, instead of stored."""
        cd = super().clean() or {}
        if self.instance.pk or self.errors:
            return cd
        config = {k: cd[k] for k in CONFIG_FIELDS if cd.get(k)}
        secret_values = {k: cd[k] for k in SECRET_FIELDS if cd.get(k)}
        try:
            services.check_connection_input(str(cd.get("platform") or ""), config, secret_values)
            self.verified_config = services.verify_connection(str(cd.get("platform") or ""), config, secret_values)
        except ShequnError as exc:
            field = str((exc.details or {}).get("field") or "").rpartition(".")[2]
            if field in self.fields:  # under the field it names (secrets.bot_token → bot_token)
                self.add_error(field, exc.message)
                return cd
            raise forms.ValidationError(exc.message) from exc
        return cd


@admin.register(Connection)
class ConnectionAdmin(TenantScopedAdmin):
    permission_area = "connectors"
    form = ConnectionForm
    list_display = ("name", "platform", "is_active", "health_last_event", "health_lag", "error_count",
                    "health_backlog", "events_received")
    list_filter = ("platform", "is_active")
    readonly_fields = ("hook_url", "secret_hints", "health_problems", "last_event_at", "last_received_at",
                       "events_received", "error_count", "last_error", "last_error_at")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        main = ("platform", "name", "is_active", "default_community")
        fs = [(None, {"fields": main}),
              (_("配置"), {"fields": CONFIG_FIELDS}),
              (_("密钥 (加密保存, 不再完整显示)"), {"fields": SECRET_FIELDS})]
        if obj is not None:
            fs.append((_("健康"), {"fields": self.readonly_fields}))
        return fs

    @admin.display(description=_l("回调地址"))
    def hook_url(self, obj: Connection) -> str:
        if obj.platform == "matrix":
            return f"/hooks/matrix/{obj.hook_key}/_matrix/app/v1/transactions/<txn>"
        return f"/hooks/{obj.platform}/{obj.hook_key}/"

    @admin.display(description=_l("权限问题"))
    def health_problems(self, obj: Connection) -> str:
        problems = selectors.power_problems(obj)
        return "\n".join(p["fix"] for p in problems) if problems else "—"

    @admin.display(description=_l("最近事件"))
    def health_last_event(self, obj: Connection) -> Any:
        return obj.last_event_at

    @admin.display(description=_l("延迟 (秒)"))
    def health_lag(self, obj: Connection) -> Any:
        return selectors.lag_seconds(obj)

    @admin.display(description=_l("待发积压"))
    def health_backlog(self, obj: Connection) -> int:
        return selectors.outbox_backlog(obj.tenant_id, obj.pk)

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        principal = request_principal(request)
        assert principal is not None
        cd = form.cleaned_data
        config = {k: cd[k] for k in CONFIG_FIELDS if cd.get(k)}
        secret_values = {k: cd[k] for k in SECRET_FIELDS if cd.get(k)}
        try:
            if change:
                obj.config = {**(obj.config or {}), **config}
                obj.save()
                if secret_values:
                    services.do_update_connection_secrets(principal, obj.pk, secret_values)
            else:
                created = services.do_create_connection(
                    principal, platform=cd["platform"], name=cd["name"],
                    config=getattr(form, "verified_config", None) or config, secret_values=secret_values,
                    default_community_id=cd["default_community"].pk if cd.get("default_community") else None,
                    verify=False)  # the form's clean() verified them
                obj.pk = created.pk
        except ShequnError as exc:
            messages.error(request, exc.message)
            raise


class RoomForm(forms.ModelForm):  # type: ignore[type-arg]
    community = forms.ModelChoiceField(queryset=Community.objects.none(), required=False, label=_l("映射到社群"))
    robot_key = forms.CharField(label=_l("企业微信群机器人 key (可选)"), required=False, widget=forms.PasswordInput)

    class Meta:
        model = Room
        fields = ()

    def clean_community(self) -> Any:
        community = self.cleaned_data.get("community")
        if community is not None and self.instance.pk and self.instance.encrypted:
            raise forms.ValidationError(services.encrypted_refusal(self.instance))
        return community


@admin.register(Room)
class RoomAdmin(TenantScopedAdmin):
    permission_area = "connectors"
    form = RoomForm
    list_display = ("__str__", "connection", "external_id", "member_count", "group", "bot_joined", "encrypted",
                    "discovered_at")
    list_filter = ("connection", "bot_joined", "encrypted")
    search_fields = ("name", "external_id")
    readonly_fields = ("connection", "external_id", "name", "member_count", "group", "bot_joined", "encrypted",
                       "secret_hints")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        tenant = getattr(request, "tenant", None)
        form.base_fields["community"].queryset = Community.objects.filter(tenant_id=tenant.pk if tenant else 0)
        return form

    def save_model(self, request: HttpRequest, obj: Room, form: Any, change: bool) -> None:
        principal = request_principal(request)
        assert principal is not None
        community = form.cleaned_data.get("community")
        if community is not None:
            services.do_map_room(principal, obj.pk, community.pk, robot_key=form.cleaned_data.get("robot_key") or None)
            if obj.connection.platform == "telegram":  # the bot's admin rights there, for the health page
                services.do_check_rights_quietly(obj.connection_id)


@admin.register(OutboxAction)
class OutboxActionAdmin(TenantScopedAdmin):
    permission_area = "connectors"
    list_display = ("pk", "kind", "platform", "group", "status_badge", "attempts", "next_attempt_at",
                    "last_error_short", "source", "created_at")
    list_filter = ("status", "platform", "kind")
    search_fields = ("idempotency_key", "source", "last_error")
    readonly_fields = [f.name for f in OutboxAction._meta.fields if f.name != "tenant"]
    actions = ["retry_actions", "cancel_actions"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_l("状态"))
    def status_badge(self, obj: OutboxAction) -> str:
        colour = {"dead": "#dc2626", "failed": "#dc2626", "done": "#16a34a", "delegated": "#d97706"}.get(
            obj.status, "#2563eb")
        return format_html('<span style="color:{}">{}</span>', colour, obj.get_status_display())

    @admin.display(description=_l("最近错误"))
    def last_error_short(self, obj: OutboxAction) -> str:
        return obj.last_error[:80]

    @admin.action(description=_l("重试 (死信/失败)"))
    def retry_actions(self, request: HttpRequest, queryset: QuerySet[OutboxAction]) -> None:
        self._each(request, queryset, services.do_retry_action, _("已重新排队 %(n)d 个动作"))

    @admin.action(description=_l("取消"))
    def cancel_actions(self, request: HttpRequest, queryset: QuerySet[OutboxAction]) -> None:
        self._each(request, queryset, services.do_cancel_action, _("已取消 %(n)d 个动作"))

    def _each(self, request: HttpRequest, queryset: QuerySet[Any], fn: Any, ok_message: str) -> None:
        principal = request_principal(request)
        assert principal is not None
        n = 0
        for obj in queryset:
            try:
                fn(principal, obj.pk)
                n += 1
            except ShequnError as exc:
                messages.warning(request, f"#{obj.pk}: {exc.message}")
        messages.success(request, ok_message % {"n": n})


@admin.register(HumanTask)
class HumanTaskAdmin(TenantScopedAdmin):
    permission_area = "connectors"
    list_display = ("title", "action", "assignee_role", "due", "status", "done_by", "done_at")
    list_filter = ("status", "assignee_role")
    readonly_fields = ("action", "assignee_role", "title", "instructions", "due_at", "status", "done_by", "done_at")
    actions = ["mark_done"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    @admin.display(description=_l("截止时间"))
    def due(self, obj: HumanTask) -> Any:
        if obj.status == HumanTask.Status.OPEN and obj.due_at < timezone.now():
            return format_html('<span style="color:#dc2626">{} ({})</span>', obj.due_at, _("已超时"))
        return obj.due_at

    @admin.action(description=_l("标记为已完成"))
    def mark_done(self, request: HttpRequest, queryset: QuerySet[HumanTask]) -> None:
        principal = request_principal(request)
        assert principal is not None
        n = 0
        for task in queryset:
            try:
                services.do_complete_human_task(principal, task.pk)
                n += 1
            except ShequnError as exc:
                messages.warning(request, f"#{task.pk}: {exc.message}")
        messages.success(request, _("已完成 %(n)d 个任务") % {"n": n})


@admin.register(InboundEvent)
class InboundEventAdmin(TenantScopedAdmin):
    permission_area = "connectors"
    read_only_model = True
    list_display = ("pk", "connection", "event_type", "status", "attempts", "error", "received_at")
    list_filter = ("status", "platform")
    readonly_fields = ("connection", "platform", "dedupe_key", "event_type", "status", "attempts", "error",
                       "received_at", "processed_at")
    exclude = ("body",)


@admin.register(QrConfig)
class QrConfigAdmin(TenantScopedAdmin):
    permission_area = "connectors"
    read_only_model = True
    list_display = ("remark", "kind", "state", "qr_link", "created_at")
    list_filter = ("kind",)

    @admin.display(description=_l("二维码"))
    def qr_link(self, obj: QrConfig) -> str:
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', obj.qr_code, _("打开")) \
            if obj.qr_code else ""


