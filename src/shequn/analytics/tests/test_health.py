"""Health: the figures per group/community, each rule (dead group, going quiet, ad wave, unanswered
backlog), notices deduplicated per rule × target while open, and each channel (console count, webhook
feed, outbox to the staff group and DMs to 群主/客服)."""

from __future__ import annotations

import datetime as dt

import pytest

from shequn.analytics import health, services
from shequn.analytics.models import HealthNotice
from shequn.analytics.tasks import evaluate_health
from shequn.communities.models import CommunityRole, Membership, RoleAssignment
from shequn.connectors.models import OutboxAction
from shequn.core.errors import Invalid
from shequn.core.models import WebhookEvent, WebhookEventType
from shequn.core.permissions import Principal
from shequn.core.webhooks import do_create_endpoint
from shequn.engagement.models import ReplyTrack
from shequn.members.models import Identity
from shequn.moderation.models import Violation

from .world import World, at, event, ingest, make_world

pytestmark = pytest.mark.django_db

NOW = at(20, 12)


def _ads(w: World, n: int, when: dt.datetime, group: int = 0) -> None:
    for i in range(n):
        Violation.objects.create(tenant=w.tenant, community=w.communities[group], group=w.groups[group],
                                 member=w.members[i % len(w.members)], verdict="ad", score=0.99,
                                 occurred_at=when + dt.timedelta(seconds=i))


def _questions(w: World, n: int, when: dt.datetime, group: int = 0, answered_after: dt.timedelta | None = None
               ) -> list[ReplyTrack]:
    return [ReplyTrack.objects.create(
        tenant=w.tenant, event_id=10_000 + ReplyTrack.objects.count(), community=w.communities[group],
        group=w.groups[group], member=w.members[i % len(w.members)], occurred_at=when,
        answered_at=when + answered_after if answered_after is not None else None) for i in range(n)]


def _rules(tenant_id: int, **kw: object) -> set[tuple[str, int]]:
    return {(a.rule, a.group_id) for a in health.firing(tenant_id, **kw)}  # type: ignore[arg-type]


def _join(w: World, member: int, group: int, when: dt.datetime) -> None:
    Membership.objects.create(tenant=w.tenant, member=w.members[member], community=w.communities[group],
                              group=w.groups[group], joined_at=when)


def test_ad_wave_fires_at_the_threshold_within_the_window(tenant):
    w = make_world(tenant)
    _ads(w, 4, NOW - dt.timedelta(minutes=30))
    _ads(w, 3, NOW - dt.timedelta(minutes=90), group=1)  # outside the 60-minute window
    assert ("ad_wave", w.groups[0].pk) not in _rules(tenant.pk, now=NOW)
    _ads(w, 1, NOW - dt.timedelta(minutes=5))
    hits = [a for a in health.firing(tenant.pk, now=NOW) if a.rule == "ad_wave"]
    assert [(a.group_id, a.community_id, a.level) for a in hits] == [(w.groups[0].pk, w.communities[0].pk, "red")]
    health.do_save_settings(tenant.pk, {"ad_wave_minutes": 120, "ad_wave_threshold": 3})
    assert {g for r, g in _rules(tenant.pk, now=NOW) if r == "ad_wave"} == {w.groups[0].pk, w.groups[1].pk}


def test_unanswered_backlog_counts_only_old_unanswered_questions(tenant):
    w = make_world(tenant)
    _questions(w, 2, NOW - dt.timedelta(minutes=45))
    _questions(w, 5, NOW - dt.timedelta(minutes=10))  # not old enough
    _questions(w, 5, NOW - dt.timedelta(minutes=45), answered_after=dt.timedelta(minutes=1))  # answered
    skipped = _questions(w, 1, NOW - dt.timedelta(hours=2))[0]
    ReplyTrack.objects.filter(pk=skipped.pk).update(no_reply_at=NOW)  # marked "needs no answer"
    assert ("unanswered_backlog", w.groups[0].pk) not in _rules(tenant.pk, now=NOW)
    _questions(w, 1, NOW - dt.timedelta(minutes=31))
    hits = [a for a in health.firing(tenant.pk, now=NOW) if a.rule == "unanswered_backlog"]
    assert [(a.group_id, a.level) for a in hits] == [(w.groups[0].pk, "amber")]
    assert "3" in hits[0].message


def test_dead_group_and_going_quiet_from_the_rollups(tenant):
    w = make_world(tenant)
    _join(w, 0, 0, at(0))  # group 0: members, no messages → dead
    _join(w, 1, 1, at(0))
    # group 1: 12 messages the week before, 2 this week → going quiet (and not dead)
    ingest(w, [event(w, "message", 1, 1, at(8, 10) + dt.timedelta(minutes=i)) for i in range(12)]
           + [event(w, "message", 1, 1, at(18, 10) + dt.timedelta(minutes=i)) for i in range(2)])
    services.do_refresh(tenant.pk)
    rules = _rules(tenant.pk, now=NOW)
    assert ("dead_group", w.groups[0].pk) in rules
    assert ("going_quiet", w.groups[1].pk) in rules and ("dead_group", w.groups[1].pk) not in rules
    health.do_save_settings(tenant.pk, {"quiet_min_before": 13})
    assert ("going_quiet", w.groups[1].pk) not in _rules(tenant.pk, now=NOW)


