"""Role recommendations with reasons and standing checks, ladder suggestions confirmed by an operator,
health alerts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from shequn.communities.models import RoleAssignment
from shequn.core import webhooks
from shequn.core.errors import Conflict
from shequn.core.models import AuditLog, WebhookEvent
from shequn.core.permissions import Principal
from shequn.core.services import do_create_operator
from shequn.engagement import services
from shequn.engagement.models import HealthAlert, LadderSuggestion, MemberScore
from shequn.engagement.selectors import lurkers, pending_role_recommendations
from shequn.engagement.services import (
    do_decide_ladder,
    do_decide_role,
    do_health_check,
    do_recommend_roles,
    do_recompute_scores,
    do_suggest_ladder,
)
from shequn.engagement.tasks import recommend_roles
from shequn.members.models import Member


@pytest.fixture
def chatty(make_member, event):
    now = timezone.now()
    helper, creator, quiet = make_member("热心肠"), make_member("写手"), make_member("路人")
    for d in range(1, 11):
        base = now - dt.timedelta(days=d)
        q = event(quiet, "message", base.replace(hour=12), {"text": "请问"})
        event(helper, "reply", base.replace(hour=(8 + d) % 24), {"reply_to_member_id": quiet.pk})
        t = event(creator, "other", base.replace(hour=20), {"raw_kind": "topic"})
        event(quiet, "reaction", base.replace(hour=21), {"target_event_id": t.pk})
        event(helper, "reaction", base.replace(hour=21), {"target_event_id": t.pk})
        assert q
    return helper, creator, quiet


def test_role_recommendations_with_reasons_and_accept(tenant, community, chatty, system):
    helper, creator, _quiet = chatty
    recs = do_recommend_roles(tenant.pk, community.pk)
    by_role = {}
    for r in recs:
        by_role.setdefault(r.role, []).append(r.member_id)
    assert by_role["cs"][0] == helper.pk
    assert by_role["content"][0] == creator.pk
    rec = next(r for r in recs if r.role == "cs" and r.member_id == helper.pk)
    assert any("时段" in reason for reason in rec.reasons)
    do_decide_role(system, rec.pk, accept=True)
    assert RoleAssignment.objects.filter(member=helper, role="cs", community=community).exists()
    assert AuditLog.objects.filter(action="engagement.role.accept").exists()
    with pytest.raises(Conflict):
        do_decide_role(system, rec.pk, accept=True)
    # the holder is no longer recommended for the role they hold
    assert helper.pk not in [r.member_id for r in do_recommend_roles(tenant.pk, community.pk) if r.role == "cs"]


def test_standing_check_excludes_members(tenant, community, chatty):
    helper, *_ = chatty

    def flagged(tenant_id, member_id):
        return "近期被警告" if member_id == helper.pk else None

    services.register_standing_check(flagged)
    try:
        recs = do_recommend_roles(tenant.pk, community.pk)
        assert helper.pk not in {r.member_id for r in recs}
    finally:
        services.unregister_standing_check(flagged)


def test_ladder_suggestion_and_operator_confirmation(tenant, make_member, event, system):
    m = make_member("回头客")
    now = timezone.now()
    for d in range(3):
        event(m, "purchase", now - dt.timedelta(days=d), {"amount_fen": 9900})
    for d in range(20):
        event(m, "message", now - dt.timedelta(days=d))
    event(m, "invite", now)
    do_recompute_scores(tenant.pk)
    assert MemberScore.objects.get(member=m).level >= 4
    assert do_suggest_ladder(tenant.pk) == 1
    s = LadderSuggestion.objects.get(member=m)
    assert (s.from_level, s.to_level) == (0, 2) and s.evidence["purchases"] == 3
    do_decide_ladder(system, s.pk, accept=True, reason="老客户")
    assert Member.objects.get(pk=m.pk).relationship_level == 2
    assert AuditLog.objects.filter(action="engagement.ladder.accept", object_id=str(m.pk)).exists()
    assert do_suggest_ladder(tenant.pk) == 0


def test_health_alerts(tenant, community, make_member, event):
    now = timezone.now()
    m = make_member("曾经活跃", last_active=now - dt.timedelta(days=20))
    for d in range(20, 50):
        event(m, "message", now - dt.timedelta(days=d))
    do_recompute_scores(tenant.pk)
    # an integration subscribed to health alerts gets one webhook per alert (issue 14)
    webhooks.do_create_endpoint(Principal.system(tenant.pk), url="https://ops.invalid/hook",
                                event_types=["health.alert"])
    assert do_health_check(tenant.pk) == 2
    kinds = set(HealthAlert.objects.values_list("kind", flat=True))
    assert kinds == {"dead_group", "going_quiet"}
    assert do_health_check(tenant.pk) == 0  # one alert per key
    announced = WebhookEvent.objects.filter(tenant=tenant, type="health.alert")
    assert sorted(e.data["kind"] for e in announced) == ["dead_group", "going_quiet"]
    assert list(lurkers(tenant.pk, community.pk)) == [m]  # silent 20 days: lurking


def test_scheduled_recommendations_on_the_community_page_with_one_click_assignment(tenant, community, chatty):
    """The daily task computes recommendations for every community; the console's community page
    lists them and one click assigns the role (or dismisses it, which the next run respects)."""
    helper, creator, _quiet = chatty
    assert recommend_roles.call() > 0
    do_create_operator(tenant=tenant, username="op", password="pw-123456", role="operator")
    console = Client()
    assert console.login(username="op", password="pw-123456")
    page = reverse("console:community_dashboard", args=[community.pk])
    html = console.get(page).content.decode()
    assert 'data-testid="role-recommendations"' in html and "热心肠" in html and "写手" in html
    cs = pending_role_recommendations(tenant.pk, community.pk).get(member=helper, role="cs")
    url = reverse("console:role_recommendation_decide", args=[community.pk, cs.pk])
    r = console.post(url, {"decision": "accept"})
    assert r.status_code == 302 and r["Location"].endswith("#role-recommendations")
    assert RoleAssignment.objects.filter(member=helper, role="cs", community=community).exists()
    assert console.post(url, {"decision": "accept"}).status_code == 302  # already decided: a message, no 500
    assert RoleAssignment.objects.filter(member=helper, role="cs").count() == 1
    content = pending_role_recommendations(tenant.pk, community.pk).get(member=creator,
                                                                                           role="content")
    assert 'hx-post="' + reverse("console:role_recommendation_decide", args=[community.pk, content.pk]) in html
    # the page's htmx click: the row is swapped in place (a fragment, no redirect)
    swapped = console.post(reverse("console:role_recommendation_decide", args=[community.pk, content.pk]),
                           {"decision": "dismiss"}, headers={"HX-Request": "true"})
    assert swapped.status_code == 200
    assert f'id="rec-{content.pk}"' in swapped.content.decode() and "已忽略该推荐" in swapped.content.decode()
    recommend_roles.call()  # the next run does not ask about 写手 as content creator again
    assert not pending_role_recommendations(tenant.pk, community.pk).filter(
        member=creator, role="content").exists()
    # a read-only login sees the list but cannot assign
    do_create_operator(tenant=tenant, username="ro", password="pw-123456", role="readonly")
    ro = Client()
    assert ro.login(username="ro", password="pw-123456")
    assert ro.post(url, {"decision": "accept"}).status_code == 403
