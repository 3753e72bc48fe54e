from __future__ import annotations

import pytest
from django.test import Client

from shequn.core.permissions import Principal
from shequn.core.services import do_create_api_key
from shequn.referrals.services import do_create_plan, do_get_or_create_link, do_record_click, on_order_event
from shequn.testing.factories import MemberFactory, order_line, paid_event


@pytest.fixture
def client_for(tenant, system):
    def make(scopes):
        _key, secret = do_create_api_key(system, name="t", scopes=scopes)
        return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return make


def test_api_flow(tenant, client_for):
    c = client_for(["referrals.write", "finance.write"])
    alice = MemberFactory(tenant=tenant, display_name="阿丽")
    r = c.post("/api/v1/referrals/plans", {"name": "二级", "levels": 2, "rules": [{"rate_bps": 100}]},
               content_type="application/json")
    assert r.status_code == 422 and "禁止传销条例" in r.json()["message"]
    r = c.post("/api/v1/referrals/plans", {"name": "入门", "refund_window_days": 0,
                                           "rules": [{"product_kind": "tier", "rate_bps": 10000}]},
               content_type="application/json")
    assert r.status_code == 200 and r.json()["warnings"]
    r = c.post("/api/v1/referrals/links", {"member_id": alice.pk}, content_type="application/json")
    assert r.status_code == 200
    code = r.json()["code"]
    assert c.get(f"/api/v1/referrals/links/{code}/poster.png")["Content-Type"] == "image/png"
    bob = MemberFactory(tenant=tenant, display_name="小波")
    r = c.post(f"/api/v1/referrals/links/{code}/click", {"member_id": bob.pk}, content_type="application/json")
    assert r.json()["referrer_id"] == alice.pk
    on_order_event(paid_event(tenant, bob, [order_line("entry", 1990)], code=code))
    st = c.get(f"/api/v1/referrals/members/{alice.pk}/statement").json()
    assert st["available_fen"] == 1990 and st["lines"][0]["from"] == "小波"
    r = c.post("/api/v1/referrals/withdrawals", {"member_id": alice.pk, "amount_fen": 1000, "request_id": "x1"},
               content_type="application/json")
    assert r.status_code == 200 and r.json()["status"] == "paid"
    r = c.post("/api/v1/referrals/withdrawals", {"member_id": alice.pk, "amount_fen": 5000, "request_id": "x2"},
               content_type="application/json")
    assert r.status_code == 409 and r.json()["code"] == "insufficient_funds"
    board = c.get("/api/v1/referrals/leaderboards/referrals").json()
    assert board[0]["member_id"] == alice.pk
    assert c.get(f"/api/v1/referrals/leaderboards/referrals/members/{alice.pk}").json()["rank"] == 1
    assert c.get("/api/v1/referrals/leaderboards/bogus").status_code == 422
    assert c.get("/api/v1/ledger/check").json()["ok"] is True


def test_api_permissions_and_tenant_scope(tenant, other_tenant, client_for):
    c = client_for(["referrals.read"])
    alice = MemberFactory(tenant=tenant, display_name="阿丽")
    assert c.post("/api/v1/referrals/withdrawals", {"member_id": alice.pk, "amount_fen": 100, "request_id": "a"},
                  content_type="application/json").status_code == 403
    stranger = MemberFactory(tenant=other_tenant, display_name="外人")
    assert c.get(f"/api/v1/referrals/members/{stranger.pk}/statement").status_code == 404
    assert Principal.system(tenant.pk).tenant_id == tenant.pk


def test_leaderboard_never_lists_another_tenants_members(tenant, other_tenant, client_for):
    """The isolation test of the (exempt) ``/leaderboards/{metric}``: both tenants have referrers on
    every board; each tenant's boards list only its own members, and another tenant's member has no
    rank here (404)."""
    referrers = {}
    for t in (tenant, other_tenant):
        p = Principal.system(t.pk)
        do_create_plan(p, name="入门", refund_window_days=0, rules=[{"product_kind": "tier", "rate_bps": 10000}])
        referrers[t.pk] = [MemberFactory(tenant=t, display_name=f"推荐人{i}") for i in range(2)]
        for i, ref in enumerate(referrers[t.pk]):
            code = do_get_or_create_link(p, member_id=ref.pk).code
            for j in range(i + 1):
                buyer = MemberFactory(tenant=t, display_name=f"买家{i}{j}")
                do_record_click(code, member_id=buyer.pk)
                on_order_event(paid_event(t, buyer, [order_line("entry", 1000 * (j + 1))], code=code))
    c = client_for(["referrals.read"])
    own = {m.pk for m in referrers[tenant.pk]}
    foreign = {m.pk for m in referrers[other_tenant.pk]}
    for metric in ("referrals", "commission"):
        for period in ("all", "day", "week", "month"):
            rows = c.get(f"/api/v1/referrals/leaderboards/{metric}?period={period}&n=500").json()
            listed = {r["member_id"] for r in rows}
            assert listed == own, (metric, period, rows)
            assert not listed & foreign
    for m in foreign:
        assert c.get(f"/api/v1/referrals/leaderboards/referrals/members/{m}").status_code == 404
