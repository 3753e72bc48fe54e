"""Console pages of the moderation engine: the review queue (one-click confirm / reverse), policies
with rule-pack validation, strikes, alerts. Every change goes through the services (audited)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timeuntil
from django.utils.translation import gettext_lazy as _
from unfold.decorators import action
from unfold.forms import PaginationInlineFormSet

from shequn.core.admin_base import (
    TenantScopedAdmin,
    TenantScopedTabularInline,
    confirm_first,
    post_redirect_back,
    request_principal,
)
from shequn.core.errors import ShequnError
from shequn.members.admin import register_member_inline

from .models import MemberReport, ModerationPolicy, RateAlert, Strike, Violation
from .rules import RulePackError, compile_pack
from .selectors import mute_time_left, running_mutes
from .services import do_lift_mute, do_review, do_save_policy


def _time_left(strike: Strike) -> str:
    left = mute_time_left(strike)
    return timeuntil(timezone.now() + left) if left is not None else "—"


class _RunningMuteFormSet(PaginationInlineFormSet):  # type: ignore[misc]
    """Strike.member has no reverse accessor (related_name="+"), so Django's default prefix would be
    the anonymous "-1"; name it so the member page's form fields say what they are."""

    @classmethod
    def get_default_prefix(cls) -> str:
        return "running_mutes"


def _lift_link(strike: Strike) -> str:
    """The one-click lift (the strike page's row action), whatever the platform."""
    url = reverse("admin:moderation_strike_lift_row", args=[strike.pk])
    return format_html('<a class="text-primary-600 font-medium" href="{}">{}</a>', url, _("提前解除禁言"))


class RunningMuteInline(TenantScopedTabularInline):
    """On the member page: the member's running mutes, with the time left and the one-click lift."""

    model = Strike
    fk_name = "member"
    formset = _RunningMuteFormSet
    permission_area = "moderation"
    fields = ("community", "created_at", "until", "time_left", "lift")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = _("禁言中")
    verbose_name_plural = _("禁言中 (剩余时间, 可提前解除)")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Strike]:
        return super().get_queryset(request).filter(
            kind=Strike.Kind.MUTE, revoked_at__isnull=True, until__gt=timezone.now()).order_by("until")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("剩余时间"))
    def time_left(self, obj: Strike) -> str:
        return _time_left(obj)

    @admin.display(description=_("操作"))
    def lift(self, obj: Strike) -> str:
        return _lift_link(obj)


register_member_inline(RunningMuteInline)


def _review(admin_obj: Any, request: HttpRequest, ids: list[int], decision: str) -> int:
    principal = request_principal(request)
    if principal is None:
        return 0
    done = 0
    for pk in ids:
        try:
            do_review(principal, pk, decision)
            done += 1
        except ShequnError as exc:
            admin_obj.message_user(request, f"#{pk}: {exc.message}", messages.WARNING)
    return done


#: the classifier's verdicts and the rule packs' categories, in words (unknown ones show as they are)
VERDICTS = {"ad": _("广告"), "review": _("待人工审核"), "ok": _("正常")}
CATEGORIES = {
    "bargain": _("砍价/助力"), "benefit": _("福利诱导"), "contact": _("留联系方式"), "counter": _("刷单"),
    "crypto": _("虚拟币"), "gambling": _("赌博"), "game": _("游戏推广"), "job": _("兼职招聘"), "link": _("外链"),
    "loan": _("贷款"), "phishing": _("钓鱼诈骗"), "poaching": _("挖人/拉群"), "selling": _("推销"),
    "flood": _("刷屏"), "repeat": _("重复消息"), "binary": _("二进制/乱码内容"), "pipeline_error": _("审核出错"),
    "reported": _("成员举报"),
}


class _LabelFilter(admin.SimpleListFilter):
    labels: dict[str, Any] = {}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in self.labels.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(**{str(self.parameter_name): self.value()}) if self.value() else queryset


class VerdictFilter(_LabelFilter):
    title = _("判定")
    parameter_name = "verdict"
    labels = VERDICTS


class CategoryFilter(_LabelFilter):
    title = _("类别")
    parameter_name = "category"
    labels = CATEGORIES


