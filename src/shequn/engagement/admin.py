"""The engagement console (permission area ``engagement``): scores, suggestions to confirm, the reply
queue, check-ins and points, lotteries, red packets, the content library, schedules with a calendar,
and health alerts. Every action calls a service."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shequn.communities import selectors as community_selectors
from shequn.core.admin_base import (
    ServiceCreateMixin,
    TenantScopedAdmin,
    TenantScopedTabularInline,
    request_principal,
)
from shequn.core.errors import ShequnError
from shequn.core.money import YuanField, yuan
from shequn.members.audiences import audience_choices

from . import models, selectors, services


class EngagementAdmin(TenantScopedAdmin):
    permission_area = "engagement"


class ReadOnlyEngagementAdmin(EngagementAdmin):
    read_only_model = True


def _each(request: HttpRequest, qs: QuerySet[Any], fn: Any, ok_message: Any) -> None:
    principal = request_principal(request)
    if principal is None:
        return
    done = 0
    for obj in qs:
        try:
            fn(principal, obj)
            done += 1
        except ShequnError as exc:
            messages.error(request, f"#{obj.pk}: {exc.message}")
    if done:
        messages.success(request, ok_message % {"n": done})


@admin.register(models.EngagementSettings)
class EngagementSettingsAdmin(EngagementAdmin):
    list_display = ("tenant", "updated_at")
    readonly_fields = ("defaults",)

    @admin.display(description=_("默认值"))
    def defaults(self, obj: Any) -> str:
        return json.dumps(selectors.DEFAULT_CONFIG, ensure_ascii=False, indent=1)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        selectors.forget_engagement_config(obj.tenant_id)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        selectors.forget_engagement_config(obj.tenant_id)


@admin.register(models.MemberScore)
class MemberScoreAdmin(ReadOnlyEngagementAdmin):
    list_display = ("member", "level", "score", "last_spoke_day", "last_active_day", "computed_at")
    list_filter = ("level",)
    search_fields = ("member__display_name",)
    ordering = ("-score",)
    readonly_fields = ("explanation",)

    @admin.display(description=_("等级说明"))
    def explanation(self, obj: models.MemberScore) -> str:
        return json.dumps(selectors.explain_score(obj.tenant_id, obj.member_id), ensure_ascii=False, indent=1)


@admin.register(models.LadderSuggestion)
class LadderSuggestionAdmin(EngagementAdmin):
    list_display = ("member", "from_level", "to_level", "status", "created_at", "decided_by")
    list_filter = ("status", "to_level")
    readonly_fields = ("member", "from_level", "to_level", "evidence", "status", "decided_at", "decided_by")
    actions = ("accept", "dismiss")

    @admin.action(description=_("确认升级"))
    def accept(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_decide_ladder(p, o.pk, accept=True), _("已确认 %(n)d 条"))

    @admin.action(description=_("忽略"))
    def dismiss(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_decide_ladder(p, o.pk, accept=False), _("已忽略 %(n)d 条"))


@admin.register(models.RoleRecommendation)
class RoleRecommendationAdmin(EngagementAdmin):
    list_display = ("member", "community", "role", "score", "status", "created_at")
    list_filter = ("status", "role")
    readonly_fields = ("community", "member", "role", "score", "reasons", "status", "decided_at", "decided_by")
    actions = ("accept", "dismiss")

    @admin.action(description=_("接受推荐 (指派角色)"))
    def accept(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_decide_role(p, o.pk, accept=True), _("已指派 %(n)d 人"))

    @admin.action(description=_("忽略"))
    def dismiss(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_decide_role(p, o.pk, accept=False), _("已忽略 %(n)d 条"))


@admin.register(models.ChatStaff)
class ChatStaffAdmin(EngagementAdmin):
    list_display = ("member", "label")
    autocomplete_fields = ()


@admin.register(models.ReplyTrack)
class ReplyTrackAdmin(ReadOnlyEngagementAdmin):
    """Every tracked member message; the queue page (``queue/``) lists the unanswered ones oldest first
    with a reply box each (one click → ``do_reply_from_queue`` → the connector outbox) and the
    response rate and median first-response time per community and per responder."""

    list_display = ("occurred_at", "community", "member", "excerpt", "answered_at", "answered_by",
                    "answered_by_label", "no_reply_at")
    list_filter = ("community",)
    ordering = ("answered_at", "occurred_at")
    change_list_template = "engagement/admin/replytrack_changelist.html"

    def get_urls(self) -> list[Any]:
        return [path("queue/", self.admin_site.admin_view(self.queue_view), name="engagement_reply_queue"),
                *super().get_urls()]

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        if tenant is None or not self.has_view_permission(request):
            return HttpResponse(status=403)
        community_id = request.GET.get("community") or request.POST.get("community") or None
        cid = int(community_id) if community_id and str(community_id).isdigit() else None
        if request.method == "POST":
            principal = request_principal(request)
            if principal is None or not principal.can("engagement.write"):
                return HttpResponse(status=403)
            track_id = request.POST.get("track_id", "")
            try:
                if request.POST.get("no_reply"):
                    services.do_mark_no_reply_needed(principal, int(track_id) if track_id.isdigit() else 0)
                    messages.success(request, _("已标记为无需回复"))
                else:
                    services.do_reply_from_queue(principal, int(track_id) if track_id.isdigit() else 0,
                                                 text=request.POST.get("text", ""))
                    messages.success(request, _("回复已提交, 将通过平台发送"))
            except ShequnError as exc:
                messages.error(request, f"#{track_id}: {exc.message}")
            return redirect(f"{request.path}?community={cid}" if cid else request.path)
        queue = list(selectors.reply_queue(tenant.pk, community_id=cid).select_related("member", "community")[:200])
        stats = selectors.reply_stats(tenant.pk, since=timezone.now() - dt.timedelta(days=30), community_id=cid)
        comms = list(community_selectors.communities(tenant.pk))
        names = {c.pk: c.name for c in comms}
        for row in stats["communities"]:
            row["name"] = names.get(row["community_id"], "—")
        ctx = {**self.admin_site.each_context(request), "title": _("待回复队列"), "queue": queue, "stats": stats,
               "communities": comms, "community_id": cid, "opts": self.model._meta,
               "can_reply": bool((p := request_principal(request)) and p.can("engagement.write"))}
        return TemplateResponse(request, "engagement/admin/reply_queue.html", ctx)


@admin.register(models.CheckIn)
class CheckInAdmin(ReadOnlyEngagementAdmin):
    list_display = ("member", "day", "source", "created_at")
    list_filter = ("source", "day")


@admin.register(models.CheckInStats)
class CheckInStatsAdmin(ReadOnlyEngagementAdmin):
    list_display = ("member", "current_streak", "longest_streak", "total_days", "last_day", "makeup_cards")


@admin.register(models.PointsAccount)
class PointsAccountAdmin(ReadOnlyEngagementAdmin):
    list_display = ("member", "balance", "earned_total", "spent_total", "updated_at")
    search_fields = ("member__display_name",)


@admin.register(models.PointsEntry)
class PointsEntryAdmin(ReadOnlyEngagementAdmin):
    list_display = ("created_at", "member", "delta", "balance_after", "kind", "reason")
    list_filter = ("kind",)


@admin.register(models.Badge)
class BadgeAdmin(ServiceCreateMixin, EngagementAdmin):
    list_display = ("name", "code", "rule", "threshold")
    change_service = staticmethod(services.do_update_badge)
    change_check = staticmethod(services.check_update_badge)
    change_fields = ("code", "name", "rule", "threshold", "description")

    def check_service(self, tenant_id: int, **kwargs: Any) -> None:
        services.check_badge(tenant_id, **kwargs)

    def create_service(self, principal: Any, **kwargs: Any) -> Any:
        return services.do_create_badge(principal, **kwargs)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {"code": data.get("code") or "", "name": data.get("name") or "", "rule": data.get("rule") or "",
                "threshold": data.get("threshold") or 0, "description": data.get("description") or ""}


@admin.register(models.MemberBadge)
class MemberBadgeAdmin(ReadOnlyEngagementAdmin):
    list_display = ("member", "badge", "awarded_at")


class PrizeInline(TenantScopedTabularInline):
    """Prizes are frozen into the published snapshot once entries close."""

    model = models.LotteryPrize
    permission_area = "engagement"
    extra = 0

    def _open(self, obj: Any) -> bool:
        return obj is None or getattr(obj, "status", None) == models.Lottery.Status.OPEN

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._open(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._open(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._open(obj) and super().has_delete_permission(request, obj)


class WinnerInline(TenantScopedTabularInline):
    model = models.LotteryWinner
    permission_area = "engagement"
    read_only_model = True
    extra = 0
    readonly_fields = ("prize", "member", "position", "status")


PRIZE_ROWS = 3


class LotteryForm(forms.ModelForm):  # type: ignore[type-arg]
    """Entry rules as real fields (not a JSON box) and, on add, up to three prizes."""

    rule_min_level = forms.IntegerField(label=_("最低关系等级"), min_value=0, max_value=10, required=False)
    rule_min_streak = forms.IntegerField(label=_("最少连续签到天数"), min_value=0, max_value=3650, required=False)
    rule_joined_before = forms.DateField(label=_("入群早于"), required=False, help_text=_("YYYY-MM-DD"))
    rule_purchased_since = forms.DateField(label=_("此日期后购买过"), required=False, help_text=_("YYYY-MM-DD"))
    rule_require_purchase = forms.BooleanField(label=_("须购买过"), required=False)
    prize_1_name = forms.CharField(label=_("一等奖"), max_length=120, required=False)
    prize_1_stock = forms.IntegerField(label=_("一等奖数量"), min_value=1, max_value=100_000, required=False)
    prize_2_name = forms.CharField(label=_("二等奖"), max_length=120, required=False)
    prize_2_stock = forms.IntegerField(label=_("二等奖数量"), min_value=1, max_value=100_000, required=False)
    prize_3_name = forms.CharField(label=_("三等奖"), max_length=120, required=False)
    prize_3_stock = forms.IntegerField(label=_("三等奖数量"), min_value=1, max_value=100_000, required=False)

    class Meta:
        model = models.Lottery
        fields = ("title", "community", "group", "entry_cost_points", "max_tickets", "closes_at", "draw_at", "beacon")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rules = self.instance.rules or {}
        for key in ("min_level", "min_streak", "joined_before", "purchased_since", "require_purchase"):
            if key in rules:
                self.fields[f"rule_{key}"].initial = rules[key]
        existing = list(self.instance.prizes.order_by("rank", "pk")) if self.instance.pk else []
        self.prize_rows = prize_rows(self.instance)
        for i in range(PRIZE_ROWS + 1, self.prize_rows + 1):
            self.fields[f"prize_{i}_name"] = forms.CharField(label=_("第 %(i)d 个奖品") % {"i": i}, max_length=120,
                                                             required=False)
            self.fields[f"prize_{i}_stock"] = forms.IntegerField(label=_("数量"), min_value=1, max_value=100_000,
                                                                 required=False)
        for i, prize in enumerate(existing, start=1):
            self.fields[f"prize_{i}_name"].initial = prize.name
            self.fields[f"prize_{i}_stock"].initial = prize.stock

    def rules(self) -> dict[str, Any]:
        d, out = self.cleaned_data, {}
        community = d.get("community")
        if community is not None:
            out["community_id"] = community.pk
        for key in ("min_level", "min_streak"):
            if d.get(f"rule_{key}") is not None:
                out[key] = d[f"rule_{key}"]
        for key in ("joined_before", "purchased_since"):
            if d.get(f"rule_{key}"):
                out[key] = d[f"rule_{key}"].isoformat()
        if d.get("rule_require_purchase"):
            out["require_purchase"] = True
        return out

    def prizes(self) -> list[tuple[str, int]]:
        d = self.cleaned_data
        return [(str(d.get(f"prize_{i}_name") or "").strip(), int(d.get(f"prize_{i}_stock") or 1))
                for i in range(1, self.prize_rows + 1) if str(d.get(f"prize_{i}_name") or "").strip()]


def prize_rows(lottery: Any) -> int:
    """Prize rows of a lottery's form: three, or one more than it has (an empty row adds a prize)."""
    return max(PRIZE_ROWS, lottery.prizes.count() + 1) if lottery.pk else PRIZE_ROWS


