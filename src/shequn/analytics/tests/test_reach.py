"""Reach on a known invite forest: K-factor per campaign and inviter, generations, depth, network
reach, the viral coefficient, top referrers — and the API answers (paginated, tenant-scoped).

The forest (→ = brought)::

    A → B (link 春节 of A), A → C (link 春节 of A), B → D (link 双11 of B), B → E, D → F
    G → H                     (G also holds a 春节 link)
    X → Y, Y → X              (a cycle: no root, never loops)
"""

from __future__ import annotations

import datetime as dt

import pytest

from shequn.analytics import reach
from shequn.core.models import Tenant
from shequn.members.models import Member
from shequn.referrals.models import InviteLink, ReferralBinding

URL = "/api/v1/analytics"
pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def build_forest(tenant: Tenant) -> dict[str, Member]:
    m = {n: Member.objects.create(tenant=tenant, display_name=n, first_seen_at=NOW) for n in "ABCDEFGHXY"}
    link = {owner + c: InviteLink.objects.create(tenant=tenant, code=f"{owner}{c}{tenant.pk}", member=m[owner],
                                                 campaign=c)
            for owner, c in (("A", "春节"), ("G", "春节"), ("B", "双11"))}
    for child, parent, via in (("B", "A", "A春节"), ("C", "A", "A春节"), ("D", "B", "B双11"), ("E", "B", None),
                               ("F", "D", None), ("H", "G", None), ("Y", "X", None), ("X", "Y", None)):
        ReferralBinding.objects.create(tenant=tenant, member=m[child], referrer=m[parent],
                                       link=link[via] if via else None, bound_at=NOW)
    reach.do_refresh_reach(tenant.pk)  # what analytics.tasks.refresh_reach does every 5 minutes
    return m


def test_kfactor_per_campaign(tenant):
    build_forest(tenant)
    rows = {r["campaign"]: r for r in reach.kfactor_by_campaign(tenant.pk)}
    assert rows["春节"] == {"campaign": "春节", "sharers": 2, "referred": 2, "k_factor": 1.0}
    assert rows["双11"] == {"campaign": "双11", "sharers": 1, "referred": 1, "k_factor": 1.0}
    assert rows[""] == {"campaign": "", "sharers": 0, "referred": 5, "k_factor": None}


def test_forest_generations_depth_and_viral_coefficient(tenant):
    build_forest(tenant)
    s = reach.summary(tenant.pk)
    assert s["roots"] == 2  # A and G (X and Y refer each other: no root)
    assert s["referred"] == 8 and s["inviters"] == 6  # A, B, D, G, X, Y
    assert s["generations"] == [{"depth": 1, "members": 3}, {"depth": 2, "members": 2}, {"depth": 3, "members": 1}]
    assert s["max_depth"] == 3
    assert s["viral_coefficient"] == round(8 / 10, 4)
    assert s["k_factor"] == round(8 / 6, 4)
    assert s["computed_at"] is not None


def test_refresh_replaces_the_nodes(tenant):
    m = build_forest(tenant)
    ReferralBinding.objects.create(tenant=tenant, member=Member.objects.create(
        tenant=tenant, display_name="I", first_seen_at=NOW), referrer=m["F"], bound_at=NOW)
    assert reach.summary(tenant.pk)["max_depth"] == 3  # as of the last refresh
    assert reach.do_refresh_reach(tenant.pk) == 11
    s = reach.summary(tenant.pk)
    assert s["max_depth"] == 4 and s["referred"] == 9
    assert reach.top_referrers(tenant.pk, limit=1)[0]["reach"] == 6  # A now reaches I through F


def test_network_reach_and_top_referrers(tenant):
    m = build_forest(tenant)
    top = reach.top_referrers(tenant.pk, limit=3)
    assert [(r["name"], r["reach"], r["depth"], r["direct"], r["second"]) for r in top] == [
        ("A", 5, 3, 2, 2), ("B", 3, 2, 2, 1), (top[2]["name"], 1, 1, 1, 0)]
    everyone = {r["name"]: r for r in reach.top_referrers(tenant.pk, limit=100)}
    assert set(everyone) == {"A", "B", "D", "G", "X", "Y"}
    assert everyone["X"]["reach"] == 1 and everyone["X"]["depth"] == 1  # the cycle stops at the ancestor
    b = reach.member_reach(tenant.pk, m["B"].pk)
    assert b == {"member_id": m["B"].pk, "referred_by": m["A"].pk, "direct": 2, "reach": 3, "depth": 2,
                 "generations": [{"depth": 1, "members": 2}, {"depth": 2, "members": 1}]}
    leaf = reach.member_reach(tenant.pk, m["F"].pk)
    assert leaf["reach"] == 0 and leaf["depth"] == 0 and leaf["referred_by"] == m["D"].pk


def test_reach_api_is_paginated_and_tenant_scoped(tenant, other_tenant, make_client):
    m = build_forest(tenant)
    build_forest(other_tenant)
    Member.objects.create(tenant=other_tenant, display_name="Z", first_seen_at=NOW)
    c = make_client(tenant)
    resp = c.get(f"{URL}/reach")
    assert resp.status_code == 200, resp.content
    assert resp.json()["referred"] == 8 and resp.json()["max_depth"] == 3
    first = c.get(f"{URL}/reach/referrers", {"limit": 4}).json()
    assert [r["name"] for r in first["items"][:2]] == ["A", "B"] and first["next_cursor"]
    second = c.get(f"{URL}/reach/referrers", {"limit": 4, "cursor": first["next_cursor"]}).json()
    assert len(second["items"]) == 2 and second["next_cursor"] is None
    ids = {r["member_id"] for r in first["items"] + second["items"]}
    assert ids == {m[n].pk for n in "ABDGXY"}  # only this tenant's referrers
    camp = c.get(f"{URL}/reach/campaigns").json()
    assert {r["campaign"]: r["k_factor"] for r in camp["items"]} == {"": None, "春节": 1.0, "双11": 1.0}
    assert c.get(f"{URL}/reach/member", {"member_id": m["A"].pk}).json()["reach"] == 5
    foreign = Member.objects.filter(tenant=other_tenant).first()
    assert foreign is not None
    assert c.get(f"{URL}/reach/member", {"member_id": foreign.pk}).status_code == 404
    assert c.get(f"{URL}/reach/referrers", {"cursor": "!!"}).status_code == 422
    assert c.get(f"{URL}/reach/referrers", {"limit": 0}).status_code == 422


@pytest.mark.postgres
def test_reach_on_postgresql(tenant):
    """The recursive CTE is the same SQL on both databases (this runs in the PostgreSQL pass)."""
    build_forest(tenant)
    assert reach.summary(tenant.pk)["generations"][-1] == {"depth": 3, "members": 1}
    assert reach.top_referrers(tenant.pk, limit=1)[0]["reach"] == 5
