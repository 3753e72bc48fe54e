"""The engagement REST endpoints: check-in, points, lottery entry/record, red-packet claim, reply queue."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from shequn.core.services import do_create_api_key
from shequn.engagement.models import ReplyTrack
from shequn.engagement.services import do_create_lottery, do_create_red_packet


@pytest.fixture
def api(system):
    _key, secret = do_create_api_key(system, name="bot", scopes=["engagement.write"])
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


@pytest.fixture
def readonly(system):
    _key, secret = do_create_api_key(system, name="ro", scopes=["engagement.read"])
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_check_in_points_and_errors(api, readonly, make_member, other_tenant):
    m = make_member()
    r = api.post("/api/v1/engagement/checkins", {"member_id": m.pk}, content_type="application/json")
    assert r.status_code == 200, r.content
    assert r.json()["created"] is True and r.json()["points"] == 5
    r = api.post("/api/v1/engagement/checkins", {"member_id": m.pk}, content_type="application/json")
    assert r.json()["created"] is False
    assert api.get(f"/api/v1/engagement/members/{m.pk}/points").json()["balance"] == 5
    hist = api.get(f"/api/v1/engagement/members/{m.pk}/points/history").json()
    assert [e["kind"] for e in hist["items"]] == ["checkin"]
    assert api.get(f"/api/v1/engagement/members/{m.pk}/score").json()["member_id"] == m.pk
    r = readonly.post("/api/v1/engagement/checkins", {"member_id": m.pk}, content_type="application/json")
    assert r.status_code == 403
    r = api.post("/api/v1/engagement/checkins", {"member_id": 999999}, content_type="application/json")
    assert r.status_code == 404 and r.json()["details"] == {"field": "member_id"}


def test_lottery_and_red_packet_endpoints(api, system, make_member):
    m = make_member()
    now = timezone.now()
    lot = do_create_lottery(system, title="抽奖", closes_at=now + dt.timedelta(hours=1),
                            draw_at=now + dt.timedelta(hours=2), prizes=[("奖", 1)])
    r = api.post(f"/api/v1/engagement/lotteries/{lot.pk}/entries", {"member_id": m.pk},
                 content_type="application/json")
    assert r.status_code == 200, r.content
    r = api.post(f"/api/v1/engagement/lotteries/{lot.pk}/entries", {"member_id": m.pk},
                 content_type="application/json")
    assert r.status_code == 409 and r.json()["code"] == "already_entered"
    rec = api.get(f"/api/v1/engagement/lotteries/{lot.pk}").json()
    assert rec["seed_commitment"] == lot.seed_commitment and "seed" not in rec
    p = do_create_red_packet(system, total=10, count=2)
    r = api.post(f"/api/v1/engagement/red-packets/{p.pk}/claims", {"member_id": m.pk},
                 content_type="application/json", HTTP_IDEMPOTENCY_KEY="claim-1")
    assert r.status_code == 200 and r.json()["amount"] >= 1
    again = api.post(f"/api/v1/engagement/red-packets/{p.pk}/claims", {"member_id": m.pk},
                     content_type="application/json", HTTP_IDEMPOTENCY_KEY="claim-1")
    assert again.json() == r.json()  # replayed, not a second claim


def test_reply_queue_endpoints(api, tenant, community, group, make_member):
    m = make_member("提问者")
    t = ReplyTrack.objects.create(tenant=tenant, event_id=1, community=community, group=group, member=m,
                                  platform_event_id="42", excerpt="请问?", occurred_at=timezone.now()
                                  - dt.timedelta(hours=2))
    rows = api.get(f"/api/v1/engagement/reply-queue?community_id={community.pk}").json()
    assert [r["id"] for r in rows] == [t.pk] and rows[0]["waiting_seconds"] >= 7200
    r = api.post(f"/api/v1/engagement/reply-queue/{t.pk}/reply", {"text": "您好"}, content_type="application/json")
    assert r.status_code == 200 and r.json()["reply_action_id"]
    assert api.get("/api/v1/engagement/reply-queue").json() == []
    stats = api.get("/api/v1/engagement/reply-stats").json()
    assert stats["communities"][0]["response_rate"] == 1.0
