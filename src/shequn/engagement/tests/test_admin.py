"""Console smoke test: every engagement page renders for an operator; the calendar; accept action."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.activity.services import do_ingest
from shequn.communities.models import RoleAssignment
from shequn.connectors.models import OutboxAction
from shequn.core.services import do_create_operator
from shequn.engagement import models
from shequn.engagement.models import ContentItem, ContentSchedule, RoleRecommendation
from shequn.engagement.services import do_check_in


@pytest.fixture
def console(tenant):
    do_create_operator(tenant=tenant, username="op", password="pw-123456", role="operator")
    c = Client()
    assert c.login(username="op", password="pw-123456")
    return c


def test_pages_render(console, tenant, community, make_member):
    item = ContentItem.objects.create(tenant=tenant, title="早安", body="早")
    ContentSchedule.objects.create(tenant=tenant, content=item, kind="recurring", community=community,
                                   time_of_day=dt.time(9))
    for model in (models.MemberScore, models.LadderSuggestion, models.RoleRecommendation, models.ReplyTrack,
                  models.PointsEntry, models.Lottery, models.RedPacket, models.ContentItem, models.ContentSchedule,
                  models.ContentDelivery, models.HealthAlert, models.EngagementSettings):
        url = reverse(f"admin:engagement_{model._meta.model_name}_changelist")
        r = console.get(url)
        assert r.status_code == 200, (url, r.status_code)
    r = console.get(reverse("admin:engagement_calendar"))
    assert r.status_code == 200 and "早安" in r.content.decode()


def test_accept_role_recommendation_action(console, tenant, community, make_member):
    m = make_member("候选人")
    rec = RoleRecommendation.objects.create(tenant=tenant, community=community, member=m, role="advocate",
                                            score=10, reasons=["近 30 天中有 12 天发言"])
    r = console.post(reverse("admin:engagement_rolerecommendation_changelist"),
                     {"action": "accept", "_selected_action": [rec.pk]})
    assert r.status_code == 302
    ra = RoleAssignment.objects.get(member=m)
    assert ra.role == "advocate" and ra.since <= timezone.now()


def test_reply_queue_page_replies_through_the_outbox(console, tenant, community, make_member, other_tenant):
    alice = make_member("alice")
    now = timezone.now()
    do_ingest(tenant.pk, [{"platform": "telegram", "event_id": "q1", "kind": "message", "sender": f"u{alice.pk}",
                           "group": "-100", "occurred_at": (now - dt.timedelta(hours=2)).isoformat(),
                           "payload": {"text": "请问周六活动几点集合?"}}])
    url = reverse("admin:engagement_reply_queue")
    page = console.get(url, {"community": community.pk})
    assert page.status_code == 200
    body = page.content.decode()
    assert "请问周六活动几点集合?" in body and "响应率" in body
    track = models.ReplyTrack.objects.get(tenant=tenant, platform_event_id="q1")

    empty = console.post(url, {"track_id": track.pk, "text": "  "}, follow=True)
    assert "回复内容不能为空" in empty.content.decode()
    assert not OutboxAction.objects.filter(tenant=tenant).exists()

    done = console.post(url, {"track_id": track.pk, "text": "早上 9 点, 体育中心北门", "community": community.pk})
    assert done.status_code == 302
    action = OutboxAction.objects.get(tenant=tenant)
    assert action.kind == "send" and action.payload["text"] == "早上 9 点, 体育中心北门"
    assert action.payload["reply_to_message_id"] == "q1"
    assert "请问周六活动几点集合?" not in console.get(url).content.decode()  # answered: left the queue


def test_reply_queue_page_refuses_read_only_staff(tenant, community, make_member):
    do_create_operator(tenant=tenant, username="ro", password="pw-123456", role="readonly")
    c = Client()
    assert c.login(username="ro", password="pw-123456")
    alice = make_member("alice")
    t = models.ReplyTrack.objects.create(tenant=tenant, community=community, member=alice, platform_event_id="z",
                                         event_id=1, occurred_at=timezone.now() - dt.timedelta(hours=2), excerpt="在吗")
    url = reverse("admin:engagement_reply_queue")
    assert c.get(url).status_code in (200, 403)
    assert c.post(url, {"track_id": t.pk, "text": "hi"}).status_code == 403
    assert models.ReplyTrack.objects.get(pk=t.pk).answered_at is None


def test_saving_the_settings_in_the_console_reaches_the_next_check_in_at_once(console, tenant, make_member):
    """The settings are cached per process; the console's save drops them, so the next check-in in
    this process earns what the operator just set."""
    assert do_check_in(tenant.pk, make_member("甲").pk).points == 5  # the defaults, now cached
    r = console.post(reverse("admin:engagement_engagementsettings_add"),
                     {"config": '{"checkin": {"points": 9}}'})
    assert r.status_code == 302, r.content.decode()[:2000]
    assert do_check_in(tenant.pk, make_member("乙").pk).points == 9
