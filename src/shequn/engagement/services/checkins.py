"""Daily check-ins, streaks, make-up cards and badges. Locking: the member's :class:`CheckInStats` row
(``select_for_update``) serialises a member's check-ins and card changes; ``(member, day)`` is unique;
points follow the ledger's own rule (:mod:`.points`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shequn.core.errors import Conflict, Invalid
from shequn.core.permissions import Principal
from shequn.core.services import do_audit
from shequn.members.selectors import check_member, check_member_level

from ..models import Badge, CheckIn, CheckInStats, MemberBadge
from ..selectors import badge_metrics, engagement_config, tenant_time_zone
from ..streaks import compute_streak, local_day
from .points import _existing_entry, do_points_credit_new, do_points_spend


@dataclass(frozen=True)
class CheckInResult:
    created: bool
    day: dt.date
    current_streak: int
    longest_streak: int
    total_days: int
    points: int


def _lock_stats(tenant_id: int, member_id: int) -> CheckInStats:
    # the row exists after one INSERT … ON CONFLICT DO NOTHING (no savepoint, no read first)
    CheckInStats.objects.bulk_create([CheckInStats(tenant_id=tenant_id, member_id=member_id)], ignore_conflicts=True)
    return CheckInStats.objects.select_for_update().get(tenant_id=tenant_id, member_id=member_id)


def _refresh_streak(tenant_id: int, stats: CheckInStats, today: dt.date) -> None:
    days = CheckIn.objects.filter(tenant_id=tenant_id, member_id=stats.member_id).values_list("day", flat=True)
    st = compute_streak(days, today)
    stats.current_streak, stats.longest_streak, stats.total_days, stats.last_day = (
        st.current, st.longest, st.total, st.last_day)
    stats.save(update_fields=["current_streak", "longest_streak", "total_days", "last_day"])


def _extend_streak(tenant_id: int, stats: CheckInStats, day: dt.date) -> None:
    """A new check-in on ``day``, later than every earlier one (the stats row locked): the streak
    grows by one after yesterday's check-in and starts again after a gap, without reading every
    earlier day. Anything else (a first check-in with history, a back-dated one, a streak the stats
    do not hold) is recomputed from the days, as :func:`_refresh_streak` does."""
    last = stats.last_day
    if last is None and stats.total_days == 0:
        current = 1
    elif last is not None and day == last + dt.timedelta(days=1) and stats.current_streak > 0:
        current = stats.current_streak + 1
    elif last is not None and day > last + dt.timedelta(days=1):
        current = 1
    else:
        _refresh_streak(tenant_id, stats, day)
        return
    stats.current_streak, stats.longest_streak = current, max(stats.longest_streak, current)
    stats.total_days, stats.last_day = stats.total_days + 1, day
    stats.save(update_fields=["current_streak", "longest_streak", "total_days", "last_day"])


def do_check_in(tenant_id: int, member_id: int, *, at: dt.datetime | None = None, source: str = "api") -> CheckInResult:
    """Daily check-in on the member's local day (tenant time zone). A second check-in the same day is
    a no-op returning the streak. Earns ``points + min(streak − 1, bonus_cap) × streak_bonus``.

    Locking: the member's :class:`CheckInStats` row (``select_for_update``) serialises a member's
    check-ins; ``(member, day)`` is unique; points use the ledger's own rule."""
    at = at or timezone.now()
    check_member_level(tenant_id, member_id)  # the member's check, one plain statement
    cfg = engagement_config(tenant_id)["checkin"]
    tz = tenant_time_zone(tenant_id)
    day = local_day(at, tz)
    with transaction.atomic():
        stats = _lock_stats(tenant_id, member_id)
        created = not CheckIn.objects.filter(tenant_id=tenant_id, member_id=member_id, day=day).exists()
        points = 0
        if created:
            CheckIn.objects.create(tenant_id=tenant_id, member_id=member_id, day=day, source=source)
            _extend_streak(tenant_id, stats, day)
        else:
            _refresh_streak(tenant_id, stats, day)  # the streak as of this check-in's day
        if created:
            bonus = min(stats.current_streak - 1, int(cfg["bonus_cap"])) * int(cfg["streak_bonus"])
            points = int(cfg["points"]) + bonus
            if points > 0:
                # the member is checked and today's check-in row was just inserted under the stats
                # lock, so the key is new: the credit without do_points_earn's own checks
                do_points_credit_new(tenant_id, member_id, points, kind="checkin",
                                     idempotency_key=f"checkin:{member_id}:{day.isoformat()}",
                                     reason=_("签到 (连续 %(n)d 天)") % {"n": stats.current_streak})
            do_award_badges(tenant_id, member_id)
    return CheckInResult(created, day, stats.current_streak, stats.longest_streak, stats.total_days, points)


