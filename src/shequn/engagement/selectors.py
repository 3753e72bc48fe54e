"""Reads of the engagement app. Every function takes ``tenant_id``; another tenant's ids are not found."""

from __future__ import annotations

import copy
import datetime as dt
import statistics
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from shequn.activity.models import ActivityEvent
from shequn.communities.models import Membership, RoleAssignment
from shequn.core.errors import NotFound
from shequn.core.localcache import TTLCache
from shequn.core.models import Tenant
from shequn.members.models import LifecycleStage, Member

from . import scoring
from .fairness import ALGORITHM
from .models import (
    Badge,
    ChatStaff,
    CheckInStats,
    ContentItem,
    ContentSchedule,
    EngagementSettings,
    Lottery,
    MemberBadge,
    MemberScore,
    PointsAccount,
    PointsEntry,
    RedPacket,
    ReplyTrack,
    RoleRecommendation,
    WelcomeMessage,
)
from .streaks import day_bounds, local_day

DEFAULT_CONFIG: dict[str, Any] = {
    "weights": dict(scoring.DEFAULT_WEIGHTS),
    "level_thresholds": list(scoring.DEFAULT_LEVEL_THRESHOLDS),
    # lifecycle: new for new_days after first seen; active = spoke within active_days; lurking = seen
    # within lurking_days but silent; dormant = last seen lurking_days..dormant_days ago; churned beyond
    # that, or left every community.
    "lifecycle": {"new_days": 7, "active_days": 14, "lurking_days": 30, "dormant_days": 90},
    # relationship ladder: the highest rung whose every minimum is met is suggested
    "ladder": {
        "1": {"min_purchases": 1, "min_level": 2, "min_invites": 0, "min_spent_fen": 0},
        "2": {"min_purchases": 3, "min_level": 4, "min_invites": 1, "min_spent_fen": 0},
        "3": {"min_purchases": 5, "min_level": 6, "min_invites": 3, "min_spent_fen": 100_000},
        "4": {"min_purchases": 10, "min_level": 7, "min_invites": 10, "min_spent_fen": 500_000},
    },
    "roles": {"window_days": 30, "min_active_days": 3, "top_n": 5},
    "reply_sla_minutes": 30,
    "no_sell_days": 30,
    "quiet_hours": ["22:00", "08:00"],
    "checkin": {"keyword": "签到", "points": 5, "streak_bonus": 1, "bonus_cap": 6, "makeup_window_days": 7,
                "makeup_card_cost": 50},
    "earn": {"message": 1, "message_daily_cap": 20, "invite": 10, "purchase_per_yuan": 1},
    "health": {"dead_group_days": 7, "dead_group_min_messages": 5, "quiet_member_days": 14,
               "quiet_member_min_level": 3},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


#: a tenant's stored engagement settings and time zone, per process: every check-in, message and
#: score read asks for them. A change made in this process is seen at once (the console's save drops
#: the entry, also after commit); other processes see it within ``ttl`` seconds.
STORED_CONFIG: TTLCache[dict[str, Any]] = TTLCache("engagement_config", ttl=5.0)
TIME_ZONES: TTLCache[str] = TTLCache("tenant_time_zone", ttl=5.0)


def engagement_config(tenant_id: int) -> dict[str, Any]:
    row = STORED_CONFIG.get(tenant_id)
    if row is None:
        row = EngagementSettings.objects.filter(tenant_id=tenant_id).values_list("config", flat=True).first() or {}
        STORED_CONFIG.put(tenant_id, row)
    return _merge(DEFAULT_CONFIG, row)  # a fresh copy: callers may change what they get


def forget_engagement_config(tenant_id: int) -> None:
    """The console saved the tenant's settings: drop them now and again after the commit (a read in
    between could put the old row back)."""
    STORED_CONFIG.drop(tenant_id)
    transaction.on_commit(lambda: STORED_CONFIG.drop(tenant_id))


def tenant_time_zone(tenant_id: int) -> str:
    tz = TIME_ZONES.get(tenant_id)
    if tz is None:
        tz = Tenant.objects.filter(pk=tenant_id).values_list("time_zone", flat=True).first() or "Asia/Shanghai"
        TIME_ZONES.put(tenant_id, tz)
    return tz


# --- scores ------------------------------------------------------------------------------------------


def explain_score(tenant_id: int, member_id: int, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """"Why level 7": the per-month steadiness breakdown and the activity (by kind) behind it."""
    if not Member.objects.filter(tenant_id=tenant_id, pk=member_id).exists():
        raise NotFound(_("会员不存在"), details={"field": "member_id"})
    now = now or timezone.now()
    cfg = engagement_config(tenant_id)
    tz = tenant_time_zone(tenant_id)
    weights: dict[str, int] = cfg["weights"]
    today = local_day(now, tz)
    start = day_bounds(scoring.window_start(today), tz)[0]
    end = day_bounds(today, tz)[1]
    daily: dict[dt.date, float] = defaultdict(float)
    by_month_kind: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    events = ActivityEvent.objects.filter(
        tenant_id=tenant_id, member_id=member_id, occurred_at__gte=start, occurred_at__lt=end
    ).values_list("kind", "occurred_at", "payload")
    for kind, when, payload in events.iterator():
        k = kind
        if kind == "other" and isinstance(payload, dict) and payload.get("raw_kind") == "topic":
            k = "topic"
        w = int(weights.get(k, 0))
        day = local_day(when, tz)
        daily[day] += w
        cell = by_month_kind[scoring.month_index(day, today)][k]
        cell[0] += 1
        cell[1] += w
    score, parts = scoring.score_from_daily(daily, today)
    level = scoring.level_for(score, cfg["level_thresholds"])
    thresholds: list[float] = cfg["level_thresholds"]
    return {
        "member_id": member_id, "score": round(score, 4), "level": level,
        "next_level_at": thresholds[level] if level < len(thresholds) else None,
        "formula": "score = Σ 0.9^m × mean_m / (1 + sd_m)",
        "months": [
            {
                "months_ago": p.months_ago, "days": p.days, "active_days": p.active_days, "points": p.total,
                "mean": round(p.mean, 4), "sd": round(p.sd, 4), "monthly": round(p.monthly, 4),
                "contribution": round(p.contribution, 4),
                "by_kind": {k: {"count": v[0], "points": v[1]} for k, v in sorted(by_month_kind[p.months_ago].items())},
            }
            for p in parts
        ],
    }


# --- reply queue ---------------------------------------------------------------------------------------


def responder_member_ids(tenant_id: int, community_id: int | None, at: dt.datetime) -> set[int]:
    """Staff chat accounts plus the community's current role holders."""
    ids = set(ChatStaff.objects.filter(tenant_id=tenant_id).values_list("member_id", flat=True))
    if community_id is not None:
        ids.update(
            RoleAssignment.objects.filter(tenant_id=tenant_id, community_id=community_id, since__lte=at)
            .filter(Q(until__isnull=True) | Q(until__gt=at))
            .values_list("member_id", flat=True)
        )
    return ids


def reply_queue(tenant_id: int, *, community_id: int | None = None, now: dt.datetime | None = None) -> QuerySet[
    ReplyTrack
]:
    """Unanswered member messages older than the reply SLA, oldest first."""
    now = now or timezone.now()
    sla = dt.timedelta(minutes=int(engagement_config(tenant_id)["reply_sla_minutes"]))
    qs = ReplyTrack.objects.filter(tenant_id=tenant_id, answered_at__isnull=True, no_reply_at__isnull=True,
                                   occurred_at__lte=now - sla)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    return qs.select_related("member", "group").order_by("occurred_at", "pk")


def _median_seconds(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def reply_stats(
    tenant_id: int, *, since: dt.datetime, until: dt.datetime | None = None, community_id: int | None = None
) -> dict[str, Any]:
    """Response rate and median first-response time, per community and per responder."""
    until = until or timezone.now()
    qs = ReplyTrack.objects.filter(tenant_id=tenant_id, occurred_at__gte=since, occurred_at__lt=until,
                                   no_reply_at__isnull=True)
    if community_id is not None:
        qs = qs.filter(community_id=community_id)
    per_comm: dict[int | None, dict[str, Any]] = defaultdict(lambda: {"messages": 0, "answered": 0, "times": []})
    per_resp: dict[str, dict[str, Any]] = defaultdict(lambda: {"answered": 0, "times": [], "member_id": None})
    for comm, occurred, answered, by_id, by_label in qs.values_list(
        "community_id", "occurred_at", "answered_at", "answered_by_id", "answered_by_label"
    ).iterator():
        c = per_comm[comm]
        c["messages"] += 1
        if answered is not None:
            secs = (answered - occurred).total_seconds()
            c["answered"] += 1
            c["times"].append(secs)
            key = f"m{by_id}" if by_id else (by_label or "?")
            r = per_resp[key]
            r["answered"] += 1
            r["times"].append(secs)
            r["member_id"] = by_id
            r["label"] = by_label
    return {
        "communities": [
            {"community_id": k, "messages": v["messages"], "answered": v["answered"],
             "response_rate": round(v["answered"] / v["messages"], 4) if v["messages"] else None,
             "median_first_response_seconds": _median_seconds(v["times"])}
            for k, v in sorted(per_comm.items(), key=lambda kv: kv[0] or 0)
        ],
        "responders": [
            {"responder": k, "member_id": v["member_id"], "label": v.get("label", ""), "answered": v["answered"],
             "median_first_response_seconds": _median_seconds(v["times"])}
            for k, v in sorted(per_resp.items(), key=lambda kv: -kv[1]["answered"])
        ],
    }


def role_performance(tenant_id: int, community_id: int, *, since: dt.datetime) -> list[dict[str, Any]]:
    """Each current role holder: messages answered and median response time since ``since``."""
    now = timezone.now()
    holders = list(
        RoleAssignment.objects.filter(tenant_id=tenant_id, community_id=community_id)
        .filter(Q(until__isnull=True) | Q(until__gt=now))
        .values_list("member_id", "role", "member__display_name")
    )
    out = []
    for member_id, role, name in holders:
        times = [
            (a - o).total_seconds()
            for o, a in ReplyTrack.objects.filter(
                tenant_id=tenant_id, community_id=community_id, answered_by_id=member_id, occurred_at__gte=since
            ).values_list("occurred_at", "answered_at")
            if a is not None
        ]
        out.append({"member_id": member_id, "name": name, "role": role, "answered": len(times),
                    "median_response_seconds": _median_seconds(times)})
    return out


# --- points / check-ins ------------------------------------------------------------------------------------


def points_balance(tenant_id: int, member_id: int) -> dict[str, int]:
    acc = PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id).first()
    if acc is None:
        return {"balance": 0, "earned_total": 0, "spent_total": 0}
    return {"balance": acc.balance, "earned_total": acc.earned_total, "spent_total": acc.spent_total}


def points_history(tenant_id: int, member_id: int) -> QuerySet[PointsEntry]:
    return PointsEntry.objects.filter(tenant_id=tenant_id, member_id=member_id)


def checkin_stats(tenant_id: int, member_id: int) -> CheckInStats | None:
    return CheckInStats.objects.filter(tenant_id=tenant_id, member_id=member_id).first()


# --- badges ------------------------------------------------------------------------------------------------


def badge_metrics(tenant_id: int, member_id: int, rules: set[str], *,
                  stats: CheckInStats | None = None) -> dict[str, int]:
    """The member's value for each badge rule in ``rules`` (only those are read); ``stats`` when the
    caller already has the member's check-in stats."""
    if stats is None and rules & {Badge.Rule.STREAK, Badge.Rule.CHECKIN_TOTAL}:
        stats = checkin_stats(tenant_id, member_id)
    out: dict[str, int] = {Badge.Rule.STREAK: stats.longest_streak if stats else 0,
                           Badge.Rule.CHECKIN_TOTAL: stats.total_days if stats else 0}
    if Badge.Rule.LEVEL in rules:
        out[Badge.Rule.LEVEL] = (MemberScore.objects.filter(tenant_id=tenant_id, member_id=member_id)
                                 .values_list("level", flat=True).first() or 0)
    if Badge.Rule.POINTS_EARNED in rules:
        out[Badge.Rule.POINTS_EARNED] = (PointsAccount.objects.filter(tenant_id=tenant_id, member_id=member_id)
                                         .values_list("earned_total", flat=True).first() or 0)
    return out


def badge_progress(tenant_id: int, member_id: int, *, stats: CheckInStats | None = None) -> list[dict[str, Any]]:
    """Every badge of the tenant with the member's progress: earned ones with their date first, then
    the rest nearest first (``value`` of ``threshold``)."""
    badges = list(Badge.objects.filter(tenant_id=tenant_id).order_by("rule", "threshold", "pk"))
    if not badges:
        return []
    earned = dict(MemberBadge.objects.filter(tenant_id=tenant_id, member_id=member_id)
                  .values_list("badge_id", "awarded_at"))
    metric = badge_metrics(tenant_id, member_id, {b.rule for b in badges}, stats=stats)
    rows = []
    for b in badges:
        value = min(metric.get(b.rule, 0), b.threshold)
        percent = int(100 * value / b.threshold) if b.threshold else 100
        awarded = earned.get(b.pk)
        rows.append((awarded is None, -percent if awarded is None else 0, {
            "badge": b, "awarded_at": awarded, "value": value, "threshold": b.threshold, "percent": percent}))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


# --- lotteries / red packets ------------------------------------------------------------------------------


def get_lottery(tenant_id: int, lottery_id: int) -> Lottery:
    lot = Lottery.objects.filter(tenant_id=tenant_id, pk=lottery_id).first()
    if lot is None:
        raise NotFound(_("抽奖不存在"), details={"field": "lottery_id"})
    return lot


def lottery_public_record(lottery: Lottery) -> dict[str, Any]:
    """What is published: before the close only the seed commitment; after the close the snapshot and
    its commitment; after the draw the seed, winners and rerolls (the verifier's input)."""
    rec: dict[str, Any] = {
        "algorithm": ALGORITHM, "lottery": str(lottery.pk), "title": lottery.title, "status": lottery.status,
        "seed_commitment": lottery.seed_commitment, "beacon": lottery.beacon,
        "closes_at": lottery.closes_at.isoformat(), "draw_at": lottery.draw_at.isoformat(),
    }
    if lottery.snapshot is not None:
        rec["snapshot"] = lottery.snapshot
        rec["commitment"] = lottery.commitment
    if lottery.status == Lottery.Status.DRAWN and lottery.result is not None:
        rec["seed"] = lottery.seed_hex
        rec["beacon_value"] = lottery.beacon_value
        rec["winners"] = lottery.result.get("winners", [])
        rec["rerolls"] = lottery.result.get("rerolls", [])
    return rec


def get_red_packet(tenant_id: int, packet_id: int) -> RedPacket:
    p = RedPacket.objects.filter(tenant_id=tenant_id, pk=packet_id).first()
    if p is None:
        raise NotFound(_("红包不存在"), details={"field": "packet_id"})
    return p


# --- SOP / health -------------------------------------------------------------------------------------------


def quiet_hours(tenant_id: int) -> tuple[dt.time, dt.time] | None:
    q = engagement_config(tenant_id).get("quiet_hours")
    if not q:
        return None
    return dt.time.fromisoformat(q[0]), dt.time.fromisoformat(q[1])


def shift_out_of_quiet(when: dt.datetime, quiet: tuple[dt.time, dt.time] | None, tz_name: str) -> dt.datetime:
    """Move a send time inside the quiet hours (e.g. 22:00–08:00, may wrap midnight) to their end."""
    if quiet is None:
        return when
    start, end = quiet
    local = when.astimezone(ZoneInfo(tz_name))
    t = local.time()
    if start == end:
        return when
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return when
    day = local.date() if (start < end or t < end) else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=ZoneInfo(tz_name)).astimezone(dt.UTC)


def schedule_occurrences(schedule: ContentSchedule, since: dt.datetime, until: dt.datetime,
                         tz_name: str) -> list[dt.datetime]:
    """Planned times in ``(since, until]`` of a fixed or recurring schedule (local wall-clock times)."""
    if schedule.kind == ContentSchedule.Kind.FIXED:
        return [schedule.run_at] if schedule.run_at and since < schedule.run_at <= until else []
    if schedule.kind != ContentSchedule.Kind.RECURRING or schedule.time_of_day is None:
        return []
    tz = ZoneInfo(tz_name)
    out = []
    day = since.astimezone(tz).date()
    last = until.astimezone(tz).date()
    weekdays = set(schedule.weekdays or [])
    while day <= last:
        if not weekdays or day.weekday() in weekdays:
            t = dt.datetime.combine(day, schedule.time_of_day, tzinfo=tz).astimezone(dt.UTC)
            if since < t <= until:
                out.append(t)
        day += dt.timedelta(days=1)
    return out


def upcoming_occurrences(tenant_id: int, *, now: dt.datetime | None = None, days: int = 7) -> list[dict[str, Any]]:
    """The console calendar: planned group posts (fixed and recurring) in the next ``days`` days."""
    now = now or timezone.now()
    tz = tenant_time_zone(tenant_id)
    quiet = quiet_hours(tenant_id)
    out = []
    for s in ContentSchedule.objects.filter(tenant_id=tenant_id, active=True).select_related("content"):
        for planned in schedule_occurrences(s, now, now + dt.timedelta(days=days), tz):
            eff = shift_out_of_quiet(planned, quiet, tz) if s.respect_quiet_hours else planned
            out.append({"at": eff, "planned": planned, "schedule_id": s.pk, "content": s.content.title,
                        "is_sales": s.content.is_sales, "kind": s.kind})
    return sorted(out, key=lambda r: r["at"])


# =====================================================================================================


def lurkers(tenant_id: int, community_id: int) -> QuerySet[Any]:
    """Members of the community who are lurking or dormant: the re-activation list."""
    in_comm = Membership.objects.filter(tenant_id=tenant_id, community_id=community_id, left_at__isnull=True)
    return Member.objects.filter(
        tenant_id=tenant_id, pk__in=in_comm.values("member_id"),
        lifecycle_stage__in=[LifecycleStage.LURKING, LifecycleStage.DORMANT],
    ).order_by("last_active_at")


def campaign_texts(tenant_id: int) -> list[str]:
    """The operator's own campaign texts: the bodies of the content library's text items (at most 500).
    Moderation treats a member relaying one word for word as no advertiser (issue 16); the wiring
    module hands this to ``moderation.selectors.register_campaign_source``."""
    kinds = (ContentItem.Kind.TEXT, ContentItem.Kind.MARKDOWN)
    return list(ContentItem.objects.filter(tenant_id=tenant_id, kind__in=kinds).exclude(body="")
                .order_by("pk").values_list("body", flat=True)[:500])


def welcome_messages(tenant_id: int, *, community_id: int | None = None) -> QuerySet[WelcomeMessage]:
    """The tenant's welcome messages (per community and platform)."""
    qs = WelcomeMessage.objects.filter(tenant_id=tenant_id).order_by("community_id", "platform")
    return qs.filter(community_id=community_id) if community_id is not None else qs


def pending_role_recommendations(tenant_id: int, community_id: int) -> QuerySet[RoleRecommendation]:
    """A community's open role recommendations, best first (the console's community page)."""
    return (RoleRecommendation.objects.filter(tenant_id=tenant_id, community_id=community_id, status="pending")
            .select_related("member").order_by("role", "-score"))
