"""Check-ins across midnight, streaks, make-up cards, badges, and a points ledger that never goes negative."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequn.activity.models import ActivityEvent
from shequn.activity.services import do_ingest
from shequn.core.errors import Conflict
from shequn.core.testing import race
from shequn.engagement.models import (
    Badge,
    CheckIn,
    CheckInStats,
    MemberBadge,
    PointsAccount,
    PointsEntry,
    ReplyTrack,
)
from shequn.engagement.selectors import badge_progress, checkin_stats, points_balance
from shequn.engagement.services import (
    do_buy_makeup_card,
    do_check_in,
    do_grant_makeup_cards,
    do_points_earn,
    do_points_earn_many,
    do_points_spend,
    do_seed_streak_badges,
    do_use_makeup_card,
    on_activity,
)
from shequn.engagement.streaks import compute_streak

SH = ZoneInfo("Asia/Shanghai")


def test_check_in_across_midnight_in_shanghai(tenant, make_member):
    m = make_member()
    late = dt.datetime(2026, 3, 9, 23, 59, 30, tzinfo=SH)
    r1 = do_check_in(tenant.pk, m.pk, at=late)
    r2 = do_check_in(tenant.pk, m.pk, at=late + dt.timedelta(seconds=20))  # 23:59:50, same day
    r3 = do_check_in(tenant.pk, m.pk, at=late + dt.timedelta(seconds=40))  # 00:00:10, next day
    assert (r1.created, r2.created, r3.created) == (True, False, True)
    assert r1.day == dt.date(2026, 3, 9) and r3.day == dt.date(2026, 3, 10)
    assert r3.current_streak == 2 and r3.total_days == 2
    # points: 5 on day 1, 5 + 1 streak bonus on day 2; the repeat earns nothing
    assert points_balance(tenant.pk, m.pk)["balance"] == 11


def test_check_in_day_follows_the_tenant_zone(tenant, make_member):
    tenant.time_zone = "UTC"
    tenant.save()
    m = make_member()
    # 00:00:10 Shanghai on the 10th is still the 9th in UTC: both check-ins fall on the same UTC day
    a = do_check_in(tenant.pk, m.pk, at=dt.datetime(2026, 3, 9, 20, 0, tzinfo=dt.UTC))
    b = do_check_in(tenant.pk, m.pk, at=dt.datetime(2026, 3, 10, 0, 0, 10, tzinfo=SH))
    assert a.day == b.day == dt.date(2026, 3, 9) and not b.created
    c = do_check_in(tenant.pk, m.pk, at=dt.datetime(2026, 3, 10, 0, 0, 1, tzinfo=dt.UTC))
    assert c.day == dt.date(2026, 3, 10) and c.current_streak == 2


def test_chat_keyword_checks_in_once(tenant, make_member):
    m = make_member()
    now = timezone.now()
    msg = {"platform": "telegram", "kind": "message", "sender": f"u{m.pk}", "group": "-100",
           "payload": {"text": " 签到 "}}
    do_ingest(tenant.pk, [{**msg, "event_id": "k1", "occurred_at": now.isoformat()},
                          {**msg, "event_id": "k2", "occurred_at": (now + dt.timedelta(seconds=1)).isoformat()}])
    assert CheckIn.objects.filter(member=m).count() == 1
    assert CheckIn.objects.get(member=m).source == "chat"
    assert not ReplyTrack.objects.filter(member=m).exists()  # check-ins do not wait for an answer


def test_makeup_card_repairs_a_streak_and_badges(tenant, make_member, system):
    m = make_member()
    Badge.objects.create(tenant=tenant, code="week", name="七天连签", rule="streak", threshold=3)
    now = timezone.now()
    for days_ago in (3, 1, 0):
        do_check_in(tenant.pk, m.pk, at=now - dt.timedelta(days=days_ago))
    assert checkin_stats(tenant.pk, m.pk).current_streak == 2
    with pytest.raises(Conflict):
        do_use_makeup_card(tenant.pk, m.pk, (now - dt.timedelta(days=2)).astimezone(SH).date(), now=now)
    do_grant_makeup_cards(system, m.pk, 1)
    r = do_use_makeup_card(tenant.pk, m.pk, (now - dt.timedelta(days=2)).astimezone(SH).date(), now=now)
    assert r.current_streak == 4
    assert MemberBadge.objects.filter(member=m, badge__code="week").exists()
    # buying a card costs 50 points; the member has 5 + 5 + 6 = 16 (no points for the make-up day)
    with pytest.raises(Conflict):
        do_buy_makeup_card(tenant.pk, m.pk, idempotency_key="buy1")
    assert checkin_stats(tenant.pk, m.pk).makeup_cards == 0


def test_points_ledger_idempotent_and_never_negative(tenant, make_member):
    m = make_member()
    do_points_earn(tenant.pk, m.pk, 10, kind="gift", idempotency_key="a")
    do_points_earn(tenant.pk, m.pk, 10, kind="gift", idempotency_key="a")
    assert points_balance(tenant.pk, m.pk)["balance"] == 10
    e = do_points_spend(tenant.pk, m.pk, 7, kind="coupon", idempotency_key="s1")
    assert e.balance_after == 3
    with pytest.raises(Conflict):
        do_points_spend(tenant.pk, m.pk, 4, kind="coupon", idempotency_key="s2")
    assert PointsEntry.objects.filter(member=m).count() == 2
    assert points_balance(tenant.pk, m.pk) == {"balance": 3, "earned_total": 10, "spent_total": 7}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_spends_never_overdraw(tenant, make_member):
    m = make_member()
    do_points_earn(tenant.pk, m.pk, 100, kind="gift", idempotency_key="seed")
    results = race(lambda i: do_points_spend(tenant.pk, m.pk, 7, kind="coupon", idempotency_key=f"t{i}"), 40,
                   threads=8)
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(ok) + len(refused) == 40, results
    acc = PointsAccount.objects.get(member=m)
    assert len(ok) == 14 and len(refused) == 26  # 100 // 7 = 14 spends fit
    assert acc.balance == 100 - 14 * 7 >= 0
    entries = list(PointsEntry.objects.filter(member=m).order_by("pk").values_list("delta", "balance_after"))
    assert sum(d for d, _ in entries) == acc.balance
    assert all(b >= 0 for _, b in entries)


def test_consumer_points_for_messages_capped_and_idempotent(tenant, make_member):
    m = make_member()
    now = timezone.now()
    do_ingest(tenant.pk, [{"platform": "telegram", "event_id": f"pm{i}", "kind": "message", "sender": f"u{m.pk}",
                           "group": "-100", "occurred_at": now.isoformat(), "payload": {"text": f"hi {i}"}}
                          for i in range(30)]
              + [{"platform": "telegram", "event_id": "buy", "kind": "purchase", "sender": f"u{m.pk}",
                  "occurred_at": now.isoformat(), "payload": {"amount_fen": 12345}}])
    assert points_balance(tenant.pk, m.pk)["balance"] == 20 + 123  # daily message cap 20, 1 point per yuan
    on_activity(tenant.pk, list(ActivityEvent.objects.filter(tenant=tenant)))  # a retried batch
    assert points_balance(tenant.pk, m.pk)["balance"] == 143
    entries = list(PointsEntry.objects.filter(member=m).order_by("pk").values_list("delta", "balance_after"))
    running = 0
    for delta, after in entries:
        running += delta
        assert after == running
    assert do_points_earn_many(tenant.pk, [(m.pk, 5, "gift", "g1"), (m.pk, 5, "gift", "g1")]) == 1
    assert points_balance(tenant.pk, m.pk)["balance"] == 148


def test_streak_milestone_badges_are_seeded_once_and_earned_with_progress(tenant, make_member):
    assert do_seed_streak_badges(tenant.pk) == 4
    assert do_seed_streak_badges(tenant.pk) == 0  # by code: the operator's edits stay
    Badge.objects.filter(tenant=tenant, code="streak-7").update(name="一周打卡王")
    assert do_seed_streak_badges(tenant.pk) == 0
    assert Badge.objects.get(tenant=tenant, code="streak-7").name == "一周打卡王"
    m = make_member()
    now = timezone.now()
    for days_ago in (4, 3, 2, 1):
        do_check_in(tenant.pk, m.pk, at=now - dt.timedelta(days=days_ago))
    rows = badge_progress(tenant.pk, m.pk)
    assert [(r["badge"].code, r["awarded_at"] is not None, r["value"], r["threshold"]) for r in rows] == [
        ("streak-3", True, 3, 3), ("streak-7", False, 4, 7), ("streak-30", False, 4, 30), ("streak-100", False, 4, 100)]
    assert rows[1]["percent"] == 57
    # another member's progress is their own
    assert all(r["awarded_at"] is None and r["value"] == 0 for r in badge_progress(tenant.pk, make_member().pk))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offsets=st.lists(st.integers(0, 12), min_size=1, max_size=12))
def test_the_extended_streak_equals_a_recount_of_the_days(tenant, make_member, offsets):
    """The check-in extends the stored streak without reading every earlier day; after any order of
    check-ins (repeats, gaps, back-dated ones) the stats equal a recount from the check-in rows, and
    each credit is the configured points plus the capped streak bonus of the day's streak."""
    m = make_member()
    base = dt.datetime(2026, 5, 1, 12, tzinfo=SH)
    for off in offsets:
        r = do_check_in(tenant.pk, m.pk, at=base + dt.timedelta(days=off))
        stats = CheckInStats.objects.get(tenant=tenant, member=m)
        days = CheckIn.objects.filter(tenant=tenant, member=m).values_list("day", flat=True)
        recount = compute_streak(days, max(stats.last_day, r.day))
        assert (stats.longest_streak, stats.total_days, stats.last_day) == (
            recount.longest, recount.total, recount.last_day)
        if r.created and r.day == recount.last_day:
            assert stats.current_streak == recount.current
            assert r.points == 5 + min(recount.current - 1, 6)
    entries = PointsEntry.objects.filter(tenant=tenant, member=m)
    assert points_balance(tenant.pk, m.pk)["balance"] == sum(e.delta for e in entries)
    assert entries.count() == CheckIn.objects.filter(tenant=tenant, member=m).count()