def do_grant_makeup_cards(principal: Principal, member_id: int, count: int, *, reason: str = "") -> int:
    if count <= 0:
        raise Invalid(_("数量必须为正数"), details={"field": "count"})
    check_member(principal.tenant_id, member_id)
    with transaction.atomic():
        stats = _lock_stats(principal.tenant_id, member_id)
        CheckInStats.objects.filter(pk=stats.pk).update(makeup_cards=F("makeup_cards") + count)
        do_audit(principal, "engagement.makeup.grant", "member", str(member_id), reason=reason, data={"count": count})
        return stats.makeup_cards + count


def do_buy_makeup_card(tenant_id: int, member_id: int, *, idempotency_key: str) -> int:
    """Spend points for one make-up card (``checkin.makeup_card_cost``)."""
    cost = int(engagement_config(tenant_id)["checkin"]["makeup_card_cost"])
    with transaction.atomic():
        stats = _lock_stats(tenant_id, member_id)
        if _existing_entry(tenant_id, idempotency_key) is None:
            do_points_spend(tenant_id, member_id, cost, kind="makeup_card", idempotency_key=idempotency_key,
                            reason=_("兑换补签卡"))
            CheckInStats.objects.filter(pk=stats.pk).update(makeup_cards=F("makeup_cards") + 1)
        stats.refresh_from_db()
        return stats.makeup_cards


def do_use_makeup_card(
    tenant_id: int, member_id: int, day: dt.date, *, now: dt.datetime | None = None
) -> CheckInResult:
    """Fill a missed day within ``makeup_window_days`` with a make-up card (no points)."""
    now = now or timezone.now()
    cfg = engagement_config(tenant_id)["checkin"]
    today = local_day(now, tenant_time_zone(tenant_id))
    if not (today - dt.timedelta(days=int(cfg["makeup_window_days"])) <= day < today):
        raise Invalid(_("只能补签最近 %(n)d 天内的日期") % {"n": int(cfg["makeup_window_days"])},
                      details={"field": "day"})
    check_member(tenant_id, member_id)
    with transaction.atomic():
        stats = _lock_stats(tenant_id, member_id)
        if CheckIn.objects.filter(tenant_id=tenant_id, member_id=member_id, day=day).exists():
            raise Conflict(_("这一天已经签到过了"), details={"field": "day"})
        if CheckInStats.objects.filter(pk=stats.pk, makeup_cards__gte=1).update(
                makeup_cards=F("makeup_cards") - 1) != 1:
            raise Conflict(_("没有补签卡"), code="no_makeup_card")
        CheckIn.objects.create(tenant_id=tenant_id, member_id=member_id, day=day, source=CheckIn.Source.MAKEUP)
        stats.refresh_from_db()
        _refresh_streak(tenant_id, stats, today)
        do_award_badges(tenant_id, member_id)
    return CheckInResult(True, day, stats.current_streak, stats.longest_streak, stats.total_days, 0)


def do_award_badges(tenant_id: int, member_id: int) -> list[str]:
    """Award every badge whose rule the member now meets (idempotent; badges are never taken back)."""
    badges = list(Badge.objects.filter(tenant_id=tenant_id))
    if not badges:
        return []
    metric = badge_metrics(tenant_id, member_id, {b.rule for b in badges})
    earned = [b for b in badges if metric.get(b.rule, 0) >= b.threshold]
    MemberBadge.objects.bulk_create([MemberBadge(tenant_id=tenant_id, member_id=member_id, badge=b) for b in earned],
                                    ignore_conflicts=True)
    return [b.code for b in earned]


#: streak milestones a tenant starts with (the operator edits or adds badges in the console)
STREAK_MILESTONES = ((3, "streak-3", gettext_lazy("坚持三天"), gettext_lazy("连续签到 3 天")),
                     (7, "streak-7", gettext_lazy("一周不断"), gettext_lazy("连续签到 7 天")),
                     (30, "streak-30", gettext_lazy("月度全勤"), gettext_lazy("连续签到 30 天")),
                     (100, "streak-100", gettext_lazy("百日之约"), gettext_lazy("连续签到 100 天")))


def do_seed_streak_badges(tenant_id: int) -> int:
    """Create the streak-milestone badges the tenant lacks (by code; existing ones are left as the
    operator set them). Returns how many were created."""
    have = set(Badge.objects.filter(tenant_id=tenant_id).values_list("code", flat=True))
    new = [Badge(tenant_id=tenant_id, code=code, name=str(name), description=str(desc), rule=Badge.Rule.STREAK,
                 threshold=days)
           for days, code, name, desc in STREAK_MILESTONES if code not in have]
    Badge.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)
