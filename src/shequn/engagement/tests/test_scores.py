"""Scores and lifecycle on hand-built timelines; the SQL matches the pure formula."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from shequn.engagement import scoring
from shequn.engagement.models import EngagementSettings, MemberScore
from shequn.engagement.selectors import explain_score, forget_engagement_config
from shequn.engagement.services import do_recompute_scores, do_update_lifecycle
from shequn.members.models import Member

SH = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=SH)


def at(month, day, hour=10):
    return dt.datetime(2026, month, day, hour, tzinfo=SH)


def test_steady_member_outscores_bursty_one_and_sql_matches_formula(tenant, make_member, event):
    steady, bursty = make_member("稳定"), make_member("爆发")
    for d in range(1, 21):
        event(steady, "message", at(3, d))
    for _ in range(20):
        event(bursty, "message", at(3, 5))
    event(bursty, "reaction", at(2, 3))
    event(steady, "join", at(1, 2))
    # an event just after local midnight belongs to the new day (and in the future is ignored)
    event(steady, "message", at(3, 21, 0))
    do_recompute_scores(tenant.pk, now=NOW)
    s = MemberScore.objects.get(member=steady)
    b = MemberScore.objects.get(member=bursty)
    assert s.score > b.score
    assert s.level > b.level
    ref, _ = scoring.score_from_daily({dt.date(2026, 3, d): 6 for d in range(1, 21)} | {dt.date(2026, 1, 2): 3},
                                      dt.date(2026, 3, 20))
    assert s.score == pytest.approx(ref, rel=1e-9)
    exp = explain_score(tenant.pk, steady.pk, now=NOW)
    assert exp["score"] == pytest.approx(ref, abs=1e-3) and exp["level"] == s.level
    assert exp["months"][0]["by_kind"]["message"] == {"count": 20, "points": 120}
    assert s.last_spoke_day == dt.date(2026, 3, 20)


def test_weights_are_per_tenant_and_topics_count(tenant, make_member, event):
    m = make_member()
    event(m, "other", at(3, 10), {"raw_kind": "topic"})
    do_recompute_scores(tenant.pk, now=NOW)
    first = MemberScore.objects.get(member=m).score
    ref = lambda pts: scoring.score_from_daily({dt.date(2026, 3, 10): pts}, dt.date(2026, 3, 20))[0]  # noqa: E731
    assert first == pytest.approx(ref(8))
    EngagementSettings.objects.create(tenant=tenant, config={"weights": {"topic": 16}})
    forget_engagement_config(tenant.pk)  # what the console's save does (the settings are cached per process)
    do_recompute_scores(tenant.pk, now=NOW)
    assert MemberScore.objects.get(member=m).score == pytest.approx(ref(16))


def test_incremental_equals_full_and_other_tenant_untouched(tenant, other_tenant, make_member, event):
    a, b = make_member("a"), make_member("b")
    for d in (1, 3, 5):
        event(a, "reply", at(3, d))
        event(b, "message", at(3, d))
    do_recompute_scores(tenant.pk, member_ids=[a.pk], now=NOW)
    assert MemberScore.objects.filter(member=b).count() == 0
    inc = MemberScore.objects.get(member=a).score
    do_recompute_scores(tenant.pk, now=NOW)
    assert MemberScore.objects.get(member=a).score == pytest.approx(inc)
    assert MemberScore.objects.filter(tenant=other_tenant).count() == 0


def test_lifecycle_transitions(tenant, make_member, event, community):
    now = NOW
    make_member("新人", joined_days_ago=2, now=now, last_active=now)
    active = make_member("活跃", joined_days_ago=60, now=now, last_active=now - dt.timedelta(days=1))
    event(active, "message", now - dt.timedelta(days=1))
    lurker = make_member("潜水", joined_days_ago=60, now=now, last_active=now - dt.timedelta(days=3))
    event(lurker, "reaction", now - dt.timedelta(days=3))
    event(lurker, "message", now - dt.timedelta(days=25))
    make_member("沉睡", joined_days_ago=200, now=now, last_active=now - dt.timedelta(days=45))
    make_member("流失", joined_days_ago=300, now=now, last_active=now - dt.timedelta(days=120))
    left = make_member("退群", joined_days_ago=60, now=now, last_active=now - dt.timedelta(days=2))
    event(left, "message", now - dt.timedelta(days=2))
    left.memberships.update(left_at=now - dt.timedelta(days=1))
    do_recompute_scores(tenant.pk, now=now)
    stage = dict(Member.objects.values_list("display_name", "lifecycle_stage"))
    assert stage == {"新人": "new", "活跃": "active", "潜水": "lurking", "沉睡": "dormant", "流失": "churned",
                     "退群": "churned"}
    # the active member falls silent: two weeks later they are lurking, then dormant
    do_update_lifecycle(tenant.pk, now=now + dt.timedelta(days=16))
    assert Member.objects.get(pk=active.pk).lifecycle_stage == "lurking"
    do_update_lifecycle(tenant.pk, now=now + dt.timedelta(days=40))
    assert Member.objects.get(pk=active.pk).lifecycle_stage == "dormant"
