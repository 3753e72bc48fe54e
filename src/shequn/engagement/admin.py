"""The engagement console (permission area ``engagement``): scores, suggestions to confirm, the reply
queue, check-ins and points, lotteries, red packets, the content library, schedules with a calendar,
and health alerts. Every action calls a service."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shequn.communities import selectors as community_selectors
from shequn.core.admin_base import TenantScopedAdmin, TenantScopedTabularInline, request_principal
from shequn.core.errors import ShequnError

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
                    "answered_by_label")
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
class BadgeAdmin(EngagementAdmin):
    list_display = ("code", "name", "rule", "threshold")


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


@admin.register(models.Lottery)
class LotteryAdmin(EngagementAdmin):
    """Lotteries are created through the API/service (the seed is generated and committed there);
    here operators watch them, close early and draw."""

    list_display = ("title", "status", "closes_at", "draw_at", "seed_commitment", "commitment")
    list_filter = ("status",)
    readonly_fields = ("status", "seed_commitment", "snapshot", "commitment", "closed_at", "drawn_at", "result",
                       "created_by")
    inlines = (PrizeInline, WinnerInline)
    actions = ("close_now", "draw_now")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

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


@admin.register(models.RedPacket)
class RedPacketAdmin(ReadOnlyEngagementAdmin):
    list_display = ("title", "currency", "mode", "total", "count", "remaining_amount", "remaining_count", "status",
                    "expires_at")
    list_filter = ("status", "currency")


@admin.register(models.RedPacketClaim)
class RedPacketClaimAdmin(ReadOnlyEngagementAdmin):
    list_display = ("packet", "member", "amount", "claimed_at")


@admin.register(models.ContentItem)
class ContentItemAdmin(EngagementAdmin):
    list_display = ("title", "kind", "is_sales", "created_at")
    list_filter = ("kind", "is_sales")
    search_fields = ("title", "body")


@admin.register(models.ContentSchedule)
class ContentScheduleAdmin(EngagementAdmin):
    list_display = ("content", "kind", "community", "group", "run_at", "time_of_day", "day_offset", "active",
                    "last_run_at")
    list_filter = ("kind", "active")
    change_list_template = "engagement/admin/schedule_changelist.html"

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
