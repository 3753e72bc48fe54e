"""Funnels and cohorts on a hand-built fixture with known answers."""

from __future__ import annotations

import pytest

from shequn.analytics import selectors, services
from shequn.core.models import Tenant

from .world import at, click, event, ingest, make_world, pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def w(tenant: Tenant):
    w = make_world(tenant, n_members=5)
    click(w, at(0, 9), member=0)
    click(w, at(0, 9), member=3)
    ingest(w, [
        event(w, "join", 0, 0, at(0), invite=True), event(w, "message", 0, 0, at(1)),
        event(w, "join", 1, 0, at(0), invite=True), event(w, "message", 1, 0, at(1, 12)),
        event(w, "join", 2, 1, at(1)),
    ])
    pay(w, 0, 10_000, at(2))
    pay(w, 0, 20_000, at(5))
    pay(w, 1, 30_000, at(3))
    pay(w, 2, 40_000, at(2))  # bought without ever speaking: stops at "joined" in the strict funnel
    pay(w, 0, 60_000, at(35))  # November
    services.do_refresh(tenant.pk)
    return w


def counts(f: dict) -> list[int]:
    return [s["members"] for s in f["steps"]]


def test_overall_funnel(w, tenant):
    [f] = selectors.funnel(tenant.pk)
    assert counts(f) == [4, 3, 2, 2, 1]
    assert [s["drop_off"] for s in f["steps"]] == [0, 1, 1, 0, 1]
    assert f["steps"][1]["rate"] == 0.75


def test_funnel_by_campaign_and_inviter_members(w, tenant):
    by = {f["key"]: counts(f) for f in selectors.funnel(tenant.pk, by="campaign")}
    assert by == {"双11": [3, 2, 2, 2, 1], "": [1, 1, 0, 0, 0]}
    members = selectors.funnel_members(tenant.pk, "first_order", by="campaign", key="双11")
    assert [m["member_id"] for m in members] == sorted([w.members[0].pk, w.members[1].pk])
    [late] = selectors.funnel(tenant.pk, start=at(1).date())  # entered from day 1 on: only member 2
    assert counts(late) == [1, 1, 0, 0, 0]


def test_monthly_cohort_retention_and_revenue(w, tenant):
    [october] = selectors.cohorts(tenant.pk, grain="month", periods=3)
    assert october["cohort"] == "2026-10-01" and october["size"] == 3
    assert october["retention"][:2] == [1.0, pytest.approx(1 / 3)]
    assert october["revenue_per_member_fen"][:2] == [pytest.approx(100_000 / 3), pytest.approx(60_000 / 3)]
    assert october["retention"][2] == 0


def test_weekly_cohorts_split_by_join_week(w, tenant):
    # 2026-10-01 is a Thursday: every join (days 0 and 1) is in the week of Monday 2026-09-28
    [week] = selectors.cohorts(tenant.pk, grain="week", periods=6)
    assert week["cohort"] == "2026-09-28" and week["size"] == 3
    assert week["retention"][0] == 1.0