def test_a_notice_is_opened_once_kept_while_firing_and_resolved_when_it_stops(tenant):
    w = make_world(tenant)
    _ads(w, 5, NOW - dt.timedelta(minutes=10))
    assert health.do_evaluate(tenant.pk, now=NOW)["opened"] >= 1
    first = HealthNotice.objects.get(tenant=tenant, rule="ad_wave")
    later = NOW + dt.timedelta(minutes=5)
    counts = health.do_evaluate(tenant.pk, now=later)
    assert counts["opened"] == 0 and counts["kept"] >= 1
    first.refresh_from_db()
    assert first.resolved_at is None and first.last_seen_at == later
    gone = NOW + dt.timedelta(hours=2)
    health.do_evaluate(tenant.pk, now=gone)
    first.refresh_from_db()
    assert first.resolved_at == gone
    _ads(w, 5, gone)  # a second wave: a new notice
    health.do_evaluate(tenant.pk, now=gone + dt.timedelta(minutes=1))
    assert HealthNotice.objects.filter(tenant=tenant, rule="ad_wave").count() == 2
    assert HealthNotice.objects.filter(tenant=tenant, rule="ad_wave", resolved_at__isnull=True).count() == 1


def test_the_scheduled_task_evaluates_every_tenant(tenant, other_tenant):
    for t in (tenant, other_tenant):
        w = make_world(t)
        _ads(w, 5, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    assert evaluate_health.call() >= 2
    assert HealthNotice.objects.filter(rule="ad_wave").values("tenant").distinct().count() == 2


def test_channels_webhook_staff_group_and_owner_dm(tenant):
    w = make_world(tenant)
    do_create_endpoint(Principal.system(tenant.pk), url="https://hooks.example.com/x",
                       event_types=[WebhookEventType.HEALTH_ALERT])
    owner, cs = w.members[3], w.members[4]
    for m, role in ((owner, CommunityRole.OWNER), (cs, CommunityRole.CUSTOMER_SERVICE)):
        RoleAssignment.objects.create(tenant=tenant, community=w.communities[0], member=m, role=role, since=at(0))
    Identity.objects.create(tenant=tenant, member=owner, platform="telegram", external_id="777")
    Identity.objects.create(tenant=tenant, member=cs, platform="matrix", external_id="@cs:x")  # no DMs on matrix
    health.do_save_settings(tenant.pk, {"notify_owner": True, "staff_group_id": w.groups[1].pk})
    _ads(w, 5, NOW - dt.timedelta(minutes=10))
    health.do_evaluate(tenant.pk, now=NOW)
    notice = HealthNotice.objects.get(tenant=tenant, rule="ad_wave")

    hook = WebhookEvent.objects.get(tenant=tenant, type="health.alert", key=f"analytics.notice:{notice.pk}")
    assert hook.data["rule"] == "ad_wave" and hook.data["group_id"] == w.groups[0].pk
    actions = OutboxAction.objects.filter(tenant=tenant, source="analytics.health")
    staff = actions.get(idempotency_key=f"health:{notice.pk}:staff")
    assert staff.kind == "send" and staff.group_id == w.groups[1].pk and "广告" in staff.payload["text"]
    dm = actions.get(idempotency_key=f"health:{notice.pk}:dm:{owner.pk}")
    assert dm.platform == "telegram" and dm.target_external_id == "777" and dm.payload["dm"] is True
    assert actions.count() == 2  # the 客服 has no platform that takes direct messages

    health.do_evaluate(tenant.pk, now=NOW + dt.timedelta(minutes=5))  # kept: nothing sent again
    assert actions.count() == 2
    assert WebhookEvent.objects.filter(tenant=tenant, type="health.alert").count() == 1


def test_channels_follow_the_settings(tenant):
    w = make_world(tenant)
    do_create_endpoint(Principal.system(tenant.pk), url="https://hooks.example.com/x",
                       event_types=[WebhookEventType.HEALTH_ALERT])
    health.do_save_settings(tenant.pk, {"notify_webhook": False, "notify_console": False})
    _ads(w, 5, NOW - dt.timedelta(minutes=10))
    health.do_evaluate(tenant.pk, now=NOW)
    assert HealthNotice.objects.filter(tenant=tenant, rule="ad_wave").exists()
    assert not WebhookEvent.objects.filter(tenant=tenant, type="health.alert").exists()
    assert not OutboxAction.objects.filter(tenant=tenant, source="analytics.health").exists()
    assert health.open_count(tenant.pk) == 0  # the console badge is off
    health.do_save_settings(tenant.pk, {"notify_console": True})
    assert health.open_count(tenant.pk) == health.open_notices(tenant.pk).count() >= 1


def test_settings_are_checked(tenant, other_tenant):
    w = make_world(other_tenant)
    with pytest.raises(Invalid) as e:
        health.do_save_settings(tenant.pk, {"ad_wave_threshold": 0})
    assert e.value.details == {"field": "ad_wave_threshold"}
    with pytest.raises(Invalid):
        health.do_save_settings(tenant.pk, {"staff_group_id": w.groups[0].pk})  # another tenant's group
    with pytest.raises(Invalid):
        health.do_save_settings(tenant.pk, {"notify_owner": "yes"})
    with pytest.raises(Invalid):
        health.do_save_settings(tenant.pk, {"colour": 1})


def test_health_figures_per_group_and_community(tenant):
    w = make_world(tenant)
    for m in range(4):
        _join(w, m, 0, at(0))
    _join(w, 4, 1, at(0))
    day = at(19, 10)
    ingest(w, [event(w, "message", 0, 0, day), event(w, "message", 0, 0, day + dt.timedelta(minutes=1)),
               event(w, "message", 1, 0, day + dt.timedelta(minutes=2)), event(w, "join", 3, 0, day),
               event(w, "leave", 2, 0, day + dt.timedelta(minutes=5))])
    services.do_refresh(tenant.pk)
    _ads(w, 1, day)
    _questions(w, 1, day, answered_after=dt.timedelta(minutes=2))
    _questions(w, 1, day, answered_after=dt.timedelta(minutes=10))
    _questions(w, 1, day)
    rows = {r["target_id"]: r for r in health.health_figures(tenant.pk, by="group", days=7, now=NOW)}
    g = rows[w.groups[0].pk]
    assert g["members"] == 3 and g["messages"] == 3 and g["ads"] == 1  # member 2 left
    assert g["ad_rate"] == round(1 / 3, 4)
    assert g["joins"] == 1 and g["leaves"] == 1 and g["balance"] == 0
    # the three member messages are tracked by the reply queue too (unanswered) besides the three above
    assert g["questions"] == 6 and g["answered"] == 2 and g["response_rate"] == round(2 / 6, 4)
    assert g["median_first_response_s"] == 360.0
    # active: members 0, 1 (messages) and 3 (join) that day (a leave is no activity) → 3 member-days in 7 days
    assert g["active_rate"] == round(3 / 7 / 3, 4)
    assert g["silent_share"] == 0.0  # the three left all did something within the window
    assert rows[w.groups[1].pk]["silent_share"] == 1.0 and rows[w.groups[1].pk]["response_rate"] is None
    comms = {r["target_id"]: r for r in health.health_figures(tenant.pk, by="community", days=7, now=NOW)}
    assert comms[w.communities[0].pk]["members"] == 3 and comms[w.communities[0].pk]["messages"] == 3


def test_health_api_figures_notices_and_settings(tenant, other_tenant, make_client):
    w = make_world(tenant)
    _ads(w, 5, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    _questions(w, 3, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    health.do_evaluate(tenant.pk)
    o = make_world(other_tenant)
    _ads(o, 5, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    health.do_evaluate(other_tenant.pk)
    c = make_client(tenant)
    url = "/api/v1/analytics/health"
    figures = c.get(url, {"by": "group"}).json()
    assert {r["target_id"] for r in figures} == {g.pk for g in w.groups}
    assert next(r for r in figures if r["target_id"] == w.groups[0].pk)["ads"] == 5
    assert c.get(url, {"by": "tenant"}).status_code == 422
    page = c.get(f"{url}/notices", {"state": "open", "limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = c.get(f"{url}/notices", {"state": "open", "limit": 100, "cursor": page["next_cursor"]}).json()
    mine = {n["id"] for n in page["items"] + rest["items"]}
    assert mine == set(HealthNotice.objects.filter(tenant=tenant).values_list("pk", flat=True))
    assert {n["rule"] for n in page["items"] + rest["items"]} >= {"ad_wave", "unanswered_backlog"}
    assert c.get(f"{url}/notices", {"rule": "ad_wave"}).json()["items"][0]["group_id"] == w.groups[0].pk
    assert c.get(f"{url}/settings").json()["ad_wave_threshold"] == 5
    resp = c.patch(f"{url}/settings", {"ad_wave_threshold": 9, "notify_owner": True})
    assert resp.status_code == 200, resp.content
    assert resp.json()["ad_wave_threshold"] == 9 and health.get_settings(tenant.pk).notify_owner
    assert health.get_settings(other_tenant.pk).ad_wave_threshold == 5
    bad = c.patch(f"{url}/settings", {"ad_wave_threshold": "9"})
    assert bad.status_code == 422 and "ad_wave_threshold" in bad.content.decode()
    foreign = c.patch(f"{url}/settings", {"staff_group_id": o.groups[0].pk})
    assert foreign.status_code == 422 and "staff_group_id" in foreign.content.decode()
    reader = make_client(tenant, scopes=["analytics.read"])
    assert reader.patch(f"{url}/settings", {"ad_wave_threshold": 7}).status_code == 403