@admin.register(models.Lottery)
class LotteryAdmin(ServiceCreateMixin, EngagementAdmin):
    """New lotteries go through ``do_create_lottery`` (the seed is generated and its commitment
    published there); open ones change through ``do_update_lottery`` (texts, times, entry terms and
    prizes, under its state rules), then close early and draw."""

    form = LotteryForm
    change_service = staticmethod(services.do_update_lottery)
    change_check = staticmethod(services.check_update_lottery)
    change_fields = ("title", "closes_at", "draw_at", "prizes", "rules", "entry_cost_points", "max_tickets",
                     "community_id", "group_id", "beacon")
    field_map = {"prizes": "prize_1_name", **{f"prizes[{i}]": f"prize_{i + 1}_name" for i in range(50)},
                 "community_id": "community", "group_id": "group", "status": "title",
                 "rules": "rule_min_level", **{f"rules.{k}": f"rule_{k}" for k in (
                     "min_level", "min_streak", "joined_before", "purchased_since")}}
    list_display = ("title", "status", "closes_at", "draw_at", "seed_commitment", "commitment")
    list_filter = ("status",)
    readonly_fields = ("status", "seed_commitment", "snapshot", "commitment", "closed_at", "drawn_at", "result",
                       "created_by")
    inlines = (PrizeInline, WinnerInline)
    actions = ("close_now", "draw_now", "cancel")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        rules = (_("参与条件"), {"fields": ("rule_min_level", "rule_min_streak", "rule_joined_before",
                                        "rule_purchased_since", "rule_require_purchase")})
        main = (None, {"fields": ("title", "community", "group", "entry_cost_points", "max_tickets", "closes_at",
                                  "draw_at", "beacon")})
        rows = prize_rows(obj) if obj is not None else PRIZE_ROWS
        prizes = (_("奖品"), {"fields": tuple(f"prize_{i}_{k}" for i in range(1, rows + 1) for k in ("name", "stock")),
                            "description": _("清空名称即删除该奖品; 有人参与后奖品只能增加")})
        if obj is None:
            return (main, prizes, rules)
        if obj.status != models.Lottery.Status.OPEN:
            return (main, rules, (_("公开记录"), {"fields": self.readonly_fields}))
        return (main, prizes, rules, (_("公开记录"), {"fields": self.readonly_fields}))

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        # open: the prizes are form rows (saved by do_update_lottery); then the frozen list and winners
        if obj is None:
            return ()
        return self.inlines if obj.status != models.Lottery.Status.OPEN else (WinnerInline,)

    def check_service(self, tenant_id: int, **kwargs: Any) -> None:
        services.check_lottery(tenant_id, **kwargs)

    def create_service(self, principal: Any, **kwargs: Any) -> Any:
        return services.do_create_lottery(principal, **kwargs)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        form = data["_form"]
        return {"title": data.get("title") or "", "closes_at": data.get("closes_at") or timezone.now(),
                "draw_at": data.get("draw_at") or timezone.now(), "prizes": form.prizes(), "rules": form.rules(),
                "entry_cost_points": data.get("entry_cost_points") or 0, "max_tickets": data.get("max_tickets") or 1,
                "community_id": getattr(data.get("community"), "pk", None),
                "group_id": getattr(data.get("group"), "pk", None), "beacon": data.get("beacon") or ""}

    def check_form(self, request: HttpRequest, form: Any) -> None:
        form.cleaned_data["_form"] = form
        try:
            super().check_form(request, form)
        finally:
            form.cleaned_data.pop("_form", None)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        form.cleaned_data["_form"] = form
        try:
            super().save_model(request, obj, form, change)
        finally:
            form.cleaned_data.pop("_form", None)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.status != models.Lottery.Status.OPEN:
            return False  # the snapshot is published: nothing may change any more
        return super().has_change_permission(request, obj)

    @admin.action(description=_("立即截止并公布承诺"))
    def close_now(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_close_lottery(p.tenant_id, o.pk), _("已截止 %(n)d 个"))

    @admin.action(description=_("开奖"))
    def draw_now(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_draw_lottery(p.tenant_id, o.pk), _("已开奖 %(n)d 个"))

    @admin.action(description=_("取消抽奖"))
    def cancel(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_cancel_lottery(p, o.pk), _("已取消 %(n)d 个"))


