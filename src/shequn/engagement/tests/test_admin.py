"""Console smoke test: every engagement page renders for an operator; the calendar; accept action."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.communities.models import RoleAssignment
from shequn.core.services import do_create_operator
from shequn.engagement import models
from shequn.engagement.models import ContentItem, ContentSchedule, RoleRecommendation


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
