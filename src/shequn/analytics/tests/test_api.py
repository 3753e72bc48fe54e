"""/api/v1/analytics: the figures, exports, and tenant isolation of every endpoint."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from shequn.analytics import selectors, services
from shequn.core.models import Tenant

from .world import at, event, ingest, make_world, pay

URL = "/api/v1/analytics"
pytestmark = pytest.mark.django_db

READS = [("formula", {}), ("trend", {"days": 7}), ("breakdown", {"by": "community"}), ("funnel", {"by": "campaign"}),
         ("cohorts", {"grain": "week"}), ("alerts", {})]


def test_community_dashboard(world, make_client):
    services.do_refresh()
    c = make_client(world.tenant)
    resp = c.get(f"{URL}/communities/{world.community.pk}/dashboard", {"days": 7})
    assert resp.status_code == 200, resp.content
    d = resp.json()
    assert len(d["dates"]) == len(d["members"]) == len(d["messages"]) == 7
    assert d["members"][-1] == 1 and sum(d["joins"]) == 1
    assert sum(d["messages"]) == 1 and sum(d["daily_active"]) == 1
    assert c.get(f"{URL}/communities/{world.community.pk}/dashboard", {"days": 0}).status_code == 422


def _sales(tenant: Tenant, amount: int) -> None:
    w = make_world(tenant)
    ingest(w, [event(w, "join", 0, 0, at(0), invite=True), event(w, "message", 0, 0, at(0, 11))])
    pay(w, 0, amount, at(0, 12), campaign="双11")
    services.do_refresh(tenant.pk)


def test_every_read_answers_only_the_callers_tenant(tenant, other_tenant, make_client, monkeypatch):
    _sales(tenant, 12_300)
    _sales(other_tenant, 99_900)
    monkeypatch.setattr(selectors, "today", lambda tid: at(3).date())
    mine, theirs = make_client(tenant, ["analytics.read"]), make_client(other_tenant, ["analytics.read"])
    for name, params in READS:
        a, b = mine.get(f"{URL}/{name}", params), theirs.get(f"{URL}/{name}", params)
        assert a.status_code == b.status_code == 200, (name, a.content)
        assert "99900" not in a.content.decode() and "12300" not in b.content.decode(), name
    assert mine.get(f"{URL}/formula").json()["sales_fen"] == 12_300
    assert theirs.get(f"{URL}/formula").json()["sales_fen"] == 99_900
    assert mine.get(f"{URL}/funnel").json()[0]["steps"][3]["members"] == 1
    # the other tenant's community id is not found on the board
    other_community = theirs.get(f"{URL}/breakdown").json()[0]["key"]
    assert mine.get(f"{URL}/communities/{other_community}/dashboard").status_code == 404
    # exports too
    body = mine.get(f"{URL}/export", {"report": "trend", "days": 7}).content.decode("utf-8-sig")
    assert "123.0" in body and "999.0" not in body


def test_permission_is_required(tenant, make_client):
    assert make_client(tenant, ["members.read"]).get(f"{URL}/formula").status_code == 403


def test_exports_csv_and_xlsx(tenant, make_client, monkeypatch):
    _sales(tenant, 12_300)
    monkeypatch.setattr(selectors, "today", lambda tid: at(3).date())
    c = make_client(tenant, ["analytics.read"])
    csv_text = c.get(f"{URL}/export", {"report": "funnel_members", "step": "first_order"}).content.decode("utf-8-sig")
    assert csv_text.splitlines()[0].startswith("会员 ID") and "会员0" in csv_text
    resp = c.get(f"{URL}/export", {"report": "breakdown", "format": "xlsx", "by": "campaign"})
    assert resp.status_code == 200
    ws = load_workbook(io.BytesIO(resp.content)).active
    rows = list(ws.values)
    assert rows[0][0] == "名称" and rows[1][0] == "双11" and rows[1][1] == 123
    bad = c.get(f"{URL}/export", {"report": "breakdown", "by": "inviter_id"})
    assert bad.status_code == 422 and "by" in bad.content.decode()
    assert c.get(f"{URL}/export", {"report": "nope"}).status_code == 422