class RedPacketForm(forms.ModelForm):  # type: ignore[type-arg]
    """A cash packet's total is entered in 元, a points packet's in points; validity in hours."""

    total_yuan = YuanField(label=_("现金总额(元)"), required=False)
    total_points = forms.IntegerField(label=_("积分总额"), min_value=1, max_value=100_000_000, required=False)
    expires_hours = forms.IntegerField(label=_("有效期(小时)"), min_value=1, max_value=720, initial=24)

    class Meta:
        model = models.RedPacket
        fields = ("title", "community", "group", "currency", "mode", "count", "sender")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:  # a sent packet changes only its greeting and expiry
            self.fields["expires_hours"].required = False


@admin.register(models.RedPacket)
class RedPacketAdmin(ServiceCreateMixin, EngagementAdmin):
    """Red packets are sent through ``do_create_red_packet`` (funded up front from the sender's or
    the organisation's wallet); afterwards only the greeting and the expiry change
    (``do_update_red_packet``), and "立即结束" refunds the unclaimed rest."""

    form = RedPacketForm
    change_service = staticmethod(services.do_update_red_packet)
    change_check = staticmethod(services.check_update_red_packet)
    actions = ("end_now",)
    field_map = {"expires_in": "expires_hours", "group_id": "group",
                 "community_id": "community", "sender_member_id": "sender"}
    list_display = ("title", "currency", "mode", "total_shown", "count", "remaining_shown", "remaining_count",
                    "status", "expires_at")
    list_filter = ("status", "currency")
    autocomplete_fields = ("sender",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return ("title", "expires_at", *self.get_readonly_fields(request, obj))
        return ("title", "community", "group", "currency", "mode", "total_points", "total_yuan", "count",
                "expires_hours", "sender")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("community", "group", "currency", "mode", "total_shown", "count", "remaining_shown",
                "remaining_count", "sender", "status")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.status != models.RedPacket.Status.OPEN:
            return False
        return super().has_change_permission(request, obj)

    def change_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {"title": data.get("title") or "", "expires_at": data.get("expires_at")}

    @admin.action(description=_("立即结束 (退回未领部分)"))
    def end_now(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_end_red_packet(p, o.pk), _("已结束 %(n)d 个"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("总额"))
    def total_shown(self, obj: models.RedPacket) -> str:
        return _amount(obj.currency, obj.total)

    @admin.display(description=_("剩余金额"))
    def remaining_shown(self, obj: models.RedPacket) -> str:
        return _amount(obj.currency, obj.remaining_amount)

    def check_service(self, tenant_id: int, **kwargs: Any) -> None:
        services.check_red_packet(tenant_id, **kwargs)

    def create_service(self, principal: Any, **kwargs: Any) -> Any:
        return services.do_create_red_packet(principal, **kwargs)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        currency = data.get("currency") or "points"
        total = data.get("total_yuan") if currency == "cash" else data.get("total_points")
        return {"total": total or 0, "count": data.get("count") or 0, "currency": currency,
                "mode": data.get("mode") or "random", "expires_in": dt.timedelta(hours=data.get("expires_hours") or 0),
                "sender_member_id": getattr(data.get("sender"), "pk", None),
                "group_id": getattr(data.get("group"), "pk", None),
                "community_id": getattr(data.get("community"), "pk", None), "title": data.get("title") or ""}

    def check_form(self, request: HttpRequest, form: Any) -> None:
        try:
            super().check_form(request, form)
        except ShequnError as exc:
            if isinstance(exc.details, dict) and exc.details.get("field") == "total":
                cash = form.cleaned_data.get("currency") == "cash"
                exc.details = {**exc.details, "field": "total_yuan" if cash else "total_points"}
            raise


def _amount(currency: str, value: int) -> str:
    return yuan(value) if currency == models.RedPacket.Currency.CASH else _("%(n)d 积分") % {"n": value}


@admin.register(models.RedPacketClaim)
class RedPacketClaimAdmin(ReadOnlyEngagementAdmin):
    list_display = ("packet", "member", "amount", "claimed_at")


class ContentItemForm(forms.ModelForm):  # type: ignore[type-arg]
    """Per-platform texts as three text boxes (not a JSON box)."""

    text_wecom = forms.CharField(label=_("企业微信文案 (可选)"), required=False,
                                 widget=forms.Textarea(attrs={"rows": 2}))
    text_telegram = forms.CharField(label=_("Telegram 文案 (可选)"), required=False,
                                    widget=forms.Textarea(attrs={"rows": 2}))
    text_matrix = forms.CharField(label=_("Matrix 文案 (可选)"), required=False,
                                  widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = models.ContentItem
        fields = ("title", "kind", "body", "url", "image_url", "is_sales")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for platform in services.OVERRIDE_PLATFORMS:
            self.fields[f"text_{platform}"].initial = (self.instance.platform_overrides or {}).get(platform, "")

    def overrides(self) -> dict[str, str]:
        return {p: self.cleaned_data.get(f"text_{p}") or "" for p in services.OVERRIDE_PLATFORMS}


@admin.register(models.ContentItem)
class ContentItemAdmin(ServiceCreateMixin, EngagementAdmin):
    form = ContentItemForm
    list_display = ("title", "kind", "is_sales", "created_at")
    list_filter = ("kind", "is_sales")
    search_fields = ("title", "body")
    field_map = {f"platform_overrides.{p}": f"text_{p}" for p in ("wecom", "telegram", "matrix")}
    change_service = staticmethod(services.do_update_content_item)
    change_check = staticmethod(services.check_update_content_item)
    change_fields = ("title", "kind", "body", "url", "image_url", "is_sales", "platform_overrides")

    def check_service(self, tenant_id: int, **kwargs: Any) -> None:
        services.check_content_item(tenant_id, **kwargs)

    def create_service(self, principal: Any, **kwargs: Any) -> Any:
        return services.do_create_content_item(principal, **kwargs)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {"title": data.get("title") or "", "kind": data.get("kind") or "", "body": data.get("body") or "",
                "url": data.get("url") or "", "image_url": data.get("image_url") or "",
                "is_sales": bool(data.get("is_sales")),
                "platform_overrides": {p: data.get(f"text_{p}") or "" for p in services.OVERRIDE_PLATFORMS}}



WEEKDAYS = [("0", _("周一")), ("1", _("周二")), ("2", _("周三")), ("3", _("周四")), ("4", _("周五")),
            ("5", _("周六")), ("6", _("周日"))]


class ContentScheduleForm(forms.ModelForm):  # type: ignore[type-arg]
    tenant_id: int | None = None  # set per request by ContentScheduleAdmin.get_form
    audience_id = forms.TypedChoiceField(label=_("目标人群 (已保存人群)"), required=False, coerce=int,
                                         empty_value=None, choices=[("", _("不限"))])
    weekdays_list = forms.MultipleChoiceField(label=_("星期 (不选 = 每天)"), choices=WEEKDAYS, required=False,
                                              widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = models.ContentSchedule
        fields = ("content", "kind", "community", "group", "run_at", "time_of_day", "day_offset",
                  "audience_id", "respect_quiet_hours", "active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant_id = getattr(self.instance, "tenant_id", None) or self.tenant_id
        if tenant_id:
            self.fields["audience_id"].choices = [("", _("不限")), *audience_choices(tenant_id)]  # type: ignore[attr-defined]
        self.fields["weekdays_list"].initial = [str(d) for d in (self.instance.weekdays or [])]


@admin.register(models.ContentSchedule)
class ContentScheduleAdmin(ServiceCreateMixin, EngagementAdmin):
    """SOP items: created through ``do_create_content_schedule``, changed through
    ``do_update_content_schedule`` (pause/resume also by the actions)."""

    form = ContentScheduleForm
    list_display = ("content", "kind", "community", "group", "run_at", "time_of_day", "day_offset", "active",
                    "last_run_at")
    list_filter = ("kind", "active")
    change_list_template = "engagement/admin/schedule_changelist.html"
    field_map = {"content_id": "content", "community_id": "community", "group_id": "group",
                 "weekdays": "weekdays_list", "audience_id": "audience_id"}
    change_service = staticmethod(services.do_update_content_schedule)
    change_check = staticmethod(services.check_update_content_schedule)
    actions = ("pause", "resume")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        tenant = getattr(request, "tenant", None)
        return type(form.__name__, (form,), {"tenant_id": tenant.pk if tenant is not None else None})

    def change_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return {**self.service_kwargs(request, data), "active": bool(data.get("active"))}

    def check_service(self, tenant_id: int, **kwargs: Any) -> None:
        services.check_content_schedule(tenant_id, **kwargs)

    def create_service(self, principal: Any, **kwargs: Any) -> Any:
        return services.do_create_content_schedule(principal, **kwargs)

    def service_kwargs(self, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
        return services.schedule_form_data(data)


    @admin.action(description=_("暂停"))
    def pause(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_set_schedule_active(p, o.pk, active=False), _("已暂停 %(n)d 个"))

    @admin.action(description=_("恢复"))
    def resume(self, request: HttpRequest, qs: QuerySet[Any]) -> None:
        _each(request, qs, lambda p, o: services.do_set_schedule_active(p, o.pk, active=True), _("已恢复 %(n)d 个"))

    def get_urls(self) -> list[Any]:
        return [path("calendar/", self.admin_site.admin_view(self.calendar_view), name="engagement_calendar"),
                *super().get_urls()]

    def calendar_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        tenant = getattr(request, "tenant", None)
        rows = selectors.upcoming_occurrences(tenant.pk, days=14) if tenant is not None else []
        ctx = {**self.admin_site.each_context(request), "title": _("内容日历 (未来 14 天)"), "rows": rows,
               "opts": self.model._meta}
        return TemplateResponse(request, "engagement/admin/calendar.html", ctx)


@admin.register(models.ContentDelivery)
class ContentDeliveryAdmin(ReadOnlyEngagementAdmin):
    list_display = ("schedule", "occurrence_at", "sent_at", "group", "member", "status", "replies", "reactions")
    list_filter = ("status",)


@admin.register(models.HealthAlert)
class HealthAlertAdmin(EngagementAdmin):
    list_display = ("created_at", "kind", "community", "member", "message", "resolved_at")
    list_filter = ("kind",)
    readonly_fields = ("kind", "key", "community", "member", "message", "data", "created_at")


@admin.register(models.WelcomeMessage)
class WelcomeMessageAdmin(EngagementAdmin):
    """Saved through ``do_save_welcome`` so the console validates and audits like the API."""

    list_display = ("community", "platform", "body", "batch_seconds", "active", "updated_at")
    list_filter = ("platform", "active")
    fields = ("community", "platform", "body", "batch_seconds", "active")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("community", "platform") if obj is not None else ()

    def check_form(self, request: HttpRequest, form: Any) -> None:
        services.check_welcome_body(form.cleaned_data.get("body", ""))

    def save_model(self, request: HttpRequest, obj: models.WelcomeMessage, form: Any, change: bool) -> None:
        principal = request_principal(request)
        if principal is None:
            return
        data = form.cleaned_data
        saved = services.do_save_welcome(
            principal, obj.community_id if change else data["community"].pk,
            platform=obj.platform if change else data.get("platform", ""), body=data["body"],
            batch_seconds=data["batch_seconds"], active=data["active"])
        obj.pk = saved.pk


@admin.register(models.WelcomeJoin)
class WelcomeJoinAdmin(ReadOnlyEngagementAdmin):
    list_display = ("joined_at", "group", "member", "status", "queued_at", "action_id")
    list_filter = ("status",)