@admin.register(Violation)
class ViolationAdmin(TenantScopedAdmin):
    permission_area = "moderation"
    list_display = ("id", "status", "verdict_shown", "category_shown", "rule_id", "short_text", "member",
                    "community", "score_display", "occurred_at")
    list_filter = ("status", VerdictFilter, CategoryFilter)

    @admin.display(description=_("判定"), ordering="verdict")
    def verdict_shown(self, obj: Violation) -> str:
        return str(VERDICTS.get(obj.verdict, obj.verdict))

    @admin.display(description=_("类别"), ordering="category")
    def category_shown(self, obj: Violation) -> str:
        return str(CATEGORIES.get(obj.category, obj.category or "-"))
    search_fields = ("text", "rule_id")
    ordering = ("-id",)
    actions = ["confirm_selected", "reverse_selected"]
    actions_row = ["confirm_row", "reverse_row"]
    actions_detail = ["confirm_row", "reverse_row"]
    readonly_fields = ("community", "group", "member", "event", "platform", "message_external_id", "text",
                       "verdict_shown", "score", "category_shown", "rule_id", "reasons", "signals", "text_hash",
                       "status", "actions", "ladder_step", "mute_status", "appeal_text", "appealed_at",
                       "reviewed_by", "reviewed_at", "review_note", "occurred_at", "created_at")

    @admin.display(description=_("消息"))
    def short_text(self, obj: Violation) -> str:
        return obj.text[:60]

    @admin.display(description=_("分数"))
    def score_display(self, obj: Violation) -> str:
        return f"{obj.score:.2f}"

    @admin.display(description=_("禁言"))
    def mute_status(self, obj: Violation) -> str:
        """The mute this violation put on, while it runs: the time left and the one-click lift."""
        mutes = list(running_mutes(obj.tenant_id, violation_id=obj.pk))
        if not mutes:
            return "—"
        return format_html_join("<br>", "{} {} {}", (
            (_("剩余 %(left)s, 至 %(until)s") % {"left": _time_left(s),
                                                "until": timezone.localtime(s.until).strftime("%Y-%m-%d %H:%M")},
             "·", _lift_link(s)) for s in mutes))

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("确认违规 (执行处罚并训练)"))
    def confirm_selected(self, request: HttpRequest, queryset: QuerySet[Violation]) -> None:
        n = _review(self, request, list(queryset.values_list("pk", flat=True)), "confirm")
        self.message_user(request, _("已确认 %(n)d 条") % {"n": n})

    @admin.action(description=_("撤销误判 (解除处罚, 恢复成员状态)"))
    def reverse_selected(self, request: HttpRequest, queryset: QuerySet[Violation]) -> None:
        n = _review(self, request, list(queryset.values_list("pk", flat=True)), "reverse")
        self.message_user(request, _("已撤销 %(n)d 条") % {"n": n})

    @action(description=_("确认"), url_path="confirm", permissions=["change"])  # type: ignore[untyped-decorator]
    @confirm_first
    def confirm_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if _review(self, request, [int(object_id)], "confirm"):
            self.message_user(request, _("已确认"))
        return post_redirect_back(request, reverse("admin:moderation_violation_changelist"))

    @action(description=_("撤销"), url_path="reverse", permissions=["change"])  # type: ignore[untyped-decorator]
    @confirm_first
    def reverse_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if _review(self, request, [int(object_id)], "reverse"):
            self.message_user(request, _("已撤销"))
        return post_redirect_back(request, reverse("admin:moderation_violation_changelist"))


class PolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = ModerationPolicy
        fields = ("community", "enabled", "dry_run", "rules_text", "on_ad", "on_review", "warn_limit",
                  "warn_window_days", "mute_hours", "final_step", "exempt_roles", "exempt_role_holders",
                  "exempt_staff", "notify_on_reversal", "warn_text", "external_check", "alert_rate",
                  "report_threshold")

    def clean_rules_text(self) -> str:
        text = self.cleaned_data.get("rules_text") or ""
        try:
            compile_pack(text)
        except RulePackError as exc:
            raise forms.ValidationError([str(e) for e in exc.errors]) from exc
        return text


@admin.register(ModerationPolicy)
class ModerationPolicyAdmin(TenantScopedAdmin):
    permission_area = "moderation"
    form = PolicyForm
    list_display = ("community", "enabled", "dry_run", "on_ad", "warn_limit", "mute_hours", "final_step")
    list_filter = ("enabled", "dry_run")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("community",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: ModerationPolicy, form: Any, change: bool) -> None:
        """Saved through ``do_save_policy`` so the console validates and audits like the API."""
        principal = request_principal(request)
        if principal is None:
            return
        fields = {f: form.cleaned_data[f] for f in form.cleaned_data if f != "community"}
        community_id = obj.community_id if change else form.cleaned_data["community"].pk
        saved = do_save_policy(principal, community_id, **fields)
        obj.pk = saved.pk


@admin.register(Strike)
class StrikeAdmin(TenantScopedAdmin):
    permission_area = "moderation"
    read_only_model = True
    list_display = ("member", "community", "kind", "created_at", "until", "time_left", "revoked_at")
    list_filter = ("kind",)
    actions_row = ["lift_row"]
    actions_detail = ["lift_row"]

    @admin.display(description=_("剩余时间"))
    def time_left(self, obj: Strike) -> str:
        return _time_left(obj)

    def has_lift_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        principal = request_principal(request)
        return principal is not None and principal.can("moderation.write")

    @action(description=_("提前解除禁言"), url_path="lift", permissions=["lift"])  # type: ignore[untyped-decorator]
    @confirm_first
    def lift_row(self, request: HttpRequest, object_id: int) -> HttpResponse:
        principal = request_principal(request)
        if principal is not None:
            try:
                do_lift_mute(principal, int(object_id))
                self.message_user(request, _("已解除禁言"))
            except ShequnError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        return post_redirect_back(request, reverse("admin:moderation_strike_changelist"))


@admin.register(RateAlert)
class RateAlertAdmin(TenantScopedAdmin):
    permission_area = "moderation"
    read_only_model = True
    list_display = ("community", "day", "messages", "violations", "rate")


@admin.register(MemberReport)
class MemberReportAdmin(TenantScopedAdmin):
    permission_area = "moderation"
    read_only_model = True
    list_display = ("event", "reporter", "reason", "created_at")
